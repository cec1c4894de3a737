"""Chemical element symbols and atomic numbers."""

from __future__ import annotations

import re

SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As "
    "Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd "
    "Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am "
    "Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
ATOMIC_NUMBERS = {s: z for z, s in enumerate(SYMBOLS) if z > 0}
_UPPER = {s.upper(): z for s, z in ATOMIC_NUMBERS.items()}


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol (case-insensitive: ``Te``, ``TE``, ``te``)."""
    z = _UPPER.get(symbol.strip().upper())
    if z is None:
        raise KeyError(symbol)
    return z


def symbol(z: int) -> str:
    return SYMBOLS[int(z)]


def element_from_atom_name(name: str) -> int | None:
    """Element of a force-field atom name: ``Te``, ``Te1``, ``TE``, ``te_2`` -> 52.

    Takes the leading letters; tries the first two letters, then the first one.
    Returns None if neither is an element.
    """
    letters = re.match(r"[A-Za-z]*", name.strip()).group(0)
    for n in (2, 1):
        if len(letters) >= n and letters[:n].upper() in _UPPER:
            return _UPPER[letters[:n].upper()]
    return None
