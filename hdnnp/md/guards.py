"""Guards: is a simulation still inside the domain the potential was trained on?

Checked every ``guard_every`` steps of ``hdnnp md`` (and stored with every written frame):

- **extrapolation** — scaled symmetry functions outside the training range [-1, 1] (SPEC §10):
  the count and the largest excess max|x'| − 1 (x' = 2 (x − min)/(max − min) − 1, so an excess
  of 0.1 is 5 % of the training range of that feature). Small excursions are normal in a
  liquid (half of the bundled 773 K reference frames have some); the guard fires when the
  excess passes ``max_extrapolation_excess``;
- **shortest interatomic distance** (every periodic image) below ``min_distance_angstrom``:
  atoms falling into a spurious basin of the networks (the usual collapse of a first HDNNP);
- **temperature** above ``max_temperature_K``: the run is blowing up;
- **committee spread** of the force components, when the model is a committee
  (``max_force_spread``, eV/Å).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdnnp.neighbors import neighbor_list

#: Default largest excess of a scaled feature beyond [-1, 1] before a run counts as outside
#: its training domain (5 % of the feature's training range).
DEFAULT_MAX_EXTRAPOLATION_EXCESS = 0.1
#: Default shortest interatomic distance (Å) below which a run has collapsed.
DEFAULT_MIN_DISTANCE_ANGSTROM = 1.5
#: Default ceiling of the instantaneous temperature, as a multiple of the set temperature.
DEFAULT_MAX_TEMPERATURE_FACTOR = 3.0
#: The shortest distance is searched up to this radius (Å); none closer reads as this value.
DISTANCE_PROBE_ANGSTROM = 4.0


def shortest_distance(positions, cell, pbc, probe_angstrom: float = DISTANCE_PROBE_ANGSTROM) -> float:
    """Shortest distance (Å) between two atoms, every periodic image counted (an atom and its
    own image too); ``probe_angstrom`` when no pair is closer than that."""
    nl = neighbor_list(positions, cell, pbc, max(probe_angstrom, 1e-3))
    return float(nl.distance.min()) if len(nl) else float(probe_angstrom)


@dataclass
class GuardLimits:
    """Thresholds of the guards; ``on_extrapolation``: ``stop`` or ``warn``."""

    max_extrapolation_excess: float = DEFAULT_MAX_EXTRAPOLATION_EXCESS
    min_distance_angstrom: float = DEFAULT_MIN_DISTANCE_ANGSTROM
    max_temperature_K: float = float("inf")
    max_force_spread: float = float("inf")
    on_extrapolation: str = "stop"


@dataclass
class GuardReading:
    """The guard quantities of one configuration."""

    step: int
    time_ps: float
    extrapolation_count: int
    extrapolation_max_excess: float
    min_distance_angstrom: float
    temperature_K: float
    force_spread: float = float("nan")

    def violations(self, limits: GuardLimits) -> list[tuple[str, str]]:
        """(kind, message) for every limit this reading breaks; kind is ``extrapolation``,
        ``distance``, ``temperature`` or ``committee``."""
        out = []
        if self.extrapolation_max_excess > limits.max_extrapolation_excess:
            out.append(("extrapolation",
                        f"{self.extrapolation_count} scaled features outside the training range, the "
                        f"largest by {self.extrapolation_max_excess:.3g} (limit "
                        f"{limits.max_extrapolation_excess:g})"))
        if self.min_distance_angstrom < limits.min_distance_angstrom:
            out.append(("distance", f"shortest interatomic distance {self.min_distance_angstrom:.3f} Å "
                                    f"(limit {limits.min_distance_angstrom:g} Å)"))
        if self.temperature_K > limits.max_temperature_K:
            out.append(("temperature", f"temperature {self.temperature_K:.0f} K (limit "
                                       f"{limits.max_temperature_K:.0f} K)"))
        if np.isfinite(self.force_spread) and self.force_spread > limits.max_force_spread:
            out.append(("committee", f"committee force spread {self.force_spread:.3g} eV/Å (limit "
                                     f"{limits.max_force_spread:g} eV/Å)"))
        return out

    def stopping(self, limits: GuardLimits) -> list[str]:
        """Messages of the violations that end the run (extrapolation only with ``stop``)."""
        return [msg for kind, msg in self.violations(limits)
                if kind != "extrapolation" or limits.on_extrapolation == "stop"]


def read_guards(atoms, step: int, time_ps: float) -> GuardReading:
    """Guard quantities of ASE ``atoms`` whose calculator (``HDNNPCalculator``) has just been
    evaluated: extrapolation from its results, the shortest distance, the temperature."""
    results = atoms.calc.results
    return GuardReading(
        step=step, time_ps=time_ps,
        extrapolation_count=int(results.get("extrapolation_count", 0)),
        extrapolation_max_excess=float(results.get("extrapolation_max_excess", 0.0)),
        min_distance_angstrom=shortest_distance(atoms.positions, atoms.cell.array, atoms.pbc),
        temperature_K=float(atoms.get_temperature()),
        force_spread=float(results.get("force_spread", float("nan"))),
    )
