"""Observables of trajectories and frame sets (``hdnnp analyze``), importable on their own.

- :mod:`hdnnp.analysis.rdf`: g(r) per element pair over all periodic images, coordination
  numbers, first peak, integrated difference;
- :mod:`hdnnp.analysis.adf`: bond-angle distribution P(θ);
- :mod:`hdnnp.analysis.msd`: unwrapping, mean-square displacement, diffusion coefficient;
- :mod:`hdnnp.analysis.blocking`: mean ± standard error of correlated series (block averaging);
- :mod:`hdnnp.analysis.observables`: mass density, pressure from stress.
"""

from hdnnp.analysis.adf import ADFAccumulator, ADFResult
from hdnnp.analysis.blocking import BlockingResult, block_average
from hdnnp.analysis.msd import diffusion_coefficient, mean_square_displacement, unwrap, Unwrapper
from hdnnp.analysis.observables import mass_density, pressure_gpa
from hdnnp.analysis.rdf import (RDFAccumulator, RDFResult, first_peak, integrated_abs_difference,
                                rdf)

__all__ = ["ADFAccumulator", "ADFResult", "BlockingResult", "block_average",
           "diffusion_coefficient", "mean_square_displacement", "unwrap", "Unwrapper",
           "mass_density", "pressure_gpa", "RDFAccumulator", "RDFResult", "first_peak",
           "integrated_abs_difference", "rdf"]
