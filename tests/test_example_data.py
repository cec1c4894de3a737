"""Golden checks on the bundled liquid-Te example (data/example, made by scripts/generate_te_example.py).

The HISTORY files are parsed here by an independent minimal reader (whitespace split), so these
tests do not depend on hdnnp's reader; physical invariants are checked on the numbers.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from hdnnp.units import DLPOLY_FORCE_IN_EV_PER_ANGSTROM

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "example"
TEMPERATURES_K = (673, 723, 773, 823, 873, 973)
N_ATOMS = 32
#: Box edge for 32 Te (127.60 Da) at 5.7 g/cm³: L³ = 32·127.60 / (5.7·0.602214076) Å³ = 1189.53 Å³.
EDGE_ANGSTROM = (32 * 127.60 / (5.7 * 0.602214076)) ** (1 / 3)

pytestmark = pytest.mark.skipif(not (EXAMPLE / "HISTORY.Te.973K.gz").exists(),
                                reason="bundled example data not generated")


def read_history(path):
    """(header ints, steps, cells, positions Å, forces in file units) of a keytrj=2 DL_POLY 4 file."""
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    header = [int(v) for v in lines[1].split()]
    keytrj, natms = header[0], header[2]
    per_frame = 4 + natms * (2 + keytrj)
    body = lines[2:]
    assert len(body) % per_frame == 0
    steps, cells, pos, frc = [], [], [], []
    for f0 in range(0, len(body), per_frame):
        rec = body[f0:f0 + per_frame]
        assert rec[0].split()[0] == "timestep"
        steps.append(int(rec[0].split()[1]))
        cells.append([[float(v) for v in rec[1 + i].split()] for i in range(3)])
        atoms = rec[4:]
        assert all(atoms[a * 4].split()[0] == "Te" for a in range(natms))
        pos.append([[float(v) for v in atoms[a * 4 + 1].split()] for a in range(natms)])
        frc.append([[float(v) for v in atoms[a * 4 + 3].split()] for a in range(natms)])
    return header, np.array(steps), np.array(cells), np.array(pos), np.array(frc)


def read_energies(path):
    data = np.loadtxt(gzip.open(path, "rt"), comments="#")
    return data[:, 0].astype(int), data[:, 1]


@pytest.fixture(scope="module")
def example():
    return {t: (read_history(EXAMPLE / f"HISTORY.Te.{t}K.gz"), read_energies(EXAMPLE / f"E.Te.{t}K.gz"))
            for t in TEMPERATURES_K}


def test_total_size_under_10_mb():
    total = sum(p.stat().st_size for p in EXAMPLE.iterdir() if p.is_file())
    assert total <= 10 * 1024 ** 2


def test_frames_steps_and_header(example):
    for t, ((header, steps, cells, pos, frc), (esteps, energy)) in example.items():
        keytrj, imcon, natms, nframes, nrecords = header
        assert (keytrj, imcon, natms) == (2, 1, N_ATOMS)
        assert nframes == len(steps) >= 100
        assert nrecords == 2 + nframes * (4 + natms * 4)
        np.testing.assert_array_equal(esteps, steps)  # every frame finds its energy
        assert np.all(np.diff(steps) > 0)


def test_cubic_box_at_liquid_density(example):
    for (_, _, cells, _, _), _ in example.values():
        np.testing.assert_allclose(cells, np.broadcast_to(np.eye(3) * EDGE_ANGSTROM, cells.shape), atol=2e-3)


def test_forces_in_dlpoly_units_and_physical(example):
    """Forces are stored in 10 J/mol/Å: ×1.036427e-4 gives eV/Å of order 1, summing to ~0 per frame."""
    for (_, _, _, _, frc), _ in example.values():
        f_ev = frc * DLPOLY_FORCE_IN_EV_PER_ANGSTROM
        rms = np.sqrt((f_ev ** 2).mean())
        assert 0.3 < rms < 3.0
        # translational invariance of the energy: the raw tblite forces sum to zero per frame
        # (measured ~1e-13 eV/Å; the file keeps 1e-10 of 10 J/mol/Å per component)
        assert np.abs(f_ev.sum(axis=1)).max() < 1e-6


def test_no_close_contacts(example):
    for (_, _, _, pos, _), _ in example.values():
        d = pos[:, :, None, :] - pos[:, None, :, :]
        d -= EDGE_ANGSTROM * np.round(d / EDGE_ANGSTROM)
        r = np.sqrt((d ** 2).sum(-1)) + np.eye(N_ATOMS) * 1e3
        assert r.min() > 2.2


def test_energy_rises_with_temperature(example):
    mean_e = np.array([example[t][1][1].mean() / N_ATOMS for t in TEMPERATURES_K])
    slope = np.polyfit(np.array(TEMPERATURES_K, float), mean_e, 1)[0]  # eV/atom/K
    assert mean_e[-1] > mean_e[0]
    # equipartition scale: potential energy rises by ~(3/2) k_B per K per atom for a harmonic solid
    assert 0.2 * 1.5 * 8.617e-5 < slope < 5 * 1.5 * 8.617e-5


def test_ase_reads_positions():
    ase_io = pytest.importorskip("ase.io")
    path = EXAMPLE / "HISTORY.Te.773K.gz"
    _, _, _, pos, _ = read_history(path)
    images = ase_io.read(path, index=":", format="dlp-history")  # ASE decompresses .gz itself
    assert len(images) == len(pos)
    np.testing.assert_allclose(images[-1].get_positions(), pos[-1], atol=1e-8)
    assert set(images[0].get_chemical_symbols()) == {"Te"}
