"""CPU and GPU (CuPy) paths of the networks, loss, training and prediction agree (skipped without a GPU)."""

import numpy as np
import pytest

from _nn_fixtures import fitted_feature_set, lj_frames, random_data, teacher_labels
from hdnnp import nn
from hdnnp.training.loss import evaluate

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("CuPy sees no CUDA device")
    except Exception:
        pytest.skip("CuPy sees no CUDA device")
    return cupy


@pytest.mark.parametrize("block_boxes", [0, 4])
def test_loss_and_gradient_cpu_gpu_agree(cp, block_boxes):
    rng = np.random.default_rng(0)
    nf = {29: 4, 16: 3}
    data = random_data(rng, n_frames=6, n_features=nf)
    arch = nn.Architecture(elements=(16, 29), n_inputs=nf, hidden=(5, 4))
    theta = nn.init_parameters(arch, rng, {29: -1.0, 16: -2.0}, output_scale=1.0)
    cpu = evaluate(arch, theta, data, 0.5)
    gpu = evaluate(arch, cp.asarray(theta), data.to(cp), 0.5, block_boxes=block_boxes)
    assert gpu.loss == pytest.approx(cpu.loss, rel=1e-12)
    np.testing.assert_allclose(cp.asnumpy(gpu.gradient), cpu.gradient, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(cp.asnumpy(gpu.forces_pred), cpu.forces_pred, rtol=1e-10, atol=1e-14)


def test_training_on_gpu_matches_cpu(cp):
    from hdnnp.training.loop import initial_parameters, train_networks
    from hdnnp.training.presets import make_options

    rng = np.random.default_rng(1)
    nf = {29: 4, 16: 3}
    data = random_data(rng, n_frames=12, n_features=nf)
    arch = nn.Architecture(elements=(16, 29), n_inputs=nf, hidden=(4,))
    teacher_labels(data, arch, nn.init_parameters(arch, rng, {29: -1.0, 16: -2.0}, output_scale=0.3))
    theta0, ref = initial_parameters(arch, data, seed=0)
    opts = make_options("default", optimizer="adam", epochs=3, patience=0, batch_boxes=4)
    cpu = train_networks(arch, data, None, opts, theta0, ref, quiet=True)
    gpu = train_networks(arch, data.to(cp), None, opts, theta0, ref, quiet=True)
    np.testing.assert_allclose(gpu.theta, cpu.theta, rtol=1e-8, atol=1e-12)


def test_potential_predict_cpu_gpu_agree(cp):
    pytest.importorskip("ase")  # the reference frames (a GPU machine may lack it)
    from hdnnp.model import Potential

    frames = lj_frames(np.random.default_rng(5), 6)
    fs = fitted_feature_set(frames, n_features=8)
    arch = nn.Architecture(elements=(18,), n_inputs={18: 8}, hidden=(5,))
    pot = Potential(fs, arch, nn.init_parameters(arch, np.random.default_rng(0), {18: -0.05}, 0.05), {18: -0.05})
    a = frames[0]
    e_cpu, f_cpu = pot.predict(a.positions, a.cell.array, a.pbc, a.numbers, device="cpu")
    e_gpu, f_gpu = pot.predict(a.positions, a.cell.array, a.pbc, a.numbers, device="gpu")
    assert e_gpu == pytest.approx(e_cpu, rel=1e-10)
    np.testing.assert_allclose(f_gpu, f_cpu, rtol=1e-9, atol=1e-12)
