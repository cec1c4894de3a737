"""Element networks of a Behler-Parrinello potential: forward, backward, input gradients and
mixed derivatives, written once for NumPy and CuPy (``xp``).

One feed-forward network per element, shared by every atom of that element::

    a_0 = G_i                                  scaled descriptors of atom i, (n_features,)
    z_l = a_{l-1} W_l + b_l,  a_l = f_l(z_l)   hidden layers l = 1 .. L-1
    E_i = a_{L-1} W_L + b_L                    linear output: atomic energy, eV
    E_box = sum_i E_i

Activations f_l (:data:`ACTIVATIONS`; one for all hidden layers or one per layer, n2p2's letters
in brackets): ``tanh`` [t]; ``softplus`` [p] f = ln(1 + e^z), f' = σ(z), f'' = σ(1 − σ);
``logistic`` [s] f = σ(z) = 1/(1 + e^−z), f' = σ(1 − σ), f'' = f'(1 − 2σ); ``linear`` [l] f = z.

Rows are batched: every atom of every box in a batch is one row of a matrix, so one matrix
product per layer and element evaluates a whole batch of boxes.

Forces (eV/Å) need the input gradient g_i = dE_i/dG_i and the descriptor derivatives
(sparse pairs p = (row i, atom j) with dG_p = dG_i/dr_j, Å⁻¹)::

    F_j = - sum_{p: atom(p) = j} g_{row(p)} . dG_p

Training on forces needs the gradient of h(theta) = sum_i u_i . dE_i/dG_i (a directional input
derivative, u_i a fixed vector per row) with respect to the weights: :func:`backward` carries
the tangent t_l = dA_l/dG . u forward and back-propagates through both the primal and the
tangent path ("mixed derivative" d²E/(dG dtheta)), exactly, in one pass.

All arrays are float64. ``weights[k]`` has shape (n_in_k, n_out_k), ``biases[k]`` (n_out_k,);
k = 0 .. L-1, the last one is the output layer with n_out = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTIVATION = "tanh"

#: Hidden-layer activations: name -> (n2p2's letter, f(z) -> (a, f'(z), f''(z))).
def _tanh(z, xp):
    a = xp.tanh(z)
    d1 = 1.0 - a * a
    return a, d1, -2.0 * a * d1


def _logistic_of(z, xp):
    return 0.5 * (1.0 + xp.tanh(0.5 * z))  # σ(z) without overflow


def _softplus(z, xp):
    sig = _logistic_of(z, xp)
    return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z))), sig, sig * (1.0 - sig)


def _logistic(z, xp):
    a = _logistic_of(z, xp)
    d1 = a * (1.0 - a)
    return a, d1, d1 * (1.0 - 2.0 * a)


def _linear(z, xp):
    return z, xp.ones_like(z), xp.zeros_like(z)


ACTIVATIONS = {"tanh": ("t", _tanh), "softplus": ("p", _softplus), "logistic": ("s", _logistic),
               "linear": ("l", _linear)}


def layer_activations(activation: str, n_hidden: int) -> list[str]:
    """Per hidden layer activation names from ``"tanh"`` (all layers) or ``"tanh,softplus"``."""
    names = [a.strip() for a in str(activation).split(",")]
    if len(names) == 1:
        names = names * n_hidden
    unknown = [a for a in names if a not in ACTIVATIONS]
    if unknown:
        raise ValueError(f"unknown activation '{unknown[0]}' (choose from {', '.join(ACTIVATIONS)})")
    if len(names) != n_hidden:
        raise ValueError(f"{len(names)} activations for {n_hidden} hidden layers")
    return names


def scatter_add_rows(xp, index, values, n: int):
    """``out[index[p]] += values[p]`` for rows p; ``out`` has shape (n, *values.shape[1:])."""
    out = xp.zeros((n,) + tuple(values.shape[1:]), dtype=values.dtype)
    if values.shape[0] == 0:
        return out
    if xp is np:
        flat = values.reshape(values.shape[0], -1)
        res = out.reshape(n, -1)
        for c in range(flat.shape[1]):
            res[:, c] = np.bincount(index, weights=flat[:, c], minlength=n)
        return out
    import cupyx

    cupyx.scatter_add(out, index, values)
    return out


@dataclass
class ForwardCache:
    """Hidden activations a_0 (= input) .. a_{L-1} of one element's rows and, per hidden layer
    m >= 1, f'(z_m) and f''(z_m) (index 0 unused)."""

    activations: list
    d1: list
    d2: list


