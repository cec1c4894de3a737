"""The symmetry functions only imported (n2p2) potentials use: n2p2's cutoff types, a cutoff
radius per function, shifted angular Gaussians and the wide G5 (n2p2's type 9). Checked against
an explicit loop over periodic images written from the formulas, finite differences of the
values (forces) and of a strain (stress), and hdnnp's own functions where they coincide."""

import itertools

import numpy as np
import pytest

from hdnnp.descriptors import FeatureSet, compute_descriptors, compute_raw
from hdnnp.descriptors.symmetry_functions import CUTOFF_TYPES, cutoff_function

CU, S = 29, 16
CELL = np.array([[6.1, 0.0, 0.0], [0.7, 5.8, 0.0], [-0.4, 0.9, 6.4]])


def custom_set(cutoff_type=1, alpha=0.0):
    """G2 with two radii, narrow G4 (shifted and not), wide G5 (shifted and not), two elements."""
    rows = []
    for b in (S, CU):
        rows += [(2, b, 0, 0.3, 1.5, 0.0, 0.0, 5.0), (2, b, 0, 0.05, 0.0, 0.0, 0.0, 4.2)]
    for a, b in ((S, S), (S, CU), (CU, CU)):
        rows += [(4, a, b, 0.02, 0.0, 1.0, -1.0, 5.0), (4, a, b, 0.1, 1.2, 4.0, 1.0, 4.2),
                 (5, a, b, 0.03, 0.0, 2.0, 1.0, 5.0), (5, a, b, 0.2, 0.9, 1.0, -1.0, 4.2)]
    c = list(zip(*rows))
    fs = FeatureSet(elements=(S, CU), cutoff=5.0, kind=np.array(c[0], np.int32),
                    neighbor_a=np.array(c[1], np.int32), neighbor_b=np.array(c[2], np.int32),
                    eta=np.array(c[3]), rs=np.array(c[4]), zeta=np.array(c[5]), lambda_=np.array(c[6]),
                    rc=np.array(c[7]), cutoff_type=cutoff_type, cutoff_alpha=alpha)
    return fs


def frame(seed=0, n=9):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 1, (n, 3)) @ CELL
    return pos, np.array([(CU, S)[k % 2] for k in range(n)])


def explicit(pos, z, cell, fs):
    """Formula by formula, over explicit periodic images (independent of the factorised code)."""
    def fc(r, rc):
        return float(cutoff_function(np.array([r]), rc, fs.cutoff_type, fs.cutoff_alpha)[0][0])

    images = []
    for shift in itertools.product(range(-2, 3), repeat=3):
        t = np.array(shift) @ cell
        images += [(z[j], pos[j] + t) for j in range(len(pos))]
    out = np.zeros((len(pos), fs.n_candidates))
    for i in range(len(pos)):
        nbrs = [(zj, r - pos[i]) for zj, r in images if 0 < np.linalg.norm(r - pos[i]) <= fs.cutoff]
        for c in range(fs.n_candidates):
            eta, rs, rc = fs.eta[c], fs.rs[c], fs.rc[c]
            if fs.kind[c] == 2:
                out[i, c] = sum(np.exp(-eta * (np.linalg.norm(v) - rs) ** 2) * fc(np.linalg.norm(v), rc)
                                for zj, v in nbrs if zj == fs.neighbor_a[c])
                continue
            for (zj, vj), (zk, vk) in itertools.combinations(nbrs, 2):
                if tuple(sorted((zj, zk))) != (fs.neighbor_a[c], fs.neighbor_b[c]):
                    continue
                rij, rik, rjk = np.linalg.norm(vj), np.linalg.norm(vk), np.linalg.norm(vk - vj)
                cos = vj @ vk / (rij * rik)
                ang = 2 ** (1 - fs.zeta[c]) * (1 + fs.lambda_[c] * cos) ** fs.zeta[c]
                if fs.kind[c] == 4:
                    out[i, c] += (ang * np.exp(-eta * ((rij - rs) ** 2 + (rik - rs) ** 2 + (rjk - rs) ** 2))
                                  * fc(rij, rc) * fc(rik, rc) * fc(rjk, rc))
                else:
                    out[i, c] += ang * np.exp(-eta * ((rij - rs) ** 2 + (rik - rs) ** 2)) * fc(rij, rc) * fc(rik, rc)
    return out


@pytest.mark.parametrize("kind", sorted(CUTOFF_TYPES))
def test_cutoff_types_formulas_and_derivatives(kind):
    rc, alpha = 4.0, (0.25 if kind not in (2, 3) else 0.0)
    r = np.linspace(0.05, 4.5, 60)
    f, df = cutoff_function(r, rc, kind, alpha)
    h = 1e-5  # the polynomials cancel near Rc (terms of ~500 summing to ~0): rounding/h matters
    fd = (cutoff_function(r + h, rc, kind, alpha)[0] - cutoff_function(r - h, rc, kind, alpha)[0]) / (2 * h)
    inner = r < alpha * rc
    np.testing.assert_allclose(df, fd, rtol=1e-6, atol=5e-8)
    assert np.all(f[r > rc] == 0) and np.all(df[r > rc] == 0)
    assert np.all(f[inner] == 1.0) and np.all(df[inner] == 0.0)
    assert cutoff_function(np.array([rc]), rc, kind, alpha)[0][0] == pytest.approx(0.0, abs=1e-12)
    x = (2.0 - alpha * rc) / (rc - alpha * rc)  # a hand value at R = 2 Å
    t = np.tanh(1.0 - 2.0 / rc)
    expect = {1: 0.5 * (np.cos(np.pi * x) + 1), 2: t ** 3,
              3: t ** 3 * ((np.e + 1 / np.e) / (np.e - 1 / np.e)) ** 3, 4: np.e * np.exp(1 / (x * x - 1)),
              5: 2 * x ** 3 - 3 * x ** 2 + 1, 6: -6 * x ** 5 + 15 * x ** 4 - 10 * x ** 3 + 1,
              7: 20 * x ** 7 - 70 * x ** 6 + 84 * x ** 5 - 35 * x ** 4 + 1,
              8: -70 * x ** 9 + 315 * x ** 8 - 540 * x ** 7 + 420 * x ** 6 - 126 * x ** 5 + 1}[kind]
    assert cutoff_function(np.array([2.0]), rc, kind, alpha)[0][0] == pytest.approx(expect, rel=1e-12)
    if kind == 3:
        assert cutoff_function(np.array([0.0]), rc, kind)[0][0] == pytest.approx(1.0, rel=1e-14)


