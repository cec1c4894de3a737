"""Units and conversion factors. hdnnp works in Å, eV, eV/Å, K and ps throughout.

Every factor converts *to* hdnnp's unit (multiply a value in the named unit by the factor).
Sources: CODATA 2018 exact/recommended values as tabulated in scipy.constants.
"""

from scipy import constants as _c

#: Avogadro constant (1/mol), CODATA 2018 (exact).
AVOGADRO = _c.Avogadro
#: 1 eV in J (exact).
EV_IN_J = _c.electron_volt

#: DL_POLY internal energy unit: 10 J/mol (DL_POLY 4 user manual, "internal units").
DLPOLY_ENERGY_IN_EV = 10.0 / AVOGADRO / EV_IN_J  # = 1.036427e-4 eV
#: DL_POLY internal force unit: 1 Da·Å/ps² = 10 J/mol/Å, expressed in eV/Å.
DLPOLY_FORCE_IN_EV_PER_ANGSTROM = DLPOLY_ENERGY_IN_EV
#: 1 eV/Å in DL_POLY internal force units (= 9648.5332).
EV_PER_ANGSTROM_IN_DLPOLY_FORCE = 1.0 / DLPOLY_FORCE_IN_EV_PER_ANGSTROM

#: Energy units accepted for energy files, as eV per unit.
ENERGY_UNITS_IN_EV = {
    "eV": 1.0,
    "kJ/mol": 1e3 / AVOGADRO / EV_IN_J,
    "kcal/mol": 4184.0 / AVOGADRO / EV_IN_J,  # thermochemical calorie, 4.184 J (exact)
    "Hartree": _c.physical_constants["Hartree energy in eV"][0],
    "dlpoly": DLPOLY_ENERGY_IN_EV,  # DL_POLY internal unit, 10 J/mol
}

#: Bohr radius in Å (CODATA 2018).
BOHR_IN_ANGSTROM = _c.physical_constants["Bohr radius"][0] * 1e10
#: Hartree/Bohr in eV/Å.
HARTREE_PER_BOHR_IN_EV_PER_ANGSTROM = ENERGY_UNITS_IN_EV["Hartree"] / BOHR_IN_ANGSTROM

#: 1 eV/Å³ in GPa: 1.602176634e-19 J / 1e-30 m³ = 160.2176634 GPa (exact); stress and pressure.
EV_PER_ANGSTROM3_IN_GPA = EV_IN_J / 1e-30 / 1e9
#: 1 Da/Å³ in g/cm³ (atomic mass constant in g over 1 Å³ in cm³), for mass densities.
DALTON_PER_ANGSTROM3_IN_G_PER_CM3 = _c.atomic_mass * 1e3 / 1e-24