def forward(weights, biases, x, xp=np, activation: str = ACTIVATION):
    """Atomic energies E_i (n_rows,) eV and the cache for the backward passes.

    ``activation``: one name of :data:`ACTIVATIONS` for every hidden layer, or a comma-separated
    list with one per hidden layer (:func:`layer_activations`)."""
    a = x
    acts, d1s, d2s = [x], [None], [None]
    for W, b, name in zip(weights[:-1], biases[:-1], layer_activations(activation, len(weights) - 1)):
        a, d1, d2 = ACTIVATIONS[name][1](a @ W + b, xp)
        acts.append(a)
        d1s.append(d1)
        d2s.append(d2)
    y = a @ weights[-1] + biases[-1]
    return y[:, 0], ForwardCache(acts, d1s, d2s)


def input_gradient(weights, cache: ForwardCache, xp=np):
    """g_i = dE_i/dG_i, shape (n_rows, n_features), in eV per unit of scaled descriptor."""
    acts = cache.activations
    n = acts[0].shape[0]
    delta = xp.broadcast_to(weights[-1][:, 0], (n, weights[-1].shape[0]))
    for m in range(len(acts) - 1, 0, -1):
        delta = (delta * cache.d1[m]) @ weights[m - 1].T
    return delta


def backward(weights, cache: ForwardCache, energy_adjoint=None, input_adjoint=None, xp=np):
    """Gradient with respect to (weights, biases) of

        S(theta) = sum_i c_i E_i + sum_i u_i . dE_i/dG_i

    where c = ``energy_adjoint`` (n_rows,) and u = ``input_adjoint`` (n_rows, n_features);
    either may be None (zero). Returns (dS/dW list, dS/db list).

    Tangent forward (u pushed through the linearised network): t_0 = u, s_l = t_{l-1} W_l,
    t_l = f'(z_l) s_l; the output tangent s_L equals dE/dG . u. Reverse pass over both
    paths with f' and f'' from the forward cache.
    """
    acts = cache.activations
    n_layers = len(weights)
    n = acts[0].shape[0]
    # tangent forward
    s_list = [None] * n_layers  # s_list[m] = s_m for hidden m >= 1
    t_list = [None] * n_layers
    if input_adjoint is not None:
        t = input_adjoint
        t_list[0] = t
        for m in range(1, n_layers):
            s = t @ weights[m - 1]
            s_list[m] = s
            t = cache.d1[m] * s
            t_list[m] = t
    dz = (xp.zeros((n, 1)) if energy_adjoint is None else energy_adjoint.reshape(n, 1))
    ds = None if input_adjoint is None else xp.ones((n, 1))
    grad_w = [None] * n_layers
    grad_b = [None] * n_layers
    for k in range(n_layers - 1, -1, -1):
        W = weights[k]
        gw = acts[k].T @ dz
        if ds is not None:
            gw = gw + t_list[k].T @ ds
        grad_w[k] = gw
        grad_b[k] = dz.sum(axis=0)
        if k == 0:
            break
        d1 = cache.d1[k]
        da = dz @ W.T
        if ds is not None:
            dt = ds @ W.T
            dz = d1 * da + cache.d2[k] * s_list[k] * dt
            ds = d1 * dt
        else:
            dz = d1 * da
    return grad_w, grad_b


def forces_from_input_gradient(g, pair_row, pair_atom, dvalues, n_atoms: int, xp=np):
    """F_j = - sum_{p: atom(p)=j} g_{row(p)} . dG_p; returns (n_atoms, 3) eV/Å."""
    contrib = xp.einsum("pk,pkc->pc", g[pair_row], dvalues)
    return -scatter_add_rows(xp, pair_atom, contrib, n_atoms)


def input_adjoint_from_force_adjoint(force_adjoint, pair_row, pair_atom, dvalues, n_rows: int, xp=np):
    """u_r = dL/dg_r given phi = dL/dF (n_atoms, 3): u_r = - sum_{p: row(p)=r} dG_p phi_{atom(p)}."""
    v = xp.einsum("pkc,pc->pk", dvalues, force_adjoint[pair_atom])
    return -scatter_add_rows(xp, pair_row, v, n_rows)


