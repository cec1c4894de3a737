"""Candidate grids (hdnnp symmetry --grid): the auto grid by its formulas, reproducible and free
of duplicates; grids from n2p2 symfunction lines; the stage end to end."""

from pathlib import Path

import numpy as np
import pytest

from hdnnp.descriptors.grids import auto_grid, grid_from_file
from hdnnp.errors import HdnnpError

DATA = Path(__file__).parent / "data" / "n2p2"


def _rows(fs):
    return np.stack([fs.kind, fs.neighbor_a, fs.neighbor_b, fs.eta, fs.rs, fs.zeta, fs.lambda_, fs.rc], 1)


def test_auto_grid_formulas_counts_and_no_duplicates():
    fs = auto_grid([29, 16], cutoff=6.0, r_min=2.0, n_radial=5, zetas=(1, 4))
    r = np.linspace(2.0, 6.0, 5)
    # per neighbour element: 5 centred + 5 shifted radial; per pair: 5 eta x 2 zeta x 2 lambda x 2 kinds
    assert fs.n_candidates == 2 * 10 + 3 * 40
    assert len(np.unique(_rows(fs), axis=0)) == fs.n_candidates
    g2 = (fs.kind == 2) & (fs.neighbor_a == 16)
    np.testing.assert_allclose(np.sort(fs.eta[g2 & (fs.rs == 0)]), np.sort(1 / (2 * r ** 2)))
    np.testing.assert_allclose(fs.rs[g2 & (fs.rs > 0)], r)
    np.testing.assert_allclose(fs.eta[g2 & (fs.rs > 0)], 1 / (2 * 1.0 ** 2))  # spacing 1 Å
    ang = fs.kind != 2
    assert set(fs.kind[ang]) == {4, 5} and np.all(fs.rs[ang] == 0) and set(fs.zeta[ang]) == {1, 4}
    np.testing.assert_allclose(np.unique(fs.eta[ang]), np.sort(1 / (2 * r ** 2)))
    assert np.all(fs.rc == 6.0) and fs.grid.startswith("auto: Rc 6 Å, r_min 2 Å, 5 radial points")
    again = auto_grid([16, 29], cutoff=6.0, r_min=2.0, n_radial=5, zetas=(1, 4))
    np.testing.assert_array_equal(_rows(again), _rows(fs))


@pytest.mark.parametrize("kw, message", [
    (dict(r_min=7.0), "shortest distance 7"), (dict(n_radial=1), "at least 2 radial points"),
    (dict(zetas=(0.5,)), "values >= 1")])
def test_auto_grid_refuses_nonsense(kw, message):
    args = dict(cutoff=6.0, r_min=2.0, n_radial=4, zetas=(1,))
    args.update(kw)
    with pytest.raises(HdnnpError, match=message):
        auto_grid([52], **args)


def test_grid_from_n2p2_lines():
    fs = grid_from_file(DATA / "synthetic" / "input.nn", [16, 29])
    # 18 functions per central element, written for both: the union, each once
    assert fs.n_candidates == 18
    assert len(np.unique(_rows(fs), axis=0)) == 18
    assert set(fs.kind) == {2, 4, 5} and set(fs.rc) == {9.0, 11.0} and fs.cutoff == 11.0
    with pytest.raises(HdnnpError, match="no symfunction_short lines"):
        grid_from_file(DATA / "synthetic" / "scaling.data", [16, 29])


def test_symmetry_and_train_with_the_auto_grid(tmp_path, capsys):
    import h5py
    from ase.io import write as ase_write

    from hdnnp.cli import main
    from hdnnp.descriptors import FeatureSet
    from hdnnp.model import Potential
    from test_other_formats import _emt_frames

    frames = _emt_frames(n=6)
    ase_write(tmp_path / "t.extxyz", frames)
    main(["prepare", "--train-file", str(tmp_path / "t.extxyz"), "-o", str(tmp_path / "p.h5"), "-q"])
    main(["symmetry", str(tmp_path / "p.h5"), "-o", str(tmp_path / "s.h5"), "--grid", "auto", "--grid-points", "4",
          "--grid-zetas", "1,2", "--n-features", "10", "--cutoff", "5", "-q"])
    with h5py.File(tmp_path / "s.h5") as h5:
        fs = FeatureSet.from_h5(h5["feature_set"])
        d_min = min(a.get_all_distances(mic=True)[np.triu_indices(len(a), 1)].min() for a in frames)
    assert fs.n_candidates == 8 + 32 and f"r_min {d_min:.4g} Å" in fs.grid
    main(["train", str(tmp_path / "s.h5"), "-o", str(tmp_path / "m.h5"), "--hidden", "4", "--epochs", "2", "-q"])
    model = Potential.load(tmp_path / "m.h5")
    a = frames[0]
    e, f = model.predict(a.positions, a.cell.array, a.pbc, a.numbers)
    assert np.isfinite(e) and np.isfinite(f).all()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["symmetry", str(tmp_path / "p.h5"), "-o", str(tmp_path / "s2.h5"), "--grid-zetas", "0,1"])
    assert exc.value.code == 2 and "--grid-zetas" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["symmetry", str(tmp_path / "p.h5"), "-o", str(tmp_path / "s2.h5"), "--grid", "nothere.nn"])
    assert exc.value.code == 2 and "nothere.nn: cannot be read" in capsys.readouterr().err
    assert not (tmp_path / "s2.h5").exists()
