"""Outputs never destroy inputs or another run's checkpoint: an output path that is one of the
command's inputs (by any name) is refused, --overwrite or not, by every stage; a training
checkpoint left by a killed run is not deleted by a fresh run."""

import os

import numpy as np
import pytest

from _nn_fixtures import lj_frames, lj_symmetry_files
from hdnnp.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from hdnnp.stages.train import train
    from hdnnp.training.presets import make_options

    d = lj_symmetry_files(tmp_path_factory.mktemp("io"), lj_frames(np.random.default_rng(4), 10), 8, 6)
    train(d / "symmetry.h5", d / "model.h5", make_options("fast", epochs=2, hidden=(3,)), quiet=True)
    os.symlink(d / "model.h5", d / "alias.h5")
    return d


def _status(argv):
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code
    return 0


@pytest.mark.parametrize("argv", [
    ["symmetry", "{d}/prepared.h5", "-o", "{d}/prepared.h5"],
    ["train", "{d}/symmetry.h5", "-o", "{d}/symmetry.h5"],
    ["predict", "{d}/symmetry.h5", "--model", "{d}/model.h5", "-o", "{d}/model.h5"],
    ["predict", "{d}/symmetry.h5", "--model", "{d}/model.h5", "-o", "{d}/alias.h5"],  # same file, other name
    ["report", "--model", "{d}/model.h5", "--predictions", "{d}/p.h5", "--json", "{d}/model.h5"],
    ["md", "--model", "{d}/model.h5", "--start", "{d}/prepared.h5", "--temperature", "50", "-o", "{d}/prepared.h5"],
    ["analyze", "{d}/prepared.h5:train", "--json", "{d}/prepared.h5", "--out-dir", "{d}"],
])
def test_an_output_that_is_an_input_is_refused_even_with_overwrite(files, argv, capsys):
    d = files
    from hdnnp.stages.predict import predict

    if not (d / "p.h5").exists():
        predict(d / "model.h5", d / "symmetry.h5", d / "p.h5", quiet=True)
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and not p.is_symlink()}
    assert _status([a.format(d=d) for a in argv] + ["--overwrite", "-q"] * (argv[0] not in ("report", "analyze"))
                   + ["--overwrite"] * (argv[0] in ("report", "analyze"))) == 2
    assert "is also an input of this command" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and not p.is_symlink()}
    assert after == before


