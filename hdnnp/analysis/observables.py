"""Per-frame thermodynamic observables: mass density and pressure.

Conversion factors (hdnnp.units; CODATA values as tabulated in scipy.constants):
1 Da/Å³ = 1.660539e-24 g / 1e-24 cm³ = 1.660539 g/cm³;
1 eV/Å³ = 1.602176634e-19 J / 1e-30 m³ = 160.2176634 GPa (exact).
Atomic masses: ``ase.data.atomic_masses`` (IUPAC standard atomic weights; needs ASE, the
``hdnnp[ase]`` extra).
"""

from __future__ import annotations

import numpy as np

from hdnnp.errors import HdnnpError
from hdnnp.units import DALTON_PER_ANGSTROM3_IN_G_PER_CM3, EV_PER_ANGSTROM3_IN_GPA


def cell_volume(cell) -> float:
    """|det cell| (Å³), cell rows the lattice vectors (Å)."""
    return abs(float(np.linalg.det(np.asarray(cell, float))))


def mass_density(species, cell) -> float:
    """ρ = Σ_i m_i / V (g/cm³), m_i the standard atomic masses (Da) of ``ase.data``."""
    try:
        from ase.data import atomic_masses
    except ImportError:
        raise HdnnpError("the mass density needs ASE's atomic masses "
                         "(pip install 'hdnnp[ase]')") from None
    mass = float(np.sum(atomic_masses[np.asarray(species, int)]))
    return mass / cell_volume(cell) * DALTON_PER_ANGSTROM3_IN_G_PER_CM3


def pressure_gpa(stress) -> np.ndarray:
    """P = −tr σ / 3 (GPa) of stress tensors σ (..., 3, 3) in eV/Å³, ASE sign convention
    (positive = tensile, so a compressed box has negative σ_aa and positive P). The stress is
    what the file holds: virial part alone unless the writer added the kinetic term."""
    stress = np.asarray(stress, float)
    return -np.trace(stress, axis1=-2, axis2=-1) / 3.0 * EV_PER_ANGSTROM3_IN_GPA


def instantaneous_pressure_gpa(stress, kinetic_energy, cell) -> np.ndarray:
    """P = −tr σ / 3 + 2 E_kin / (3 V) (GPa): the potential (virial) stress σ (..., 3, 3) eV/Å³
    of :func:`pressure_gpa` plus the kinetic (ideal-gas) term, E_kin in eV, cell (..., 3, 3) Å."""
    volume = np.abs(np.linalg.det(np.asarray(cell, float)))
    return pressure_gpa(stress) + 2.0 * np.asarray(kinetic_energy, float) / (3.0 * volume) * EV_PER_ANGSTROM3_IN_GPA
