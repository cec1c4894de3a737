"""Neighbour lists against a brute-force sum over explicit periodic images."""

import itertools

import numpy as np
import pytest

from hdnnp.errors import HdnnpError
from hdnnp.neighbors import neighbor_list, plane_spacings


def brute_force(positions, cell, pbc, cutoff, n_max=4):
    """Set of (i, j, shift) and distances by looping over images -n_max..n_max (periodic dims)."""
    ranges = [range(-n_max, n_max + 1) if p else range(1) for p in pbc]
    out = {}
    for shift in itertools.product(*ranges):
        t = np.array(shift) @ cell
        for i, ri in enumerate(positions):
            for j, rj in enumerate(positions):
                d = np.linalg.norm(rj + t - ri)
                if 0 < d <= cutoff:
                    out[(i, j, shift)] = d
    return out


def as_dict(nl):
    return {(int(i), int(j), tuple(int(s) for s in sh)): d
            for i, j, sh, d in zip(nl.i, nl.j, nl.shift, nl.distance)}


def check(positions, cell, pbc, cutoff):
    nl = neighbor_list(positions, cell, pbc, cutoff)
    ref = brute_force(positions, cell, pbc, cutoff)
    got = as_dict(nl)
    assert set(got) == set(ref)
    for key, d in ref.items():
        assert got[key] == pytest.approx(d, rel=1e-12)
    # vectors: r_j + shift·cell − r_i
    expect = positions[nl.j] + nl.shift @ cell - positions[nl.i]
    np.testing.assert_allclose(nl.vector, expect, atol=1e-10)
    assert np.all(np.diff(nl.i) >= 0)
    np.testing.assert_array_equal(nl.start, np.searchsorted(nl.i, np.arange(len(positions) + 1)))
    return nl


def test_small_triclinic_cell_all_images_including_self():
    rng = np.random.default_rng(1)
    cell = np.array([[3.1, 0.0, 0.0], [1.2, 2.9, 0.0], [-0.7, 0.8, 3.3]])  # far below 2·Rc
    positions = rng.uniform(-2, 5, (3, 3))  # also outside the cell: wrapping must not matter
    nl = check(positions, cell, [True] * 3, 4.0)
    assert np.any(nl.i == nl.j)  # images of the central atom itself


def test_orthorhombic_and_mixed_pbc_and_open():
    rng = np.random.default_rng(2)
    cell = np.diag([5.0, 6.0, 7.5])
    positions = rng.uniform(0, 5, (6, 3))
    check(positions, cell, [True, True, True], 4.5)
    check(positions, cell, [True, False, True], 4.5)
    check(positions, np.zeros((3, 3)), [False] * 3, 4.5)


def test_cell_exactly_periodic_lattice_count():
    """One atom in a simple cubic cell of side a: 6 neighbours at a, 12 at a√2, 8 at a√3."""
    nl = neighbor_list(np.zeros((1, 3)), np.eye(3) * 2.0, True, 2.0 * np.sqrt(3) + 1e-9)
    counts = np.unique(np.round(nl.distance, 9), return_counts=True)[1]
    assert counts.tolist() == [6, 12, 8]


def test_plane_spacings_of_triclinic_cell():
    cell = np.array([[4.0, 0, 0], [2.0, 3.0, 0], [0, 0, 5.0]])
    # spacing along c: 5; along a: volume / |b × c| = 60 / |(15, -10, 0)|
    np.testing.assert_allclose(plane_spacings(cell), [60 / np.hypot(15, 10), 60 / 20.0, 5.0])


def test_singular_periodic_cell_is_an_error():
    with pytest.raises(HdnnpError):
        neighbor_list(np.zeros((2, 3)), np.zeros((3, 3)), True, 3.0)
