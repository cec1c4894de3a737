"""hdnnp report: printed table = JSON = hand-computed metrics, figures, clear errors."""

import json
import math
import re

import h5py
import matplotlib.image
import numpy as np
import pytest

from hdnnp import metrics, plots
from hdnnp.cli import main
from hdnnp.h5io import write_root_attrs
from hdnnp.stages.report import FIGURE_NAMES, TABLE_COLUMNS, format_table, run_report

N_TRAIN, N_PREDICT, NATOMS = 12, 8, 4


def write_inputs(tmp_path, forces=True):
    """predictions.h5 (train + predict), model.h5 and symmetry.h5 in the documented layout."""
    rng = np.random.default_rng(0)
    pred = tmp_path / "predictions.h5"
    with h5py.File(pred, "w") as h5:
        write_root_attrs(h5, "predict")
        for name, n, temps in (("train", N_TRAIN, [300.0, 600.0]), ("predict", N_PREDICT, [450.0])):
            g = h5.create_group(name)
            e_ref = NATOMS * (-3.0 + 0.01 * rng.normal(size=n))
            g["energy_reference"] = e_ref
            g["energy_predicted"] = e_ref + NATOMS * 0.002 * rng.normal(size=n)
            g["n_atoms"] = np.full(n, NATOMS)
            g["temperature"] = np.array([temps[i % len(temps)] for i in range(n)])
            g["step"] = np.arange(n) * 5
            g["extrapolation"] = np.zeros(n, np.int64) if name == "train" else np.arange(n) % 3
            g["atom_offset"] = np.arange(n + 1) * NATOMS
            if name == "train":
                g["is_validation"] = np.arange(n) % 4 == 3
            if forces:
                f = rng.normal(size=(n * NATOMS, 3))
                g["forces_reference"] = f
                g["forces_predicted"] = f + 0.05 * rng.normal(size=f.shape)
    model = tmp_path / "model.h5"
    with h5py.File(model, "w") as h5:
        write_root_attrs(h5, "train")
        log = h5.create_group("training/log")
        epoch = np.arange(1, 21)
        log["epoch"] = epoch
        log["train_energy_rmse"] = 20.0 / epoch
        log["val_energy_rmse"] = 22.0 / epoch + 0.5
        log["train_force_rmse"] = 300.0 / np.sqrt(epoch)
        log["val_force_rmse"] = 320.0 / np.sqrt(epoch)
        log["wall_time"] = 0.1 * epoch
        h5["training/validation_frames"] = np.flatnonzero(np.arange(N_TRAIN) % 4 == 3)
        h5["training"].attrs["best_epoch"] = 18
    sym = tmp_path / "symmetry.h5"
    with h5py.File(sym, "w") as h5:
        write_root_attrs(h5, "symmetry")
        g = h5.create_group("descriptor_check")
        # as hdnnp.descriptors.check writes it: labels, the last one "all" candidates
        force_difference = rng.gamma(2.0, 0.5, 100)
        g["n_features"] = [1, 15, 30, 40]
        g["labels"] = np.array([b"1", b"15", b"30", b"all"])
        g["force_difference"] = force_difference
        g["element"] = np.full(100, 52, np.int32)
        for n, label in zip((1, 15, 30, 40), ("1", "15", "30", "all")):
            g[f"distance_{label}"] = force_difference * n / 40 + rng.gamma(2.0, 0.2, 100)
        g["correlation"] = [metrics.pearson(g[f"distance_{label}"][()], force_difference)
                            for label in ("1", "15", "30", "all")]
    return model, pred, sym


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(["report", *map(str, args)])
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_table_matches_json_and_hand_values(tmp_path, capsys):
    model, pred, sym = write_inputs(tmp_path)
    out_dir, json_path = tmp_path / "figs", tmp_path / "metrics.json"
    code, out, err = run_cli(capsys, "--model", model, "--predictions", pred, "--symmetry", sym,
                             "--out-dir", out_dir, "--json", json_path)
    assert code == 0, err
    summary = json.loads(json_path.read_text())

    # independent recomputation of the predict set's headline numbers
    with h5py.File(pred) as h5:
        e_ref, e_pred = h5["predict/energy_reference"][()], h5["predict/energy_predicted"][()]
        df = h5["predict/forces_predicted"][()] - h5["predict/forces_reference"][()]
    m = summary["sets"]["predict"]["all"]
    assert m["energy_per_atom_rmse_mev"] == pytest.approx(
        1000 * math.sqrt(np.mean(((e_pred - e_ref) / NATOMS) ** 2)))
    assert m["force_rmse_mev_per_angstrom"] == pytest.approx(1000 * math.sqrt(np.mean(df ** 2)))
    assert m["extrapolating_frames"] == 5 and m["extrapolation_count"] == 7  # 0,1,2,0,1,2,0,1

    # every printed row equals the JSON to the printed 4 significant digits
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0] in ("train", "predict") and len(cells) == 3 + len(TABLE_COLUMNS):
            rows[tuple(cells[:3])] = cells[3:]
    assert ("train", "validation", "all") in rows and ("train", "all", "600") in rows
    assert ("predict", "all", "all") in rows
    for (set_name, subset, temp), cells in rows.items():
        per_set = summary["sets"][set_name]
        expected = per_set[subset] if temp == "all" else per_set["per_temperature"][temp]
        for cell, (_, _, key) in zip(cells, TABLE_COLUMNS):
            assert float(cell) == pytest.approx(expected[key], rel=5e-4), (set_name, subset, key)
    assert "Warning: 5 of 8 frames of set 'predict' extrapolate" in err
    assert summary["training"]["best_val_energy_rmse_mev_per_atom"] == pytest.approx(22 / 20 + 0.5)

    for name in (n for key, n in FIGURE_NAMES.items() if key != "committee_spread"):  # not a committee
        image = matplotlib.image.imread(out_dir / name)  # decodes: a valid PNG
        height, width = image.shape[:2]
        assert width >= 600 and height >= 400, name
        assert image[..., :3].std() > 0.05, name  # not a blank canvas
    assert summary["figures"]["final_prediction"] == str(out_dir / "FINAL_PREDICTION.png")


