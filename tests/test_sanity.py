"""Physical sanity checks (hdnnp.sanity) against hand-made cases and brute force."""

import itertools
import re

import h5py
import numpy as np
import pytest

from hdnnp.frames import Frame
from hdnnp.h5io import FrameSetWriter
from hdnnp.sanity import (
    CloseContact,
    FrameChecker,
    check_frame_set,
    check_frames,
    close_contacts,
    energy_jumps,
    force_energy_consistency,
    minimum_image_displacement,
)


# --- close contacts ----------------------------------------------------------------------------

def test_close_contact_open_boundaries_hand_case():
    pos = [[0, 0, 0], [0.5, 0, 0], [3, 0, 0]]
    contacts = close_contacts(pos, np.zeros((3, 3)), False, 0.6)
    assert contacts == [CloseContact(0, 1, pytest.approx(0.5), (0, 0, 0))]
    assert close_contacts(pos, np.zeros((3, 3)), False, 0.4) == []


def test_close_contact_reports_coincident_atoms():
    # a duplicated atom (distance 0) is the worst contact of all; neighbour lists skip R = 0
    contacts = close_contacts([[1, 1, 1], [1, 1, 1], [2, 2, 2]], np.eye(3) * 5.0, True)
    assert contacts == [CloseContact(0, 1, 0.0, (0, 0, 0))]


def test_close_contact_across_periodic_boundary():
    cell = np.eye(3) * 10.0
    pos = [[0.2, 5, 5], [9.9, 5, 5]]
    contacts = close_contacts(pos, cell, True, 0.6)
    assert len(contacts) == 1
    c = contacts[0]
    assert c.distance_angstrom == pytest.approx(0.3)
    # r_j + shift @ cell - r_i has length 0.3
    r = np.asarray(pos, float)
    assert np.linalg.norm(r[c.j] + np.array(c.shift) @ cell - r[c.i]) == pytest.approx(0.3)
    # without periodicity the two atoms are 9.7 Å apart
    assert close_contacts(pos, cell, False, 0.6) == []


def _brute_force_contacts(pos, cell, threshold, n_max=4, pbc=(True, True, True)):
    """Sorted distances of unordered pairs over all images with |n_k| <= n_max."""
    found = []
    ranges = [range(-n_max, n_max + 1) if p else range(1) for p in pbc]
    for shift in itertools.product(*ranges):
        offset = np.array(shift) @ cell
        for i in range(len(pos)):
            for j in range(len(pos)):
                if i == j and not any(shift):
                    continue
                d = np.linalg.norm(pos[j] + offset - pos[i])
                if d < threshold:
                    found.append(d)
    found = np.sort(found)
    # every unordered pair was found twice, as (i, j, n) and (j, i, -n)
    assert len(found) % 2 == 0
    return found[::2]


def test_close_contacts_triclinic_small_cell_matches_brute_force():
    rng = np.random.default_rng(1)
    cell = np.array([[2.2, 0.0, 0.0], [0.9, 2.0, 0.0], [0.4, 0.7, 2.1]])
    frac = rng.random((5, 3))
    pos = frac @ cell
    threshold = 2.5  # larger than the cell widths: self-images are contacts too
    contacts = close_contacts(pos, cell, True, threshold)
    expected = _brute_force_contacts(pos, cell, threshold)
    assert len(contacts) == len(expected)
    np.testing.assert_allclose([c.distance_angstrom for c in contacts], expected, rtol=1e-12)
    assert any(c.i == c.j for c in contacts)
    # unwrapped positions (atoms several cells away) give the same contacts
    moved = pos + np.array([3, -2, 5]) @ cell
    again = close_contacts(moved, cell, True, threshold)
    np.testing.assert_allclose([c.distance_angstrom for c in again], expected, rtol=1e-12)
    # a slab: periodic in a and b only
    slab = close_contacts(pos, cell, (True, True, False), threshold)
    np.testing.assert_allclose([c.distance_angstrom for c in slab],
                               _brute_force_contacts(pos, cell, threshold, pbc=(1, 1, 0)), rtol=1e-12)


# --- energy jumps ------------------------------------------------------------------------------

