"""Feature selection (zero/duplicate dropping, CUR, FPS, user list), ranging and storage."""

import h5py
import numpy as np
import pytest

from hdnnp.descriptors import FeatureSet, compute_raw
from hdnnp.descriptors.selection import cur_order, fps_order, informative_candidates, normalised, select_features
from hdnnp.errors import HdnnpError

TE = 52


def liquid_like_raw(n_boxes=3, n=24, seed=0):
    rng = np.random.default_rng(seed)
    fs = FeatureSet.default([TE])
    side = (n / 0.0269) ** (1 / 3)
    raws = [compute_raw(rng.uniform(0, side, (n, 3)), np.eye(3) * side, True, [TE] * n, fs)
            for _ in range(n_boxes)]
    return fs, np.concatenate(raws)


def test_seed_grid_drops_eta_zero_duplicates_and_zero_columns():
    fs, raw = liquid_like_raw()
    useful = informative_candidates(raw)
    g2_eta0 = np.nonzero((fs.kind == 2) & (fs.eta == 0))[0]
    # with η = 0 every Rs gives Σ fc: only the first of the six survives
    assert np.allclose(raw[:, g2_eta0], raw[:, g2_eta0[:1]])
    assert set(g2_eta0) & set(useful) == {g2_eta0[0]}
    # no duplicates nor constants among the kept ones
    kept = raw[:, useful]
    assert np.all(kept.max(0) > kept.min(0))
    for a in range(len(useful)):
        for b in range(a):
            assert not np.allclose(kept[:, a], kept[:, b], rtol=1e-10, atol=0)
    # an all-zero candidate is dropped
    raw0 = raw.copy()
    raw0[:, 40] = 0.0
    assert 40 not in informative_candidates(raw0)


def test_cur_picks_independent_columns_first():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(200, 3))
    x = np.column_stack([base, base[:, 0] + 1e-14 * base[:, 1], base @ [1.0, 1.0, 0.0]])
    order = cur_order(x - x.mean(0), 3)
    # three picks span the rank-3 column space
    assert np.linalg.matrix_rank(x[:, order]) == 3
    # the largest-variance direction wins first
    y = np.column_stack([rng.normal(size=200) * 10, rng.normal(size=200)])
    assert cur_order(y, 1)[0] == 0


def test_fps_picks_farthest_columns():
    rng = np.random.default_rng(2)
    a = rng.normal(size=100)
    x = np.column_stack([a, a + 0.01, -a, a * 0.0 + rng.normal(size=100) * 0.1])
    order = fps_order(x, 2)
    assert set(order) == {0, 2} or set(order) == {1, 2}


@pytest.mark.parametrize("method", ["cur", "fps"])
def test_fit_selects_n_distinct_informative_features(method):
    fs, raw = liquid_like_raw()
    fs.fit({TE: raw}, n_features=30, method=method)
    sel = fs.selected[TE]
    assert len(sel) == 30 == fs.n_features(TE) and len(np.unique(sel)) == 30
    assert set(sel) <= set(informative_candidates(raw))
    scaled = fs.scale(TE, raw[:, sel])
    np.testing.assert_allclose(scaled.min(0), -1.0, atol=1e-12)
    np.testing.assert_allclose(scaled.max(0), 1.0, atol=1e-12)


def test_fewer_informative_than_asked_keeps_all_informative():
    fs, raw = liquid_like_raw(n_boxes=1)
    n_useful = len(informative_candidates(raw))
    assert len(select_features(raw, 500)) == n_useful


def test_user_list_and_h5_round_trip(tmp_path):
    fs, raw = liquid_like_raw(n_boxes=1)
    fs.fit({TE: raw}, keep=[0, 3, 7, 40])
    np.testing.assert_array_equal(fs.selected[TE], [0, 3, 7, 40])
    assert fs.selection_method == "list"
    with h5py.File(tmp_path / "fs.h5", "w") as h5:
        fs.to_h5(h5.create_group("feature_set"))
    with h5py.File(tmp_path / "fs.h5", "r") as h5:
        back = FeatureSet.from_h5(h5["feature_set"])
    for name in ("kind", "neighbor_a", "neighbor_b", "eta", "rs", "zeta", "lambda_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(fs, name))
    np.testing.assert_array_equal(back.selected[TE], fs.selected[TE])
    np.testing.assert_allclose(back.scale(TE, raw[:, [0, 3, 7, 40]]), fs.scale(TE, raw[:, [0, 3, 7, 40]]))
    table = fs.table()
    assert table["selected"].sum() == 4 and table["type"][0] == 2 and table["type"][-1] == 4
    with pytest.raises(HdnnpError):
        fs.fit({TE: raw}, keep=[0, 84])


def test_constant_feature_scales_to_zero():
    fs = FeatureSet.default([TE])
    raw = np.ones((5, fs.n_candidates))
    raw[:, 1] = np.arange(5)
    fs.fit({TE: raw}, keep=[0, 1])
    np.testing.assert_allclose(fs.scale(TE, raw[:, [0, 1]]), np.column_stack([np.zeros(5), [-1, -0.5, 0, 0.5, 1]]))
    np.testing.assert_allclose(fs.derivative_factor(TE), [0.0, 0.5])


def test_default_grid_size_and_order():
    fs = FeatureSet.default([8, 52])
    assert fs.n_candidates == 2 * 36 + 3 * 48
    assert fs.describe(0) == "G2[O] eta=0 Rs=0" and fs.describe(37) == "G2[Te] eta=0 Rs=1"
    assert fs.describe(72) == "G4[O,O] eta=0 zeta=1 lambda=-1"
    assert fs.describe(fs.n_candidates - 1) == "G4[Te,Te] eta=1.79 zeta=16 lambda=+1"


def test_near_constant_candidates_are_never_kept():
    """A candidate the training atoms barely move (the bundled Te data had G4 columns spanning
    1e-26..1e-19) looks like a rich independent column once ranged to [-1, 1], and CUR ranks it
    first; such columns, and large ones that vary by under 1e-3 of their size, are dropped."""
    from hdnnp.descriptors.selection import MIN_FEATURE_RANGE, MIN_RELATIVE_RANGE

    fs, raw = liquid_like_raw()
    rng = np.random.default_rng(7)
    tiny, flat = 3, 5
    raw = raw.copy()
    raw[:, tiny] = 1e-20 * rng.uniform(size=len(raw))  # independent of every other column
    raw[:, flat] = 40.0 + 1e-3 * rng.uniform(size=len(raw))  # relative range 2.5e-5
    useful = informative_candidates(raw)
    assert tiny not in useful and flat not in useful
    spread = raw[:, useful].max(0) - raw[:, useful].min(0)
    assert np.all(spread >= MIN_FEATURE_RANGE)
    assert np.all(spread >= MIN_RELATIVE_RANGE * np.abs(raw[:, useful]).max(0))
    for method in ("cur", "fps"):
        assert tiny not in select_features(raw, 20, method) and flat not in select_features(raw, 20, method)
    # without the range rule, CUR takes the tiny column among its first 20: the case can fail
    x = normalised(raw, np.r_[useful, tiny])
    assert len(useful) in cur_order(x, 20)
