"""The compiled symmetry functions (hdnnp.descriptors.fast) against the NumPy reference.

Values, per-pair derivatives, per-atom strain derivatives and the adjoint forces and stress, to
1e-10 relative: two elements, triclinic cells with every edge below 2·Rc (several images of a
neighbour and of the atom itself), non-periodic clusters, every function kind (G2 with shifts,
narrow and wide angular with and without shifts, two cutoff radii) and every cutoff type. The
rest of the suite (hand-computed cases, explicit image sums, dscribe, finite differences) runs
on the compiled path wherever Numba is installed, the NumPy reference only here.
"""

import numpy as np
import pytest

from hdnnp import nn
from hdnnp.descriptors import FeatureSet, compute_raw, fast
from hdnnp.descriptors.compute import _raw_entries
from hdnnp.descriptors.symmetry_functions import CUTOFF_TYPES, ColumnPlan
from hdnnp.model import Potential
from hdnnp.neighbors import neighbor_list
from test_imported_features import CELL, CU, S, custom_set, frame

pytestmark = pytest.mark.skipif(not fast.AVAILABLE, reason="numba is not installed")


def both(monkeypatch, func):
    """func() on the compiled path, then on the NumPy reference."""
    compiled = func()
    with monkeypatch.context() as m:
        m.setattr(fast, "AVAILABLE", False)
        reference = func()
    return compiled, reference


def close(a, b, rtol=1e-10):
    """max |a − b| <= rtol · max |b| (arrays of one shape, empty ones too)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    scale = max(np.abs(b).max(initial=0.0), 1e-300)
    assert np.abs(a - b).max(initial=0.0) <= rtol * scale, np.abs(a - b).max() / scale


def same_raw(got, want):
    """Two paths' ``(values, (pair_i, pair_j, dvalues), W)`` of one frame: the same pairs,
    values and derivatives to 1e-10 relative, and none of them all zero."""
    (v1, p1, w1), (v0, p0, w0) = got, want
    assert np.abs(v0).max() > 0 and np.abs(p0[2]).max() > 0
    close(v1, v0)
    np.testing.assert_array_equal(p1[0], p0[0])
    np.testing.assert_array_equal(p1[1], p0[1])
    close(p1[2], p0[2])
    close(w1, w0)


@pytest.mark.parametrize("cutoff_type,alpha", [(k, 0.0) for k in CUTOFF_TYPES] + [(1, 0.3), (6, 0.5), (4, 0.2)])
def test_values_derivatives_and_strain_derivatives_equal_the_reference(monkeypatch, cutoff_type, alpha):
    fs = custom_set(cutoff_type, alpha)
    pos, z = frame(cutoff_type, n=9)
    cols = np.arange(fs.n_candidates)
    same_raw(*both(monkeypatch, lambda: _raw_entries(pos, CELL, True, z, fs, cols, True, "cpu", virial=True)))


@pytest.mark.parametrize("pbc", [True, False, [True, False, True]])
def test_seed_grid_subsets_and_clusters(monkeypatch, pbc):
    """hdnnp's own grid, a scattered subset of columns, periodic or not, one lone atom."""
    fs = FeatureSet.default([CU, S], cutoff=5.0)
    pos, z = frame(3, n=11)
    pos = np.vstack([pos, [40.0, 40.0, 40.0]]) if pbc is False else pos  # an atom without neighbours
    z = np.append(z, CU) if pbc is False else z
    cols = np.random.default_rng(1).choice(fs.n_candidates, 37, replace=False)
    (v1, *d1), (v0, *d0) = both(monkeypatch, lambda: compute_raw(pos, CELL, pbc, z, fs, True, candidates=cols))
    close(v1, v0)
    for a, b in zip(d1, d0):
        close(a, b)


def same_prediction(p1, p0, excess_rtol=0.0):
    """Two paths' :class:`~hdnnp.model.Prediction` of one box: energy to 1e-12, atomic energies,
    forces, stress and a committee's force spread to 1e-10, the extrapolation count exactly and
    its largest excess to ``excess_rtol`` (0: exactly)."""
    assert abs(p1.energy - p0.energy) <= 1e-12 * abs(p0.energy)
    close(p1.atomic_energies, p0.atomic_energies)
    close(p1.forces, p0.forces)
    close(p1.stress, p0.stress)
    assert (p1.forces_spread is None) == (p0.forces_spread is None)
    if p0.forces_spread is not None:
        close(p1.forces_spread, p0.forces_spread)
    assert p1.extrapolation_count == p0.extrapolation_count
    assert p1.extrapolation_max_excess == pytest.approx(p0.extrapolation_max_excess, rel=excess_rtol, abs=0)


