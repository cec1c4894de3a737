"""Reference MD through the pipeline: ``hdnnp md --reference`` drives a reference calculator with
the same integrators, and its frames come out labelled (energy, forces, stress) as HISTORY + E +
STRESS that ``hdnnp prepare`` reads back. The truth is the reference itself, evaluated again on
the positions that come back out of the files."""

import gzip
import json

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones

from _learn_fixtures import LJ_ARGS, CountingLJ
from hdnnp.cli import main
from hdnnp.errors import InputFileError
from hdnnp.frames import Frame
from hdnnp.io.dlpoly import StressMatcher, iter_stresses
from hdnnp.io.dlpoly_write import write_energies, write_history, write_stresses

LJ = ["--reference", "ase:ase.calculators.lj.LennardJones", "--reference-args", json.dumps(LJ_ARGS)]


def cli(*args):
    try:
        main([str(a) for a in args])
        return 0
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """An 8-atom Lennard-Jones box (not cubic, so that the stress components differ)."""
    d = tmp_path_factory.mktemp("start")
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], float)
    cell = np.diag([7.0, 7.4, 6.8])
    atoms = Atoms("Ar8", positions=grid * np.diag(cell) / 2 + np.random.default_rng(3).normal(0, 0.1, (8, 3)),
                  cell=cell, pbc=True)
    path = d / "start.xyz"
    atoms.write(path, format="extxyz")
    return path


@pytest.fixture(scope="module")
def run(start, tmp_path_factory):
    d = tmp_path_factory.mktemp("refmd")
    code = cli("md", *LJ, "--start", start, "--temperature", 60, "--steps", 40, "--write-every", 5,
               "-o", d / "md.h5", "--history", d / "HISTORY.Ar.60K", "--xyz", d / "md.xyz", "-q")
    assert code == 0
    return d


def test_reference_frames_are_the_reference_on_the_positions_read_back(run):
    from hdnnp.io.dlpoly import read_history

    frames = read_history(run / "HISTORY.Ar.60K")
    energies = [float(line.split()[1]) for line in (run / "E.Ar.60K").read_text().splitlines()[1:]]
    stresses = list(iter_stresses(run / "STRESS.Ar.60K"))
    assert len(frames) == len(energies) == len(stresses) == 9
    assert [s.step for s in stresses] == [f.step for f in frames] == list(range(0, 41, 5))
    calc = LennardJones(**LJ_ARGS)
    moved = 0.0
    for frame, energy, stress in zip(frames, energies, stresses):
        atoms = Atoms(numbers=frame.species, positions=frame.positions, cell=frame.cell, pbc=True)
        atoms.calc = calc
        # HISTORY keeps 10 decimals of positions, E 10 of energy; STRESS is exact
        assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(frame.forces, atoms.get_forces(), rtol=0, atol=1e-8)
        np.testing.assert_allclose(stress.stress, atoms.get_stress(voigt=False), rtol=1e-9, atol=1e-13)
        moved = max(moved, np.abs(frame.positions - frames[0].positions).max())
    assert moved > 0.01  # the atoms did move: these are MD frames, not one structure nine times


def test_prepare_reads_history_energy_and_stress(run, tmp_path):
    out = tmp_path / "prepared.h5"
    assert cli("prepare", "--train-file", run / "HISTORY.Ar.60K", "-o", out, "-q") == 0
    with h5py.File(out) as h5, h5py.File(run / "md.h5") as md:
        np.testing.assert_array_equal(h5["train/frames/stress"][:], md["trajectory/frames/stress"][:])
        np.testing.assert_allclose(h5["train/frames/energy"][:], md["trajectory/frames/energy"][:], atol=1e-9)
        assert h5["train/frames/temperature"][0] == 60.0


def test_md_h5_and_extxyz_record_the_reference(run):
    from ase.io import read

    with h5py.File(run / "md.h5") as h5:
        assert h5.attrs["reference"] == "ase:ase.calculators.lj.LennardJones"
        assert json.loads(h5.attrs["reference_args"]) == LJ_ARGS
        assert "model" not in h5.attrs
        assert json.loads(h5.attrs["settings"])["chunk_frames"] == 1  # every frame checkpointed
    images = read(run / "md.xyz", index=":")
    assert len(images) == 9 and all(a.calc.results.get("stress") is not None for a in images)