def test_energy_jump_step_hand_case():
    # alternating changes of +-1 meV/atom, one step of +100 meV/atom into index 7
    e = np.array([0, 1, 0, 1, 0, 1, 0, 100, 101, 100, 101, 100], float) * 1e-3
    jumps = energy_jumps(e, factor=20)
    assert len(jumps) == 1
    assert jumps[0].index == 7
    assert jumps[0].jump_ev_per_atom == pytest.approx(0.1)
    assert jumps[0].ratio == pytest.approx(100.0)
    assert energy_jumps(e, factor=150) == []


def test_energy_jump_single_outlier_and_nan():
    rng = np.random.default_rng(0)
    e = -3.0 + 1e-3 * rng.standard_normal(400)
    e[100] += 0.5  # one frame from another system
    e[200] = np.nan  # unknown energy: skipped, neighbours compared directly
    jumps = energy_jumps(e)
    assert [j.index for j in jumps] == [100, 101]
    assert jumps[0].jump_ev_per_atom == pytest.approx(e[100] - e[99])
    assert jumps[1].jump_ev_per_atom == pytest.approx(e[101] - e[100])
    assert energy_jumps(e[:2]) == []


def test_energy_jump_constant_sequence():
    e = np.full(10, -2.0)
    assert energy_jumps(e) == []
    e[5:] += 1e-3
    jumps = energy_jumps(e)
    assert [j.index for j in jumps] == [5] and jumps[0].ratio == np.inf


# --- forces against energy differences ---------------------------------------------------------

def _harmonic(pos, center, k=2.0):
    """E = k/2 sum |r - r0|^2 (eV), F = -k (r - r0) (eV/Å): trapezoid rule is exact."""
    d = pos - center
    return 0.5 * k * np.sum(d * d), -k * d


def test_force_energy_consistency_exact_for_harmonic():
    rng = np.random.default_rng(2)
    center = rng.random((4, 3)) * 5
    a = center + 0.1 * rng.standard_normal((4, 3))
    b = a + 0.05 * rng.standard_normal((4, 3))
    ea, fa = _harmonic(a, center)
    eb, fb = _harmonic(b, center)
    pair = force_energy_consistency(a, b, fa, fb, ea, eb)
    assert pair.predicted_delta_energy_ev == pytest.approx(eb - ea, rel=1e-12)
    assert pair.agree is True
    flipped = force_energy_consistency(a, b, -fa, -fb, ea, eb)
    assert flipped.predicted_delta_energy_ev == pytest.approx(-(eb - ea), rel=1e-12)
    assert flipped.agree is False
    assert force_energy_consistency(a, a, fa, fa, ea, ea).agree is None


def test_force_energy_consistency_across_boundary():
    cell = np.array([[6.0, 0, 0], [1.0, 6.0, 0], [0, 0, 6.0]])
    center = np.array([[5.95, 3.0, 3.0], [2.0, 2.0, 2.0]])
    a = center + np.array([[-0.02, 0, 0], [0.03, 0, 0]])
    b_unwrapped = center + np.array([[0.08, 0.01, 0], [0.0, 0.01, 0]])
    ea, fa = _harmonic(a, center)
    eb, fb = _harmonic(b_unwrapped, center)
    b_wrapped = b_unwrapped.copy()
    b_wrapped[0] -= cell[0]  # atom 0 crossed the boundary and was wrapped
    np.testing.assert_allclose(minimum_image_displacement(a, b_wrapped, cell, True),
                               b_unwrapped - a, atol=1e-12)
    pair = force_energy_consistency(a, b_wrapped, fa, fb, ea, eb, cell, True)
    assert pair.predicted_delta_energy_ev == pytest.approx(eb - ea, rel=1e-12)


# --- the streaming checker and its warnings ----------------------------------------------------

def _trajectory(n_frames, source, rng, energy_offset=0.0, flip_forces=False, n_atoms=8):
    """Harmonic 'MD': small random steps around a lattice, exact energies and forces."""
    cell = np.eye(3) * 8.0
    center = (np.indices((2, 2, 2)).reshape(3, -1).T * 4.0 + 1.0)[:n_atoms]
    pos = center.copy()
    frames = []
    for step in range(n_frames):
        pos = pos + 0.01 * rng.standard_normal(pos.shape)
        e, f = _harmonic(pos, center)
        frames.append(Frame(positions=pos.copy(), species=np.full(n_atoms, 52), cell=cell,
                            pbc=np.ones(3, bool), energy=e + energy_offset,
                            forces=-f if flip_forces else f, temperature=300.0, step=step,
                            source=source))
    return frames


