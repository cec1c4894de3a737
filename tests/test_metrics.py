"""hdnnp.metrics against hand-computed errors of tiny synthetic predictions.h5 files."""

import math

import h5py
import numpy as np
import pytest

from hdnnp import metrics
from hdnnp.errors import HdnnpError, InputFileError
from hdnnp.h5io import write_root_attrs


def write_set(group, energy_reference, energy_predicted, n_atoms, temperature, extrapolation,
              is_validation=None, forces_reference=None, forces_predicted=None):
    """One set of predictions.h5 in the layout of docs/DESIGN.md."""
    n_atoms = np.asarray(n_atoms, np.int64)
    group["energy_reference"] = np.asarray(energy_reference, float)
    group["energy_predicted"] = np.asarray(energy_predicted, float)
    group["n_atoms"] = n_atoms
    group["temperature"] = np.asarray(temperature, float)
    group["step"] = np.arange(len(n_atoms), dtype=np.int64) * 10
    group["extrapolation"] = np.asarray(extrapolation, np.int64)
    group["atom_offset"] = np.concatenate([[0], np.cumsum(n_atoms)])
    if is_validation is not None:
        group["is_validation"] = np.asarray(is_validation, bool)
    if forces_reference is not None:
        group["forces_reference"] = forces_reference
        group["forces_predicted"] = forces_predicted


# The 3-frame case computed by hand (comments give the arithmetic):
#   n_atoms = 2, 4, 5; dE = E_pred - E_ref = +0.2, -0.4, +0.1 eV; T = 300, 600, 300 K
#   dE/n = +0.1, -0.1, +0.02 eV/atom = +100, -100, +20 meV/atom
#   force errors: +0.3 eV/Å on atom 0 (x), -0.4 eV/Å on atom 2 (first atom of frame 1, z), else 0
N_ATOMS = [2, 4, 5]
E_REF = [-10.0, -20.0, -25.0]
E_PRED = [-9.8, -20.4, -24.9]
TEMPS = [300.0, 600.0, 300.0]
EXTRAP = [0, 3, 1]
VALIDATION = [False, True, False]


def hand_forces():
    rng = np.random.default_rng(1)
    f_ref = rng.normal(size=(11, 3))
    f_pred = f_ref.copy()
    f_pred[0, 0] += 0.3
    f_pred[2, 2] -= 0.4
    return f_ref, f_pred


@pytest.fixture
def predictions_path(tmp_path):
    path = tmp_path / "predictions.h5"
    f_ref, f_pred = hand_forces()
    with h5py.File(path, "w") as h5:
        write_root_attrs(h5, "predict")
        write_set(h5.create_group("train"), E_REF, E_PRED, N_ATOMS, TEMPS, EXTRAP, VALIDATION,
                  f_ref, f_pred)
    return path


def test_three_frames_by_hand(predictions_path):
    summary = metrics.summarize(predictions_path)
    m = summary["sets"]["train"]["all"]
    assert m["n_frames"] == 3 and m["n_atoms"] == 11
    assert m["energy_mae_ev"] == pytest.approx(0.7 / 3)                 # (0.2+0.4+0.1)/3
    assert m["energy_rmse_ev"] == pytest.approx(math.sqrt(0.07))        # (0.04+0.16+0.01)/3
    assert m["energy_per_atom_mae_mev"] == pytest.approx(220 / 3)       # (100+100+20)/3
    assert m["energy_per_atom_rmse_mev"] == pytest.approx(math.sqrt(6800))  # (1e4+1e4+400)/3
    assert m["n_force_components"] == 33
    assert m["force_rmse_mev_per_angstrom"] == pytest.approx(1000 * math.sqrt(0.25 / 33))
    assert m["force_mae_mev_per_angstrom"] == pytest.approx(1000 * 0.7 / 33)
    assert m["extrapolating_frames"] == 2 and m["extrapolation_count"] == 4

    t300 = summary["sets"]["train"]["per_temperature"]["300"]
    assert t300["n_frames"] == 2
    assert t300["energy_mae_ev"] == pytest.approx(0.15)
    assert t300["energy_rmse_ev"] == pytest.approx(math.sqrt(0.025))
    assert t300["energy_per_atom_rmse_mev"] == pytest.approx(math.sqrt(5200))
    assert t300["force_rmse_mev_per_angstrom"] == pytest.approx(1000 * math.sqrt(0.09 / 21))

    val = summary["sets"]["train"]["validation"]
    assert val["n_frames"] == 1
    assert val["energy_mae_ev"] == pytest.approx(0.4)
    assert val["energy_per_atom_rmse_mev"] == pytest.approx(100.0)
    assert val["force_rmse_mev_per_angstrom"] == pytest.approx(1000 * math.sqrt(0.16 / 12))
    fit = summary["sets"]["train"]["training"]
    assert fit["n_frames"] == 2 and fit["energy_per_atom_mae_mev"] == pytest.approx(60.0)


