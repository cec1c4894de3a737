"""DL_POLY HISTORY and energy-file readers: values read equal values written; ASE as oracle."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from _dlpoly_fixtures import CUBIC, ORTHO, TRICLINIC, make_frames
from hdnnp.errors import HdnnpError, InputFileError
from hdnnp.io.dlpoly import EnergyMatcher, HistoryReader, iter_energies, read_history
from hdnnp.io.dlpoly_write import write_energies, write_history
from hdnnp.units import ENERGY_UNITS_IN_EV


@pytest.mark.parametrize("layout", ["dlpoly4", "classic"])
@pytest.mark.parametrize("keytrj", [0, 1, 2])
@pytest.mark.parametrize("cell", [CUBIC, ORTHO, TRICLINIC], ids=["cubic", "ortho", "triclinic"])
def test_roundtrip(tmp_path, layout, keytrj, cell):
    frames = make_frames(3, species=(52, 31, 52), cell=cell, step0=100, step_every=50)
    path = tmp_path / "HISTORY.x"
    write_history(path, frames, layout=layout, keytrj=keytrj)
    with HistoryReader(path) as hist:
        assert hist.header.layout == layout and hist.header.keytrj == keytrj
        imcon = {id(CUBIC): 1, id(ORTHO): 2, id(TRICLINIC): 3}[id(cell)]
        assert hist.header.imcon == imcon
        got = [rec.frame for rec in hist.records()]
    assert len(got) == 3
    for want, have in zip(frames, got):
        assert have.step == want.step
        np.testing.assert_array_equal(have.species, [52, 31, 52])
        np.testing.assert_allclose(have.positions, want.positions, rtol=0, atol=1e-10)
        np.testing.assert_allclose(have.cell, want.cell, rtol=0, atol=1e-10)
        assert have.pbc.all()
        if keytrj == 2:
            # written as F * 9648.53 with 10 decimals: relative error ~1e-14
            np.testing.assert_allclose(have.forces, want.forces, rtol=1e-10, atol=1e-12)
        else:
            assert have.forces is None


def test_gzip_same_values_and_line_numbers(tmp_path):
    frames = make_frames(2, cell=TRICLINIC)
    write_history(tmp_path / "HISTORY.a", frames)
    write_history(tmp_path / "HISTORY.a.gz", frames)
    plain = read_history(tmp_path / "HISTORY.a")
    zipped = read_history(tmp_path / "HISTORY.a.gz")
    for p, z in zip(plain, zipped):
        np.testing.assert_array_equal(p.positions, z.positions)
        np.testing.assert_array_equal(p.forces, z.forces)
    # corrupt line 30 inside the gzip stream: the error names line 30
    lines = gzip.open(tmp_path / "HISTORY.a.gz", "rt").read().splitlines(keepends=True)
    assert len(lines[29].split()) == 3  # a numeric record of the first frame
    lines[29] = "   1.0   abc   2.0\n"
    with gzip.open(tmp_path / "HISTORY.b.gz", "wt") as fh:
        fh.writelines(lines)
    with pytest.raises(InputFileError, match=r"HISTORY.b.gz, line 30: expected 3 numbers"):
        read_history(tmp_path / "HISTORY.b.gz")


def test_ase_oracle_positions_and_cell(tmp_path):
    ase_io = pytest.importorskip("ase.io")
    frames = make_frames(3, species=(52, 52, 31), cell=TRICLINIC)
    path = tmp_path / "HISTORY"
    write_history(path, frames, keytrj=2)
    images = ase_io.read(path, format="dlp-history", index=":")
    ours = read_history(path)
    assert len(images) == len(ours) == 3
    for atoms, frame in zip(images, ours):
        np.testing.assert_allclose(frame.positions, atoms.positions, atol=1e-10)
        np.testing.assert_allclose(frame.cell, atoms.cell.array, atol=1e-10)
        np.testing.assert_array_equal(frame.species, atoms.numbers)


HAND_WRITTEN = """\
hand-written classic HISTORY
         2         2         2
timestep       500         2         2         2    0.001000
    10.0     0.0     0.0
     0.0    10.0     0.0
     0.0     0.0    10.0
