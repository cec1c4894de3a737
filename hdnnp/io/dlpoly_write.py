"""Write DL_POLY HISTORY, energy and stress files (``hdnnp md --history``, tests, benchmarks and
the example generator)."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np

from hdnnp.elements import symbol
from hdnnp.units import EV_PER_ANGSTROM_IN_DLPOLY_FORCE


def _open_text(path, mode="wt", compress: bool | None = None):
    """``path`` for writing text, gzip-compressed when ``compress`` (None: when the name ends in
    ``.gz``; pass it explicitly when ``path`` is a temporary name for a final ``.gz`` file)."""
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    return gzip.open(path, mode) if compress else open(path, mode)


def imcon_of_cell(cell) -> int:
    """DL_POLY imcon for a cell: 1 cubic, 2 orthorhombic, 3 parallelepiped (0 if no cell)."""
    cell = np.asarray(cell, float)
    if not np.any(cell):
        return 0
    off = cell - np.diag(np.diag(cell))
    if np.allclose(off, 0.0):
        d = np.diag(cell)
        return 1 if np.allclose(d, d[0]) else 2
    return 3


def write_history(path, frames, layout: str = "dlpoly4", keytrj: int = 2, title: str = "hdnnp",
                  timestep_ps: float = 0.001, names=None, forces_unit: str = "dlpoly",
                  n_frames: int | None = None, compress: bool | None = None) -> None:
    """Write frames (:class:`hdnnp.frames.Frame`) as a DL_POLY HISTORY file.

    ``layout``: ``"dlpoly4"`` (header line ``keytrj imcon natms nframes nrecords``, records
    padded to fixed width) or ``"classic"`` (``keytrj imcon natms``). Forces (eV/Å in the
    frames) are written in DL_POLY internal units (10 J/mol/Å) unless ``forces_unit="eV/A"``.
    Velocities are written as zeros when keytrj >= 1 (frames carry none).
    ``names``: per-atom names (default: element symbols). A ``.gz`` path is gzip-compressed.
    ``n_frames``: the number of frames, when known; then ``frames`` may be any iterator and is
    written as it comes (bounded memory), else it is read into a list first. ``compress``: gzip
    (None: when ``path`` ends in ``.gz``).
    """
    if n_frames is None:
        frames = list(frames)
        n_frames = len(frames)
    frames = iter(frames)
    first = next(frames)
    frames = itertools.chain([first], frames)
    natms = len(first.species)
    imcon = imcon_of_cell(first.cell)
    fscale = EV_PER_ANGSTROM_IN_DLPOLY_FORCE if forces_unit == "dlpoly" else 1.0
    nrec_frame = 4 + natms * (2 + keytrj)
    pad = (lambda s: f"{s:<72s}\n") if layout == "dlpoly4" else (lambda s: s + "\n")
    with _open_text(path, compress=compress) as fh:
        fh.write(pad(title[:72]))
        if layout == "dlpoly4":
            fh.write(pad(f"{keytrj:10d}{imcon:10d}{natms:10d}{n_frames:21d}{2 + nrec_frame * n_frames:21d}"))
        else:
            fh.write(pad(f"{keytrj:10d}{imcon:10d}{natms:10d}"))
        for fr in frames:
            n = len(fr.species)
            fh.write(pad(f"timestep{fr.step:10d}{n:10d}{keytrj:10d}{imcon_of_cell(fr.cell):10d}"
                         f"{timestep_ps:12.6f}{fr.step * timestep_ps:12.6f}"))
            for row in np.asarray(fr.cell, float).reshape(3, 3):
                fh.write(pad("".join(f"{v:20.10f}" for v in row)))
            for i in range(n):
                name = names[i] if names is not None else symbol(fr.species[i])
                fh.write(pad(f"{name:<8s}{i + 1:10d}{0.0:12.6f}{0.0:12.6f}{0.0:12.6f}"))
                fh.write(pad("".join(f"{v:20.10f}" for v in fr.positions[i])))
                if keytrj >= 1:
                    fh.write(pad("".join(f"{0.0:20.10f}" for _ in range(3))))
                if keytrj >= 2:
                    fh.write(pad("".join(f"{v * fscale:20.10f}" for v in fr.forces[i])))


def write_energies(path, frames, unit_scale: float = 1.0, header: str = "step  energy_eV",
                   compress: bool | None = None) -> None:
    """Write an energy file: ``# header`` then ``step energy`` per frame (energy / unit_scale);
    ``compress`` as :func:`write_history`."""
    with _open_text(path, compress=compress) as fh:
        fh.write(f"# {header}\n")
        for fr in frames:
            fh.write(f"{fr.step:d} {fr.energy / unit_scale:.10f}\n")


def write_stresses(path, frames, compress: bool | None = None) -> None:
    """Write a stress file, the companion ``STRESS<suffix>`` of ``HISTORY<suffix>`` that ``hdnnp
    prepare`` reads (:func:`hdnnp.io.dlpoly.iter_stresses`): ``step s_xx s_yy s_zz s_yz s_xz s_xy``
    in eV/Å³, ASE's sign (positive = tensile), 17 significant digits (the doubles exactly);
    frames without a stress get no line; ``compress`` as :func:`write_history`."""
    from hdnnp.io.dlpoly import STRESS_FILE_HEADER

    with _open_text(path, compress=compress) as fh:
        fh.write(f"# {STRESS_FILE_HEADER}\n")
        for fr in frames:
            if fr.stress is None or not np.all(np.isfinite(fr.stress)):
                continue
            s = np.asarray(fr.stress, float)
            voigt = (s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1])
            fh.write(f"{fr.step:d} " + " ".join(f"{v:.17g}" for v in voigt) + "\n")  # lossless
