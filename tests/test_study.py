"""``hdnnp study`` on a tiny fixture: two training sets x two presets.

The table (CSV and printed) is checked against every run's own predictions.h5, recomputed
here with NumPy; the selection and scaling of each set are checked to be fitted on that
set's training frames only; ``--reuse`` and the refusal to overwrite are checked by file
modification times.
"""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stdout

import h5py
import numpy as np
import pytest

from _pipeline_fixtures import write_lj_trajectories
from hdnnp.cli import main
from hdnnp.stages.report import format_value
from hdnnp.stages.study import parse_sets, read_csv, set_dirname
from hdnnp.training.presets import make_options

SETS = "673,973;673K,873,973"
ARGS = ["study", "--data-dir", "inputs", "--system", "Te", "--sets", SETS, "--predict", "773",
        "--presets", "default,seed", "--epochs", "5", "--max-evals", "200", "--out-dir", "figs",
        "-q"]


def _run(argv, cwd):
    out = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(out):
            try:
                main(argv)
                status = 0
            except SystemExit as exc:
                status = exc.code
    finally:
        os.chdir(old)
    return status, out.getvalue()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    write_lj_trajectories(root / "inputs", [673, 773, 873, 973], n_frames=5)
    status, stdout = _run(ARGS, root)
    assert status == 0, stdout
    return root, stdout


def _truth(predictions_path):
    """The table's error columns, recomputed from one run's predictions.h5, whose predictions
    are first checked against the run's model.h5 evaluated on the raw frames of its
    prepared.h5 (so the table is tied to the model, not only to the file it was made from)."""
    _check_predictions_against_model(predictions_path.parent)
    with h5py.File(predictions_path, "r") as h5:
        p, t = h5["predict"], h5["train"]
        e_err = p["energy_predicted"][:] - p["energy_reference"][:]
        n = p["n_atoms"][:]
        f_err = p["forces_predicted"][:] - p["forces_reference"][:]
        n_val = int(t["is_validation"][:].sum())
        return {
            "train_frames": len(t["energy_reference"]) - n_val,
            "validation_frames": n_val,
            "predict_frames": len(e_err),
            "energy_per_atom_mae_mev": 1000 * np.mean(np.abs(e_err / n)),
            "energy_per_atom_rmse_mev": 1000 * np.sqrt(np.mean((e_err / n) ** 2)),
            "energy_mae_ev": np.mean(np.abs(e_err)),
            "energy_rmse_ev": np.sqrt(np.mean(e_err ** 2)),
            "force_rmse_mev_per_angstrom": 1000 * np.sqrt(np.mean(f_err ** 2)),
            "extrapolating_frames": int(np.count_nonzero(p["extrapolation"][:])),
            "extrapolation_count": int(p["extrapolation"][:].sum()),
        }, sorted(np.unique(t["temperature"][:]).tolist())


def _check_predictions_against_model(run_dir):
    from hdnnp.baseline import iter_frames
    from hdnnp.model import Potential

    model = Potential.load(run_dir / "model.h5")
    with h5py.File(run_dir.parent / "prepared.h5", "r") as prep, h5py.File(run_dir / "predictions.h5", "r") as pred:
        frames = list(iter_frames(prep["predict"]))
        energies = pred["predict/energy_predicted"][:]
        forces = pred["predict/forces_predicted"][:]
        reference = pred["predict/energy_reference"][:]
    assert len(frames) == len(energies)
    offset = 0
    for k, f in enumerate(frames):
        e, fo = model.predict(f.positions, f.cell, f.pbc, f.species)
        assert energies[k] == pytest.approx(e, rel=1e-10)
        np.testing.assert_allclose(forces[offset:offset + len(fo)], fo, rtol=1e-8, atol=1e-10)
        assert reference[k] == f.energy
        offset += len(fo)


def test_table_matches_every_runs_predictions(study):
    root, stdout = study
    rows = read_csv(root / "figs" / "STUDY.csv")
    assert [(r["training_temperatures"], r["preset"]) for r in rows] == [
        ("673,973", "default"), ("673,973", "seed"),
        ("673,873,973", "default"), ("673,873,973", "seed")]
    printed = [line.split() for line in stdout.splitlines()
               if line.startswith(("673,973 ", "673,873,973 "))]
    assert len(printed) == 4
    for row, cells in zip(rows, printed):
        temps = parse_sets(row["training_temperatures"])[0]
        run_dir = root / "study" / set_dirname(temps) / row["preset"]
        truth, train_temps = _truth(run_dir / "predictions.h5")
        assert train_temps == list(temps)
        assert row["n_temperatures"] == len(temps)
        for key, value in truth.items():
            # the CSV keeps 6 significant digits
            assert row[key] == pytest.approx(value, rel=1e-5), (row["preset"], key)
        assert row["total_s"] == pytest.approx(
            row["prepare_s"] + row["symmetry_s"] + row["train_s"] + row["predict_s"], rel=1e-4)
        assert row["device"] == "cpu"
        preset_options = make_options(row["preset"])
        assert row["optimizer"] == preset_options.optimizer
        assert row["fitted_to"] == ("E+F" if preset_options.use_forces else "E")
        # printed: T, n_T, preset, seed, optimizer, fit to, fit, val., pred., E/N MAE,
        # E/N RMSE, E MAE, E RMSE, F RMSE
        assert cells[:9] == [row["training_temperatures"], str(len(temps)), row["preset"],
                             str(preset_options.seed), row["optimizer"], row["fitted_to"],
                             str(truth["train_frames"]), str(truth["validation_frames"]),
                             str(truth["predict_frames"])]
        assert cells[10] == format_value(float(truth["energy_per_atom_rmse_mev"]))
        assert cells[13] == format_value(float(truth["force_rmse_mev_per_angstrom"]))
        record = json.loads((run_dir / "run.json").read_text())
        assert record["train_options"]["optimizer"] == preset_options.optimizer
        assert record["train_options"]["epochs"] == 5  # --epochs applies to every preset