def test_plotted_lines_carry_the_data(tmp_path):
    model, pred, _ = write_inputs(tmp_path)
    sets = metrics.load_predictions(pred)
    summary = metrics.summarize_sets(sets)
    fig = plots.final_prediction_figure(sets["predict"], summary["sets"]["predict"])
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    p = sets["predict"]
    np.testing.assert_allclose(lines["reference"].get_ydata(), p.energy_reference / NATOMS)
    np.testing.assert_allclose(lines["prediction"].get_ydata(), p.energy_predicted / NATOMS)
    assert lines["reference"].get_color() == plots.REFERENCE_COLOR
    assert lines["prediction"].get_color() == plots.PREDICTION_COLOR
    np.testing.assert_array_equal(lines["reference"].get_xdata(), p.step)  # increasing MD steps
    rmse = summary["sets"]["predict"]["all"]["energy_per_atom_rmse_mev"]
    assert f"RMSE {rmse:.3g} meV/atom" in fig.axes[0].get_title()
    for ax in fig.axes:
        assert ax.get_xlabel() or ax is fig.axes[0]
        assert "(" in ax.get_ylabel() and ax.get_legend() is not None

    log = metrics.read_training_log(model)
    fig = plots.learning_process_figure(sets["train"], log, summary["sets"]["train"])
    curve = {line.get_label(): line for line in fig.axes[1].lines}
    np.testing.assert_allclose(curve["validation"].get_ydata(), log["val_energy_rmse"])
    assert fig.axes[1].get_yscale() == "log"
    kept = [line for line in fig.axes[1].lines if line.get_label().startswith("weights kept")]
    assert len(kept) == 1 and kept[0].get_xdata()[0] == 18
    assert len(fig.axes) == 3  # training sequence, energy curve, force curve
    top = {line.get_label(): line for line in fig.axes[0].lines}
    t = sets["train"]
    order = sorted(range(len(t.temperature)), key=lambda k: (t.temperature[k], t.step[k]))  # by T, then step
    np.testing.assert_allclose(top["reference"].get_ydata(), t.energy_reference[order] / t.n_atoms[order])
    np.testing.assert_allclose(top["prediction, validation frame"].get_xdata(),
                               np.flatnonzero(t.is_validation[order]))
    np.testing.assert_allclose(top["prediction, validation frame"].get_ydata(),
                               (t.energy_predicted / t.n_atoms)[order][t.is_validation[order]])


def test_without_forces_and_symmetry(tmp_path):
    model, pred, _ = write_inputs(tmp_path, forces=False)
    summary = run_report(model, pred, None, tmp_path / "out")
    assert set(summary["figures"]) == set(FIGURE_NAMES) - {"descriptor_check", "committee_spread"}
    assert summary["sets"]["train"]["all"]["force_rmse_mev_per_angstrom"] is None
    table = format_table(summary)
    assert re.search(r"^predict\s+all\s+all\s+8\s", table, re.M)


