"""G2/G4 values and derivatives against hand-computed values, finite differences, an explicit
image sum, invariances and dscribe's ACSF (test-only oracle)."""

import itertools

import numpy as np
import pytest

from hdnnp.descriptors import FeatureSet, compute_descriptors, compute_raw
from hdnnp.descriptors.symmetry_functions import cutoff_function

RC = 6.0
SMALL = dict(etas=(0.0, 0.04, 0.32), rss=(0.0, 2.0), zetas=(1.0, 4.0), lambdas=(-1.0, 1.0))
TE, O = 52, 8
TRICLINIC = np.array([[6.5, 0.0, 0.0], [1.0, 7.0, 0.0], [0.5, -1.0, 7.2]])


def fc(r):
    return 0.5 * (np.cos(np.pi * r / RC) + 1.0) if r <= RC else 0.0


def random_frame(seed, n=8, cell=TRICLINIC, species=(O, TE)):
    rng = np.random.default_rng(seed)
    frac = rng.uniform(0, 1, (n, 3))
    z = np.array([species[k % len(species)] for k in range(n)])
    return frac @ cell, z


def test_cutoff_function_and_derivative():
    r = np.array([0.0, 3.0, 6.0, 6.5])
    f, df = cutoff_function(r, RC)
    np.testing.assert_allclose(f, [1.0, 0.5, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(df, [0.0, -np.pi / 12, 0.0, 0.0], atol=1e-15)


def test_two_atoms_by_hand():
    fs = FeatureSet.default([TE], **SMALL)
    r = 2.7
    pos = np.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
    g = compute_raw(pos, np.zeros((3, 3)), False, [TE, TE], fs)
    for c in range(fs.n_candidates):
        expect = np.exp(-fs.eta[c] * (r - fs.rs[c]) ** 2) * fc(r) if fs.kind[c] == 2 else 0.0
        assert g[0, c] == pytest.approx(expect, rel=1e-14, abs=1e-300)
        assert g[1, c] == pytest.approx(expect, rel=1e-14, abs=1e-300)


def test_three_atoms_by_hand():
    fs = FeatureSet.default([TE], **SMALL)
    pos = np.array([[0.0, 0.0, 0.0], [2.5, 0.0, 0.0], [0.8, 3.0, 0.0]])
    g = compute_raw(pos, np.zeros((3, 3)), False, [TE] * 3, fs)
    r01, r02, r12 = 2.5, np.hypot(0.8, 3.0), np.hypot(1.7, 3.0)
    cos0 = (2.5 * 0.8) / (r01 * r02)
    for c in np.nonzero(fs.kind == 4)[0]:
        eta, zeta, lam = fs.eta[c], fs.zeta[c], fs.lambda_[c]
        expect = (2 ** (1 - zeta) * (1 + lam * cos0) ** zeta * np.exp(-eta * (r01**2 + r02**2 + r12**2))
                  * fc(r01) * fc(r02) * fc(r12))
        assert g[0, c] == pytest.approx(expect, rel=1e-13)
    for c in np.nonzero(fs.kind == 2)[0]:
        expect = sum(np.exp(-fs.eta[c] * (r - fs.rs[c]) ** 2) * fc(r) for r in (r01, r02))
        assert g[0, c] == pytest.approx(expect, rel=1e-13)


def explicit_image_sum(pos, z, cell, fs, n_img=2):
    """Independent reference: loop over explicit images (cell far below 2·Rc needs n_img > 1)."""
    images = []
    for shift in itertools.product(range(-n_img, n_img + 1), repeat=3):
        t = np.array(shift) @ cell
        images += [(j, pos[j] + t) for j in range(len(pos))]
    out = np.zeros((len(pos), fs.n_candidates))
    for i in range(len(pos)):
        nbrs = [(z[j], r - pos[i]) for j, r in images if 0 < np.linalg.norm(r - pos[i]) <= RC]
        for c in range(fs.n_candidates):
            if fs.kind[c] == 2:
                out[i, c] = sum(np.exp(-fs.eta[c] * (np.linalg.norm(v) - fs.rs[c]) ** 2) * fc(np.linalg.norm(v))
                                for zj, v in nbrs if zj == fs.neighbor_a[c])
        for (zj, vj), (zk, vk) in itertools.combinations(nbrs, 2):
            rij, rik, rjk = np.linalg.norm(vj), np.linalg.norm(vk), np.linalg.norm(vk - vj)
            if rjk > RC:
                continue
            cos = vj @ vk / (rij * rik)
            pair = tuple(sorted((zj, zk)))
            for c in np.nonzero(fs.kind == 4)[0]:
                if (fs.neighbor_a[c], fs.neighbor_b[c]) == pair:
                    out[i, c] += (2 ** (1 - fs.zeta[c]) * (1 + fs.lambda_[c] * cos) ** fs.zeta[c]
                                  * np.exp(-fs.eta[c] * (rij**2 + rik**2 + rjk**2)) * fc(rij) * fc(rik) * fc(rjk))
    return out


def test_small_triclinic_cell_against_explicit_images():
    fs = FeatureSet.default([O, TE], etas=(0.04, 0.32), rss=(0.0, 2.0), zetas=(1.0, 4.0))
    cell = np.array([[3.6, 0.0, 0.0], [0.9, 3.4, 0.0], [-0.6, 0.7, 3.9]])  # < 2·Rc: many self-images
    pos, z = random_frame(3, n=2, cell=cell)
    got = compute_raw(pos, cell, True, z, fs)
    np.testing.assert_allclose(got, explicit_image_sum(pos, z, cell, fs, n_img=3), rtol=1e-11)


def worst_derivative_error(fs, pos, cell, z, h=1e-5) -> float:
    """Largest relative difference between the analytic pair derivatives of ``compute_raw`` and
    central differences of its values, over every atom and direction; asserts that no value
    depends on an atom without a derivative pair."""
    values, pair_i, pair_j, dvalues = compute_raw(pos, cell, True, z, fs, derivatives=True)
    worst = 0.0
    for a in range(len(pos)):
        for d in range(3):
            plus, minus = pos.copy(), pos.copy()
            plus[a, d] += h
            minus[a, d] -= h
            fd = (compute_raw(plus, cell, True, z, fs) - compute_raw(minus, cell, True, z, fs)) / (2 * h)
            analytic = np.zeros_like(fd)
            m = pair_j == a
            analytic[pair_i[m]] = dvalues[m, :, d]
            assert not np.any(fd[np.setdiff1d(np.arange(len(pos)), pair_i[m])])  # no pair: no dependence
            worst = max(worst, np.max(np.abs(fd - analytic)) / np.max(np.abs(fd)))
    return worst


def test_derivatives_against_finite_differences():
    fs = FeatureSet.default([O, TE], **SMALL)
    pos, z = random_frame(4, n=7)
    assert worst_derivative_error(fs, pos, TRICLINIC, z) < 1e-6


def test_invariances_translation_rotation_permutation_image():
    fs = FeatureSet.default([O, TE], **SMALL)
    pos, z = random_frame(5, n=8)
    ref = compute_raw(pos, TRICLINIC, True, z, fs)
    # translation and choice of periodic image of each atom
    rng = np.random.default_rng(0)
    moved = pos + np.array([0.3, -1.7, 2.2]) + rng.integers(-2, 3, (len(pos), 3)) @ TRICLINIC
    np.testing.assert_allclose(compute_raw(moved, TRICLINIC, True, z, fs), ref, rtol=1e-11, atol=1e-14)
    # rotation of positions and cell together
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    np.testing.assert_allclose(compute_raw(pos @ q.T, TRICLINIC @ q.T, True, z, fs), ref, rtol=1e-11, atol=1e-14)
    # permutation of the atoms permutes the rows
    perm = rng.permutation(len(pos))
    np.testing.assert_allclose(compute_raw(pos[perm], TRICLINIC, True, z[perm], fs), ref[perm], rtol=1e-12, atol=1e-14)


def test_against_dscribe_acsf_periodic_two_elements():
    ase = pytest.importorskip("ase")
    dscribe = pytest.importorskip("dscribe.descriptors")
    etas, rss, zetas = (0.04, 0.14, 0.71), (0.0, 1.0, 3.0), (1.0, 2.0, 16.0)
    fs = FeatureSet.default([O, TE], etas=etas, rss=rss, zetas=zetas)
    pos, z = random_frame(6, n=9)
    acsf = dscribe.ACSF(species=["O", "Te"], r_cut=RC, periodic=True,
                        g2_params=[[e, r] for e in etas for r in rss],
                        g4_params=[[e, zt, lam] for e in etas for zt in zetas for lam in (-1.0, 1.0)])
    ref = acsf.create(ase.Atoms(numbers=z, positions=pos, cell=TRICLINIC, pbc=True))
    # dscribe layout: per species [G1, G2 x 9], then per pair (O,O), (O,Te), (Te,Te) 18 G4
    ref = np.concatenate([ref[:, 1:10], ref[:, 11:20], ref[:, 20:]], axis=1)
    np.testing.assert_allclose(compute_raw(pos, TRICLINIC, True, z, fs), ref, rtol=1e-10, atol=1e-14)


def test_candidate_subset_and_scaled_descriptors_agree_with_raw():
    fs = FeatureSet.default([O, TE], **SMALL)
    pos, z = random_frame(7, n=8)
    raw, pair_i, pair_j, draw = compute_raw(pos, TRICLINIC, True, z, fs, derivatives=True)
    cols = np.array([3, 0, 17, 30])
    sub = compute_raw(pos, TRICLINIC, True, z, fs, candidates=cols)
    np.testing.assert_allclose(sub, raw[:, cols], rtol=1e-13)
    fs.fit({O: raw[z == O], TE: raw[z == TE]}, n_features=5)
    desc = compute_descriptors(pos, TRICLINIC, True, z, fs, derivatives=True)
    for el, d in desc.items():
        sel = fs.selected[el]
        np.testing.assert_array_equal(d.atom_index, np.nonzero(z == el)[0])
        lo, hi = raw[z == el][:, sel].min(0), raw[z == el][:, sel].max(0)
        np.testing.assert_allclose(d.values, 2 * (raw[z == el][:, sel] - lo) / (hi - lo) - 1, rtol=1e-12, atol=1e-12)
        for row, atom, dv in zip(d.pair_row, d.pair_atom, d.dvalues):
            p = np.nonzero((pair_i == d.atom_index[row]) & (pair_j == atom))[0][0]
            np.testing.assert_allclose(dv, draw[p, sel] * (2 / (hi - lo))[:, None], rtol=1e-12, atol=1e-14)


def test_ase_atoms_entry_point_matches_arrays():
    ase = pytest.importorskip("ase")
    from hdnnp.descriptors import descriptors_of_atoms

    fs = FeatureSet.default([O, TE], **SMALL)
    pos, z = random_frame(8, n=6)
    atoms = ase.Atoms(numbers=z, positions=pos, cell=TRICLINIC, pbc=True)
    np.testing.assert_array_equal(descriptors_of_atoms(atoms, fs, raw=True), compute_raw(pos, TRICLINIC, True, z, fs))