def failing_reference_run(start, out, steps, write_every, fail_at):
    """The ``hdnnp md`` arguments of a run with the fixtures' Lennard-Jones that raises on call
    ``fail_at``, after running them once (the failure propagates or exits non-zero)."""
    counting = ["--reference", "ase:_learn_fixtures.CountingLJ", "--reference-args", json.dumps(LJ_ARGS)]
    args = ["md", *counting, "--start", start, "--temperature", 60, "--steps", steps, "--write-every", write_every,
            "-o", out, "-q"]
    CountingLJ.calls, CountingLJ.fail_at = 0, fail_at
    try:
        assert cli(*args) != 0
    except RuntimeError:
        pass
    CountingLJ.fail_at = -1
    return args


def test_a_killed_reference_run_resumes_to_the_same_trajectory(start, run, tmp_path, capsys):
    """The reference fails at call 23 (after the frame of step 20 was stored and checkpointed);
    --resume continues from that frame and ends where the uninterrupted run ends: the positions
    bit for bit, the stress to rounding (ASE's LJ sums a fresh neighbour list in another order)."""
    args = failing_reference_run(start, tmp_path / "md.h5", 40, 5, fail_at=23)
    with h5py.File(tmp_path / "md.h5.partial") as h5:
        kept = len(h5["trajectory/frames/atom_offset"]) - 1
    assert kept >= 4 and (tmp_path / "md.h5.checkpoint").is_file()
    assert cli(*args, "--resume") == 0
    with h5py.File(tmp_path / "md.h5") as h5, h5py.File(run / "md.h5") as ref:
        np.testing.assert_array_equal(h5["trajectory/atoms/positions"][:], ref["trajectory/atoms/positions"][:])
        np.testing.assert_allclose(h5["trajectory/frames/stress"][:], ref["trajectory/frames/stress"][:],
                                   rtol=1e-12, atol=1e-18)


def test_density_option_scales_the_start(start, tmp_path):
    from hdnnp.analysis.observables import mass_density

    assert cli("md", *LJ, "--start", start, "--density", 2.5, "--ensemble", "nve", "--temperature", 30,
               "--steps", 1, "--write-every", 1, "-o", tmp_path / "md.h5", "-q") == 0
    with h5py.File(tmp_path / "md.h5") as h5:
        cell = h5["trajectory/frames/cell"][0]
        species = h5["trajectory/atoms/species"][:8]
        first = h5["trajectory/atoms/positions"][:8]
    assert mass_density(species, cell) == pytest.approx(2.5, rel=1e-12)
    ratio = np.diag(cell) / np.array([7.0, 7.4, 6.8])
    assert np.allclose(ratio, ratio[0]) and np.count_nonzero(cell - np.diag(np.diag(cell))) == 0  # isotropic
    from ase.io import read

    original = read(start)
    np.testing.assert_allclose(first, original.positions * ratio[0], atol=1e-12)


@pytest.mark.parametrize("args, message", [
    (["--model", "model.h5", *LJ], "--model and --reference: give one of them"),
    (["--reference-args", "{}"], "--reference-args: needs --reference"),
    (["--reference", "external"], "MD needs a calculator"),
    (["--reference", "ase:nowhere.Calc"], "cannot import nowhere.Calc"),
    ([*LJ, "--density", "-1"], "--density: expected a mass density > 0"),
])
def test_bad_reference_options_are_one_line(start, tmp_path, capsys, args, message):
    assert cli("md", "--start", start, "--temperature", 60, "--steps", 2, "-o", tmp_path / "md.h5", *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "md.h5").exists()


# -- the stress file --------------------------------------------------------------------------


