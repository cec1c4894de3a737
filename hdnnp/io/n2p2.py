"""Streaming reader (and a writer, :func:`write_n2p2`) of n2p2 / RuNNer ``input.data`` files.

Format (one block per structure; ``#`` lines and blank lines are ignored)::

    begin
    comment <free text>                         (any number)
    lattice ax ay az                            (3 lines, or none for a non-periodic box)
    atom x y z element charge atom_energy fx fy fz
    ...
    energy E                                    total potential energy of the box
    charge q                                    total charge
    end

The file carries no units: n2p2 users write Å/eV or Bohr/Hartree. ``length_unit`` and
``energy_unit`` say which (positions and cell × length factor, energy × energy factor,
forces × energy factor / length factor).

Why not ``ase.io.read(format="runnerdata")``: ASE 3.29's reader loads the whole file into one
string (not streaming), assumes Bohr/Hartree unless told otherwise and reports errors without
line numbers. The tests check this reader against ASE's on the same file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np

from hdnnp.elements import atomic_number, symbol
from hdnnp.errors import HdnnpError, InputFileError
from hdnnp.frames import Frame
from hdnnp.io.dlpoly import LineReader, quote_line, strict_float
from hdnnp.units import BOHR_IN_ANGSTROM, ENERGY_UNITS_IN_EV

#: Length units accepted for input.data, as Å per unit.
LENGTH_UNITS_IN_ANGSTROM = {"angstrom": 1.0, "bohr": BOHR_IN_ANGSTROM}


def iter_n2p2(path, length_unit: str = "angstrom", energy_unit: str = "eV") -> Iterator[tuple[int, Frame]]:
    """Yield ``(line of 'begin', Frame)`` for each structure of an ``input.data`` file.

    Frames carry positions and cell (Å), energy (eV), forces (eV/Å), species, pbc (true when
    the block has 3 lattice lines), ``step`` = 0-based structure index and ``source``.
    """
    if length_unit not in LENGTH_UNITS_IN_ANGSTROM:
        raise HdnnpError(f"unknown length unit {length_unit!r}; expected one of "
                         f"{', '.join(LENGTH_UNITS_IN_ANGSTROM)}")
    if energy_unit not in ENERGY_UNITS_IN_EV:
        raise HdnnpError(f"unknown energy unit {energy_unit!r}; expected one of {', '.join(ENERGY_UNITS_IN_EV)}")
    to_angstrom = LENGTH_UNITS_IN_ANGSTROM[length_unit]
    to_ev = ENERGY_UNITS_IN_EV[energy_unit]
    path = Path(path)
    index = 0
    block = None  # dict while inside begin ... end
    with LineReader(path) as lines:
        while True:
            raw = lines.readline()
            if raw is None:
                break
            line_no = lines.line_no
            toks = raw.split()
            if not toks or toks[0].startswith("#"):
                continue
            key = toks[0]

            def fail(msg, line_no=line_no):
                raise InputFileError(path, msg, line=line_no)

            if block is None:
                if key == "comment":
                    continue
                if key != "begin":
                    fail(f"expected 'begin' of structure {index + 1}, got {quote_line(raw)}")
                block = {"line": line_no, "lattice": [], "pos": [], "sym": [], "force": [],
                         "energy": None}
                continue
            where = f"structure {index + 1} (begin at line {block['line']})"
            if key == "comment":
                continue
            if key == "begin":
                fail(f"'begin' inside {where}: the previous structure has no 'end'")
            if key == "lattice":
                block["lattice"].append(_numbers(toks[1:], 3, path, line_no, f"lattice vector of {where}"))
            elif key == "atom":
                if len(toks) != 10:
                    fail(f"expected 'atom x y z element charge energy fx fy fz' in {where}, got {quote_line(raw)}")
                vals = _numbers(toks[1:4] + toks[5:10], 8, path, line_no, f"atom {len(block['pos']) + 1} of {where}")
                try:
                    block["sym"].append(atomic_number(toks[4]))
                except KeyError:
                    fail(f"unknown element {toks[4]!r} (atom {len(block['pos']) + 1} of {where})")
                block["pos"].append(vals[:3])
                block["force"].append(vals[5:8])
            elif key == "energy":
                block["energy"] = _numbers(toks[1:], 1, path, line_no, f"energy of {where}")[0]
            elif key == "charge":
                _numbers(toks[1:], 1, path, line_no, f"charge of {where}")
            elif key == "end":
                if not block["pos"]:
                    fail(f"{where} has no atoms")
                if len(block["lattice"]) not in (0, 3):
                    fail(f"{where} has {len(block['lattice'])} lattice lines, expected 3 (or none)")
                if block["energy"] is None:
                    fail(f"{where} has no 'energy' line")
                periodic = len(block["lattice"]) == 3
                frame = Frame(
                    positions=np.array(block["pos"]) * to_angstrom,
                    species=np.array(block["sym"], np.int32),
                    cell=np.array(block["lattice"]) * to_angstrom if periodic else np.zeros((3, 3)),
                    pbc=np.full(3, periodic),
                    energy=block["energy"] * to_ev,
                    forces=np.array(block["force"]) * (to_ev / to_angstrom),
                    step=index, source=str(path),
                )
                yield block["line"], frame
                block = None
                index += 1
            else:
                fail(f"unknown keyword {key!r} in {where} (expected comment, lattice, atom, "
                     f"energy, charge or end)")
        if block is not None:
            raise InputFileError(path, f"file ends inside structure {index + 1} (begin at line "
                                 f"{block['line']}): expected 'end'", line=lines.line_no + 1)
        if index == 0:
            raise InputFileError(path, "no structures (expected 'begin' ... 'end' blocks)")


def _numbers(tokens, n, path, line_no, what) -> list[float]:
    if len(tokens) != n:
        raise InputFileError(path, f"expected {n} number{'s' * (n > 1)} ({what}), got "
                             f"{' '.join(tokens)!r}", line=line_no)
    try:
        values = [strict_float(t) for t in tokens]
    except ValueError:
        raise InputFileError(path, f"expected {n} number{'s' * (n > 1)} ({what}), got "
                             f"{' '.join(tokens)!r}", line=line_no) from None
    if not all(math.isfinite(v) for v in values):
        raise InputFileError(path, f"non-finite value ({what}): {' '.join(tokens)!r}", line=line_no)
    return values


def write_n2p2(path, frames, length_unit: str = "angstrom", energy_unit: str = "eV", comment: str = "") -> None:
    """Write :class:`~hdnnp.frames.Frame` objects as an ``input.data`` file in the given units
    (the inverse of :func:`iter_n2p2`; every number at full precision). An unknown energy is
    written as 0 and unknown forces as zeros (n2p2 requires both fields), said in the comment."""
    to_angstrom = LENGTH_UNITS_IN_ANGSTROM[length_unit]
    to_ev = ENERGY_UNITS_IN_EV[energy_unit]

    def numbers(values, factor):
        return " ".join(repr(float(v) / factor) for v in values)

    lines = []
    for k, f in enumerate(frames):
        known = math.isfinite(f.energy)
        lines += ["begin", f"comment {comment or 'written by hdnnp'} (structure {k + 1}"
                           f"{'' if known else '; energy unknown, written as 0'}"
                           f"{'' if f.forces is not None else '; forces unknown, written as 0'})"]
        if np.all(f.pbc):
            lines += [f"lattice {numbers(v, to_angstrom)}" for v in f.cell]
        elif np.any(f.pbc):
            raise HdnnpError(f"{path}: n2p2's input.data holds periodic or isolated boxes, not partly periodic ones "
                             f"(structure {k + 1})")
        forces = f.forces if f.forces is not None else np.zeros((len(f.species), 3))
        for z, p, fo in zip(f.species, f.positions, forces):
            lines.append(f"atom {numbers(p, to_angstrom)} {symbol(int(z))} 0.0 0.0 "
                         f"{numbers(fo, to_ev / to_angstrom)}")
        lines += [f"energy {repr(float(f.energy) / to_ev) if known else '0.0'}", "charge 0.0", "end"]
    Path(path).write_text("\n".join(lines) + "\n")
