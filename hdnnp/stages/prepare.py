"""Stage 2, ``hdnnp prepare``: trajectories + energies -> ``prepared.h5`` (train and predict sets).

Per input file: frames are read one at a time; the first ``skip`` frames (equilibration) are
dropped, then every ``stride``-th frame is kept (frame indices ``skip, skip + stride, ...``);
each kept DL_POLY frame takes the energy of its ``nstep`` from the energy file (merge-join,
both files in increasing step order). Training frames are interleaved round-robin over the
training files (T1 f1, T2 f1, ..., Tn f1, T1 f2, ...; a file that runs out drops out), holding
one pending frame per file; prediction files follow one another in the order given. Memory
does not grow with trajectory length.

A DL_POLY HISTORY takes its energies from ``E<suffix>`` and, where a ``STRESS<suffix>`` file lies
beside it, the reference stress of every frame from that (``step s_xx s_yy s_zz s_yz s_xz s_xy``,
eV/Å³, ASE's sign; :func:`hdnnp.io.dlpoly.iter_stresses`; ``hdnnp md --history`` writes it).

Output layout: :mod:`hdnnp.h5io` frame sets ``train`` and ``predict`` (ragged), root attribute
``elements`` (sorted atomic numbers in either set) and the reading options as root attributes.
A set stores forces only when every one of its files has them.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from hdnnp.errors import HdnnpError, InputFileError
from hdnnp.frames import Frame
from hdnnp.h5io import FrameSetWriter, atomic_output, check_can_write, write_root_attrs
from hdnnp.inputs import InputFile, InputSelection
from hdnnp.progress import Progress
from hdnnp.sanity import FrameChecker

#: Frames are appended to HDF5 in batches of about this many atoms.
_BATCH_ATOMS = 65536
#: At most this many missing steps are named per file in an error message.
_MAX_NAMED_STEPS = 10


@dataclass
class ReadOptions:
    """How to read the inputs (see :func:`prepare`)."""

    skip: int = 0
    stride: int = 1
    forces_unit: str = "dlpoly"
    energy_unit: str = "eV"
    energy_column: int = 2
    allow_missing_energies: bool = False
    length_unit: str = "angstrom"

    def keep(self, index: int) -> bool:
        """Whether the frame with 0-based ``index`` in its file is kept (skip, then stride)."""
        return index >= self.skip and (index - self.skip) % self.stride == 0


@dataclass
class SourceStats:
    """What happened to one input file."""

    path: str
    temperature: float
    n_frames: int = 0  # frames in the file
    n_kept: int = 0  # frames written
    n_missing_energies: int = 0  # kept frames without an energy
    missing_steps: list = field(default_factory=list)  # the first few of them
    n_unmatched_energies: int = 0  # energy lines whose step is no frame of the file


def iter_source(entry: InputFile, options: ReadOptions, stats: SourceStats) -> Iterator[Frame]:
    """Kept frames of one input file, with energy (eV) and temperature (K) set."""
    if entry.format == "dlpoly":
        yield from _iter_dlpoly(entry, options, stats)
        return
    if entry.format == "n2p2":
        from hdnnp.io.n2p2 import iter_n2p2

        structures = iter_n2p2(entry.path, options.length_unit, options.energy_unit)
    else:
        from hdnnp.io.ase_formats import iter_ase

        structures = iter_ase(entry.path, entry.format)
    for index, frame in structures:
        stats.n_frames += 1
        if not options.keep(index):
            continue
        frame.temperature = entry.temperature
        stats.n_kept += 1
        yield frame


def _iter_dlpoly(entry: InputFile, options: ReadOptions, stats: SourceStats) -> Iterator[Frame]:
    from hdnnp.io.dlpoly import EnergyMatcher, HistoryReader, StressMatcher

    with HistoryReader(entry.path, options.forces_unit) as history:
        energies = EnergyMatcher(entry.energy_path, options.energy_column, options.energy_unit)
        stresses = StressMatcher(entry.stress_path) if entry.stress_path is not None else None
        for rec in history.records(options.keep):
            stats.n_frames += 1
            energy = energies.energy(rec.step)  # also for dropped frames: they own their line
            stress = stresses.stress(rec.step) if stresses is not None else None
            if rec.frame is None:
                continue
            if energy is None:
                stats.n_missing_energies += 1
                if len(stats.missing_steps) < _MAX_NAMED_STEPS:
                    stats.missing_steps.append(rec.step)
                continue
            if stresses is not None and stress is None:
                raise InputFileError(entry.stress_path, f"no stress for step {rec.step} of {entry.path.name} "
                                     "(a stress file gives every kept frame of its HISTORY a line; remove it "
                                     "to read the trajectory without stresses)")
            rec.frame.stress = stress
            rec.frame.energy = energy
            rec.frame.temperature = entry.temperature
            stats.n_kept += 1
            yield rec.frame
        stats.n_unmatched_energies = energies.finish()


def round_robin(pending: list[tuple[Frame, Iterator[Frame]]]) -> Iterator[Frame]:
    """Interleave sources: first frame of each, then second of each, ...; exhausted ones drop out.

    ``pending`` holds each source's next frame and its iterator (one frame per source in memory).
    """
    active = [(frame, it) for frame, it in pending if frame is not None]
    while active:
        still = []
        for frame, it in active:
            yield frame
            following = next(it, None)
            if following is not None:
                still.append((following, it))
        active = still


def _sequential(pending: list[tuple[Frame, Iterator[Frame]]]) -> Iterator[Frame]:
    for frame, it in pending:
        if frame is not None:
            yield frame
            yield from it


def prepare(inputs: InputSelection, output="prepared.h5", *, overwrite: bool = False,
            skip: int = 0, stride: int = 1, forces_unit: str = "dlpoly", energy_unit: str = "eV",
            energy_column: int = 2, allow_missing_energies: bool = False,
            length_unit: str = "angstrom", quiet: bool = False) -> dict:
    """Read the selected trajectories and write ``output`` (``prepared.h5``) atomically.

    Parameters: ``inputs`` from :func:`hdnnp.inputs.resolve_inputs`; ``skip`` first frames of
    every file dropped; ``stride`` keep every k-th frame after that; ``forces_unit`` of
    HISTORY forces (``dlpoly`` = 10 J/mol/Å, or ``eV/A``); ``energy_unit`` and
    ``energy_column`` (1-based, column 1 = timestep) of the energy files (and the energy unit
    of n2p2 files); ``length_unit`` of n2p2 files (``angstrom`` or ``bohr``);
    ``allow_missing_energies``: skip DL_POLY frames that have no energy instead of failing.

    Returns ``{"output", "elements", "sets": {name: {"n_frames", "n_atoms", "forces"}},
    "sources": {name: [SourceStats, ...]}, "n_missing_energies", "n_unmatched_energies"}``.
    Raises :class:`HdnnpError` on bad input; then no output file is left behind.
    """
    if skip < 0:
        raise HdnnpError(f"--skip must be >= 0, got {skip}")
    if stride < 1:
        raise HdnnpError(f"--stride must be >= 1, got {stride}")
    options = ReadOptions(skip, stride, forces_unit, energy_unit, energy_column,
                          allow_missing_energies, length_unit)
    output = Path(output)
    check_can_write(output, overwrite, inputs=inputs.all_paths())
    summary = {"output": str(output), "sets": {}, "sources": {}}
    elements: set[int] = set()
    with atomic_output(output, overwrite) as tmp, h5py.File(tmp, "w") as h5:
        write_root_attrs(h5, "prepare", inputs=inputs.all_paths(), skip=skip, stride=stride,
                         forces_unit=forces_unit, energy_unit=energy_unit,
                         energy_column=energy_column, length_unit=length_unit,
                         allow_missing_energies=allow_missing_energies)
        for set_name, entries in inputs.sets().items():
            stats = [SourceStats(str(e.path), e.temperature) for e in entries]
            summary["sources"][set_name] = stats
            summary["sets"][set_name] = _write_set(h5.create_group(set_name), set_name, entries,
                                                   stats, options, elements, quiet)
        n_missing = sum(s.n_missing_energies for st in summary["sources"].values() for s in st)
        if n_missing and not allow_missing_energies:
            lines = [f"{s.path}: {s.n_missing_energies} frame(s) without energy, steps "
                     f"{', '.join(map(str, s.missing_steps))}"
                     f"{', ...' if s.n_missing_energies > len(s.missing_steps) else ''}"
                     for st in summary["sources"].values() for s in st if s.n_missing_energies]
            raise HdnnpError("HISTORY frames with no energy in the energy file (pass "
                             "--allow-missing-energies to skip them):\n  " + "\n  ".join(lines))
        if inputs.train and summary["sets"]["train"]["n_frames"] == 0:
            raise HdnnpError("no training frames left (check --skip/--stride and the energies)")
        summary["elements"] = sorted(elements)
        summary["n_missing_energies"] = n_missing
        summary["n_unmatched_energies"] = sum(
            s.n_unmatched_energies for st in summary["sources"].values() for s in st)
        h5.attrs["elements"] = np.array(summary["elements"], np.int32)
        h5.attrs["n_missing_energies"] = n_missing
        h5.attrs["n_unmatched_energies"] = summary["n_unmatched_energies"]
    return summary


def _write_set(group, set_name, entries, stats, options, elements, quiet) -> dict:
    """Stream one set into ``group``; returns its counts."""
    sources = [iter_source(e, options, s) for e, s in zip(entries, stats)]
    pending = [(next(it, None), it) for it in sources]
    firsts = [f for f, _ in pending if f is not None]
    with_forces = bool(firsts) and all(f.forces is not None for f in firsts)
    writer = FrameSetWriter(group, with_forces=with_forces)
    ordered = round_robin(pending) if set_name == "train" else _sequential(pending)
    progress = Progress(_expected_frames(entries, options), f"prepare {set_name}", unit="frames", quiet=quiet)
    checker = FrameChecker()  # physical sanity checks (hdnnp.sanity, issue #6): warnings only
    batch, batch_atoms = [], 0
    n_stresses = 0
    for frame in ordered:
        _check_frame(frame, set_name, with_forces)
        n_stresses += frame.stress is not None
        checker.add(frame)
        elements.update(np.unique(frame.species).tolist())
        batch.append(frame)
        batch_atoms += len(frame.species)
        if batch_atoms >= _BATCH_ATOMS:
            writer.append(batch)
            progress.update(len(batch))
            batch, batch_atoms = [], 0
    writer.append(batch)
    progress.update(len(batch))
    writer.close()
    progress.close()
    # --- sanity warnings (hdnnp.sanity): close contacts, energy jumps per file -----------------
    for line in checker.warnings():
        print(f"warning: prepare {set_name}: {line}", file=sys.stderr)
    # --- end of sanity warnings --------------------------------------------------------------
    temps = sorted({e.temperature for e in entries if not math.isnan(e.temperature)})
    group.attrs["temperatures"] = np.array(temps, np.float64)
    return {"n_frames": writer.n_frames, "n_atoms": writer.n_atoms, "forces": with_forces, "n_stresses": n_stresses}


def _expected_frames(entries, options: ReadOptions) -> int | None:
    """Frames a set will keep, from the DL_POLY 4 headers' frame counts (for the progress ETA);
    None when any file does not say (DL_POLY Classic, other formats)."""
    from hdnnp.io.dlpoly import HistoryReader

    total = 0
    for entry in entries:
        if entry.format != "dlpoly":
            return None
        with HistoryReader(entry.path) as history:
            n_frames = history.header.n_frames
        if n_frames is None:
            return None
        total += len(range(options.skip, n_frames, options.stride))
    return total


def _check_frame(frame: Frame, set_name: str, with_forces: bool) -> None:
    where = f"structure/step {frame.step}"
    if with_forces and frame.forces is None:
        raise InputFileError(frame.source, f"{where} has no forces, but the first frames of the "
                             f"{set_name} set have (a set holds forces for all frames or none)")
    if set_name == "train" and math.isnan(frame.energy):
        raise InputFileError(frame.source, f"{where} has no energy; training frames need one")
    from hdnnp.sanity import geometry_error

    problem = geometry_error(frame.positions, frame.cell, frame.pbc)
    if problem:
        raise InputFileError(frame.source, f"{where}: {problem}")
