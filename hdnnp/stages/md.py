"""``hdnnp md``: molecular dynamics with a trained potential -> md.h5 (layout:
:mod:`hdnnp.md.trajectory`; integrators and guards: :mod:`hdnnp.md.driver`, :mod:`hdnnp.md.guards`).

The start structure is a frame of an hdnnp file (prepared.h5, symmetry.h5: set and index;
an earlier md.h5: its trajectory) or of any structure file the project reads (DL_POLY HISTORY
with its E file, extxyz, n2p2 input.data, VASP and the other ASE formats), optionally repeated
into a supercell. After the run the trajectory can also be written as extxyz (OVITO, VMD) and
as a DL_POLY HISTORY + E pair (which ``hdnnp prepare`` reads back).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np

from hdnnp.errors import HdnnpError
from hdnnp.frames import Frame
from hdnnp.h5io import atomic_output, check_can_write, check_elements_covered, iter_frame_chunks, open_stage_file
from hdnnp.md.driver import MDSettings, run_md, start_atoms


def parse_supercell(text) -> tuple[int, int, int]:
    """``2x2x2`` (or ``2,2,2``, or ``2`` for all three) -> (2, 2, 2)."""
    if text is None:
        return (1, 1, 1)
    parts = [p for p in re.split(r"[x,×\s]+", str(text).strip().lower()) if p]
    try:
        reps = [int(p) for p in parts]
    except ValueError:
        reps = []
    if len(reps) == 1:
        reps *= 3
    if len(reps) != 3 or min(reps) < 1:
        raise HdnnpError(f"--supercell: expected three positive integers like 2x2x2, got '{text}'")
    return tuple(reps)


def _stage_of(path: Path):
    try:
        with h5py.File(path, "r") as h5:
            stage = h5.attrs.get("stage")
    except OSError:
        return None
    return stage.decode() if isinstance(stage, bytes) else stage


def load_start(path, set_name: str | None = None, frame: int = 0, file_format: str | None = None) -> Frame:
    """Frame ``frame`` (negative: from the end) of ``path``: an hdnnp file's set (default
    ``predict``, else ``train``; md.h5: ``trajectory``) or any structure file."""
    from hdnnp.io.dlpoly import check_readable_file

    path = Path(path)
    if not path.exists():
        raise HdnnpError(f"{path}: no such file (--start)")
    check_readable_file(path)
    if _stage_of(path) is not None:
        with open_stage_file(path, ("prepare", "symmetry", "md")) as h5:
            sets = [s for s in h5 if isinstance(h5[s], h5py.Group) and "frames/atom_offset" in h5[s]]
            if set_name is None:
                set_name = next((s for s in ("trajectory", "predict", "train") if s in sets
                                 and len(h5[s]["frames/atom_offset"]) > 1), None)
            if set_name not in sets:
                raise HdnnpError(f"{path}: no frame set '{set_name}' (sets: {', '.join(sets) or 'none'}); "
                                 "choose one with --start-set")
            group = h5[set_name]
            n = len(group["frames/atom_offset"]) - 1
            if not -n <= frame < n:
                raise HdnnpError(f"--start-frame {frame}: {path}:{set_name} has {n} frames")
            from hdnnp.h5io import read_frames

            f = frame % n
            return read_frames(group, f, f + 1)[0]
    from hdnnp.stages.predict import _read_structure_frames

    frames = _read_structure_frames(path, file_format)
    if not -len(frames) <= frame < len(frames):
        raise HdnnpError(f"--start-frame {frame}: {path} has {len(frames)} structures")
    return frames[frame]


def md_calculator(model_path, reference=None, device: str = "cpu", species=None, start=None):
    """``(make_calculator, root_attrs)`` of an MD run: the trained potential of ``model_path``
    (:class:`~hdnnp.ase_calculator.HDNNPCalculator`), or, with ``reference`` (a
    :class:`hdnnp.learning.references.Reference`), the reference method itself — the same driver,
    ensembles and outputs, so a reference trajectory comes out labelled (energy, forces, stress).
    ``species``: the start structure's atomic numbers, checked against the model's elements."""
    from hdnnp.h5io import sha256_of

    if reference is not None:
        if reference.external:
            raise HdnnpError("--reference external: MD needs a calculator (tblite:METHOD or ase:MODULE.CLASS)")
        reference.calculator()  # fails now, with one line, if the calculator cannot be made
        return reference.calculator, {"reference": reference.spec, "reference_args": json.dumps(reference.args)}
    from hdnnp.ase_calculator import HDNNPCalculator
    from hdnnp.kernels import resolve_device
    from hdnnp.model import Potential

    potential = Potential.load(model_path)
    if species is not None:
        check_elements_covered(np.unique(species), potential.elements, f"{start} (start structure)",
                               str(model_path))
    device = resolve_device(device)
    return (lambda: HDNNPCalculator(potential, device=device),
            {"model": str(Path(model_path).resolve()), "model_sha256": sha256_of(model_path)})


#: A reference run stores (and checkpoints) every frame: each step costs seconds to minutes, so a
#: killed run loses at most the frames since the last stored one.
REFERENCE_CHUNK_FRAMES = 1


def md(model_path, start, output="md.h5", settings: MDSettings | None = None, *, start_set=None,
       start_frame: int = 0, start_format=None, supercell=(1, 1, 1), device: str = "cpu",
       xyz=None, history=None, resume: bool = False, overwrite: bool = False, quiet: bool = False,
       log=print, reference=None, density: float | None = None) -> dict:
    """Run MD with the potential of ``model_path`` (or the ``reference`` method, see
    :func:`md_calculator`) from a start structure; see :func:`run_md`."""
    settings = settings or MDSettings()
    if reference is not None:
        settings.chunk_frames = REFERENCE_CHUNK_FRAMES
    settings.check()
    inputs = [start] + ([model_path] if reference is None else [])
    for out in (output, xyz, history):
        if out is not None:
            check_can_write(out, overwrite, inputs=inputs)
    if history is not None:
        history_companions(history, overwrite)
    frame = load_start(start, start_set, start_frame, start_format)
    make_calculator, attrs = md_calculator(model_path, reference, device, frame.species, start)
    atoms = start_atoms(frame, supercell, density)
    atoms.calc = make_calculator()
    summary = run_md(atoms, settings, output, resume=resume, overwrite=overwrite, quiet=quiet, log=log,
                     root_attrs={**attrs, "start": f"{start}:{start_set or ''}@{start_frame}",
                                 "supercell": "x".join(map(str, supercell)),
                                 "start_density": float("nan") if density is None else float(density)})
    summary["reference"] = reference.spec if reference is not None else None
    if xyz is not None:
        summary["xyz"] = export_extxyz(output, xyz, overwrite)
    if history is not None:
        summary["history"] = export_history(output, history, overwrite, settings.timestep_fs * 1e-3)
    return summary


def density_scan_command(model_path, start, output, settings: MDSettings, temperatures, equilibration_ps=None, *,
                         start_set=None, start_frame: int = 0, start_format=None, supercell=(1, 1, 1),
                         device: str = "cpu", overwrite: bool = False, quiet: bool = False, log=print,
                         reference=None, density: float | None = None) -> dict:
    """``hdnnp md --scan``: :func:`hdnnp.md.scan.density_scan` from a start structure, then
    ``DENSITY_VS_T.png`` and ``<stem>_density.json`` beside ``output`` (with the potential of
    ``model_path``, or the ``reference`` method: :func:`md_calculator`)."""
    from hdnnp.md.scan import DENSITY_FIGURE, density_figure, density_scan
    from hdnnp.plots import save_figure
    from hdnnp.stages.report import write_json_summary

    if reference is not None:
        settings.chunk_frames = REFERENCE_CHUNK_FRAMES
    settings.check()
    output = Path(output)
    figure_path = output.with_name(DENSITY_FIGURE)
    json_path = output.with_name(f"{output.stem}_density.json")
    inputs = [start] + ([model_path] if reference is None else [])
    for path in (figure_path, json_path):
        check_can_write(path, overwrite, inputs=inputs)
    frame = load_start(start, start_set, start_frame, start_format)
    make_calculator, attrs = md_calculator(model_path, reference, device, frame.species, start)

    def fresh_atoms():
        atoms = start_atoms(frame, supercell, density)
        atoms.calc = make_calculator()
        return atoms

    if equilibration_ps is None:
        equilibration_ps = 0.2 * settings.n_steps * settings.timestep_fs * 1e-3
    points = density_scan(fresh_atoms, settings, temperatures, output, equilibration_ps, overwrite=overwrite,
                          quiet=quiet, log=log)
    save_figure(density_figure(points, settings.pressure_GPa), figure_path)
    write_json_summary(dict(**({"reference": attrs["reference"]} if reference is not None
                               else {"model": str(model_path)}), start=str(start),
                            supercell=list(supercell), pressure_GPa=settings.pressure_GPa,
                            equilibration_ps=equilibration_ps, points=[p.as_dict() for p in points]),
                       json_path, overwrite)
    return dict(points=points, files=[p.md_path for p in points] + [str(figure_path), str(json_path)])


def _md_frames(md_path, chunk_frames: int = 256):
    """(Frame, stress, time_ps) of every stored frame of an md.h5, read in chunks."""
    with open_stage_file(md_path, "md") as h5:
        group = h5["trajectory"]
        stress, times = group["frames/stress"], group["frames/time"]
        for f0, chunk in iter_frame_chunks(group, chunk_frames):
            for k in range(len(chunk)):
                yield chunk.frame(k), stress[f0 + k], float(times[f0 + k])


def export_extxyz(md_path, path, overwrite: bool = False) -> str:
    """md.h5 -> extxyz (energy, forces, stress, step and time per frame), frame by frame."""
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    with atomic_output(path, overwrite) as tmp:
        with open(tmp, "w") as fh:
            for frame, stress, time_ps in _md_frames(md_path):
                atoms = Atoms(numbers=frame.species, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
                results = dict(energy=frame.energy, forces=frame.forces)
                if np.all(np.isfinite(stress)):
                    results["stress"] = stress
                atoms.calc = SinglePointCalculator(atoms, **results)
                atoms.info.update(step=frame.step, time_ps=time_ps, temperature_K=frame.temperature)
                ase.io.write(fh, atoms, format="extxyz")
    return str(path)


def history_companions(path, overwrite: bool = False) -> tuple[Path, Path]:
    """The energy file ``E<suffix>`` and stress file ``STRESS<suffix>`` of ``HISTORY<suffix>``
    (checked writable)."""
    path = Path(path)
    if not path.name.startswith("HISTORY"):
        raise HdnnpError(f"--history {path}: the name must start with HISTORY (its energy file is "
                         "E<same suffix>, its stress file STRESS<same suffix>)")
    suffix = path.name[len("HISTORY"):]
    energy_path, stress_path = path.with_name("E" + suffix), path.with_name("STRESS" + suffix)
    for companion in (energy_path, stress_path):
        check_can_write(companion, overwrite)
    return energy_path, stress_path


def export_history(md_path, path, overwrite: bool = False, timestep_ps: float = 0.001) -> str:
    """md.h5 -> DL_POLY 4 HISTORY (forces in DL_POLY units), its energy file E<suffix> and, when
    the frames carry a stress (periodic boxes), its stress file STRESS<suffix>
    (:func:`hdnnp.io.dlpoly_write.write_stresses`), so that ``hdnnp prepare`` reads the
    trajectory back with energies, forces and stresses."""
    from hdnnp.io.dlpoly_write import write_energies, write_history, write_stresses

    path = Path(path)
    energy_path, stress_path = history_companions(path, overwrite)
    with open_stage_file(md_path, "md") as h5:
        n_frames = len(h5["trajectory/frames/atom_offset"]) - 1
        stress = h5["trajectory/frames/stress"][:]
    with_stress = n_frames > 0 and bool(np.all(np.isfinite(stress)))

    def frames():
        for f, s, _ in _md_frames(md_path):
            f.stress = s if with_stress else None
            yield f

    gz = path.suffix == ".gz"  # the temporary names do not end in .gz
    with atomic_output(path, overwrite) as tmp, atomic_output(energy_path, overwrite) as tmp_e:
        write_history(tmp, frames(), timestep_ps=timestep_ps, n_frames=n_frames, title=f"hdnnp md {md_path}",
                      compress=gz)
        write_energies(tmp_e, frames(), compress=gz)
        if with_stress:
            with atomic_output(stress_path, overwrite) as tmp_s:
                write_stresses(tmp_s, frames(), compress=gz)
    return str(path)