def test_stress_file_round_trip_keeps_every_component_in_place(tmp_path):
    s = np.array([[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]]) * 1e-3  # Voigt 1..6 = xx yy zz yz xz xy
    frames = [Frame(positions=np.zeros((1, 3)), species=np.array([1]), cell=np.eye(3) * 5, pbc=np.ones(3, bool),
                    energy=0.0, step=step, stress=s * (k + 1)) for k, step in enumerate((0, 10, 20))]
    frames[1].stress = None  # a frame without a stress gets no line
    write_stresses(tmp_path / "STRESS.x.gz", frames)
    with gzip.open(tmp_path / "STRESS.x.gz", "rt") as fh:
        lines = fh.read().splitlines()
    assert lines[0].startswith("#") and "eV/A^3" in lines[0]
    assert [float(v) for v in lines[1].split()[1:]] == pytest.approx([1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3])
    read_back = list(iter_stresses(tmp_path / "STRESS.x.gz"))
    assert [r.step for r in read_back] == [0, 20]
    np.testing.assert_array_equal(read_back[1].stress, s * 3)
    matcher = StressMatcher(tmp_path / "STRESS.x.gz")
    assert matcher.stress(0) is not None and matcher.stress(10) is None and matcher.stress(20) is not None


@pytest.mark.parametrize("text, message", [
    ("0 1 2 3 4 5\n", "line 1: expected 'timestep stress' with stress in columns 2-7"),
    ("0 1 2 3 4 5 x\n", "line 1: expected a number (stress, column 7), got 'x'"),
    ("0 1 2 3 4 5 nan\n", "line 1: stress is not finite (nan) at timestep 0"),
    ("5 1 2 3 4 5 6\n5 1 2 3 4 5 6\n", "line 2: duplicate timestep 5"),
])
def test_bad_stress_lines_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "STRESS.x"
    path.write_text(text)
    with pytest.raises(InputFileError) as exc:
        list(iter_stresses(path))
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_prepare_refuses_a_stress_file_that_misses_a_frame(tmp_path, capsys):
    frames = [Frame(positions=np.array([[0.0, 0, 0], [2.0, 0, 0]]), species=np.array([18, 18]),
                    cell=np.eye(3) * 8, pbc=np.ones(3, bool), energy=-0.01 * k, step=10 * k,
                    forces=np.zeros((2, 3)), stress=np.eye(3) * 1e-3) for k in range(3)]
    write_history(tmp_path / "HISTORY.Ar.50K", frames)
    write_energies(tmp_path / "E.Ar.50K", frames)
    write_stresses(tmp_path / "STRESS.Ar.50K", frames[:2])
    assert cli("prepare", "--train-file", tmp_path / "HISTORY.Ar.50K", "-o", tmp_path / "p.h5", "-q") == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'STRESS.Ar.50K'}" in err and "no stress for step 20" in err
    assert not (tmp_path / "p.h5").exists()


def test_a_run_that_failed_before_its_first_checkpoint_is_replaced(start, tmp_path, capsys):
    """A reference failing on its first call leaves a partial file and no checkpoint: nothing to
    resume, so the next plain run replaces it (it used to demand --resume, which then said
    'run without --resume')."""
    args = failing_reference_run(start, tmp_path / "md.h5", 4, 2, fail_at=1)
    assert (tmp_path / "md.h5.partial").exists() and not (tmp_path / "md.h5.checkpoint").exists()
    assert cli(*args, "--resume") == 2 and "no checkpoint to resume from" in capsys.readouterr().err
    assert cli(*args) == 0
    assert "an unfinished run with no checkpoint (nothing to resume)" in capsys.readouterr().err
    with h5py.File(tmp_path / "md.h5") as h5:
        assert h5.attrs["status"] == "complete" and len(h5["trajectory/frames/step"]) == 3


def test_a_gz_history_is_gzip_compressed(start, tmp_path):
    """--history NAME.gz: the three files are gzip (the temporary names they are written under
    do not end in .gz; they used to come out as plain text under a .gz name)."""
    assert cli("md", *LJ, "--start", start, "--temperature", 60, "--steps", 4, "--write-every", 2,
               "-o", tmp_path / "md.h5", "--history", tmp_path / "HISTORY.Ar.60K.gz", "-q") == 0
    for name in ("HISTORY.Ar.60K.gz", "E.Ar.60K.gz", "STRESS.Ar.60K.gz"):
        assert (tmp_path / name).read_bytes()[:2] == b"\x1f\x8b", name
    assert len(list(iter_stresses(tmp_path / "STRESS.Ar.60K.gz"))) == 3
