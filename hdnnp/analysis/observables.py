"""Per-frame thermodynamic observables: mass density and pressure.

Conversion factors (CODATA values as tabulated in scipy.constants):
1 Da/Å³ = 1.660539e-24 g / 1e-24 cm³ = 1.660539 g/cm³;
1 eV/Å³ = 1.602176634e-19 J / 1e-30 m³ = 160.2176634 GPa (exact).
Atomic masses: ``ase.data.atomic_masses`` (IUPAC standard atomic weights; needs ASE, the
``hdnnp[ase]`` extra).
"""

from __future__ import annotations

import numpy as np
from scipy import constants as _c

from hdnnp.errors import HdnnpError

#: 1 Da/Å³ in g/cm³ (atomic mass constant in g over 1 Å³ in cm³).
DALTON_PER_ANGSTROM3_IN_G_PER_CM3 = _c.atomic_mass * 1e3 / 1e-24
#: 1 eV/Å³ in GPa.
EV_PER_ANGSTROM3_IN_GPA = _c.electron_volt / 1e-30 / 1e9


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
