"""Input validation at every stage boundary (issue #6 item 3).

Each wrong input must give one clear line and exit status 2 through the CLI, and an existing
output must never be replaced without --overwrite (the existing file stays bit-identical).
"""

import copy
import hashlib

import h5py
import numpy as np
import pytest

from hdnnp.errors import HdnnpError
from hdnnp.h5io import (
    SCHEMA_VERSION,
    check_elements_covered,
    check_feature_sets_match,
    open_stage_file,
    require_members,
    write_root_attrs,
)


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# --- the shared helpers (hdnnp.h5io) -----------------------------------------------------------

def _stage_file(path, stage="prepare", schema=SCHEMA_VERSION):
    with h5py.File(path, "w") as h5:
        write_root_attrs(h5, stage)
        h5.attrs["schema_version"] = schema
        h5.create_group("train/frames")
    return path


def test_open_stage_file_messages(tmp_path):
    with pytest.raises(HdnnpError, match="no such file"):
        open_stage_file(tmp_path / "absent.h5", "prepare")
    (tmp_path / "text.h5").write_text("not hdf5\n")
    with pytest.raises(HdnnpError, match="not a readable HDF5 file"):
        open_stage_file(tmp_path / "text.h5", "prepare")
    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5["x"] = 1
    with pytest.raises(HdnnpError, match="not an hdnnp file"):
        open_stage_file(tmp_path / "plain.h5", "prepare")
    _stage_file(tmp_path / "future.h5", schema=SCHEMA_VERSION + 1)
    with pytest.raises(HdnnpError, match=f"schema_version {SCHEMA_VERSION + 1}.*re-run"):
        open_stage_file(tmp_path / "future.h5", "prepare")
    _stage_file(tmp_path / "sym.h5", stage="symmetry")
    with pytest.raises(HdnnpError, match="written by stage 'symmetry', expected output of 'prepare'"):
        open_stage_file(tmp_path / "sym.h5", "prepare")
    with open_stage_file(tmp_path / "sym.h5", ("prepare", "symmetry")) as h5:
        require_members(h5, ["train/frames"])
        with pytest.raises(HdnnpError, match="lacks predict, train/atoms under /"):
            require_members(h5, ["predict", "train/atoms", "train/frames"], "input of symmetry")


def test_check_elements_covered():
    check_elements_covered([52, 52, 32], [32, 52], "data", "model")
    with pytest.raises(HdnnpError, match="data contains Ge, but model.h5 was trained for Te only"):
        check_elements_covered([52, 32], [52], "data", "model.h5")


def test_check_feature_sets_match():
    from hdnnp.descriptors.features import DEFAULT_ETAS, FeatureSet

    fs = FeatureSet.default([52])
    fs.selected = {52: np.array([3, 40, 7])}
    fs.min = {52: np.array([0.0, 0.1, 0.2])}
    fs.max = {52: np.array([1.0, 2.0, 3.0])}
    check_feature_sets_match(fs, copy.deepcopy(fs), "model.h5", "symmetry.h5")
    other = copy.deepcopy(fs)
    other.selected[52] = np.array([3, 40, 8])
    with pytest.raises(HdnnpError, match="other symmetry functions.*Te: selected features differ"):
        check_feature_sets_match(fs, other, "model.h5", "symmetry.h5")
    other = copy.deepcopy(fs)
    other.max[52] = other.max[52] * 1.01
    with pytest.raises(HdnnpError, match="scaling max differ"):
        check_feature_sets_match(fs, other, "model.h5", "symmetry.h5")
    with pytest.raises(HdnnpError, match="cutoff 5 Å vs 6 Å"):
        check_feature_sets_match(fs, FeatureSet.default([52], cutoff=5.0), "model.h5", "symmetry.h5")
    with pytest.raises(HdnnpError, match="elements Ge, Te vs Te"):
        check_feature_sets_match(fs, FeatureSet.default([32, 52]), "model.h5", "symmetry.h5")
    with pytest.raises(HdnnpError, match="40 candidates vs 84"):
        check_feature_sets_match(fs, FeatureSet.default([52], etas=(0.0, 0.5), rss=(0.0,) * 12), "m", "s")
    with pytest.raises(HdnnpError, match="candidate grid differs in eta"):
        check_feature_sets_match(fs, FeatureSet.default([52], etas=np.array(DEFAULT_ETAS) * 1.5), "m", "s")


# --- the stages through the CLI ----------------------------------------------------------------

from hdnnp.cli import main  # noqa: E402
from hdnnp.frames import Frame  # noqa: E402
from hdnnp.io.dlpoly_write import write_energies, write_history  # noqa: E402


