"""Trajectories in formats that ASE reads (extxyz, VASP OUTCAR/vasprun.xml, ...), as frames.

ASE is an optional dependency (``pip install 'hdnnp[ase]'``). Energies and forces come from the
single-point results ASE attaches to each structure (extxyz ``energy=`` / ``forces``; ASE's
own units, Å, eV, eV/Å). n2p2 ``input.data`` has its own streaming reader,
:mod:`hdnnp.io.n2p2`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np

from hdnnp.errors import HdnnpError, InputFileError
from hdnnp.frames import Frame


def iter_ase(path, file_format: str | None = None) -> Iterator[tuple[int, Frame]]:
    """Yield ``(structure index, Frame)`` from ``ase.io.iread(path, index=":")``.

    ``file_format``: an ASE format name (``extxyz``, ``vasp-out``, ...; None: ASE guesses).
    Energy NaN and forces None where the file has none; ``step`` is the 0-based structure
    index. Any ASE failure becomes an :class:`InputFileError` naming the file and structure.
    """
    try:
        import ase.io
    except ImportError:
        raise HdnnpError(f"{path}: reading {file_format or 'this format'} needs ASE "
                         f"(pip install 'hdnnp[ase]')") from None
    path = Path(path)
    index = 0
    try:
        images = ase.io.iread(str(path), index=":", format=file_format)
        while True:
            try:
                atoms = next(images)
            except StopIteration:
                break
            yield index, _frame_of(atoms, path, index)
            index += 1
    except HdnnpError:
        raise
    except Exception as exc:  # ASE raises many types; each is a bad input file here
        raise InputFileError(path, f"ASE ({file_format or 'auto'}) cannot read structure "
                             f"{index + 1}: "
                             f"{type(exc).__name__}: {exc}") from None
    if index == 0:
        raise InputFileError(path, "no structures")


def _frame_of(atoms, path: Path, index: int) -> Frame:
    where = f"structure {index + 1}"
    if len(atoms) == 0:
        raise InputFileError(path, f"{where} has no atoms")
    energy, forces = math.nan, None
    results = getattr(atoms.calc, "results", None) or {}
    if "energy" in results:
        energy = float(results["energy"])
    elif "free_energy" in results:
        energy = float(results["free_energy"])
    if results.get("forces") is not None:
        forces = np.array(results["forces"], np.float64)
    stress = None
    if results.get("stress") is not None:
        stress = np.array(results["stress"], np.float64)
        if stress.shape == (6,):  # Voigt xx yy zz yz xz xy (ASE)
            from ase.stress import voigt_6_to_full_3x3_stress

            stress = voigt_6_to_full_3x3_stress(stress)
        if stress.shape != (3, 3):
            raise InputFileError(path, f"stress of {where} has shape {stress.shape}, expected 6 or 3x3 values")
    positions = np.array(atoms.positions, np.float64)
    cell = np.array(atoms.cell.array, np.float64)
    for name, values in (("positions", positions), ("cell", cell), ("forces", forces), ("stress", stress)):
        if values is not None and not np.isfinite(values).all():
            raise InputFileError(path, f"non-finite {name} in {where}")
    if energy == math.inf or energy == -math.inf:
        raise InputFileError(path, f"non-finite energy in {where}")
    return Frame(positions=positions, species=np.array(atoms.numbers, np.int32), cell=cell,
                 pbc=np.array(atoms.pbc, bool), energy=energy, forces=forces, step=index,
                 source=str(path), stress=stress,
                 group=str(atoms.info.get("group", atoms.info.get("config_type", ""))))