def test_checker_clean_data_gives_no_warning_even_interleaved():
    rng = np.random.default_rng(3)
    a = _trajectory(60, "E.Te.300K", rng)
    b = _trajectory(60, "E.Te.900K", rng, energy_offset=50.0)  # far higher energy level
    interleaved = [f for pair in zip(a, b) for f in pair]
    assert check_frames(interleaved, check_force_signs=True) == []


def test_checker_reports_each_problem():
    rng = np.random.default_rng(4)
    frames = _trajectory(60, "HISTORY.Te.300K", rng, flip_forces=True)
    frames[10].positions[1] = frames[10].positions[0] + [0.3, 0.0, 0.0]
    frames[40].energy += 8 * 0.5  # +0.5 eV/atom in one frame
    warnings = check_frames(frames, check_force_signs=True)
    assert len(warnings) == 3
    contact, jumps, signs = warnings
    assert contact.startswith("1 of 60 frames have atoms closer than 0.6 Å")
    assert "frame 10" in contact and "atoms 0-1 at 0.300 Å" in contact
    assert "2 jumps" in jumps and "frame 40" in jumps and "frame 41" in jumps
    up = float(re.search(r"frame 40 \(step 40\): ([-+.\d]+) meV/atom", jumps).group(1))
    assert up == pytest.approx(500.0, abs=5.0)  # the +0.5 eV/atom plus the harmonic change
    assert "forces disagree in sign" in signs
    # the sign check is optional
    assert len(check_frames(frames)) == 2


def test_check_frame_set_reads_hdf5_in_chunks(tmp_path):
    rng = np.random.default_rng(5)
    frames = _trajectory(30, "HISTORY.Te.300K", rng)
    frames[20].positions[3] = frames[20].positions[2] + [0.0, 0.0, 0.2]
    with h5py.File(tmp_path / "p.h5", "w") as h5:
        writer = FrameSetWriter(h5.create_group("train"), with_forces=True)
        writer.append(frames)
        writer.close()
    with h5py.File(tmp_path / "p.h5", "r") as h5:
        warnings = check_frame_set(h5["train"], chunk_frames=7, check_force_signs=True)
    assert warnings == check_frames(frames, check_force_signs=True)
    assert len(warnings) == 1 and "frame 20 (HISTORY.Te.300K, step 20): atoms 2-3 at 0.200 Å" in warnings[0]


def test_checker_add_chunk_matches_add():
    rng = np.random.default_rng(6)
    frames = _trajectory(12, "x", rng)
    frames[5].energy += 100.0
    one = FrameChecker()
    for k, f in enumerate(frames):
        one.add(f, k)
    assert len(one.warnings()) == 1 and "frame 5" in one.warnings()[0]


def test_sign_check_quiet_for_unrelated_forces():
    # forces unrelated to the energy differences agree about half the time: no warning
    rng = np.random.default_rng(7)
    frames = _trajectory(200, "x", rng)
    for f in frames:
        f.forces = rng.standard_normal(f.forces.shape)
    checker = FrameChecker(check_force_signs=True)
    for k, f in enumerate(frames):
        checker.add(f, k)
    assert checker.warnings() == []
    assert 0.35 < checker.n_sign_disagree / checker.sign_pairs < 0.65


def test_prepare_prints_sanity_warnings(tmp_path, capsys):
    from hdnnp.cli import main
    from hdnnp.io.dlpoly_write import write_energies, write_history

    rng = np.random.default_rng(8)
    frames = _trajectory(40, "", rng)
    frames[12].positions[5] = frames[12].positions[4] + [0.25, 0.0, 0.0]
    frames[30].energy += 8 * 1.0  # +1 eV/atom: an energy from another run
    write_history(tmp_path / "HISTORY.Te.300K", frames, forces_unit="eV/A")
    write_energies(tmp_path / "E.Te.300K", frames)
    main(["prepare", "--data-dir", str(tmp_path), "--system", "Te", "--train", "300K",
          "--forces-unit", "eV/A", "-q", "-o", str(tmp_path / "prepared.h5")])
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: prepare train:")]
    assert len(warnings) == 2, err
    assert "1 of 40 frames have atoms closer than 0.6 Å: frame 12" in warnings[0]
    assert "atoms 4-5 at 0.250 Å" in warnings[0]
    assert "HISTORY.Te.300K: 2 jumps" in warnings[1] and "frame 30 (step 30)" in warnings[1]
