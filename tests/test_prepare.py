"""Stage 2: prepare writes the documented datasets, interleaves, skips, strides, converts."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from _dlpoly_fixtures import CUBIC, ORTHO, TRICLINIC, make_frames, write_pair
from hdnnp.cli import main
from hdnnp.errors import HdnnpError
from hdnnp.inputs import resolve_inputs
from hdnnp.stages.prepare import prepare, round_robin


def _run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_round_robin_order_and_one_pending_frame_per_source():
    pulled = {}

    def source(name, n):
        for k in range(n):
            pulled[name] = k + 1
            yield (name, k)

    sources = [source("A", 3), source("B", 1), source("C", 2)]
    pending = [(next(s), s) for s in sources]
    order = []
    for item in round_robin(pending):
        order.append(item)
        # never more than one frame read ahead of what was yielded, per source
        yielded = {n: sum(1 for o in order if o[0] == n) for n in "ABC"}
        assert all(pulled[n] - yielded[n] <= 1 for n in "ABC")
    assert order == [("A", 0), ("B", 0), ("C", 0), ("A", 1), ("C", 1), ("A", 2)]


@pytest.fixture
def three_temperatures(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    f673 = make_frames(5, cell=ORTHO, seed=1)
    f723 = make_frames(2, cell=TRICLINIC, seed=2, step0=1000)
    f773 = make_frames(3, species=(52, 52, 52, 52, 52, 52), cell=CUBIC, seed=3)
    write_pair(d, "Te", 673, f673)
    write_pair(d, "Te", 723, f723, gz=True, layout="classic")
    write_pair(d, "Te", 773, f773)
    return d, {673: f673, 723: f723, 773: f773}


def test_cli_writes_documented_datasets(three_temperatures, tmp_path, capsys, monkeypatch):
    d, frames = three_temperatures
    monkeypatch.chdir(tmp_path)
    code, out, err = _run_cli(["prepare", "--data-dir", str(d), "--system", "Te",
                               "--train", "673K,723K", "--predict", "773K", "-q"], capsys)
    assert code == 0, err
    assert "wrote prepared.h5" in out
    with h5py.File(tmp_path / "prepared.h5", "r") as h5:
        assert h5.attrs["stage"] == "prepare" and h5.attrs["schema_version"] == 1
        assert list(h5.attrs["elements"]) == [52]
        assert len(json.loads(h5.attrs["inputs"])) == 6
        tr = h5["train"]
        for name in ("frames/atom_offset", "frames/energy", "frames/cell", "frames/pbc",
                     "frames/temperature", "frames/step", "frames/source", "sources",
                     "atoms/positions", "atoms/species", "atoms/forces"):
            assert name in tr, name
        # round robin: 673 f1, 723 f1, 673 f2, 723 f2, 673 f3, 673 f4, 673 f5
        want = [(673, 0), (723, 0), (673, 1), (723, 1), (673, 2), (673, 3), (673, 4)]
        np.testing.assert_array_equal(tr["frames/temperature"][:], [t for t, _ in want])
        np.testing.assert_array_equal(tr["frames/step"][:], [frames[t][k].step for t, k in want])
        np.testing.assert_array_equal(tr["frames/atom_offset"][:], np.arange(8) * 4)
        np.testing.assert_array_equal(tr["frames/source"][:], [0, 1, 0, 1, 0, 0, 0])
        assert [s.decode() if isinstance(s, bytes) else s for s in tr["sources"][:]] == [
            str(d / "HISTORY.Te.673K"), str(d / "HISTORY.Te.723K.gz")]
        for i, (t, k) in enumerate(want):
            f = frames[t][k]
            a0, a1 = tr["frames/atom_offset"][i:i + 2]
            np.testing.assert_allclose(tr["atoms/positions"][a0:a1], f.positions, atol=1e-10)
            np.testing.assert_allclose(tr["atoms/forces"][a0:a1], f.forces, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(tr["frames/cell"][i], f.cell, atol=1e-10)
            assert tr["frames/energy"][i] == pytest.approx(f.energy, abs=1e-10)
        assert tr["frames/pbc"][:].all()
        pr = h5["predict"]
        assert pr["frames/energy"].shape == (3,)
        np.testing.assert_array_equal(pr["frames/atom_offset"][:], [0, 6, 12, 18])
        np.testing.assert_array_equal(pr["frames/temperature"][:], [773, 773, 773])
        np.testing.assert_array_equal(pr["atoms/species"][:], np.full(18, 52))


def test_skip_stride_and_forces_unit(three_temperatures, tmp_path):
    d, frames = three_temperatures
    sel = resolve_inputs(data_dir=d, system="Te", train="673K,723K")
    summary = prepare(sel, tmp_path / "p.h5", skip=1, stride=2, forces_unit="eV/A", quiet=True)
    with h5py.File(tmp_path / "p.h5", "r") as h5:
        # 673: frames 1, 3; 723: frame 1 -> 673 f1, 723 f1, 673 f3
        np.testing.assert_array_equal(h5["train/frames/step"][:], [10, 1010, 30])
        forces = h5["train/atoms/forces"][:4]
    # forces taken as already in eV/Å: the raw DL_POLY numbers, 9648.5332 times larger
    np.testing.assert_allclose(forces, frames[673][1].forces * 9648.53321233, rtol=1e-8)
    assert summary["sets"]["train"] == {"n_frames": 3, "n_atoms": 12, "forces": True, "n_stresses": 0}
    assert summary["sets"]["predict"]["n_frames"] == 0
    assert [s.n_kept for s in summary["sources"]["train"]] == [2, 1]
    assert [s.n_frames for s in summary["sources"]["train"]] == [5, 2]


def test_missing_and_unmatched_energies(tmp_path, capsys):
    frames = make_frames(4)
    energies = [frames[0], frames[2], frames[3]] + make_frames(2, step0=35, step_every=100)
    write_pair(tmp_path, "Te", 673, frames, energy_frames=energies)
    sel = resolve_inputs(data_dir=tmp_path, system="Te", train="673K")
    with pytest.raises(HdnnpError, match=r"HISTORY.Te.673K: 1 frame\(s\) without energy, steps 10"):
        prepare(sel, tmp_path / "p.h5", quiet=True)
    assert not (tmp_path / "p.h5").exists()
    code, out, err = _run_cli(["prepare", "--data-dir", str(tmp_path), "--system", "Te",
                               "--train", "673", "--allow-missing-energies", "-o",
                               str(tmp_path / "p.h5"), "-q"], capsys)
    assert code == 0, err
    assert "3 of 4 frames (1 frames without energy skipped; 2 energies without a frame)" in out
    with h5py.File(tmp_path / "p.h5", "r") as h5:
        np.testing.assert_array_equal(h5["train/frames/step"][:], [0, 20, 30])
        assert h5.attrs["n_missing_energies"] == 1 and h5.attrs["n_unmatched_energies"] == 2


def test_several_elements_and_atom_counts_and_no_forces(tmp_path):
    ga_te = make_frames(2, species=(31, 52, 52, 31, 52), seed=5)
    te = make_frames(2, species=(52, 52, 52), seed=6)
    hist, _ = write_pair(tmp_path, "GaTe", 600, ga_te, keytrj=1,
                         names=["Ga1", "Te1", "TE2", "GA", "Te"])
    write_pair(tmp_path, "GaTe", 700, te, keytrj=1)
    sel = resolve_inputs(data_dir=tmp_path, system="GaTe", train="600K,700K")
    summary = prepare(sel, tmp_path / "p.h5", quiet=True)
    assert summary["elements"] == [31, 52]
    with h5py.File(tmp_path / "p.h5", "r") as h5:
        assert "atoms/forces" not in h5["train"]
        np.testing.assert_array_equal(h5["train/frames/atom_offset"][:], [0, 5, 8, 13, 16])
        np.testing.assert_array_equal(h5["train/atoms/species"][:5], [31, 52, 52, 31, 52])
        np.testing.assert_array_equal(h5.attrs["elements"], [31, 52])


def test_existing_output_needs_overwrite(three_temperatures, tmp_path):
    d, _ = three_temperatures
    sel = resolve_inputs(data_dir=d, system="Te", train="673K")
    out = tmp_path / "p.h5"
    out.write_bytes(b"old")
    with pytest.raises(HdnnpError, match="--overwrite"):
        prepare(sel, out, quiet=True)
    assert out.read_bytes() == b"old"
    prepare(sel, out, overwrite=True, quiet=True)
    with h5py.File(out, "r") as h5:
        assert h5["train/frames/energy"].shape == (5,)



def test_cli_study_file_with_override(three_temperatures, tmp_path, capsys):
    d, _ = three_temperatures
    study = tmp_path / "study.toml"
    study.write_text('[prepare]\ndata_dir = "data"\nsystem = "Te"\ntrain = "673K,723K"\n'
                     'predict = ["773K"]\nstride = 2\n')
    out = tmp_path / "s.h5"
    code, stdout, err = _run_cli(["prepare", "--config", str(study), "--train", "673",
                                  "-o", str(out), "-q"], capsys)
    assert code == 0, err
    assert "HISTORY.Te.673K: 3 of 5 frames" in stdout and "HISTORY.Te.773K: 2 of 3 frames" in stdout
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["train/frames/step"][:], [0, 20, 40])
        assert h5.attrs["stride"] == 2