@dataclass
class Architecture:
    """Layer widths of every element network: ``n_inputs[Z]`` -> ``hidden`` -> 1."""

    elements: tuple  # sorted atomic numbers
    n_inputs: dict  # Z -> number of (selected) descriptors
    hidden: tuple  # widths of the hidden layers, e.g. (15, 15)
    activation: str = ACTIVATION

    def layer_sizes(self, z: int) -> list:
        return [int(self.n_inputs[z]), *[int(h) for h in self.hidden], 1]

    def shapes(self) -> list:
        """(Z, k, kind, shape) for every parameter block in the flat-vector order."""
        out = []
        for z in self.elements:
            sizes = self.layer_sizes(z)
            for k in range(len(sizes) - 1):
                out.append((z, k, "W", (sizes[k], sizes[k + 1])))
                out.append((z, k, "b", (sizes[k + 1],)))
        return out

    @property
    def n_parameters(self) -> int:
        return int(sum(np.prod(s) for _, _, _, s in self.shapes()))


def unflatten(arch: Architecture, theta) -> dict:
    """Views {Z: (weights, biases)} into the flat parameter vector."""
    views = {z: ([], []) for z in arch.elements}
    pos = 0
    for z, _k, kind, shape in arch.shapes():
        size = int(np.prod(shape))
        block = theta[pos:pos + size].reshape(shape)
        views[z][0 if kind == "W" else 1].append(block)
        pos += size
    return views


def flatten_gradients(arch: Architecture, grads: dict, xp=np):
    """Flat vector from {Z: (grad_w list, grad_b list)} in the order of :func:`unflatten`."""
    parts = []
    for z, k, kind, _shape in arch.shapes():
        gw, gb = grads[z]
        parts.append((gw if kind == "W" else gb)[k].ravel())
    return xp.concatenate(parts)


def init_parameters(arch: Architecture, rng: np.random.Generator, output_bias: dict | None = None,
                    output_scale: float = 1e-2) -> np.ndarray:
    """Random initial weights (NumPy).

    Hidden layers: Glorot/Xavier uniform, W ~ U(±sqrt(6/(n_in+n_out))), b = 0, which keeps
    tanh in its linear range for inputs scaled to [-1, 1]. Output layer: W ~ N(0, s²/n_in) with
    s = ``output_scale`` (eV, the expected spread of atomic energies), b = ``output_bias[Z]``
    (eV per atom, from the least-squares element reference energies).
    """
    output_bias = output_bias or {}
    theta = np.zeros(arch.n_parameters)
    views = unflatten(arch, theta)
    for z in arch.elements:
        weights, biases = views[z]
        for k, W in enumerate(weights):
            n_in, n_out = W.shape
            if k < len(weights) - 1:
                lim = np.sqrt(6.0 / (n_in + n_out))
                W[...] = rng.uniform(-lim, lim, size=W.shape)
            else:
                W[...] = rng.normal(0.0, output_scale / np.sqrt(n_in), size=W.shape)
                biases[k][...] = float(output_bias.get(z, 0.0))
    return theta


def output_bias_indices(arch: Architecture) -> np.ndarray:
    """Positions in the flat parameter vector of every element's output bias b_L."""
    out, pos = [], 0
    n_layers = len(arch.hidden) + 1
    for _z, k, kind, shape in arch.shapes():
        size = int(np.prod(shape))
        if kind == "b" and k == n_layers - 1:
            out.append(pos)
        pos += size
    return np.array(out, np.int64)


def weight_bounds(arch: Architecture, theta0, bound: float):
    """(lower, upper) arrays: |w| <= bound for every weight and hidden bias; the output biases,
    which carry the element reference energies (e.g. -100 eV/atom), may move by ±bound around
    their initial value instead."""
    lower = np.full(arch.n_parameters, -float(bound))
    upper = np.full(arch.n_parameters, float(bound))
    idx = output_bias_indices(arch)
    lower[idx] = np.asarray(theta0)[idx] - bound
    upper[idx] = np.asarray(theta0)[idx] + bound
    return lower, upper