def test_array_functions_agree_with_file_path():
    e = metrics.energy_errors(E_REF, E_PRED, N_ATOMS)
    assert e["energy_per_atom_mae_mev"] == pytest.approx(220 / 3)
    f_ref, f_pred = hand_forces()
    f = metrics.force_errors(f_ref, f_pred)
    assert f["force_rmse_mev_per_angstrom"] == pytest.approx(1000 * math.sqrt(0.25 / 33))


def test_unknown_reference_energies_are_skipped_and_counted(tmp_path):
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as h5:
        write_root_attrs(h5, "predict")
        write_set(h5.create_group("predict"), [-1.0, np.nan, -3.0], [-1.5, -2.0, -3.0],
                  [1, 1, 1], [np.nan] * 3, [0, 0, 0])
    m = metrics.summarize(path)["sets"]["predict"]
    assert m["all"]["n_frames_without_reference"] == 1
    assert m["all"]["energy_mae_ev"] == pytest.approx(0.25)             # (0.5 + 0) / 2
    assert m["all"]["force_rmse_mev_per_angstrom"] is None               # no forces stored
    assert list(m["per_temperature"]) == ["unknown"]
    empty = metrics.energy_errors([np.nan], [1.0], [1])
    assert empty["energy_rmse_ev"] is None and empty["n_frames_with_reference"] == 0