def random_model(rng, n_members=1):
    fs = custom_set(1, 0.0)
    boxes = [frame(s, n=9) for s in range(3)]
    raw = np.concatenate([compute_raw(p, CELL, True, z, fs) for p, z in boxes])
    species = np.concatenate([z for _, z in boxes])
    fs.fit({e: raw[species == e] for e in (CU, S)}, n_features=9)
    arch = nn.Architecture(elements=(S, CU), n_inputs={S: 9, CU: 9}, hidden=(7, 5), activation="softplus,tanh")
    members = [nn.init_parameters(arch, rng, {S: -1.0, CU: -2.0}, output_scale=0.5) for _ in range(n_members)]
    return Potential(fs, arch, members[0], {S: -1.0, CU: -2.0}, members=members if n_members > 1 else None)


@pytest.mark.parametrize("n_members", [1, 2])
def test_adjoint_forces_and_stress_equal_the_materialised_derivatives(monkeypatch, n_members):
    """Potential.evaluate contracts ∂E/∂G with cached derivative terms (no dG formed)."""
    pot = random_model(np.random.default_rng(5), n_members)
    pos, z = frame(11, n=9)
    same_prediction(*both(monkeypatch, lambda: pot.evaluate(pos, CELL, True, z, forces=True, stress=True)))
    # no atoms at all: nothing to weigh, zero energy, forces and stress on both paths
    empty = both(monkeypatch, lambda: pot.evaluate(np.zeros((0, 3)), CELL, True, np.zeros(0, int), stress=True))
    for p in empty:
        assert p.energy == 0.0 and p.forces.shape == (0, 3) and not p.stress.any()


def test_adjoint_pass_against_finite_differences_and_in_chunks(monkeypatch):
    """Forces and strain derivative of a linear energy E = Σ_i Σ_c u_ic G_ic against central
    differences; atoms walked in chunks (a tiny item bound) give the same as one chunk."""
    fs = custom_set(6, 0.2)
    pos, z = frame(8, n=9)
    cols = np.arange(fs.n_candidates)
    plan = ColumnPlan(fs, cols)
    nl = neighbor_list(pos, CELL, True, fs.cutoff)
    u = np.random.default_rng(0).normal(size=(2, len(pos), len(cols)))  # two "members"
    calls = []

    def weights_of(a0, a1, values):
        calls.append((a0, a1))
        return u[:, a0:a1]

    values, forces, strain = fast.adjoint_pass(nl, z, plan, weights_of)
    assert calls == [(0, len(pos))]
    np.testing.assert_allclose(values, compute_raw(pos, CELL, True, z, fs), rtol=1e-13, atol=0)

    def energy(x, cell=CELL, m=0):
        return float(np.sum(u[m] * compute_raw(x, cell, True, z, fs)))

    h = 1e-6
    for m in (0, 1):
        for atom, axis in [(0, 0), (3, 2), (8, 1)]:
            plus, minus = pos.copy(), pos.copy()
            plus[atom, axis] += h
            minus[atom, axis] -= h
            fd = -(energy(plus, m=m) - energy(minus, m=m)) / (2 * h)
            assert abs(fd - forces[m, atom, axis]) <= 1e-6 * np.abs(forces[m]).max()
    eps = np.zeros((3, 3))
    eps[0, 2] = h
    fd = (energy(pos @ (np.eye(3) + eps), CELL @ (np.eye(3) + eps)) -
          energy(pos @ (np.eye(3) - eps), CELL @ (np.eye(3) - eps))) / (2 * h)
    assert abs(fd - strain[0, 0, 2]) <= 1e-6 * np.abs(strain[0]).max()

    monkeypatch.setattr(fast, "MAX_ITEMS", 50)
    calls.clear()
    v2, f2, s2 = fast.adjoint_pass(nl, z, plan, weights_of)
    assert len(calls) > 2 and calls[0][0] == 0 and calls[-1][1] == len(pos)
    assert all(a[1] == b[0] for a, b in zip(calls, calls[1:]))
    close(v2, values)
    close(f2, forces)
    close(s2, strain)
