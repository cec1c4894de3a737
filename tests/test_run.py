"""``hdnnp run``: the whole pipeline on a tiny fixture, checked against its own files.

The printed and JSON errors are recomputed here from predictions.h5 with NumPy; one
prediction is recomputed from the raw positions with ``Potential.load(model.h5).predict``
(descriptors computed afresh from the model's own selection and scaling), so the chaining of
the stages is checked against an independent path, not only that files appear.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from _pipeline_fixtures import write_lj_trajectories
from hdnnp.cli import main
from hdnnp.stages.report import format_value

FAST = ["--epochs", "5", "-q"]


def _run(argv):
    """main(argv); returns the exit status (0 when it returned normally)."""
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code
    return 0


def _png_size(path):
    """(width, height) from a PNG header; fails if the file is not a PNG."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """One ``hdnnp run`` on 3 training temperatures + 773 K; its directory and stdout."""
    root = tmp_path_factory.mktemp("run")
    write_lj_trajectories(root / "inputs", [673, 773, 873, 973], n_frames=5)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        import io
        from contextlib import redirect_stdout

        out = io.StringIO()
        with redirect_stdout(out):
            status = _run(["run", "--data-dir", "inputs", "--system", "Te", "--train",
                           "673K,873K,973K", "--predict", "773K", "--out-dir", "figs", *FAST])
    finally:
        os.chdir(cwd)
    assert status == 0, out.getvalue()
    return root, out.getvalue()


def test_run_writes_every_output(pipeline):
    root, _ = pipeline
    for name in ("prepared.h5", "symmetry.h5", "model.h5", "predictions.h5", "metrics.json"):
        assert (root / name).is_file(), name
    for name in ("LEARNING_PROCESS.png", "FINAL_PREDICTION.png"):
        width, height = _png_size(root / "figs" / name)
        assert width >= 400 and height >= 300
    with h5py.File(root / "predictions.h5", "r") as h5:
        assert h5.attrs["stage"] == "predict"
        assert len(h5["train/energy_reference"]) == 15
        assert len(h5["predict/energy_reference"]) == 5
        assert set(np.unique(h5["train/temperature"][:])) == {673.0, 873.0, 973.0}
        assert set(np.unique(h5["predict/temperature"][:])) == {773.0}
        assert "forces_predicted" in h5["predict"]  # forces exist, so predicted by default


def test_run_ends_with_an_md_check(pipeline):
    """The MD check at 773 K: its trajectory, figure and printed line agree with the md file."""
    root, out = pipeline
    width, _ = _png_size(root / "figs" / "MD_CHECK.png")
    assert width >= 400
    with h5py.File(root / "md_check_773K.h5", "r") as h5:
        assert h5.attrs["stage"] == "md"
        settings = json.loads(h5.attrs["settings"])
        assert settings["ensemble"] == "nvt" and settings["temperature_K"] == 773.0
        time_ps = h5["trajectory/frames/time"][:]
        excess = h5["trajectory/guards/extrapolation_max_excess"][:]
        status = h5.attrs["status"]
    line = next(text for text in out.splitlines() if text.strip().startswith("773 K:"))
    outside = np.flatnonzero(excess > settings["limits"]["max_extrapolation_excess"])
    if len(outside):
        assert f"left its training domain at {time_ps[outside[0]]:.2f} ps" in line
    else:
        assert "stayed" in line
    assert ("ran to the end" in line) == (status == "complete")
    assert "∫|Δg|dr" in line


def _recompute(path, set_name="predict"):
    with h5py.File(path, "r") as h5:
        g = h5[set_name]
        e_err = g["energy_predicted"][:] - g["energy_reference"][:]
        n = g["n_atoms"][:]
        f_err = g["forces_predicted"][:] - g["forces_reference"][:]
        extrapolation = g["extrapolation"][:]
    return {
        "n_frames": len(e_err),
        "energy_mae_ev": np.mean(np.abs(e_err)),
        "energy_rmse_ev": np.sqrt(np.mean(e_err ** 2)),
        "energy_per_atom_mae_mev": 1000 * np.mean(np.abs(e_err / n)),
        "energy_per_atom_rmse_mev": 1000 * np.sqrt(np.mean((e_err / n) ** 2)),
        "force_rmse_mev_per_angstrom": 1000 * np.sqrt(np.mean(f_err ** 2)),
        "extrapolating_frames": int(np.count_nonzero(extrapolation)),
        "extrapolation_count": int(extrapolation.sum()),
    }


def test_printed_and_json_errors_match_predictions_file(pipeline):
    root, stdout = pipeline
    truth = _recompute(root / "predictions.h5")
    metrics = json.loads((root / "metrics.json").read_text())["sets"]["predict"]["all"]
    for key, value in truth.items():
        assert metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    row = next(line for line in stdout.splitlines() if line.startswith("predict "))
    cells = row.split()
    # set, subset, T, frames, E MAE, E RMSE, E/N MAE, E/N RMSE, F MAE, F RMSE, extrap. x2
    assert cells[3] == str(truth["n_frames"])
    assert cells[4] == format_value(float(truth["energy_mae_ev"]))
    assert cells[5] == format_value(float(truth["energy_rmse_ev"]))
    assert cells[6] == format_value(float(truth["energy_per_atom_mae_mev"]))
    assert cells[7] == format_value(float(truth["energy_per_atom_rmse_mev"]))
    assert cells[9] == format_value(float(truth["force_rmse_mev_per_angstrom"]))
    assert cells[10] == str(truth["extrapolating_frames"])
    assert cells[11] == str(truth["extrapolation_count"])
    for stage in ("[prepare]", "[symmetry]", "[train]", "[predict]", "[report]"):
        assert stage in stdout
    assert "Wall time on cpu" in stdout


def test_predictions_agree_with_model_applied_to_raw_positions(pipeline):
    """predictions.h5 (from symmetry.h5's stored features) = model.h5 on the raw frames."""
    from hdnnp.model import Potential

    root, _ = pipeline
    potential = Potential.load(root / "model.h5")
    with h5py.File(root / "prepared.h5", "r") as prep, h5py.File(root / "predictions.h5", "r") as pred:
        g = prep["predict"]
        off = g["frames/atom_offset"][:]
        for f in (0, len(off) - 2):
            a, b = off[f], off[f + 1]
            energy, forces = potential.predict(g["atoms/positions"][a:b], g["frames/cell"][f],
                                               g["frames/pbc"][f], g["atoms/species"][a:b])
            assert energy == pytest.approx(pred["predict/energy_predicted"][f], rel=1e-10)
            np.testing.assert_allclose(forces, pred["predict/forces_predicted"][a:b],
                                       rtol=1e-8, atol=1e-10)
            assert pred["predict/energy_reference"][f] == g["frames/energy"][f]


def test_rerun_refuses_then_overwrite_replaces(pipeline, capsys):
    root, _ = pipeline
    cwd = os.getcwd()
    os.chdir(root)
    try:
        before = {p.name: p.stat().st_mtime_ns for p in root.glob("*.h5")}
        argv = ["run", "--data-dir", "inputs", "--system", "Te", "--train", "673K,873K,973K",
                "--predict", "773K", "--out-dir", "figs", *FAST]
        assert _run(argv) == 2
        err = capsys.readouterr().err
        assert "prepared.h5" in err and "predictions.h5" in err and "--overwrite" in err
        assert before == {p.name: p.stat().st_mtime_ns for p in root.glob("*.h5")}
        assert _run(argv + ["--overwrite", "--no-forces", "--n-features", "12"]) == 0
    finally:
        os.chdir(cwd)
    with h5py.File(root / "predictions.h5", "r") as h5:
        assert "forces_predicted" not in h5["predict"]
    with h5py.File(root / "symmetry.h5", "r") as h5:
        assert h5["train/features/Te/values"].shape[1] == 12


def test_no_example_data_gives_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _run(["run"]) == 2
    err = capsys.readouterr().err
    assert "data/example" in err and "--data-dir" in err and "root" in err
    assert not list(tmp_path.iterdir())


def test_config_tables_and_command_line_precedence(tmp_path):
    from hdnnp.errors import HdnnpError
    from hdnnp.stages.run import load_stage_config, resolve_stage_options

    config_path = tmp_path / "conf" / "study.toml"
    config_path.parent.mkdir()
    config_path.write_text(
        '[prepare]\ndata_dir = "inputs"\nsystem = "Te"\n'
        '[symmetry]\nn-features = 10\nselection = "fps"\n'
        '[train]\npreset = "fast"\nepochs = 3\nseed = 4\n'
        '[predict]\nforces = false\n[report]\nout_dir = "figures"\n[run]\nwork_dir = "w"\n')
    config = load_stage_config(config_path)
    opts = resolve_stage_options(config, epochs=7)
    assert opts["train_options"].epochs == 7  # command line beats [train]
    assert opts["train_options"].seed == 4
    assert opts["train_options"].hidden == (10, 10)  # the fast preset
    assert opts["symmetry_options"] == {"n_features": 10, "selection": "fps"}
    assert opts["device"] == "auto"
    assert opts["forces"] is False
    assert opts["out_dir"] == str(config_path.parent.resolve() / "figures")
    assert opts["work_dir"] == str(config_path.parent.resolve() / "w")
    opts = resolve_stage_options(config, preset="seed", n_features=20, out_dir="x")
    assert opts["train_options"].optimizer == "derivative-free"
    assert opts["train_options"].epochs == 3
    assert opts["symmetry_options"]["n_features"] == 20 and opts["out_dir"] == "x"
    config_path.write_text("[train]\nepoch = 3\n")
    with pytest.raises(HdnnpError, match="unknown key 'epoch' in \\[train\\]"):
        load_stage_config(config_path)


def test_example_run_config_is_valid():
    """scripts/example_run.toml and example_study.toml parse and name the bundled example."""
    from pathlib import Path

    from hdnnp.inputs import load_config
    from hdnnp.stages.run import load_stage_config, resolve_stage_options

    scripts = Path(__file__).resolve().parents[1] / "scripts"
    for name in ("example_run.toml", "example_study.toml"):
        config = load_stage_config(scripts / name)
        resolve_stage_options(config)
        prepare = load_config(scripts / name)
        assert Path(prepare["data_dir"]).resolve() == (scripts.parent / "data" / "example").resolve()
        assert prepare["system"] == "Te"


def test_config_errors_name_the_problem(tmp_path):
    from hdnnp.errors import HdnnpError
    from hdnnp.stages.run import load_stage_config

    path = tmp_path / "s.toml"
    for text, message in (("[trian]\nepochs = 3\n", "unknown table or key 'trian'"),
                          ("[train]\nepochs = \"many\"\n", "epochs = 'many': expected an integer"),
                          ("[predict]\nforces = 1\n", "expected true/false"),
                          ("[symmetry]\ncutoff = true\n", "expected a number"),
                          ("[train\n", "not valid TOML")):
        path.write_text(text)
        with pytest.raises(HdnnpError, match=message.replace("[", "\\[")):
            load_stage_config(path)
    path.write_text("[symmetry]\ncutoff = 5\n[train]\nhidden = [8, 8]\nforce_weight = 1\n")
    config = load_stage_config(path)
    assert config["symmetry"]["cutoff"] == 5.0 and isinstance(config["symmetry"]["cutoff"], float)
    assert config["train"] == {"hidden": [8, 8], "force_weight": 1.0}


def test_run_checks_against_direct_reference_md(tmp_path):
    """--checks DIR: the P(V) isotherm and the NPT run of a checks directory (made here with the
    inputs' own Lennard-Jones reference through hdnnp md --reference) are reported in short form,
    with their figure and trajectories."""
    from hdnnp.md.reference_checks import run_summary

    write_lj_trajectories(tmp_path / "inputs", [673, 773, 873], n_frames=5)
    checks = tmp_path / "checks"
    checks.mkdir()
    lj = ["--reference", "ase:ase.calculators.lj.LennardJones",
          "--reference-args", json.dumps({"sigma": 2.9, "epsilon": 0.1, "rc": 6.0, "smooth": True})]
    start = ["--start", str(tmp_path / "inputs" / "HISTORY.Te.773K"), "--temperature", "773", "-q"]
    for tag, extra in (("Te-rho5.8.773K", ["--density", "5.8", "--steps", "300", "--write-every", "50"]),
                       ("Te-npt0.773K", ["--ensemble", "npt", "--steps", "100", "--write-every", "20"])):
        md, history = tmp_path / f"md.{tag}.h5", checks / f"HISTORY.{tag}.gz"
        assert _run(["md", *lj, *start, *extra, "-o", str(md), "--history", str(history)]) == 0
        run_summary(md, history)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        import io
        from contextlib import redirect_stdout

        out = io.StringIO()
        with redirect_stdout(out):
            status = _run(["run", "--data-dir", "inputs", "--system", "Te", "--train", "673K,873K", "--predict",
                           "773K", "--out-dir", "figs", "--md-check", "0.1", "--checks", "checks", *FAST])
    finally:
        os.chdir(cwd)
    text = out.getvalue()
    assert status == 0, text
    assert "Reference checks (direct reference MD in checks, never trained on):" in text
    assert "P(V) at 773 K" in text and "RMSE" in text and "NPT 0 GPa 773 K, 0.2 ps" in text
    assert (tmp_path / "check_Te-npt0_773K.h5").is_file()
    assert _png_size(tmp_path / "figs" / "REFERENCE_CHECKS.png")[0] >= 400
