"""Bad input through the command line: one clear message (file, line or step, what was
expected), exit status 2, and no output file left behind."""

from __future__ import annotations

import pytest

from _dlpoly_fixtures import make_frames, write_pair
from hdnnp.cli import main

# HISTORY of 2 frames x 2 atoms, keytrj 2, DL_POLY 4 layout: line 3 and 15 are the 'timestep'
# records; atom 1 of frame 1: name 7, position 8, velocity 9, force 10; atom 2: 11-14.


@pytest.fixture
def pair(tmp_path):
    frames = make_frames(2, species=(52, 52))
    hist, energy = write_pair(tmp_path, "Te", 673, frames)
    return tmp_path, hist, energy


def _lines(path):
    return path.read_text().splitlines(keepends=True)


def _set_line(path, number, text):
    lines = _lines(path)
    lines[number - 1] = text + "\n"
    path.write_text("".join(lines))


def _prepare_fails(directory, capsys, *extra):
    out = directory / "out.h5"
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "--data-dir", str(directory), "--system", "Te", "--train", "673K",
              "-o", str(out), "-q", *extra])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.startswith("Error: ") and "Traceback" not in err
    assert not out.exists()
    assert not [p for p in directory.iterdir() if p.name.startswith(".out.h5")]  # no temp file
    return err.strip()


def test_non_numeric_token(pair, capsys):
    d, hist, _ = pair
    _set_line(hist, 12, "        1.0000000000         abc        2.0000000000")
    err = _prepare_fails(d, capsys)
    assert err == (f"Error: {hist}, line 12: expected 3 numbers (position of atom 2 of frame at "
                   f"step 0), got '1.0000000000         abc        2.0000000000'")


def test_truncated_frame(pair, capsys):
    d, hist, _ = pair
    hist.write_text("".join(_lines(hist)[:24]))  # frame 2 stops inside atom 2
    err = _prepare_fails(d, capsys)
    assert f"{hist}, line 25: file ends inside frame at step 10: expected 2 atoms" in err
    assert "found 1 complete atoms" in err


def test_wrong_atom_count_in_frame_header(pair, capsys):
    d, hist, _ = pair
    _set_line(hist, 15, "timestep        10         3         2         2    0.001000    0.010000")
    err = _prepare_fails(d, capsys)
    assert f"{hist}, line 15: frame at step 10 declares 3 atoms, the file header (line 2) 2" in err


def test_missing_atoms_found_next_timestep(tmp_path, capsys):
    frames = make_frames(2, species=(52, 52))
    hist, _ = write_pair(tmp_path, "Te", 673, frames)
    lines = _lines(hist)
    del lines[10:14]  # atom 2 of frame 1 removed: frame 2's 'timestep' record comes early
    hist.write_text("".join(lines))
    err = _prepare_fails(tmp_path, capsys)
    assert f"{hist}, line 11: expected the record 'name index ...' of atom 2 of frame at step 0" in err
    assert "the frame holds 1 atoms, not the 2 declared" in err


def test_unknown_imcon(pair, capsys):
    d, hist, _ = pair
    _set_line(hist, 3, "timestep         0         2         2         6    0.001000    0.000000")
    err = _prepare_fails(d, capsys)
    assert f"{hist}, line 3: unknown imcon 6 in frame at step 0 (expected 0 no box" in err


def test_frame_without_energy(pair, capsys):
    d, _, energy = pair
    energy.write_text("# step energy\n0 -25.0\n20 -25.1\n")
    err = _prepare_fails(d, capsys)
    assert "HISTORY frames with no energy" in err
    assert "HISTORY.Te.673K: 1 frame(s) without energy, steps 10" in err
    assert "--allow-missing-energies" in err


def test_duplicate_timestep_in_history(tmp_path, capsys):
    frames = make_frames(2, species=(52, 52), step_every=0)
    write_pair(tmp_path, "Te", 673, frames[:1] + frames[:1], energy_frames=frames[:1])
    err = _prepare_fails(tmp_path, capsys)
    assert "HISTORY.Te.673K, line 15: duplicate timestep 0 (previous frame: step 0 at line 3)" in err


def test_duplicate_timestep_in_energy_file(pair, capsys):
    d, _, energy = pair
    energy.write_text("# step energy\n0 -25.0\n10 -25.1\n10 -25.2\n")
    err = _prepare_fails(d, capsys)
    assert err == (f"Error: {energy}, line 4: duplicate timestep 10 (previous: step 10 at "
                   "line 3); steps must increase")


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_non_finite_values(pair, capsys, value):
    d, hist, energy = pair
    _set_line(hist, 10, f"   1.0   {value}   2.0")
    err = _prepare_fails(d, capsys)
    assert f"{hist}, line 10: expected 3 finite numbers (force of atom 1 of frame at step 0)" in err
    hist.write_text(hist.read_text().replace(f"   1.0   {value}   2.0", "   1.0   0.0   2.0"))
    energy.write_text(f"0 -25.0\n10 {value}\n")
    err = _prepare_fails(d, capsys)
    assert f"{energy}, line 2: energy is not finite ({value}) at timestep 10" in err


def test_empty_files(pair, capsys):
    d, hist, energy = pair
    energy.write_text("# nothing here\n")
    err = _prepare_fails(d, capsys)
    assert f"{energy}: no data lines; expected 'timestep energy'" in err
    hist.write_text("")
    err = _prepare_fails(d, capsys)
    assert f"{hist}: empty file, expected a DL_POLY HISTORY file" in err


def test_directory_where_a_file_is_expected(pair, capsys):
    d, _, energy = pair
    energy.unlink()
    energy.mkdir()
    err = _prepare_fails(d, capsys)
    assert f"{energy}: is a directory, expected a file" in err


def test_missing_files_named_before_work(pair, capsys):
    d, hist, energy = pair
    err = _prepare_fails(d, capsys, "--train", "700K", "--predict", "800")
    for name in ("HISTORY.Te.700K", "E.Te.700K", "HISTORY.Te.800K", "E.Te.800K"):
        assert name in err


def test_dlpoly4_frame_count_mismatch(pair, capsys):
    d, hist, _ = pair
    hist.write_text("".join(_lines(hist)[:14]))  # cut at the frame boundary: 1 of 2 frames
    err = _prepare_fails(d, capsys)
    assert f"{hist}, line 2: the file header (line 2) declares 2 frames, the file holds 1" in err


def test_file_cut_mid_line(pair, capsys):
    d, hist, _ = pair
    text = hist.read_text()
    hist.write_text(text[:text.rstrip("\n").rindex(".") + 3])  # last force '...  -12.3'
    err = _prepare_fails(d, capsys)
    assert f"{hist}, line 26: the last line has no newline" in err


def test_non_integer_header_and_unknown_element(pair, capsys):
    d, hist, _ = pair
    _set_line(hist, 2, "         2         x         2         2        30")
    err = _prepare_fails(d, capsys)
    assert f"{hist}, line 2: expected an integer imcon (HISTORY header 'keytrj imcon natms'), got 'x'" in err
    _set_line(hist, 2, "         2         2         2         2        30")
    _set_line(hist, 11, "Qx               2    0.000000    0.000000    0.000000")
    err = _prepare_fails(d, capsys)
    assert f"{hist}, line 11: expected the record 'name index ...' of atom 2 of frame at step 0" in err