def test_selection_and_scaling_fitted_on_each_training_set_only(study):
    root, _ = study
    for temps in parse_sets(SETS):
        set_dir = root / "study" / set_dirname(temps)
        with h5py.File(set_dir / "symmetry.h5", "r") as h5:
            raw = h5["train/raw"][:]
            np.testing.assert_array_equal(h5["feature_set/Te/candidate_min"][:], raw.min(axis=0))
            np.testing.assert_array_equal(h5["feature_set/Te/candidate_max"][:], raw.max(axis=0))
            assert sorted(np.unique(h5["train/frames/temperature"][:])) == list(temps)
            selected = h5["feature_set/Te/selected"][:]
        # both presets use the set's one symmetry.h5 (shared), so the same features
        for preset in ("default", "seed"):
            with h5py.File(set_dir / preset / "model.h5", "r") as model:
                np.testing.assert_array_equal(model["feature_set/Te/selected"][:], selected)


def test_figures_written(study):
    root, _ = study
    for name in ("STUDY_ERROR.png", "STUDY_TIME.png"):
        data = (root / "figs" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(data[16:20], "big") >= 500


def test_rerun_refuses_and_reuse_keeps_finished_runs(study, capsys):
    root, _ = study
    model = root / "study" / "T673_973" / "seed" / "model.h5"
    mtime = model.stat().st_mtime_ns
    status, _ = _run(ARGS, root)
    assert status == 2
    err = capsys.readouterr().err
    assert "study/T673_973/prepared.h5" in err and "--reuse" in err and "more" in err
    assert model.stat().st_mtime_ns == mtime
    before = read_csv(root / "figs" / "STUDY.csv")
    status, stdout = _run(ARGS + ["--reuse"], root)
    assert status == 0
    assert "reusing" in stdout
    assert model.stat().st_mtime_ns == mtime
    assert read_csv(root / "figs" / "STUDY.csv") == before
    # a finished run trained with other options is not reused: it is recomputed
    args = [a if a != "200" else "150" for a in ARGS]  # --max-evals 150
    status, stdout = _run(args + ["--reuse"], root)
    assert status == 0
    assert "reusing" not in stdout
    assert model.stat().st_mtime_ns != mtime
    record = json.loads((model.parent / "run.json").read_text())
    assert record["train_options"]["max_evals"] == 150


def test_parse_sets():
    assert parse_sets("673,973; 673K,723,973") == [(673.0, 973.0), (673.0, 723.0, 973.0)]
    assert parse_sets(["973,673"]) == [(673.0, 973.0)]
    assert parse_sets([[973, 673], "723,673"]) == [(673.0, 973.0), (673.0, 723.0)]
    from hdnnp.errors import HdnnpError

    with pytest.raises(HdnnpError, match="twice"):
        parse_sets("673,673")
    with pytest.raises(HdnnpError, match="twice"):
        parse_sets("673,973;973,673")
    with pytest.raises(HdnnpError):
        parse_sets(";")


def test_seeds_repeat_each_run(study):
    """--seeds 0,1: one run per training seed, each with its own validation split."""
    root, _ = study
    args = ["study", "--data-dir", "inputs", "--system", "Te", "--sets", "673,973",
            "--predict", "773K", "--presets", "default", "--seeds", "0,1", "--epochs", "3",
            "--work-dir", "seeds", "--out-dir", "seeds/figs", "-q"]
    status, stdout = _run(args, root)
    assert status == 0, stdout
    rows = read_csv(root / "seeds" / "figs" / "STUDY.csv")
    assert [(r["preset"], r["seed"]) for r in rows] == [("default", 0), ("default", 1)]
    splits = []
    for row in rows:
        run_dir = root / "seeds" / "T673_973" / f"default-seed{row['seed']}"
        truth, _ = _truth(run_dir / "predictions.h5")
        assert row["energy_per_atom_rmse_mev"] == pytest.approx(truth["energy_per_atom_rmse_mev"],
                                                                rel=1e-5)
        with h5py.File(run_dir / "predictions.h5", "r") as h5:
            splits.append(h5["train/is_validation"][:])
    assert not np.array_equal(splits[0], splits[1])
    status, _ = _run(args[:-1] + ["--seed", "3", "--overwrite", "-q"], root)
    assert status == 2  # --seed and --seeds together
