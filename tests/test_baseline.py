"""The repulsive ZBL baseline (hdnnp.baseline): the formula by hand, forces and stress by finite
differences, the switch, the radii from the data, and its place in train / predict / evaluate."""

import math

import h5py
import numpy as np
import pytest

from _nn_fixtures import finite_difference_forces, lj_frames, lj_symmetry_files
from hdnnp.baseline import ZBLBaseline, fit_baseline, switch, zbl
from hdnnp.cli import main
from hdnnp.errors import HdnnpError
from hdnnp.model import Potential


def _zbl_by_hand(r, z1, z2):
    """ZBL universal potential written out term by term (Ziegler, Biersack, Littmark 1985)."""
    a = 0.8854 * 0.529177 / (z1 ** 0.23 + z2 ** 0.23)  # 0.8854 a_Bohr = 0.46850 Å
    x = r / a
    phi = (0.1818 * math.exp(-3.2 * x) + 0.5099 * math.exp(-0.9423 * x) + 0.2802 * math.exp(-0.4029 * x)
           + 0.02817 * math.exp(-0.2016 * x))
    return 14.399645 * z1 * z2 / r * phi


@pytest.mark.parametrize("z1,z2,r", [(1, 1, 0.5), (52, 52, 2.0), (29, 16, 1.2), (14, 32, 0.8)])
def test_zbl_against_the_published_formula(z1, z2, r):
    e, _ = zbl(r, z1, z2)
    # the book's constants are rounded to four digits (0.1818 vs 0.18175): agreement to 1e-3
    assert e == pytest.approx(_zbl_by_hand(r, z1, z2), rel=1e-3)


def test_zbl_derivative_and_switch_are_smooth():
    r = np.linspace(0.4, 3.0, 41)
    h = 1e-6
    e, de = zbl(r, 52, 32)
    np.testing.assert_allclose((zbl(r + h, 52, 32)[0] - zbl(r - h, 52, 32)[0]) / (2 * h), de, rtol=1e-7)
    s, ds = switch(r, 1.5, 2.5)
    np.testing.assert_allclose((switch(r + h, 1.5, 2.5)[0] - switch(r - h, 1.5, 2.5)[0]) / (2 * h), ds,
                               atol=1e-8)
    assert np.all(s[r <= 1.5] == 1.0) and np.all(s[r >= 2.5] == 0.0) and np.all(np.diff(s) <= 0)
    # value, slope and curvature continuous at both ends
    for edge in (1.5, 2.5):
        lo, hi = switch(np.array([edge - 1e-5, edge + 1e-5]), 1.5, 2.5)[1]
        assert abs(lo) < 1e-7 and abs(hi) < 1e-7


