"""model.h5: save -> load -> predict is bit-identical; forces are -dE/dr; the stage writes the
documented layout; checkpoints resume."""

import h5py
import numpy as np
import pytest

from _nn_fixtures import finite_difference_forces, fitted_feature_set, lj_frames, lj_symmetry_files
from hdnnp import nn
from hdnnp.errors import HdnnpError
from hdnnp.model import Potential
from hdnnp.training.presets import make_options


@pytest.fixture(scope="module")
def potential():
    frames = lj_frames(np.random.default_rng(5), 12)
    fs = fitted_feature_set(frames, n_features=8)
    arch = nn.Architecture(elements=(18,), n_inputs={18: 8}, hidden=(5, 4))
    theta = nn.init_parameters(arch, np.random.default_rng(0), {18: -0.05}, output_scale=0.05)
    theta += 0.05 * np.random.default_rng(1).normal(size=theta.shape)
    pot = Potential(fs, arch, theta, {18: -0.05},
                    training=dict(log={"epoch": np.arange(3)}, validation_frames=[1, 4], attrs={"optimizer": "lbfgs"}))
    return pot, frames


def test_save_load_predict_bit_identical(tmp_path, potential):
    pot, frames = potential
    pot.save(tmp_path / "model.h5")
    loaded = Potential.load(tmp_path / "model.h5")
    a = frames[0]
    e1, f1 = pot.predict(a.positions, a.cell.array, a.pbc, a.numbers)
    e2, f2 = loaded.predict(a.positions, a.cell.array, a.pbc, a.numbers)
    assert e1 == e2
    assert np.array_equal(f1, f2)
    assert np.array_equal(loaded.theta, pot.theta)
    np.testing.assert_array_equal(loaded.training["validation_frames"], [1, 4])
    with h5py.File(tmp_path / "model.h5") as h5:
        assert h5.attrs["stage"] == "train"
        assert h5["networks/Ar/weights_0"].shape == (8, 5)
        assert h5["networks/Ar/weights_2"].shape == (4, 1)
        assert h5["networks/Ar"].attrs["reference_energy"] == -0.05


