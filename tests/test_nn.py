"""Element-network maths against finite differences and hand-computed values."""

import numpy as np
import pytest

from hdnnp import nn


def _arch(n_in=5, hidden=(4, 3)):
    return nn.Architecture(elements=(52,), n_inputs={52: n_in}, hidden=hidden)


def _net(seed=0, n_in=5, hidden=(4, 3)):
    arch = _arch(n_in, hidden)
    rng = np.random.default_rng(seed)
    theta = nn.init_parameters(arch, rng, {52: -3.0}, output_scale=0.5)
    theta += 0.1 * rng.normal(size=theta.shape)  # non-zero biases everywhere
    w, b = nn.unflatten(arch, theta)[52]
    x = rng.uniform(-1, 1, size=(7, n_in))
    return arch, theta, w, b, x, rng


def test_forward_matches_hand_formula():
    arch, theta, w, b, x, _ = _net(hidden=(4,))
    e, _ = nn.forward(w, b, x)
    expected = np.tanh(x @ w[0] + b[0]) @ w[1][:, 0] + b[1][0]
    np.testing.assert_allclose(e, expected, rtol=1e-14)
    assert arch.n_parameters == 5 * 4 + 4 + 4 + 1


def test_unflatten_gives_views_in_documented_order():
    arch = _arch(3, (2,))
    theta = np.arange(arch.n_parameters, dtype=float)
    w, b = nn.unflatten(arch, theta)[52]
    np.testing.assert_array_equal(w[0].ravel(), np.arange(6))
    np.testing.assert_array_equal(b[0], [6, 7])
    np.testing.assert_array_equal(w[1].ravel(), [8, 9])
    np.testing.assert_array_equal(b[1], [10])


ACTIVATION_CASES = ["tanh", "softplus", "logistic", "linear", "softplus,tanh"]


@pytest.mark.parametrize("name, f", [
    ("softplus", lambda z: np.log(1.0 + np.exp(z))),
    ("logistic", lambda z: 1.0 / (1.0 + np.exp(-z))),
    ("linear", lambda z: z),
])
def test_activations_match_their_formulas(name, f):
    z = np.linspace(-8.0, 8.0, 33)
    a, d1, d2 = nn.ACTIVATIONS[name][1](z, np)
    np.testing.assert_allclose(a, f(z), rtol=1e-13, atol=1e-15)
    h = 1e-5
    np.testing.assert_allclose(d1, (f(z + h) - f(z - h)) / (2 * h), rtol=1e-8, atol=1e-11)
    d1p, d1m = nn.ACTIVATIONS[name][1](z + h, np)[1], nn.ACTIVATIONS[name][1](z - h, np)[1]
    np.testing.assert_allclose(d2, (d1p - d1m) / (2 * h), rtol=1e-7, atol=1e-10)
    # no overflow far out (softplus of a large argument is the argument)
    assert np.all(np.isfinite(nn.ACTIVATIONS[name][1](np.array([-800.0, 800.0]), np)[0]))


def test_forward_per_layer_activations():
    arch, theta, w, b, x, _ = _net()
    e, _ = nn.forward(w, b, x, activation="softplus,logistic")
    h1 = np.log1p(np.exp(x @ w[0] + b[0]))
    h2 = 1.0 / (1.0 + np.exp(-(h1 @ w[1] + b[1])))
    np.testing.assert_allclose(e, h2 @ w[2][:, 0] + b[2][0], rtol=1e-13)
    with pytest.raises(ValueError, match="3 activations for 2 hidden"):
        nn.forward(w, b, x, activation="tanh,tanh,tanh")
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        nn.forward(w, b, x, activation="relu")


@pytest.mark.parametrize("activation", ACTIVATION_CASES)
def test_input_gradient_finite_differences(activation):
    arch, theta, w, b, x, _ = _net()
    _, cache = nn.forward(w, b, x, activation=activation)
    g = nn.input_gradient(w, cache)
    h = 1e-6
    for k in range(x.shape[1]):
        xp_, xm = x.copy(), x.copy()
        xp_[:, k] += h
        xm[:, k] -= h
        fd = (nn.forward(w, b, xp_, activation=activation)[0] - nn.forward(w, b, xm, activation=activation)[0]) / (2 * h)
        np.testing.assert_allclose(g[:, k], fd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("activation", ACTIVATION_CASES)
def test_backward_energy_and_mixed_derivative_finite_differences(activation):
    """S(theta) = sum c_i E_i + sum u_i . dE_i/dG_i, gradient checked by central differences."""
    arch, theta, _, _, x, rng = _net()
    c = rng.normal(size=x.shape[0])
    u = rng.normal(size=x.shape)

    def S(th):
        w, b = nn.unflatten(arch, th)[52]
        e, cache = nn.forward(w, b, x, activation=activation)
        return c @ e + np.sum(u * nn.input_gradient(w, cache))

    w, b = nn.unflatten(arch, theta)[52]
    _, cache = nn.forward(w, b, x, activation=activation)
    grads = nn.backward(w, cache, c, u)
    grad = nn.flatten_gradients(arch, {52: grads})
    h = 1e-6
    fd = np.array([(S(theta + h * e) - S(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9 * np.abs(fd).max())


def test_forces_from_input_gradient_scatter():
    g = np.array([[1.0, 2.0], [3.0, -1.0]])
    pair_row = np.array([0, 1, 1])
    pair_atom = np.array([0, 0, 2])
    dv = np.zeros((3, 2, 3))
    dv[0, 0, 0] = 1.0  # row 0 feature 0 wrt atom 0, x
    dv[1, 1, 1] = 2.0  # row 1 feature 1 wrt atom 0, y
    dv[2, 0, 2] = 0.5  # row 1 feature 0 wrt atom 2, z
    f = nn.forces_from_input_gradient(g, pair_row, pair_atom, dv, 3)
    expected = np.zeros((3, 3))
    expected[0, 0] = -1.0 * 1.0
    expected[0, 1] = -(-1.0) * 2.0
    expected[2, 2] = -3.0 * 0.5
    np.testing.assert_allclose(f, expected)


def test_output_bias_indices_and_bounds():
    arch = nn.Architecture(elements=(16, 29), n_inputs={16: 3, 29: 2}, hidden=(2,))
    theta = np.arange(arch.n_parameters, dtype=float)
    idx = nn.output_bias_indices(arch)
    # per element: W0 (n_in*2) + b0 (2) + W1 (2) + b1 (1): S block 11, Cu block 9
    np.testing.assert_array_equal(idx, [10, 19])
    for z, i in zip((16, 29), idx):
        assert nn.unflatten(arch, theta)[z][1][-1][0] == theta[i]
    lower, upper = nn.weight_bounds(arch, theta - 100.0, 5.0)
    np.testing.assert_array_equal(lower[idx], theta[idx] - 105.0)
    assert lower[0] == -5.0 and upper[0] == 5.0