def _box(rng, n=10, short=1.1):
    """A triclinic periodic box of Te and Ge with one pair ``short`` Å apart and others nearby."""
    cell = np.array([[5.0, 0.0, 0.0], [1.2, 4.6, 0.0], [0.7, -0.9, 5.3]])
    pos = rng.uniform(0, 1, (n, 3)) @ cell
    pos[1] = pos[0] + np.array([short, 0.0, 0.0])
    species = np.array([52, 32] * (n // 2))
    return pos, cell, species


def test_forces_and_stress_are_derivatives_of_the_energy():
    rng = np.random.default_rng(3)
    pos, cell, species = _box(rng)
    base = ZBLBaseline([(32, 32), (32, 52), (52, 52)], [1.6, 1.4, 1.7], [2.6, 2.9, 3.1])
    e, f, atomic, strain = base.evaluate(pos, cell, [True] * 3, species, stress=True)
    assert e > 1.0 and e == pytest.approx(atomic.sum(), rel=1e-14)
    h = 1e-6
    fd = finite_difference_forces(lambda p: base.evaluate(p, cell, [True] * 3, species)[0], pos, h)
    np.testing.assert_allclose(f, fd, rtol=1e-6, atol=1e-6 * np.abs(f).max())
    assert np.abs(f.sum(axis=0)).max() < 1e-9 * np.abs(f).max()
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] = h
            ep = base.evaluate(pos @ (np.eye(3) + eps).T, cell @ (np.eye(3) + eps).T, [True] * 3, species)[0]
            em = base.evaluate(pos @ (np.eye(3) - eps).T, cell @ (np.eye(3) - eps).T, [True] * 3, species)[0]
            assert strain[a, b] == pytest.approx((ep - em) / (2 * h), rel=1e-6, abs=1e-8)


def test_a_dimer_by_hand_and_nothing_beyond_r_outer():
    base = ZBLBaseline([(52, 52)], [2.0], [2.5])
    cell = np.zeros((3, 3))
    for r, s in ((1.5, 1.0), (2.2, None), (2.5, 0.0), (3.0, 0.0)):
        pos = np.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
        e, f, _, _ = base.evaluate(pos, cell, [False] * 3, [52, 52])
        x = (r - 2.0) / 0.5
        s_hand = 1.0 if r <= 2.0 else 0.0 if r >= 2.5 else 1 - 10 * x ** 3 + 15 * x ** 4 - 6 * x ** 5
        assert e == pytest.approx(_zbl_by_hand(r, 52, 52) * s_hand, rel=1e-3, abs=1e-300)
        assert f[0, 0] <= 0.0 and f[1, 0] == -f[0, 0]  # repulsive, Newton's third law


def test_radii_from_the_shortest_distances_of_each_pair():
    from ase import Atoms

    from hdnnp.frames import Frame

    frames = [Atoms("Te2Ge", positions=[[0, 0, 0], [2.7, 0, 0], [0, 2.5, 0]], cell=[10] * 3, pbc=True),
              Atoms("Te2Ge", positions=[[0, 0, 0], [2.6, 0, 0], [0, 3.0, 0]], cell=[10] * 3, pbc=True)]
    base = fit_baseline([Frame(positions=a.positions, species=a.numbers, cell=a.cell.array, pbc=a.pbc)
                         for a in frames], [52, 32], cutoff=6.0)
    radii = {tuple(p): (ri, ro) for p, ri, ro in zip(base.pairs.tolist(), base.r_inner, base.r_outer)}
    assert radii[(52, 52)] == pytest.approx((0.8 * 2.6, 2.6))
    assert radii[(32, 52)] == pytest.approx((0.8 * 2.5, 2.5))
    assert radii[(32, 32)] == pytest.approx((0.8 * 2.5, 2.5))  # never met: the shortest of any pair
    with pytest.raises(HdnnpError, match="R_INNER < R_OUTER"):
        fit_baseline([], [52], 6.0, radii=(2.0, 1.0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = lj_symmetry_files(tmp_path_factory.mktemp("baseline"), lj_frames(np.random.default_rng(4), 14), 10, 8)
    common = ["--preset", "fast", "--epochs", "4", "--hidden", "4", "--seed", "1", "-q"]
    # radii that reach into the data (shortest Ar-Ar distance here ~2.6 Å): the networks then
    # learn E_ref − E_base, and the baseline is non-zero on training frames
    main(["train", str(d / "symmetry.h5"), "-o", str(d / "zbl.h5"), "--baseline", "zbl",
          "--baseline-radii", "2.0:3.6", *common])
    main(["train", str(d / "symmetry.h5"), "-o", str(d / "auto.h5"), "--baseline", "zbl", *common])
    return d


def test_the_model_stores_the_baseline_and_adds_it_everywhere(trained, tmp_path):
    d = trained
    pot = Potential.load(d / "zbl.h5")
    assert pot.baseline is not None and pot.baseline.r_outer.tolist() == [3.6]
    frames = lj_frames(np.random.default_rng(4), 14)
    a = frames[11]
    nets = Potential(pot.feature_set, pot.architecture, pot.theta, pot.reference_energies)
    p = pot.evaluate(a.positions, a.cell.array, a.pbc, a.numbers, stress=True)
    q = nets.evaluate(a.positions, a.cell.array, a.pbc, a.numbers, stress=True)
    e_b, f_b, atomic_b, strain_b = pot.baseline.evaluate(a.positions, a.cell.array, a.pbc, a.numbers, stress=True)
    assert e_b > 1e-3
    assert p.energy == pytest.approx(q.energy + e_b, rel=1e-13)
    np.testing.assert_allclose(p.forces, q.forces + f_b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(p.stress, q.stress + strain_b / a.get_volume(), rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(p.atomic_energies, q.atomic_energies + atomic_b, rtol=1e-12)

    # predict (stored descriptors and structure-file paths) agrees with evaluate
    main(["predict", str(d / "symmetry.h5"), "--model", str(d / "zbl.h5"), "-o", str(tmp_path / "p.h5"),
          "--forces", "--atomic-energies", "-q"])
    with h5py.File(tmp_path / "p.h5") as h5:
        e_pred = h5["predict/energy_predicted"][1]
        f_pred = h5["predict/forces_predicted"][8:16]
        atomic = h5["predict/atomic_energies"][8:16]
        e_ref, e_train = h5["train/energy_reference"][:], h5["train/energy_predicted"][:]
    assert e_pred == pytest.approx(p.energy, rel=1e-12)
    np.testing.assert_allclose(f_pred, p.forces, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(atomic, p.atomic_energies, rtol=1e-10)
    # the networks were trained on E_ref − E_base: their training error is that of the full
    # prediction (had the baseline not been subtracted, the error would be ≥ its size)
    rmse = 1e3 * np.sqrt(np.mean(((e_train - e_ref) / 8) ** 2))
    with h5py.File(d / "zbl.h5") as h5:
        logged = h5["training/log/train_energy_rmse"][:]
    assert rmse < 2 * logged.max() + 1.0


def test_default_radii_leave_the_training_frames_untouched(trained):
    pot = Potential.load(trained / "auto.h5")
    frames = lj_frames(np.random.default_rng(4), 14)
    shortest = min(a.get_all_distances(mic=True)[np.triu_indices(8, 1)].min() for a in frames[:10])
    assert pot.baseline.r_outer[0] == pytest.approx(shortest, rel=1e-12)
    for a in frames[:10]:
        e, f, _, _ = pot.baseline.evaluate(a.positions, a.cell.array, a.pbc, a.numbers)
        assert e == 0.0 and not f.any()
    # two atoms pushed together feel the repulsion
    a = frames[0].copy()
    a.positions[1] = a.positions[0] + [1.0, 0.0, 0.0]
    p = pot.evaluate(a.positions, a.cell.array, a.pbc, a.numbers)
    assert p.forces[1, 0] > 10.0 and p.forces[0, 0] < -10.0


@pytest.mark.parametrize("radii,message", [("2.5", "expected R_INNER:R_OUTER"), ("3:2", "0 < R_INNER < R_OUTER"),
                                           ("a:b", "expected R_INNER:R_OUTER")])
def test_bad_baseline_radii(trained, tmp_path, capsys, radii, message):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(trained / "symmetry.h5"), "-o", str(tmp_path / "m.h5"), "--baseline", "zbl",
              "--baseline-radii", radii, "-q"])
    assert exc.value.code != 0 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