def test_forces_are_minus_energy_gradient(potential):
    """F = -dE/dr by central differences of predicted energies, through the descriptor code."""
    pot, frames = potential
    a = frames[1]
    pos = a.positions.copy()
    energy, forces = pot.predict(pos, a.cell.array, a.pbc, a.numbers)
    fd = finite_difference_forces(lambda p: pot.predict(p, a.cell.array, a.pbc, a.numbers, forces=False)[0], pos,
                                  h=1e-5)
    np.testing.assert_allclose(forces, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    assert np.abs(forces.sum(axis=0)).max() < 1e-12 * np.abs(forces).max() * len(pos) + 1e-15  # Newton's third law


def test_energy_is_sum_of_atomic_energies_and_translation_invariant(potential):
    pot, frames = potential
    a = frames[2]
    e, _, atomic = pot.predict(a.positions, a.cell.array, a.pbc, a.numbers, forces=False, atomic_energies=True)
    assert e == pytest.approx(atomic.sum(), rel=1e-14)
    e_shift = pot.predict(a.positions + [0.3, -1.1, 2.0], a.cell.array, a.pbc, a.numbers, forces=False)[0]
    assert e_shift == pytest.approx(e, rel=1e-12)


def test_unknown_element_is_a_clear_error(potential):
    pot, frames = potential
    a = frames[0]
    with pytest.raises(HdnnpError, match="not in the model"):
        pot.predict(a.positions, a.cell.array, a.pbc, np.full(len(a), 52))


@pytest.fixture(scope="module")
def symmetry_file(tmp_path_factory):
    return lj_symmetry_files(tmp_path_factory.mktemp("stage"), lj_frames(np.random.default_rng(0), 30), 24, 10)


def test_train_stage_writes_self_contained_model(symmetry_file, tmp_path):
    from hdnnp.stages.train import train

    opts = make_options("fast", epochs=15, val_fraction=0.25, seed=3, hidden=(4,))
    summary = train(symmetry_file / "symmetry.h5", tmp_path / "model.h5", opts, quiet=True)
    pot = Potential.load(tmp_path / "model.h5")
    val = pot.training["validation_frames"]
    assert len(val) == 6 and len(np.unique(val)) == 6 and val.max() < 24
    log = pot.training["log"]
    assert len(log["epoch"]) == summary["epochs"] and np.all(np.isfinite(log["val_force_rmse"]))
    assert pot.training["attrs"]["optimizer"] == "lbfgs"
    assert list(pot.training["attrs"]["hidden"]) == [4]
    with h5py.File(symmetry_file / "symmetry.h5") as h5:
        e = h5["train/frames/energy"][:]
        n = np.diff(h5["train/frames/atom_offset"][:])
    # output bias initialised from the mean energy per atom (one element)
    assert pot.reference_energies[18] == pytest.approx(np.mean(e[np.setdiff1d(np.arange(24), val)] / 8), rel=1e-10)
    assert np.all(n == 8)


def test_train_stage_blocked_validation_split(symmetry_file, tmp_path):
    from hdnnp.stages.train import train

    opts = make_options("fast", epochs=3, val_fraction=0.25, val_split="blocked", seed=1, hidden=(4,))
    train(symmetry_file / "symmetry.h5", tmp_path / "model.h5", opts, quiet=True)
    pot = Potential.load(tmp_path / "model.h5")
    assert pot.training["attrs"]["val_split"] == "blocked"
    val = np.asarray(pot.training["validation_frames"])
    with h5py.File(symmetry_file / "symmetry.h5") as h5:
        source = h5["train/frames/source"][:]
        step = h5["train/frames/step"][:]
    # one source here: 6 of its 24 frames, consecutive in MD step order
    order = np.argsort(step, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    assert len(np.unique(source)) == 1 and len(val) == 6
    assert np.array_equal(np.diff(np.sort(rank[val])), np.ones(5))


def test_train_stage_runs_blas_on_one_thread(symmetry_file, tmp_path, monkeypatch):
    """The EKF amplifies the rounding differences of multi-threaded BLAS into different weights, so
    training pins BLAS to one thread: the result does not depend on the machine's core count."""
    import hdnnp.stages.train as stage
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    original = stage.train_networks

    def spy(*args, **kwargs):
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        return original(*args, **kwargs)

    monkeypatch.setattr(stage, "train_networks", spy)
    with threadpool_limits(limits=2, user_api="blas"):
        stage.train(symmetry_file / "symmetry.h5", tmp_path / "model.h5",
                    make_options("fast", epochs=2, hidden=(4,)), quiet=True)
    assert seen and set(seen) == {1}


def test_train_checkpoint_and_resume(symmetry_file, tmp_path):
    from hdnnp.stages.train import train

    out = tmp_path / "model.h5"
    full = train(symmetry_file / "symmetry.h5", tmp_path / "full.h5",
                 make_options("fast", optimizer="adam", epochs=6, patience=0, hidden=(4,)), quiet=True)
    # a run interrupted after its checkpoint at epoch 3 ...
    opts = make_options("fast", optimizer="adam", epochs=3, patience=0, hidden=(4,), checkpoint_every=3)
    import hdnnp.stages.train as stage

    original_save = Potential.save
    try:
        Potential.save = lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            stage.train(symmetry_file / "symmetry.h5", out, opts, quiet=True)
    finally:
        Potential.save = original_save
    assert not out.exists() and (tmp_path / "model.h5.checkpoint").exists()
    # ... resumes where it stopped and ends exactly as the uninterrupted run
    resumed = stage.train(symmetry_file / "symmetry.h5", out,
                          make_options("fast", optimizer="adam", epochs=6, patience=0, hidden=(4,)),
                          resume=True, quiet=True)
    assert resumed["epochs"] == 6
    assert resumed["val_energy_rmse"] == pytest.approx(full["val_energy_rmse"], rel=1e-10)
    np.testing.assert_array_equal(Potential.load(out).theta, Potential.load(tmp_path / "full.h5").theta)
    assert not (tmp_path / "model.h5.checkpoint").exists()


def test_ase_calculator_matches_potential(potential):
    pytest.importorskip("ase")
    from hdnnp.ase_calculator import HDNNPCalculator

    pot, frames = potential
    a = frames[3].copy()
    a.calc = HDNNPCalculator(pot)
    e, f = pot.predict(a.positions, a.cell.array, a.pbc, a.numbers)
    assert a.get_potential_energy() == e
    np.testing.assert_array_equal(a.get_forces(), f)


def test_force_fraction_keeps_every_pair_of_the_chosen_atoms(symmetry_file):
    """--force-fraction: ceil(f N) atoms per box; their forces are complete (equal to those from all pairs)."""
    from hdnnp.stages.train import load_training_data, read_block
    from hdnnp.training.loss import evaluate

    with h5py.File(symmetry_file / "symmetry.h5") as h5:
        part = load_training_data(h5["train"], (18,), True, 0.25, np.random.default_rng(0))
        full = read_block(h5["train"], (18,), 0, 24, derivatives=True)
    mask = part.force_mask
    assert np.all(np.add.reduceat(mask.astype(int), part.atom_offset[:-1]) == 2)  # ceil(0.25 * 8)
    assert set(np.unique(part.blocks[18].pair_atom)) <= set(np.flatnonzero(mask))
    arch = nn.Architecture(elements=(18,), n_inputs={18: 10}, hidden=(3,))
    theta = nn.init_parameters(arch, np.random.default_rng(2), {18: 0.0}, output_scale=0.1)
    f_part = evaluate(arch, theta, part, 1.0, gradient=False, forces=True).forces_pred
    f_full = evaluate(arch, theta, full, 1.0, gradient=False, forces=True).forces_pred
    np.testing.assert_allclose(f_part[mask], f_full[mask], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("fraction", [0.5, 1.0])
@pytest.mark.parametrize("chunk_frames", [2, 5, 256])
def test_loading_selected_frames_equals_subset_of_all(symmetry_file, chunk_frames, fraction):
    """train/val frames are read separately; the result must be exactly load(all).subset(frames),
    force mask included, whatever the read chunking (whole chunks are read straight into place)."""
    from hdnnp.stages.train import load_training_data, read_block

    idx = np.array([0, 1, 3, 4, 9, 17, 23])
    with h5py.File(symmetry_file / "symmetry.h5") as h5:
        full = load_training_data(h5["train"], (18,), True, fraction, np.random.default_rng(4))
        part = load_training_data(h5["train"], (18,), True, fraction, np.random.default_rng(4),
                                  chunk_frames=chunk_frames, frames=idx)
        whole = load_training_data(h5["train"], (18,), True, fraction, np.random.default_rng(4),
                                   chunk_frames=chunk_frames)
        every = read_block(h5["train"], (18,), 0, whole.n_frames, derivatives=True)  # the streaming reader
    np.testing.assert_array_equal(whole.blocks[18].dvalues, full.blocks[18].dvalues)
    if fraction == 1.0:  # every pair kept: the same arrays as the independent block reader
        for name in ("values", "pair_row", "pair_atom", "dvalues", "pair_offset"):
            np.testing.assert_array_equal(getattr(whole.blocks[18], name), getattr(every.blocks[18], name))
    ref = full.subset(idx)
    for name in ("energy", "n_atoms", "atom_offset", "forces", "force_mask", "frame_index", "temperature"):
        a, b = getattr(part, name), getattr(ref, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=name)
    for name in ("values", "row_frame", "atom_index", "row_offset", "pair_row", "pair_atom", "dvalues",
                 "pair_offset"):
        np.testing.assert_array_equal(getattr(part.blocks[18], name), getattr(ref.blocks[18], name), err_msg=name)
    assert len(ref.blocks[18].pair_row) > 0


def test_max_memory_budget_refuses_before_loading_without_streaming(symmetry_file, tmp_path):
    from hdnnp.stages.train import train

    with pytest.raises(HdnnpError, match="--max-memory"):
        train(symmetry_file / "symmetry.h5", tmp_path / "m.h5",
              make_options("fast", max_memory_mb=0.01, stream="never"), quiet=True)
    assert not (tmp_path / "m.h5").exists()
