"""Analytic gradients of the energy and force losses against central finite differences."""

import numpy as np
import pytest

from hdnnp import nn
from hdnnp.training.loss import element_reference_energies, evaluate

from _nn_fixtures import random_data


def _setup(seed=1, hidden=(5, 4), activation="tanh"):
    rng = np.random.default_rng(seed)
    data = random_data(rng)
    arch = nn.Architecture(elements=data.elements, n_inputs={29: 4, 16: 3}, hidden=hidden, activation=activation)
    theta = nn.init_parameters(arch, rng, {29: -1.0, 16: -2.0}, output_scale=1.0)
    theta += 0.1 * rng.normal(size=theta.shape)
    return data, arch, theta


def _fd_gradient(fun, theta, h=1e-6):
    return np.array([(fun(theta + h * e) - fun(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
@pytest.mark.parametrize("force_weight", [0.0, 0.3])
def test_loss_gradient_finite_differences(force_weight, activation):
    data, arch, theta = _setup(activation=activation)
    ev = evaluate(arch, theta, data, force_weight=force_weight)
    fd = _fd_gradient(lambda t: evaluate(arch, t, data, force_weight, gradient=False).loss, theta)
    np.testing.assert_allclose(ev.gradient, fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())


def test_loss_value_matches_definition():
    data, arch, theta = _setup()
    w = 0.3
    ev = evaluate(arch, theta, data, force_weight=w)
    views = nn.unflatten(arch, theta)
    # independent loop implementation: per box, per atom
    e_box = np.zeros(data.n_frames)
    f_pred = np.zeros((data.n_atoms_total, 3))
    for z, blk in data.blocks.items():
        for r in range(len(blk.values)):
            wz, bz = views[z]
            e, cache = nn.forward(wz, bz, blk.values[r:r + 1])
            e_box[blk.row_frame[r]] += e[0]
            g = nn.input_gradient(wz, cache)[0]
            for p in np.flatnonzero(blk.pair_row == r):
                f_pred[blk.pair_atom[p]] -= g @ blk.dvalues[p]
    e_term = np.mean(((e_box - data.energy) / data.n_atoms) ** 2)
    m = data.force_mask
    f_term = np.mean((f_pred[m] - data.forces[m]) ** 2)
    np.testing.assert_allclose(ev.energy_pred, e_box, rtol=1e-12)
    np.testing.assert_allclose(ev.forces_pred, f_pred, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ev.loss, e_term + w * f_term, rtol=1e-12)


def test_subset_reindexes_consistently():
    data, arch, theta = _setup()
    full = evaluate(arch, theta, data, 0.0, gradient=False)
    sub = data.subset([2, 0])
    ev = evaluate(arch, theta, sub, 0.0, gradient=False)
    np.testing.assert_allclose(ev.energy_pred, full.energy_pred[[2, 0]], rtol=1e-13)
    a2 = np.arange(data.atom_offset[2], data.atom_offset[3])
    a0 = np.arange(data.atom_offset[0], data.atom_offset[1])
    np.testing.assert_allclose(ev.forces_pred, full.forces_pred[np.concatenate([a2, a0])], rtol=1e-12)


@pytest.mark.parametrize("block_boxes", [1, 2, 3])
@pytest.mark.parametrize("force_weight", [0.0, 0.3])
def test_blocked_evaluation_equals_one_pass(block_boxes, force_weight):
    """--batch-boxes: evaluating in blocks of boxes gives the one-pass loss, gradient and predictions."""
    rng = np.random.default_rng(7)
    data = random_data(rng, n_frames=7)
    arch = nn.Architecture(elements=data.elements, n_inputs={29: 4, 16: 3}, hidden=(5, 4))
    theta = nn.init_parameters(arch, rng, {29: -1.0, 16: -2.0}, output_scale=1.0)
    theta += 0.1 * rng.normal(size=theta.shape)
    full = evaluate(arch, theta, data, force_weight, forces=True)
    part = evaluate(arch, theta, data, force_weight, forces=True, block_boxes=block_boxes)
    np.testing.assert_allclose(part.loss, full.loss, rtol=1e-13)
    np.testing.assert_allclose(part.gradient, full.gradient, rtol=1e-11, atol=1e-14 * np.abs(full.gradient).max())
    np.testing.assert_allclose(part.energy_pred, full.energy_pred, rtol=1e-13)
    np.testing.assert_allclose(part.atomic_energy, full.atomic_energy, rtol=1e-13)
    np.testing.assert_allclose(part.forces_pred, full.forces_pred, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose([part.energy_mse_per_atom, part.force_mse],
                               [full.energy_mse_per_atom, full.force_mse], rtol=1e-13)


def test_energy_only_evaluation_stays_one_pass():
    """Without forces the temporaries are small: --batch-boxes leaves the evaluation (and so the
    derivative-free search of the seed preset) bit-identical to one pass."""
    data, arch, theta = _setup()
    one = evaluate(arch, theta, data, 0.0, forces=False)
    blocked = evaluate(arch, theta, data, 0.0, forces=False, block_boxes=1)
    assert blocked.loss == one.loss
    np.testing.assert_array_equal(blocked.gradient, one.gradient)


def test_frame_range_is_a_view_reindexed():
    data, arch, theta = _setup()
    view = data.frame_range(1, 3)
    for z, blk in view.blocks.items():
        assert np.shares_memory(blk.values, data.blocks[z].values)
        assert np.shares_memory(blk.dvalues, data.blocks[z].dvalues)
    full = evaluate(arch, theta, data, 0.0, gradient=False, forces=True)
    ev = evaluate(arch, theta, view, 0.0, gradient=False, forces=True)
    a0, a1 = data.atom_offset[1], data.atom_offset[3]
    np.testing.assert_allclose(ev.energy_pred, full.energy_pred[1:3], rtol=1e-13)
    np.testing.assert_allclose(ev.forces_pred, full.forces_pred[a0:a1], rtol=1e-12)
    np.testing.assert_array_equal(view.force_mask, data.force_mask[a0:a1])


def test_element_reference_energies_least_squares():
    data, _, _ = _setup()
    counts = np.array([[np.diff(data.blocks[z].row_offset)[f] for z in data.elements] for f in range(data.n_frames)])
    e_ref = np.array([-2.0, -5.0])  # S, Cu
    data.energy = counts @ e_ref
    ref = element_reference_energies(data)
    np.testing.assert_allclose([ref[16], ref[29]], e_ref, rtol=1e-10)


def test_gradients_on_gpu_match_cpu():
    cp = pytest.importorskip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except cp.cuda.runtime.CUDARuntimeError:
        pytest.skip("no CUDA device")
    data, arch, theta = _setup()
    cpu = evaluate(arch, theta, data, 0.3)
    gpu = evaluate(arch, cp.asarray(theta), data.to(cp), 0.3)
    np.testing.assert_allclose(cp.asnumpy(gpu.gradient), cpu.gradient, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gpu.loss, cpu.loss, rtol=1e-12)