@pytest.mark.parametrize("missing", ["model", "predictions", "symmetry"])
def test_missing_inputs_give_one_line_errors(tmp_path, capsys, missing):
    model, pred, sym = write_inputs(tmp_path, forces=False)
    paths = {"model": model, "predictions": pred, "symmetry": sym}
    paths[missing] = tmp_path / f"no_{missing}.h5"
    code, out, err = run_cli(capsys, "--model", paths["model"], "--predictions",
                             paths["predictions"], "--symmetry", paths["symmetry"],
                             "--out-dir", tmp_path / "out")
    assert code == 2
    stage = {"model": "train", "predictions": "predict", "symmetry": "symmetry"}[missing]
    assert err.strip() == f"Error: {paths[missing]}: no such file; make it with hdnnp {stage} (or hdnnp run)"
    assert not (tmp_path / "out").exists()  # checked before any work


def test_wrong_kind_of_file_is_named(tmp_path, capsys):
    model, pred, _ = write_inputs(tmp_path, forces=False)
    code, _, err = run_cli(capsys, "--model", pred, "--predictions", pred, "--out-dir", tmp_path)
    assert code == 2
    assert f"{pred}: written by stage 'predict', expected output of 'train'" in err


def test_positional_files_are_told_apart_by_stage(tmp_path, capsys):
    model, pred, sym = write_inputs(tmp_path, forces=False)
    code, out, err = run_cli(capsys, sym, pred, model, "--out-dir", tmp_path / "o",
                             "--json", tmp_path / "m.json")
    assert code == 0, err
    summary = json.loads((tmp_path / "m.json").read_text())
    assert summary["model"] == str(model.resolve()) and "descriptor_check" in summary
    code, _, err = run_cli(capsys, pred, "--predictions", pred)
    assert code == 2 and "predictions file given twice" in err


def test_descriptor_check_figure_and_unavailable_check(tmp_path):
    _, pred, sym = write_inputs(tmp_path, forces=False)
    check = metrics.read_descriptor_check(sym)
    assert check["labels"] == ["1", "15", "30", "all"]
    fig = plots.descriptor_check_figure(check)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[3] == f"all 40 informative candidates\ncorrelation r = {check['correlation'][3]:.3g}"
    assert titles[1].startswith("first 15 selected features\n")
    x, y = fig.axes[1].collections[0].get_offsets().T
    np.testing.assert_allclose(x, check["distance"]["15"])
    np.testing.assert_allclose(y, check["force_difference"])

    with h5py.File(sym, "w") as h5:  # what hdnnp symmetry writes without training forces
        write_root_attrs(h5, "symmetry")
        h5.create_group("descriptor_check").attrs["unavailable"] = "no training forces"
    assert metrics.read_descriptor_check(sym) is None
    summary = run_report(None, pred, sym, tmp_path / "out")
    assert "unavailable" in summary["descriptor_check"]
    assert "descriptor_check" not in summary["figures"]


def test_every_panel_has_units_legend_and_error_in_title(tmp_path):
    model, pred, sym = write_inputs(tmp_path)
    sets = metrics.load_predictions(pred)
    summary = metrics.summarize_sets(sets)
    figures = {
        "learning": plots.learning_process_figure(sets["train"], metrics.read_training_log(model),
                                                  summary["sets"]["train"]),
        "final": plots.final_prediction_figure(sets["predict"], summary["sets"]["predict"]),
        "parity": plots.parity_figure(sets, summary),
        "histogram": plots.error_histogram_figure(sets, summary),
        "check": plots.descriptor_check_figure(metrics.read_descriptor_check(sym)),
    }
    predict_rmse = f"{summary['sets']['predict']['all']['energy_per_atom_rmse_mev']:.3g}"
    for name, fig in figures.items():
        axes = [ax for ax in fig.axes if ax.axison]
        for ax in axes:
            assert re.search(r"\(.+\)", ax.get_ylabel()), (name, ax.get_ylabel())
            assert ax.get_xlabel() or ax.get_shared_x_axes().get_siblings(ax) != [ax], name
            assert ax.get_legend() is not None, name
        titles = " ".join(ax.get_title() for ax in axes)
        assert re.search(r"(RMSE|correlation r =)[^0-9]*\d", titles), (name, titles)
        if name in ("final", "parity", "histogram"):
            assert predict_rmse in titles, (name, titles)


