"""Stress (virial) training: the loss term and its gradient against finite differences and an
independent loop, the EKF measurement, and the whole path prepare -> symmetry -> train on
stressed frames, whose model must predict the stress the loss saw."""

import numpy as np
import pytest

from _nn_fixtures import random_data
from hdnnp import nn
from hdnnp.training.loss import evaluate


def stressed_data(seed=2, n_frames=5):
    """random_data plus random strain derivatives W per row and reference virials (one unknown)."""
    rng = np.random.default_rng(seed)
    data = random_data(rng, n_frames=n_frames)
    for blk in data.blocks.values():
        w = rng.normal(size=(blk.values.shape[0], blk.values.shape[1], 3, 3))
        blk.virial = 0.5 * (w + w.transpose(0, 1, 3, 2))  # symmetric, as a box's virial is
    data.virial_ref = rng.normal(size=(n_frames, 3, 3))
    data.virial_ref[1] = np.nan  # a frame without a reference stress
    return data, rng


def _arch(data, activation="tanh"):
    return nn.Architecture(elements=data.elements, n_inputs={29: 4, 16: 3}, hidden=(5, 4), activation=activation)


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
@pytest.mark.parametrize("force_weight", [0.0, 0.3])
def test_stress_loss_gradient_finite_differences(force_weight, activation):
    data, rng = stressed_data()
    arch = _arch(data, activation)
    theta = nn.init_parameters(arch, rng, {29: -1.0, 16: -2.0}, output_scale=1.0) + 0.1 * rng.normal(size=arch.n_parameters)
    ev = evaluate(arch, theta, data, force_weight, stress_weight=0.7)
    h = 1e-6
    fd = np.array([(evaluate(arch, theta + h * e, data, force_weight, gradient=False, stress_weight=0.7).loss
                    - evaluate(arch, theta - h * e, data, force_weight, gradient=False, stress_weight=0.7).loss) / (2 * h)
                   for e in np.eye(len(theta))])
    np.testing.assert_allclose(ev.gradient, fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())


def test_stress_loss_value_by_an_independent_loop():
    data, rng = stressed_data(3)
    arch = _arch(data)
    theta = nn.init_parameters(arch, rng, {29: -1.0, 16: -2.0}, output_scale=1.0)
    views = nn.unflatten(arch, theta)
    strain = np.zeros((data.n_frames, 3, 3))
    for z, blk in data.blocks.items():
        for r in range(len(blk.values)):
            _, cache = nn.forward(*views[z], blk.values[r:r + 1])
            g = nn.input_gradient(views[z][0], cache)[0]
            strain[blk.row_frame[r]] += np.einsum("c,cab->ab", g, blk.virial[r])
    v = strain / data.n_atoms[:, None, None]
    known = np.isfinite(data.virial_ref)
    mse = np.mean((v - data.virial_ref)[known] ** 2)
    base = evaluate(arch, theta, data, 0.0, gradient=False)
    ev = evaluate(arch, theta, data, 0.0, gradient=False, stress_weight=2.0)
    np.testing.assert_allclose(ev.virial_pred, v, rtol=1e-12)
    assert ev.virial_mse == pytest.approx(mse, rel=1e-12)
    assert ev.loss == pytest.approx(base.loss + 2.0 * mse, rel=1e-12)


WEIGHT = 10.0


def test_ekf_with_stress_learns_a_teacher_virial():
    """The EKF uses the virial measurements: a student trained with --stress-weight reproduces a
    teacher's training virials far better than one trained without (same data and seed;
    measured 3.2e-3 -> 1.2e-3 eV/atom; the random strain derivatives of this fixture carry no
    structure, so the held-out frames are not the test)."""
    from hdnnp.training.loop import initial_parameters, train_networks
    from hdnnp.training.presets import make_options

    data, rng = stressed_data(4, n_frames=24)
    teacher = _arch(data)
    t_theta = nn.init_parameters(teacher, rng, {29: -1.0, 16: -2.0}, output_scale=0.3)
    ev = evaluate(teacher, t_theta, data, 0.0, gradient=False, forces=True, stress_weight=1.0)
    data.energy, data.forces = ev.energy_pred.copy(), ev.forces_pred.copy()
    data.virial_ref = ev.virial_pred.copy()
    train, val = data.subset(np.arange(20)), data.subset(np.arange(20, 24))
    errors = {}
    for weight in (0.0, WEIGHT):
        opts = make_options("default", optimizer="ekf", epochs=10, patience=0, stress_weight=weight, hidden=(5, 4))
        theta0, ref = initial_parameters(teacher, train, seed=0)
        result = train_networks(teacher, train, val, opts, theta0, ref, quiet=True)
        check = evaluate(teacher, result.theta, train, 0.0, gradient=False, stress_weight=1.0)
        errors[weight] = np.sqrt(check.virial_mse); print(errors)
    assert errors[WEIGHT] < 0.5 * errors[0.0], errors


