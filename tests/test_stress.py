"""Stress of the potential against finite differences of the energy under strain.

Small triclinic cells (every edge below 2·Rc, so an atom sees several images of each neighbour
and of itself), one and two elements; the pressure against −dE/dV; the ASE calculator's Voigt
order and sign against ASE's own numerical stress.
"""

import numpy as np
import pytest

from hdnnp import nn
from hdnnp.descriptors import FeatureSet, compute_raw
from hdnnp.errors import HdnnpError
from hdnnp.model import Potential

GE, TE = 32, 52
#: A triclinic cell (rows a, b, c, Å), all edges well below 2·Rc = 12 Å.
TRICLINIC = np.array([[5.3, 0.0, 0.0], [1.2, 4.9, 0.0], [-0.8, 0.9, 5.6]])


def random_box(rng, n_atoms, elements, cell=TRICLINIC, jitter=0.15):
    """A 2x2x2 grid in fractional coordinates (8 atoms), each atom moved by up to ``jitter``
    (fractional): no two atoms meet, and every box differs."""
    assert n_atoms == 8
    grid = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], float) / 2
    pos = (grid + rng.uniform(-jitter, jitter, grid.shape) / 2) @ cell
    species = np.array([elements[k % len(elements)] for k in range(n_atoms)])
    return pos, species


def random_potential(rng, elements, boxes, n_features=10, hidden=(6, 5)):
    """A fitted feature set and random (non-trivial, smooth) tanh networks for ``elements``."""
    fs = FeatureSet.default(elements)
    raw = [compute_raw(p, TRICLINIC, True, s, fs) for p, s in boxes]
    species = np.concatenate([s for _, s in boxes])
    raw = np.concatenate(raw)
    fs.fit({z: raw[species == z] for z in elements}, n_features=n_features)
    arch = nn.Architecture(elements=tuple(sorted(elements)), n_inputs={z: n_features for z in elements},
                           hidden=hidden)
    theta = nn.init_parameters(arch, rng, {z: -1.0 for z in elements}, output_scale=0.5)
    return Potential(fs, arch, theta, {z: -1.0 for z in elements})


@pytest.fixture(scope="module", params=[(TE,), (GE, TE)], ids=["Te", "GeTe"])
def system(request):
    rng = np.random.default_rng(7)
    elements = request.param
    boxes = [random_box(rng, 8, elements) for _ in range(4)]
    return random_potential(rng, elements, boxes), boxes


def strained_energy(pot, pos, species, cell, eps):
    """E of the box deformed by r -> r (1 + ε) (row vectors: positions and cell rows alike)."""
    deform = np.eye(3) + eps
    return pot.predict(pos @ deform, cell @ deform, True, species, forces=False)[0]


def test_stress_matches_strain_derivative(system):
    """σ_ab = (1/V) ∂E/∂ε_ab by central differences, all nine components (rel. 1e-6)."""
    pot, boxes = system
    pos, species = boxes[0]
    energy, forces, stress = pot.predict(pos, TRICLINIC, True, species, stress=True)
    volume = abs(np.linalg.det(TRICLINIC))
    h = 1e-5
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] = h
            fd[a, b] = (strained_energy(pot, pos, species, TRICLINIC, eps)
                        - strained_energy(pot, pos, species, TRICLINIC, -eps)) / (2 * h) / volume
    assert np.abs(fd).max() > 1e-3  # a non-trivial stress, so the comparison means something
    np.testing.assert_allclose(stress, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    np.testing.assert_allclose(stress, stress.T, atol=1e-12 * np.abs(stress).max())  # rotation invariance


def test_pressure_is_minus_volume_derivative(system):
    """P = −tr σ / 3 equals −dE/dV under an isotropic scaling of the box."""
    pot, boxes = system
    pos, species = boxes[1]
    stress = pot.predict(pos, TRICLINIC, True, species, forces=False, stress=True)[-1]
    volume = abs(np.linalg.det(TRICLINIC))
    h = 1e-6  # volumes V (1 ± h), symmetric about V so that the difference is O(h²)
    e_plus = strained_energy(pot, pos, species, TRICLINIC, ((1 + h) ** (1 / 3) - 1) * np.eye(3))
    e_minus = strained_energy(pot, pos, species, TRICLINIC, ((1 - h) ** (1 / 3) - 1) * np.eye(3))
    dv = 2 * h * volume
    assert -np.trace(stress) / 3 == pytest.approx(-(e_plus - e_minus) / dv, rel=1e-6)


def test_stress_of_a_cell_larger_than_two_cutoffs_and_a_supercell_agree(system):
    """Intensive: the 2x1x1 supercell (images become distinct atoms) has the same stress."""
    pot, boxes = system
    pos, species = boxes[2]
    s1 = pot.predict(pos, TRICLINIC, True, species, forces=False, stress=True)[-1]
    big_cell = TRICLINIC * np.array([[2], [1], [1]])
    big_pos = np.concatenate([pos, pos + TRICLINIC[0]])
    s2 = pot.predict(big_pos, big_cell, True, np.concatenate([species, species]), forces=False, stress=True)[-1]
    np.testing.assert_allclose(s2, s1, rtol=1e-10, atol=1e-12)


def test_stress_needs_a_periodic_cell(system):
    pot, boxes = system
    pos, species = boxes[0]
    with pytest.raises(HdnnpError, match="periodic"):
        pot.predict(pos, TRICLINIC, [True, True, False], species, stress=True)


def test_ase_calculator_stress_voigt_and_sign(system):
    """The calculator's stress equals ASE's numerical stress (its own strain convention)."""
    ase = pytest.importorskip("ase")
    from ase.calculators.fd import calculate_numerical_stress

    from hdnnp.ase_calculator import HDNNPCalculator

    pot, boxes = system
    pos, species = boxes[3]
    atoms = ase.Atoms(numbers=species, positions=pos, cell=TRICLINIC, pbc=True)
    atoms.calc = HDNNPCalculator(pot)
    assert "stress" in atoms.calc.implemented_properties
    stress = atoms.get_stress()  # Voigt xx yy zz yz xz xy
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    np.testing.assert_allclose(stress, numerical, rtol=1e-6, atol=1e-6 * np.abs(numerical).max())
    full = pot.predict(pos, TRICLINIC, True, species, forces=False, stress=True)[-1]
    np.testing.assert_array_equal(stress, full[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])