def test_report_of_the_real_stages_agrees_with_the_training_log(tmp_path, capsys):
    """prepare -> symmetry -> train -> predict on a tiny DL_POLY data set, then report: the
    report's training/validation energy RMSE (computed from predictions.h5) must equal the
    RMSEs the training loop logged for the kept epoch (an independent implementation)."""
    from hdnnp.frames import Frame
    from hdnnp.io.dlpoly_write import write_energies, write_history

    rng = np.random.default_rng(5)
    edge = 7.0
    lattice = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], float)
    for temperature in (500, 600, 700):
        frames = []
        for step in range(8):
            positions = lattice * edge / 2 + rng.normal(scale=0.1, size=(8, 3))
            d = positions[:, None] - positions[None]
            d -= edge * np.round(d / edge)
            r = np.linalg.norm(d, axis=-1) + np.eye(8)
            energy = -24.0 + float(np.sum(np.triu(np.exp(-r), 1)))
            frames.append(Frame(positions=positions, species=np.full(8, 52), cell=np.eye(3) * edge,
                                pbc=np.ones(3, bool), energy=energy, step=10 * step,
                                forces=rng.normal(scale=0.1, size=(8, 3)),
                                temperature=temperature))
        write_history(tmp_path / f"HISTORY.Te.{temperature}K", frames)
        write_energies(tmp_path / f"E.Te.{temperature}K", frames)
    w = lambda name: str(tmp_path / name)  # noqa: E731
    for argv in (["prepare", "--data-dir", str(tmp_path), "--system", "Te", "--train",
                  "500K,700K", "--predict", "600K", "-o", w("prepared.h5"), "-q"],
                 ["symmetry", w("prepared.h5"), "-o", w("symmetry.h5"), "--n-features", "10",
                  "--device", "cpu", "-q"],
                 ["train", w("symmetry.h5"), "-o", w("model.h5"), "--preset", "fast",
                  "--epochs", "15", "--val-fraction", "0.25", "-q"],
                 ["predict", w("symmetry.h5"), "--model", w("model.h5"), "-o",
                  w("predictions.h5"), "--forces", "-q"]):
        main(argv)
    code, out, err = run_cli(capsys, w("model.h5"), w("predictions.h5"), w("symmetry.h5"),
                             "--out-dir", tmp_path / "figs", "--json", tmp_path / "m.json")
    assert code == 0, err
    summary = json.loads((tmp_path / "m.json").read_text())
    training, train_set = summary["training"], summary["sets"]["train"]
    assert train_set["validation"]["n_frames"] == 4 and train_set["all"]["n_frames"] == 16
    assert train_set["validation"]["energy_per_atom_rmse_mev"] == pytest.approx(
        training["kept_val_energy_rmse_mev_per_atom"], rel=1e-6)
    assert train_set["training"]["energy_per_atom_rmse_mev"] == pytest.approx(
        training["kept_train_energy_rmse_mev_per_atom"], rel=1e-6)
    assert train_set["validation"]["force_rmse_mev_per_angstrom"] == pytest.approx(
        training["kept_val_force_rmse_mev_per_angstrom"], rel=1e-6)
    assert summary["descriptor_check"]["labels"][-1] == "all"
    assert set(summary["figures"]) == set(FIGURE_NAMES) - {"committee_spread"}  # a single model


def test_parity_and_histogram_carry_the_data(tmp_path):
    """Not only a valid PNG: the parity points are (reference, prediction) of every frame of
    each subset, and each histogram integrates to one over exactly that subset's errors."""
    model, pred, _ = write_inputs(tmp_path)
    sets = metrics.load_predictions(pred)
    summary = metrics.summarize_sets(sets)
    fig = plots.parity_figure(sets, summary)
    p = sets["predict"]
    points = {c.get_label().split(" (")[0]: c.get_offsets() for c in fig.axes[0].collections}
    np.testing.assert_allclose(points["predict"], np.stack([p.energy_reference, p.energy_predicted], 1) / NATOMS)
    t = sets["train"]
    val = t.is_validation
    np.testing.assert_allclose(points["validation"][:, 1], (t.energy_predicted / t.n_atoms)[val])
    forces = {c.get_label().split(":")[0]: c.get_offsets() for c in fig.axes[1].collections}
    np.testing.assert_allclose(forces["predict"], np.stack([p.force_sample_reference, p.force_sample_predicted], 1))

    fig = plots.error_histogram_figure(sets, summary)
    assert len(fig.axes[0].patches) == 3  # training, validation, predict
    for patch in fig.axes[0].patches:
        label = patch.get_label().split(":")[0]
        xy = patch.get_xy()  # the step outline: (edges, densities)
        heights = xy[1:-1:2, 1]
        widths = np.diff(np.unique(xy[:, 0]))
        assert np.sum(heights[:len(widths)] * widths) == pytest.approx(1.0, rel=1e-9), label
    err = sets["predict"].energy_error_per_atom_mev
    assert f"predict {summary['sets']['predict']['all']['energy_per_atom_rmse_mev']:.3g}" in fig.axes[0].get_title()
    assert np.sqrt(np.mean(err ** 2)) == pytest.approx(summary["sets"]["predict"]["all"]["energy_per_atom_rmse_mev"])