@pytest.mark.parametrize("cutoff_type, alpha", [(1, 0.0), (1, 0.2), (2, 0.0), (6, 0.1)])
def test_values_against_explicit_images(cutoff_type, alpha):
    fs = custom_set(cutoff_type, alpha)
    pos, z = frame(1)
    got = compute_raw(pos, CELL, True, z, fs)
    ref = explicit(pos, z, CELL, fs)
    assert np.count_nonzero(ref) > 0.9 * ref.size  # every kind of function is exercised
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-14)


def test_derivatives_against_finite_differences():
    from test_symmetry_functions import worst_derivative_error

    pos, z = frame(2, n=7)
    assert worst_derivative_error(custom_set(6, 0.1), pos, CELL, z) < 1e-6


def test_strain_derivatives_against_finite_differences():
    """The virial route (stress) with every new kind: ∂G/∂ε by straining positions and cell."""
    fs = custom_set(1, 0.2)
    pos, z = frame(3, n=6)
    cols = np.arange(fs.n_candidates)
    fs.selected = {S: cols, CU: cols}
    fs.min = {S: np.zeros(len(cols)), CU: np.zeros(len(cols))}
    fs.max = {S: np.full(len(cols), 2.0), CU: np.full(len(cols), 2.0)}  # x' = x − 1: dx'/dx = 1
    desc = compute_descriptors(pos, CELL, True, z, fs, stress=True)
    h = 1e-6
    for a, b in ((0, 0), (0, 1), (2, 1)):
        eps = np.zeros((3, 3))
        eps[a, b] = h
        plus = compute_raw(pos @ (np.eye(3) + eps), CELL @ (np.eye(3) + eps), True, z, fs)
        minus = compute_raw(pos @ (np.eye(3) - eps), CELL @ (np.eye(3) - eps), True, z, fs)
        fd = (plus - minus) / (2 * h)
        for el, d in desc.items():
            np.testing.assert_allclose(d.virial[:, :, a, b], fd[d.atom_index], rtol=1e-6,
                                       atol=1e-7 * np.abs(fd).max())


def test_shifted_and_wide_reduce_to_known_cases():
    """Rs = 0 narrow G4 with one radius and the cosine cutoff is hdnnp's own G4, bit for bit."""
    own = FeatureSet.default([S, CU], cutoff=5.0, etas=(0.02, 0.1), rss=(0.0,), zetas=(1.0, 4.0))
    pos, z = frame(4)
    ref = compute_raw(pos, CELL, True, z, own)
    twin = FeatureSet(elements=own.elements, cutoff=5.0, kind=own.kind, neighbor_a=own.neighbor_a,
                      neighbor_b=own.neighbor_b, eta=own.eta, rs=own.rs, zeta=own.zeta, lambda_=own.lambda_,
                      rc=np.full(own.n_candidates, 5.0), cutoff_type=1, cutoff_alpha=0.0)
    np.testing.assert_array_equal(compute_raw(pos, CELL, True, z, twin), ref)


def test_per_function_cutoff_equals_a_set_with_that_cutoff():
    fs = custom_set()
    small = np.nonzero(fs.rc == 4.2)[0]
    pos, z = frame(5)
    got = compute_raw(pos, CELL, True, z, fs, candidates=small)
    alone = FeatureSet(elements=fs.elements, cutoff=4.2, kind=fs.kind[small], neighbor_a=fs.neighbor_a[small],
                       neighbor_b=fs.neighbor_b[small], eta=fs.eta[small], rs=fs.rs[small],
                       zeta=fs.zeta[small], lambda_=fs.lambda_[small])
    np.testing.assert_allclose(got, compute_raw(pos, CELL, True, z, alone), rtol=1e-13, atol=1e-16)


def test_feature_set_round_trip_through_h5(tmp_path):
    import h5py

    fs = custom_set(7, 0.3)
    cols = np.array([0, 5, 9])
    fs.selected = {S: cols, CU: cols}
    fs.min = {S: np.zeros(3), CU: np.zeros(3)}
    fs.max = {S: np.ones(3), CU: np.ones(3)}
    fs.scaling = {S: (np.full(3, 0.5), np.full(3, 3.0), np.zeros(3)), CU: (np.zeros(3), np.ones(3), np.zeros(3))}
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        fs.to_h5(h5.create_group("fs"))
    with h5py.File(tmp_path / "f.h5") as h5:
        back = FeatureSet.from_h5(h5["fs"])
    assert (back.cutoff_type, back.cutoff_alpha) == (7, 0.3)
    np.testing.assert_array_equal(back.rc, fs.rc)
    x = np.array([[0.2, 0.5, 1.5]])
    np.testing.assert_array_equal(back.scale(S, x), (x - 0.5) * 3.0)
    # extrapolation is judged on the training range [0, 1] whatever the scaling
    np.testing.assert_allclose(back.unit_scaled(S, back.scale(S, x)), [[-0.6, 0.0, 2.0]], rtol=1e-14)