def test_force_chunks_and_sample_match_direct_computation(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    n_atoms = rng.integers(1, 7, size=23)
    total = int(n_atoms.sum())
    f_ref = rng.normal(size=(total, 3))
    f_pred = f_ref + rng.normal(scale=0.1, size=(total, 3))
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as h5:
        write_root_attrs(h5, "predict")
        write_set(h5.create_group("predict"), -n_atoms * 1.0, -n_atoms * 1.01, n_atoms,
                  [500.0] * 23, [0] * 23, None, f_ref, f_pred)
    monkeypatch.setattr(metrics, "FORCE_CHUNK_ATOMS", 5)  # many chunks, frames kept whole
    pset = metrics.load_predictions(path, force_sample_size=50)["predict"]
    offsets = np.concatenate([[0], np.cumsum(n_atoms)])
    direct = [np.sum((f_pred[a:b] - f_ref[a:b]) ** 2) for a, b in zip(offsets[:-1], offsets[1:])]
    np.testing.assert_allclose(pset.force_sq_error, direct, rtol=1e-12)
    stride = math.ceil(3 * total / 50)
    np.testing.assert_array_equal(pset.force_sample_reference, f_ref.ravel()[::stride])
    np.testing.assert_array_equal(pset.force_sample_predicted, f_pred.ravel()[::stride])
    m = metrics.subset_metrics(pset)
    assert m["force_rmse_mev_per_angstrom"] == pytest.approx(
        1000 * np.sqrt(np.mean((f_pred - f_ref) ** 2)), rel=1e-12)


def test_bad_files_give_clear_errors(tmp_path, predictions_path):
    with pytest.raises(HdnnpError, match="no such file"):
        metrics.summarize(tmp_path / "missing.h5")
    wrong_stage = tmp_path / "model.h5"
    with h5py.File(wrong_stage, "w") as h5:
        write_root_attrs(h5, "train")
    with pytest.raises(HdnnpError, match="expected output of 'predict'"):
        metrics.summarize(wrong_stage)
    with h5py.File(predictions_path, "a") as h5:
        del h5["train/energy_predicted"]
    with pytest.raises(InputFileError, match="missing dataset train/energy_predicted"):
        metrics.summarize(predictions_path)
    bad_offsets = tmp_path / "bad.h5"
    with h5py.File(bad_offsets, "w") as h5:
        write_root_attrs(h5, "predict")
        write_set(h5.create_group("train"), E_REF, E_PRED, N_ATOMS, TEMPS, EXTRAP)
        h5["train/n_atoms"][0] = 3
    with pytest.raises(InputFileError, match="atom_offset does not match"):
        metrics.summarize(bad_offsets)


def test_training_log_and_descriptor_check(tmp_path):
    model = tmp_path / "model.h5"
    with h5py.File(model, "w") as h5:
        write_root_attrs(h5, "train")
        log = h5.create_group("training/log")
        log["epoch"] = [1, 2, 3, 4]
        log["train_energy_rmse"] = [10.0, 5.0, 3.0, 2.0]
        log["val_energy_rmse"] = [11.0, 6.0, 4.0, 4.5]
        log["wall_time"] = [0.5, 1.0, 1.5, 2.0]
        h5["training/validation_frames"] = [1]
        h5["training"].attrs["best_epoch"] = 3
        h5["training"].attrs["stop_reason"] = "early stopping"
    log = metrics.read_training_log(model)
    np.testing.assert_array_equal(log["validation_frames"], [1])
    s = metrics.training_summary(log)
    assert s["epochs"] == 4
    assert s["best_val_energy_rmse_mev_per_atom"] == 4.0
    assert s["final_val_energy_rmse_mev_per_atom"] == 4.5
    assert s["final_train_force_rmse_mev_per_angstrom"] is None
    assert s["wall_time_s"] == 2.0
    assert s["best_epoch"] == 3 and s["stop_reason"] == "early stopping"
    assert s["kept_val_energy_rmse_mev_per_atom"] == 4.0  # epoch 3's, the kept weights
    assert s["kept_train_energy_rmse_mev_per_atom"] == 3.0

    sym = tmp_path / "symmetry.h5"
    x = np.array([0.0, 1.0, 2.0, 3.0])
    with h5py.File(sym, "w") as h5:
        write_root_attrs(h5, "symmetry")
        g = h5.create_group("descriptor_check")
        g["n_features"] = [1, 2]
        g["force_difference"] = x
        g["distance_1"] = [1.0, 0.0, 1.0, 0.0]
        g["distance_2"] = 2 * x + 1
    check = metrics.read_descriptor_check(sym)
    # no stored correlation: Pearson computed; r(x, 2x+1) = 1, r(x, [1,0,1,0]) = -0.4472
    np.testing.assert_allclose(check["correlation"], [-1 / math.sqrt(5), 1.0])
    with h5py.File(sym, "a") as h5:
        del h5["descriptor_check/distance_2"]
    with pytest.raises(InputFileError, match="distance_2"):
        metrics.read_descriptor_check(sym)


def test_unknown_reference_forces_are_left_out(tmp_path):
    # hdnnp predict writes NaN reference forces for frames without known forces
    f_ref, f_pred = hand_forces()
    f_ref[2:6] = np.nan  # frame 1 (atoms 2..5) has no reference forces
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as h5:
        write_root_attrs(h5, "predict")
        write_set(h5.create_group("predict"), E_REF, E_PRED, N_ATOMS, TEMPS, EXTRAP, None,
                  f_ref, f_pred)
    pset = metrics.load_predictions(path)["predict"]
    m = metrics.subset_metrics(pset)
    assert m["n_force_components"] == 21  # frames 0 and 2: 7 atoms
    assert m["force_rmse_mev_per_angstrom"] == pytest.approx(1000 * math.sqrt(0.09 / 21))
    assert np.isfinite(pset.force_sample_reference).all() and len(pset.force_sample_reference) == 21
    f_ref[:] = np.nan
    with h5py.File(path, "a") as h5:
        h5["predict/forces_reference"][...] = f_ref
    assert not metrics.load_predictions(path)["predict"].has_forces