def run_cli(argv, capsys):
    """(exit status, stderr) of ``hdnnp argv``; 0 when main returns normally."""
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        status = 0
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err


def expect_error(argv, capsys, *patterns):
    """Exit status 2 and one 'Error: ...' message matching every regex in ``patterns``."""
    import re

    status, err = run_cli(argv, capsys)
    assert status == 2, err
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith("Error:")]
    assert message, err
    for pattern in patterns:
        assert re.search(pattern, err), (pattern, err)
    return err


def _frames(n_frames, seed, species):
    rng = np.random.default_rng(seed)
    n = len(species)
    lattice = np.indices((2, 2, 2)).reshape(3, -1).T[:n] * 4.5 + 0.5
    out = []
    for k in range(n_frames):
        d = 0.15 * rng.standard_normal(lattice.shape)
        out.append(Frame(positions=lattice + d, species=np.asarray(species, np.int32),
                         cell=np.eye(3) * 9.0, pbc=np.ones(3, bool),
                         energy=-3.0 * n + 0.5 * float(np.sum(d * d)), forces=-d, step=10 * k))
    return out


TRAIN_OPTIONS = ["--hidden", "4", "--epochs", "2", "--seed", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """prepared.h5 and symmetry.h5 of a tiny Te system and of a GeTe one (other elements)."""
    root = tmp_path_factory.mktemp("boundaries")
    out = {"root": root}
    systems = {"Te": [52] * 8, "GeTe": [32, 52] * 4}
    for system, species in systems.items():
        for seed, temperature in enumerate((600, 700, 800)):
            frames = _frames(5, seed, species)
            write_history(root / f"HISTORY.{system}.{temperature}K", frames)
            write_energies(root / f"E.{system}.{temperature}K", frames)
        prepared, symmetry = root / f"prepared_{system}.h5", root / f"symmetry_{system}.h5"
        main(["prepare", "--data-dir", str(root), "--system", system, "--train", "600K,700K",
              "--predict", "800K", "-q", "-o", str(prepared)])
        main(["symmetry", str(prepared), "--n-features", "6", "-q", "-o", str(symmetry)])
        model, predictions = root / f"model_{system}.h5", root / f"predictions_{system}.h5"
        main(["train", str(symmetry), *TRAIN_OPTIONS, "-q", "-o", str(model)])
        main(["predict", str(symmetry), "--model", str(model), "-q", "-o", str(predictions)])
        out[f"prepared_{system}"], out[f"symmetry_{system}"] = prepared, symmetry
        out[f"model_{system}"], out[f"predictions_{system}"] = model, predictions
    plain = root / "plain.h5"
    with h5py.File(plain, "w") as h5:
        h5["train/frames/energy"] = np.zeros(3)
    out["plain"] = plain
    text = root / "notes.h5"
    text.write_text("this is not HDF5\n")
    out["text"] = text
    future = root / "prepared_future.h5"
    future.write_bytes(out["prepared_Te"].read_bytes())
    with h5py.File(future, "r+") as h5:
        h5.attrs["schema_version"] = SCHEMA_VERSION + 1
    out["future"] = future
    no_train = root / "prepared_no_train.h5"
    no_train.write_bytes(out["prepared_Te"].read_bytes())
    with h5py.File(no_train, "r+") as h5:
        del h5["train"]
    out["no_train"] = no_train
    return out


def test_symmetry_rejects_wrong_inputs(files, capsys):
    out = files["root"] / "sym_out.h5"
    sym = ["symmetry", "-q", "-o", out]
    expect_error([*sym, files["symmetry_Te"]], capsys,
                 "written by stage 'symmetry', expected output of 'prepare'")
    expect_error([*sym, files["plain"]], capsys, "plain.h5: not an hdnnp file")
    expect_error([*sym, files["text"]], capsys, "notes.h5: not a readable HDF5 file")
    expect_error([*sym, files["future"]], capsys,
                 f"schema_version {SCHEMA_VERSION + 1}, this hdnnp .* reads schema_version "
                 f"{SCHEMA_VERSION}")
    expect_error([*sym, files["root"] / "absent.h5"], capsys, "absent.h5: no such file")
    expect_error([*sym, files["no_train"]], capsys, "no training set")
    assert not out.exists()


def test_train_rejects_wrong_inputs(files, capsys):
    root = files["root"]
    out = root / "train_out.h5"
    train = ["train", *TRAIN_OPTIONS, "-q", "-o", out]
    expect_error([*train, files["prepared_Te"]], capsys,
                 "prepared_Te.h5: written by stage 'prepare', expected output of 'symmetry'")
    expect_error([*train, files["model_Te"]], capsys, "written by stage 'train'")
    expect_error([*train, files["plain"]], capsys, "not an hdnnp file")
    # --resume without a checkpoint, and with a checkpoint of another architecture
    expect_error([*train, files["symmetry_Te"], "--resume"], capsys, "no checkpoint")
    assert not out.exists()


def test_resume_rejects_checkpoint_of_other_architecture(files, capsys, monkeypatch):
    from hdnnp.model import Potential

    out = files["root"] / "resume_out.h5"
    checkpoint = out.with_name(out.name + ".checkpoint")

    def interrupted_save(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C after the last checkpoint, before the model is saved

    with monkeypatch.context() as patch:
        patch.setattr(Potential, "save", interrupted_save)
        status, err = run_cli(["train", files["symmetry_Te"], "--hidden", "3", "--epochs", "2",
                               "--checkpoint-every", "1", "-q", "-o", out], capsys)
    assert status == 130 and checkpoint.exists() and not out.exists()
    expect_error(["train", files["symmetry_Te"], "--hidden", "4", "--epochs", "2", "--resume",
                  "-q", "-o", out], capsys, r"other options: hidden \[3\] \(now \[4\]\)")
    assert not out.exists()


def test_predict_rejects_wrong_inputs(files, capsys):
    root = files["root"]
    out = root / "predict_out.h5"
    predict = ["predict", "-q", "-o", out]
    expect_error([*predict, files["symmetry_Te"], "--model", files["symmetry_Te"]], capsys,
                 "symmetry_Te.h5: written by stage 'symmetry', expected output of 'train'")
    expect_error([*predict, files["symmetry_Te"], "--model", files["plain"]], capsys,
                 "not an hdnnp file")
    expect_error([*predict, files["symmetry_Te"], "--model", files["future"]], capsys,
                 f"schema_version {SCHEMA_VERSION + 1}")
    # data with an element (Ge) the model (Te only) has no network for
    for data in ("symmetry_GeTe", "prepared_GeTe"):
        expect_error([*predict, files[data], "--model", files["model_Te"]], capsys,
                     r"\b(Ge|32)\b")
    assert not out.exists()


def test_predict_names_the_stage_of_a_wrong_input(files, capsys):
    expect_error(["predict", files["model_Te"], "--model", files["model_Te"], "-q", "-o",
                  files["root"] / "p.h5"], capsys,
                 "written by stage 'train', expected output of 'symmetry' or 'prepare'")


def test_report_rejects_wrong_inputs(files, capsys):
    root = files["root"]
    report = ["report", "--out-dir", root / "figures"]
    expect_error([*report, "--model", files["model_Te"], "--predictions", files["model_Te"]],
                 capsys, "model_Te.h5: written by stage 'train', expected output of 'predict'")
    expect_error([*report, "--model", files["predictions_Te"], "--predictions",
                  files["predictions_Te"]], capsys,
                 "predictions_Te.h5: written by stage 'predict', expected output of 'train'")


STAGE_ARGV = {
    "prepare": lambda f: ["prepare", "--data-dir", f["root"], "--system", "Te", "--train", "600K",
                          "-q"],
    "symmetry": lambda f: ["symmetry", f["prepared_Te"], "--n-features", "6", "-q"],
    "train": lambda f: ["train", f["symmetry_Te"], *TRAIN_OPTIONS, "-q"],
    "predict": lambda f: ["predict", f["symmetry_Te"], "--model", f["model_Te"], "-q"],
}


@pytest.mark.parametrize("stage", list(STAGE_ARGV))
def test_existing_output_needs_overwrite(files, capsys, stage):
    root = files["root"]
    existing = root / f"existing_{stage}.h5"
    existing.write_bytes(b"precious results\n")
    before = sha256(existing)
    argv = [*STAGE_ARGV[stage](files), "-o", existing]
    expect_error(argv, capsys, f"existing_{stage}.h5: exists already; pass --overwrite")
    assert sha256(existing) == before
    status, err = run_cli([*argv, "--overwrite"], capsys)
    assert status == 0, err
    with open_stage_file(existing, "train" if stage == "train" else stage):
        pass


def test_report_does_not_replace_outputs_silently(files, capsys):
    root = files["root"]
    json_path = root / "metrics.json"
    json_path.write_text("{}\n")
    status, err = run_cli(["report", "--model", files["model_Te"], "--predictions",
                           files["predictions_Te"], "--out-dir", root / "fig", "--json",
                           json_path], capsys)
    assert status == 2 and json_path.read_text() == "{}\n"