def test_run_refuses_an_intermediate_that_is_an_input(tmp_path, capsys):
    """An extxyz input that happens to be named like an intermediate of the work directory."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = lj_frames(np.random.default_rng(1), 4)
    for a in frames:
        energy, forces = a.info.pop("energy"), a.arrays.pop("ref_forces")
        a.calc = SinglePointCalculator(a, energy=energy, forces=forces)
    ase.io.write(tmp_path / "prepared.h5", frames, format="extxyz")
    before = (tmp_path / "prepared.h5").read_bytes()
    status = _status(["run", "--train-file", f"{tmp_path / 'prepared.h5'}@673", "--format", "extxyz",
                      "--work-dir", str(tmp_path), "--out-dir", str(tmp_path), "--overwrite", "-q"])
    assert status == 2 and "is also an input" in capsys.readouterr().err
    assert (tmp_path / "prepared.h5").read_bytes() == before


def test_a_fresh_training_run_keeps_a_foreign_checkpoint(files, tmp_path, capsys):
    d = files
    ckpt = tmp_path / "m.h5.checkpoint"
    ckpt.write_bytes(b"checkpoint of a killed run")
    argv = ["train", str(d / "symmetry.h5"), "-o", str(tmp_path / "m.h5"), "--preset", "fast", "--epochs", "1",
            "--hidden", "3", "-q"]
    assert _status(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert ckpt.read_bytes() == b"checkpoint of a killed run" and not (tmp_path / "m.h5").exists()
    assert _status(argv + ["--overwrite"]) == 0  # the user chose to start again


@pytest.mark.parametrize("value,message", [(0.0, "exactly zero"), (np.nan, "non-finite")])
def test_training_refuses_zero_or_non_finite_reference_forces(tmp_path, capsys, value, message):
    """All-zero reference forces (a lossy converter) or a NaN: one line, --no-forces suggested,
    no model written; --no-forces then trains."""
    frames = lj_frames(np.random.default_rng(5), 8)
    for a in frames:
        a.arrays["ref_forces"] = np.zeros_like(a.arrays["ref_forces"]) if value == 0.0 else a.arrays["ref_forces"]
    if value != 0.0:
        frames[3].arrays["ref_forces"][2, 1] = value
    lj_symmetry_files(tmp_path, frames, 6, 6)
    argv = ["train", str(tmp_path / "symmetry.h5"), "-o", str(tmp_path / "m.h5"), "--preset", "fast",
            "--epochs", "1", "--hidden", "3", "-q"]
    assert _status(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "--no-forces" in err and not (tmp_path / "m.h5").exists()
    assert _status(argv + ["--no-forces"]) == 0


def test_non_finite_weights_and_predictions_are_errors(files, tmp_path, capsys):
    """A NaN weight makes the model unusable (named dataset); weights so large that the energy
    overflows give a named error from predict instead of a table of dashes; nothing written."""
    import shutil

    import h5py

    from hdnnp.model import Potential

    d = files
    shutil.copy(d / "model.h5", tmp_path / "nan.h5")
    with h5py.File(tmp_path / "nan.h5", "r+") as h5:
        h5["networks/Ar/weights_0"][0, 0] = np.nan
    argv = ["predict", str(d / "symmetry.h5"), "-o", str(tmp_path / "p.h5"), "-q"]
    assert _status(argv + ["--model", str(tmp_path / "nan.h5")]) == 2
    assert "networks/Ar/weights_0 holds non-finite" in capsys.readouterr().err
    pot = Potential.load(d / "model.h5")
    huge = pot.theta.copy()
    n_out = pot.architecture.hidden[-1]
    huge[-(n_out + 1):-1] = 1e308  # output weights: E = a . W + b overflows to ±inf
    Potential(pot.feature_set, pot.architecture, huge, pot.reference_energies).save(tmp_path / "huge.h5")
    assert _status(argv + ["--model", str(tmp_path / "huge.h5")]) == 2
    err = capsys.readouterr().err
    huge_pot = Potential.load(tmp_path / "huge.h5")
    energies = [huge_pot.predict(a.positions, a.cell.array, a.pbc, a.numbers, forces=False)[0]
                for a in lj_frames(np.random.default_rng(4), 10)[:8]]  # the fixture's train set
    first = int(np.flatnonzero(~np.isfinite(energies))[0])
    assert f"non-finite energy for frame {first} " in err and "train set" in err
    assert not (tmp_path / "p.h5").exists()


def test_a_second_writer_of_the_same_output_is_refused_at_once(tmp_path, capsys):
    """Two commands writing one file: the second is refused before any work (issue #15: two
    ``hdnnp symmetry -o s.h5`` half a second apart both exited 0, the second replacing the
    first). The claim is a flock, so it dies with its process: a killed holder blocks nothing."""
    import subprocess
    import sys
    import time

    from hdnnp.cli import main

    out = tmp_path / "s.h5"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from hdnnp.h5io import claim_output; "
         f"claim_output({str(out)!r}); print('claimed', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        t0 = time.monotonic()
        with pytest.raises(SystemExit) as exc:
            main(["prepare", "--train-file", f"{tmp_path / 'missing.xyz'}@300", "-o", str(out)])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and time.monotonic() - t0 < 10
        # the claim is checked first or the missing input is: either way one line, nothing written
        assert "Traceback" not in err and not out.exists()
        from hdnnp.errors import HdnnpError
        from hdnnp.h5io import check_can_write

        with pytest.raises(HdnnpError, match=r"another hdnnp process is writing it now \(pid "):
            check_can_write(out)
    finally:
        holder.kill()
        holder.wait()
    check_can_write(out)  # the holder died: its claim went with it
    from hdnnp.h5io import release_output

    release_output(out)
    assert not list(tmp_path.glob(".s.h5.lock"))


def test_an_unwritable_output_directory_is_refused_before_the_work(tmp_path, capsys):
    """Training into a directory it cannot write used to run every epoch and then lose the
    model to a PermissionError; the claim on the output fails first, with one line."""
    import os

    (tmp_path / "not_a_dir").write_text("")
    targets = [tmp_path / "not_a_dir" / "model.h5"]  # a parent that is a file: unwritable for anyone
    if os.geteuid() != 0:  # root writes into read-only directories anyway
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        targets.append(tmp_path / "ro" / "model.h5")
    try:
        for target in targets:
            with pytest.raises(SystemExit) as exc:
                main(["train", str(tmp_path / "symmetry.h5"), "-o", str(target), "-q"])
            err = capsys.readouterr().err
            assert exc.value.code == 2 and f"{target}: cannot write in" in err, err
    finally:
        if (tmp_path / "ro").exists():
            (tmp_path / "ro").chmod(0o755)


def test_a_failing_final_write_keeps_the_trained_model(tmp_path, capsys, monkeypatch):
    """Disk full (or the directory gone) when training ends: the model goes to a rescue file,
    named in one line, instead of being lost with a traceback."""
    import errno
    import tempfile

    from hdnnp.model import Potential

    d = lj_symmetry_files(tmp_path, lj_frames(np.random.default_rng(1), 10), 8, 6)
    rescue_dir = tmp_path / "rescue"
    rescue_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue_dir))
    real_save = Potential.save

    def full_disk(self, path, *args, **kwargs):
        if path.name == "model.h5":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(Potential, "save", full_disk)
    with pytest.raises(SystemExit) as exc:
        main(["train", str(d / "symmetry.h5"), "-o", str(d / "model.h5"), "--preset", "fast", "--epochs", "2",
              "--hidden", "3", "-q"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "No space left on device" in err and "the trained model was saved to" in err
    (rescued,) = rescue_dir.glob("hdnnp-rescue-*-model.h5")
    assert str(rescued) in err and Potential.load(rescued).architecture.hidden == (3,)
    assert not (d / "model.h5").exists()


@pytest.mark.parametrize("option,value,expected", [
    ("--learning-rate", "nan", "--learning-rate: expected a step size > 0"),
    ("--seed", "-1", "--seed: expected an integer in"),
    ("--hidden", "100000", "--hidden: expected at most 16 layers"),
    ("--force-weight", "inf", "--force-weight: expected a finite weight"),
    ("--epochs", "-3", "--epochs: expected a number of epochs >= 0"),
])
def test_absurd_training_options_are_one_line(tmp_path, capsys, option, value, expected):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tmp_path / "symmetry.h5"), "-o", str(tmp_path / "m.h5"), option, value, "-q"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and expected in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


@pytest.fixture
def lj_symmetry(tmp_path):
    return lj_symmetry_files(tmp_path, lj_frames(np.random.default_rng(3), 10), 8, 6) / "symmetry.h5"


def _train_fails(symmetry, capsys, *extra):
    out = symmetry.with_name("m.h5")
    with pytest.raises(SystemExit) as exc:
        main(["train", str(symmetry), "-o", str(out), "--preset", "fast", "--epochs", "3", "--hidden", "3", "-q",
              *extra])
    assert exc.value.code == 2 and not out.exists()
    return capsys.readouterr().err


def test_non_finite_descriptors_name_their_frame(lj_symmetry, capsys):
    import h5py

    with h5py.File(lj_symmetry, "r+") as h5:
        g = h5["train/features/Ar"]
        rows = g["frame_offset"][:]
        values = g["values"][:]
        values[rows[5] + 2, 1] = np.nan
        g["values"][...] = values
    err = _train_fails(lj_symmetry, capsys)
    assert "non-finite descriptors, derivatives or reference values in training frame(s) 5 " in err


def test_absurd_reference_energies_name_their_frame(lj_symmetry, capsys):
    """An energy of -1e300 in one frame: every loss overflows; before, train wrote the initial
    weights with exit 0."""
    import h5py

    with h5py.File(lj_symmetry, "r+") as h5:
        energy = h5["train/frames/energy"][:]
        energy[2] = -1e300
        h5["train/frames/energy"][...] = energy
    err = _train_fails(lj_symmetry, capsys, "--val-fraction", "0")
    assert "which no physical data do; the farthest is training frame 2 (-1e+300 eV for 8 atoms)" in err


def test_a_loss_never_finite_is_an_error_not_an_untrained_model(lj_symmetry, capsys):
    err = _train_fails(lj_symmetry, capsys, "--optimizer", "adam", "--learning-rate", "1e300")
    assert "training failed: the loss was not finite in any of its 3 epochs" in err


@pytest.mark.parametrize("feature", ["external link", "soft link", "virtual dataset", "external storage"])
def test_hdf5_inputs_that_reference_other_files_are_refused(tmp_path, capsys, feature):
    """A crafted prepared.h5 must not make hdnnp read another file (issue #15, security): only
    self-contained groups and datasets are read."""
    import h5py

    from _nn_fixtures import write_prepared

    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"private key material".ljust(64, b"."))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["data"] = np.arange(10.0)
    crafted = write_prepared(tmp_path / "prepared.h5", lj_frames(np.random.default_rng(0), 3), [])
    with h5py.File(crafted, "r+") as h5:
        g = h5["train/frames"]
        if feature == "external link":
            g["extra"] = h5py.ExternalLink(str(other), "/data")
        elif feature == "soft link":
            g["extra"] = h5py.SoftLink("/train/frames/energy")
        elif feature == "virtual dataset":
            layout = h5py.VirtualLayout(shape=(10,), dtype="f8")
            layout[:] = h5py.VirtualSource(str(other), "data", shape=(10,))
            g.create_virtual_dataset("extra", layout)
        else:
            g.create_dataset("extra", shape=(8,), dtype="f8", external=[(str(secret), 0, 64)])
    with pytest.raises(SystemExit) as exc:
        main(["symmetry", str(crafted), "-o", str(tmp_path / "symmetry.h5")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "/train/frames/extra is" in err and "self-contained" in err
    assert not (tmp_path / "symmetry.h5").exists()


def test_report_refuses_predictions_of_another_model(lj_symmetry, capsys):
    d = lj_symmetry.parent
    for seed in ("1", "2"):
        main(["train", str(lj_symmetry), "-o", str(d / f"m{seed}.h5"), "--preset", "fast", "--epochs", "2",
              "--hidden", "3", "--seed", seed, "-q"])
    main(["predict", str(lj_symmetry), "--model", str(d / "m1.h5"), "-o", str(d / "p1.h5"), "-q"])
    main(["report", "--model", str(d / "m1.h5"), "--predictions", str(d / "p1.h5"), "--out-dir", str(d / "ok")])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["report", "--model", str(d / "m2.h5"), "--predictions", str(d / "p1.h5"), "--out-dir", str(d / "mixed")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "was made with another model" in err and "m1.h5" in err
    assert not (d / "mixed").exists()


def test_a_checkpoint_resumes_only_under_its_own_options(lj_symmetry, capsys, monkeypatch):
    """An Adam checkpoint resumed under --optimizer ekf used to continue and record 'ekf'."""
    import hdnnp.stages.train as train_stage

    d = lj_symmetry.parent
    common = ["--epochs", "4", "--hidden", "3", "--checkpoint-every", "1", "-q"]
    real = train_stage.train_networks

    def killed_after_first_checkpoint(*args, checkpoint=None, **kwargs):
        def hook(state):
            checkpoint(state)
            raise KeyboardInterrupt

        return real(*args, checkpoint=hook, **kwargs)

    monkeypatch.setattr(train_stage, "train_networks", killed_after_first_checkpoint)
    with pytest.raises(SystemExit):
        main(["train", str(lj_symmetry), "-o", str(d / "m.h5"), "--optimizer", "adam", *common])
    monkeypatch.setattr(train_stage, "train_networks", real)
    assert (d / "m.h5.checkpoint").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["train", str(lj_symmetry), "-o", str(d / "m.h5"), "--optimizer", "ekf", "--resume", *common])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "optimizer 'adam' (now 'ekf')" in err
    # the same options (a longer run allowed) resume
    main(["train", str(lj_symmetry), "-o", str(d / "m.h5"), "--optimizer", "adam", "--resume", *common[:-1],
          "--epochs", "5", "-q"])
    assert (d / "m.h5").exists() and not (d / "m.h5.checkpoint").exists()


@pytest.mark.parametrize("damage,dataset", [
    ("short_offset", "frames/atom_offset"),
    ("energy_length", "frames/energy"),
    ("source_index", "frames/source"),
    ("feature_offset", "features/Ar/frame_offset"),
])
def test_damaged_frame_sets_are_named(lj_symmetry, capsys, damage, dataset):
    """A shortened atom_offset used to drop frames silently; every stage now checks the layout
    invariants of the frame sets it reads and names the dataset."""
    import h5py

    model = lj_symmetry.with_name("good.h5")
    main(["train", str(lj_symmetry), "-o", str(model), "--preset", "fast", "--epochs", "1", "--hidden", "3", "-q"])
    with h5py.File(lj_symmetry, "r+") as h5:
        g = h5["train"]
        if damage == "short_offset":
            off = g["frames/atom_offset"][:-2]
            del g["frames/atom_offset"]
            g["frames/atom_offset"] = off
        elif damage == "energy_length":
            e = g["frames/energy"][:-1]
            del g["frames/energy"]
            g["frames/energy"] = e
        elif damage == "source_index":
            s = g["frames/source"][:]
            s[0] = 99
            g["frames/source"][...] = s
        else:
            off = g["features/Ar/frame_offset"][:]
            off[3] = off[4] + 1
            g["features/Ar/frame_offset"][...] = off
    for argv in (["train", str(lj_symmetry), "-o", str(lj_symmetry.with_name("m.h5"))],
                 ["predict", str(lj_symmetry), "--model", str(model), "-o", str(lj_symmetry.with_name("p.h5"))],
                 ["md", "--start", str(lj_symmetry), "--start-set", "train", "--model", str(model),
                  "--temperature", "100", "-o", str(lj_symmetry.with_name("md.h5"))]):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "-q"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and f"/train/{dataset}:" in err, err


def _extxyz(path, positions, cell, pbc=True):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    a = Atoms(f"Ar{len(positions)}", positions=positions, cell=cell, pbc=pbc)
    a.calc = SinglePointCalculator(a, energy=-1.0, forces=np.ones((len(a), 3)))
    write(path, [a, a])
    return path


@pytest.mark.parametrize("case,message", [
    ("tiny_cell", "atoms/Å³ (8 atoms in"),
    ("far_atom", "atom 0 lies 1e+11 cell lengths outside the cell"),
    ("coincident", "atoms 0 and 1 are 0.01 Å apart (coincident"),
])
def test_prepare_refuses_geometry_no_physical_frame_has(tmp_path, capsys, case, message):
    """A 0.05 Å cell took the machine down (GBs in the close-contact check and in symmetry), an
    atom 1e12 Å away lost its neighbours silently, coincident atoms trained an untrained model."""
    rng = np.random.default_rng(0)
    positions = rng.uniform(0, 10, (8, 3))
    cell = [10.0] * 3
    if case == "tiny_cell":
        positions, cell = positions * 0.005, [0.05] * 3
    elif case == "far_atom":
        positions[0] = [1e12, 0, 0]
    else:
        positions[1] = positions[0] + [0.01, 0, 0]
    src = _extxyz(tmp_path / "in.extxyz", positions, cell)
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "--train-file", f"{src}@300", "-o", str(tmp_path / "p.h5")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "in.extxyz: structure/step 0: " in err and message in err, err
    assert not (tmp_path / "p.h5").exists()


def test_the_neighbour_list_bounds_its_work():
    from hdnnp.errors import HdnnpError
    from hdnnp.neighbors import neighbor_list

    pos = np.random.default_rng(1).uniform(0, 0.05, (8, 3))
    with pytest.raises(HdnnpError, match="far too small for the cutoff 6 Å"):
        neighbor_list(pos, np.eye(3) * 0.05, True, 6.0)
    pos = np.random.default_rng(1).uniform(0, 10, (8, 3))
    pos[2] = [3e11, 1, 1]
    with pytest.raises(HdnnpError, match="cell lengths outside the cell"):
        neighbor_list(pos, np.eye(3) * 10, True, 6.0)


def test_a_fifo_as_input_is_refused_instead_of_hanging(tmp_path, capsys):
    """Opening a FIFO for reading waits for a writer forever; every input path is checked to be a
    regular file first."""
    import os

    fifo = tmp_path / "in.extxyz"
    os.mkfifo(fifo)
    for argv in (["prepare", "--train-file", f"{fifo}@300", "-o", tmp_path / "p.h5"],
                 ["predict", fifo, "-o", tmp_path / "q.h5"],
                 ["md", "--start", fifo, "--temperature", "300", "-o", tmp_path / "md.h5"],
                 ["train", fifo, "-o", tmp_path / "m.h5"]):
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "is not a regular file (a pipe, device or socket)" in err, (argv, err)


def test_a_250_character_output_name_works(tmp_path):
    """The hidden temporary and lock names must stay within the 255 bytes of a file name."""
    from hdnnp.h5io import atomic_output

    path = tmp_path / ("m" * 247 + ".h5")
    with atomic_output(path) as tmp:
        tmp.write_bytes(b"x")
    assert path.read_bytes() == b"x" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_every_output_is_closed_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    """A rename before the file is closed would publish a file still being written (a kill in
    between leaves it truncated under its final name). Checked at every rename of the stages:
    no descriptor of this process may still point at the temporary file."""
    import contextlib

    import hdnnp.h5io as h5io

    real_replace = os.replace
    renamed = []

    def checked_replace(src, dst, *args, **kwargs):
        src = os.path.realpath(src)
        open_files = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # a descriptor closed meanwhile
                open_files.add(os.path.realpath(os.readlink(f"/proc/self/fd/{fd}")))
        assert src not in open_files, f"{src} is still open when renamed to {dst}"
        renamed.append(os.path.basename(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(h5io.os, "replace", checked_replace)
    d = lj_symmetry_files(tmp_path, lj_frames(np.random.default_rng(2), 10), 8, 6)
    main(["train", str(d / "symmetry.h5"), "-o", str(d / "m.h5"), "--preset", "fast", "--epochs", "2", "--hidden",
          "3", "--checkpoint-every", "1", "-q"])
    main(["predict", str(d / "symmetry.h5"), "--model", str(d / "m.h5"), "-o", str(d / "p.h5"), "-q"])
    main(["report", "--model", str(d / "m.h5"), "--predictions", str(d / "p.h5"), "--out-dir", str(d / "figs"),
          "--json", str(d / "r.json")])
    assert {"symmetry.h5", "m.h5.checkpoint", "m.h5", "p.h5", "r.json", "PARITY.png"} <= set(renamed)


@pytest.mark.parametrize("which", ["HISTORY", "E"])
def test_a_text_input_without_newlines_is_refused_not_read_whole(tmp_path, capsys, which):
    good = "title\n" if which == "E" else "0 1.0\n"
    (tmp_path / "HISTORY.X.300K").write_text(("x" * 200_000) if which == "HISTORY" else "title\n0 1 2\n")
    (tmp_path / "E.X.300K").write_text(("1" * 200_000) if which == "E" else good)
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "--data-dir", str(tmp_path), "--system", "X", "--train", "300K", "-o",
              str(tmp_path / "p.h5")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"{which}.X.300K, line 1: a line longer than 65536 characters" in err, err


def test_symmetry_refuses_a_disk_too_small_before_any_work(files, tmp_path, capsys, monkeypatch):
    """HDF5 cannot fail cleanly on a full disk (it segfaulted): the symmetry stage, the largest
    output, estimates its size first and names what is missing."""
    import shutil
    from collections import namedtuple

    real = shutil.disk_usage
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 ** 9, 10 ** 9 - 10 ** 6, 10 ** 6))
    capsys.readouterr()
    status = _status(["symmetry", str(files / "prepared.h5"), "-o", str(tmp_path / "s.h5"), "-q"])
    err = capsys.readouterr().err
    assert status == 2 and "the symmetry file needs about" in err and "GiB are free" in err, err
    assert not list(tmp_path.iterdir())  # nothing written, no temporary, no lock left
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert _status(["symmetry", str(files / "prepared.h5"), "-o", str(tmp_path / "s.h5"), "-q"]) == 0