def test_stress_training_end_to_end(tmp_path):
    """prepare -> symmetry (stores the strain derivatives) -> train --stress-weight (lbfgs): the
    trained model's stress from Potential.evaluate is the one the loss used, and the stress
    error falls compared with training without the term."""
    import h5py
    from ase.io import write as ase_write

    from hdnnp.cli import main
    from hdnnp.model import Potential
    from hdnnp.training.loss import evaluate as loss_evaluate
    from hdnnp.stages.train import load_training_data
    from test_other_formats import _emt_frames

    from ase.io import read as ase_read

    ase_write(tmp_path / "train.extxyz", _emt_frames(n=8))
    frames = ase_read(tmp_path / "train.extxyz", ":")  # as stored (8 decimals)
    main(["prepare", "--train-file", str(tmp_path / "train.extxyz"), "-o", str(tmp_path / "p.h5"), "-q"])
    main(["symmetry", str(tmp_path / "p.h5"), "-o", str(tmp_path / "s.h5"), "--n-features", "8", "-q"])
    rmse = {}
    for weight in ("0", "1"):
        out = tmp_path / f"m{weight}.h5"
        main(["train", str(tmp_path / "s.h5"), "-o", str(out), "--optimizer", "lbfgs", "--epochs", "60",
              "--patience", "0", "--hidden", "6", "--stress-weight", weight, "--val-fraction", "0", "-q"])
        model = Potential.load(out)
        diff = [model.predict(a.positions, a.cell.array, a.pbc, a.numbers, forces=False, stress=True)[2]
                - a.get_stress(voigt=False) for a in frames]
        rmse[weight] = np.sqrt(np.mean(np.square(diff)))
    with h5py.File(tmp_path / "s.h5") as h5:
        data = load_training_data(h5["train"], model.elements, False, with_stress=True)
    ev = loss_evaluate(model.architecture, model.theta, data, 0.0, gradient=False, stress_weight=1.0)
    a = frames[3]
    sigma = model.predict(a.positions, a.cell.array, a.pbc, a.numbers, forces=False, stress=True)[2]
    np.testing.assert_allclose(ev.virial_pred[3] * len(a) / a.get_volume(), sigma, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(data.virial_ref[3], a.get_stress(voigt=False) * a.get_volume() / len(a), rtol=1e-12)
    assert rmse["1"] < 0.5 * rmse["0"], rmse


def test_stress_weight_needs_stresses(tmp_path, capsys):
    from hdnnp.cli import main

    import h5py
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write as ase_write

    rng = np.random.default_rng(0)
    frames = []
    for k in range(4):
        a = Atoms("Cu8", positions=rng.uniform(0, 7, (8, 3)), cell=[7, 7, 7], pbc=True)
        a.calc = SinglePointCalculator(a, energy=-1.0 * k, forces=rng.normal(size=(8, 3)))
        frames.append(a)
    ase_write(tmp_path / "t.extxyz", frames)
    main(["prepare", "--train-file", str(tmp_path / "t.extxyz"), "-o", str(tmp_path / "p.h5"), "-q"])
    main(["symmetry", str(tmp_path / "p.h5"), "-o", str(tmp_path / "s.h5"), "--n-features", "4", "-q"])
    with h5py.File(tmp_path / "s.h5") as h5:
        assert not h5["train"].attrs["virial"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tmp_path / "s.h5"), "-o", str(tmp_path / "m.h5"), "--stress-weight", "1", "-q"])
    assert exc.value.code == 2 and "--stress-weight needs reference stresses" in capsys.readouterr().err
    assert not (tmp_path / "m.h5").exists()


def test_stress_training_with_a_baseline(tmp_path):
    """With --baseline the networks learn v_ref − v_base: the trained model (networks + baseline)
    predicts the stress the loss saw plus the baseline's, and the baseline contributes."""
    import h5py
    from ase.io import read as ase_read, write as ase_write

    from hdnnp.baseline import baseline_of_set
    from hdnnp.cli import main
    from hdnnp.model import Potential
    from hdnnp.stages.train import load_training_data
    from test_other_formats import _emt_frames

    ase_write(tmp_path / "t.extxyz", _emt_frames(n=6))
    frames = ase_read(tmp_path / "t.extxyz", ":")
    main(["prepare", "--train-file", str(tmp_path / "t.extxyz"), "-o", str(tmp_path / "p.h5"), "-q"])
    main(["symmetry", str(tmp_path / "p.h5"), "-o", str(tmp_path / "s.h5"), "--n-features", "8", "-q"])
    main(["train", str(tmp_path / "s.h5"), "-o", str(tmp_path / "m.h5"), "--optimizer", "lbfgs", "--epochs", "10",
          "--patience", "0", "--hidden", "5", "--stress-weight", "1", "--val-fraction", "0", "--baseline", "zbl",
          "--baseline-radii", "2.2:3.0", "-q"])
    model = Potential.load(tmp_path / "m.h5")
    with h5py.File(tmp_path / "s.h5") as h5:
        data = load_training_data(h5["train"], model.elements, False, with_stress=True)
        _, _, strain = baseline_of_set(model.baseline, h5["train"], forces=False, strain=True)
    assert np.abs(strain).max() > 1e-3  # the baseline acts on these frames
    ev = evaluate(model.architecture, model.theta, data, 0.0, gradient=False, stress_weight=1.0)
    a = frames[2]
    sigma = model.predict(a.positions, a.cell.array, a.pbc, a.numbers, forces=False, stress=True)[2]
    np.testing.assert_allclose((ev.virial_pred[2] * len(a) + strain[2]) / a.get_volume(), sigma, rtol=1e-9,
                               atol=1e-12)