Te1              1   127.600000    0.000000
    1.0  2.0  3.0
    0.0  0.0  0.0
    9648.5332  -19297.0664  0.0
TE               2   127.600000    0.000000
    4.0  5.0  6.0
    0.0  0.0  0.0
    -964.85332  0.0  4824.2666
"""


def test_force_conversion_hand_computed(tmp_path):
    """1 eV/Å = 9648.5332 DL_POLY units (10 J/mol/Å): 9648.5332 -> 1.0 eV/Å."""
    path = tmp_path / "HISTORY"
    path.write_text(HAND_WRITTEN)
    (frame,) = read_history(path)
    assert frame.step == 500
    np.testing.assert_array_equal(frame.species, [52, 52])  # Te1, TE -> Te
    np.testing.assert_allclose(frame.forces, [[1.0, -2.0, 0.0], [-0.1, 0.0, 0.5]], rtol=1e-8, atol=1e-12)
    (frame,) = read_history(path, forces_unit="eV/A")
    np.testing.assert_allclose(frame.forces, [[9648.5332, -19297.0664, 0.0], [-964.85332, 0.0, 4824.2666]])


def test_imcon0_without_cell_lines(tmp_path):
    text = ("title\n 0 0 1\n"
            "timestep 1 1 0 0\nAr 1 39.9 0.0\n 1.0 2.0 3.0\n"
            "timestep 2 1 0 0\n 0.0 0.0 0.0\n 0.0 0.0 0.0\n 0.0 0.0 0.0\nAr 1 39.9 0.0\n 4.0 5.0 6.0\n")
    path = tmp_path / "HISTORY"
    path.write_text(text)
    a, b = read_history(path)
    np.testing.assert_array_equal(a.positions, [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(b.positions, [[4.0, 5.0, 6.0]])
    assert not a.pbc.any() and not b.pbc.any()
    np.testing.assert_array_equal(a.cell, np.zeros((3, 3)))
    assert a.species[0] == 18


def test_keep_skips_parsing_but_checks_structure(tmp_path):
    frames = make_frames(5)
    path = tmp_path / "HISTORY"
    write_history(path, frames)
    with HistoryReader(path) as hist:
        recs = list(hist.records(keep=lambda i: i % 2 == 1))
    assert [r.step for r in recs] == [0, 10, 20, 30, 40]
    assert [r.frame is not None for r in recs] == [False, True, False, True, False]
    np.testing.assert_allclose(recs[3].frame.positions, frames[3].positions, atol=1e-10)
    # frame headers: line 3, then every 4 + 4 * 4 lines
    assert [r.line for r in recs] == [3 + 20 * k for k in range(5)]


def test_energy_file_columns_units_comments(tmp_path):
    path = tmp_path / "E"
    path.write_text("# step  kinetic  potential\n"
                    "0   1.0  -96.485332   # first\n"
                    "\n"
                    "10  2.0  -192.970664\n"
                    "   # only a comment\n"
                    "20  3.0  48.242666\n")
    lines = list(iter_energies(path, column=3, unit="kJ/mol"))
    assert [e.step for e in lines] == [0, 10, 20]
    assert [e.line for e in lines] == [2, 4, 6]
    # 96.485332 kJ/mol = 1.0000 eV (F = 96485.332 C/mol)
    np.testing.assert_allclose([e.energy_ev for e in lines], [-1.0, -2.0, 0.5], rtol=1e-8)
    np.testing.assert_allclose(ENERGY_UNITS_IN_EV["kcal/mol"], 4.184 / 96.4853321, rtol=1e-8)
    with pytest.raises(HdnnpError, match="unknown energy unit"):
        list(iter_energies(path, unit="Ry"))


def test_energy_matcher_merge_join(tmp_path):
    frames = make_frames(6, step_every=5)
    path = tmp_path / "E"
    write_energies(path, frames)
    matcher = EnergyMatcher(path)
    assert matcher.energy(0) == pytest.approx(frames[0].energy, abs=1e-10)
    assert matcher.energy(7) is None  # no such step
    assert matcher.energy(10) == pytest.approx(frames[2].energy, abs=1e-10)
    assert matcher.finish() == 4  # steps 5 (passed over), 15, 20, 25 had no frame
