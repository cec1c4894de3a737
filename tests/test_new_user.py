"""What a new user trips over (issue #15), each a test: the stages by hand behave like
``hdnnp run``, and a wrong first guess gets a line that says what to do."""

import gzip

import h5py
import numpy as np
import pytest

from _nn_fixtures import lj_frames, lj_symmetry_files
from hdnnp.cli import main


def _error(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_predict_gives_forces_when_the_input_has_reference_forces(tmp_path):
    d = lj_symmetry_files(tmp_path, lj_frames(np.random.default_rng(5), 10), 8, 6)
    main(["train", str(d / "symmetry.h5"), "-o", str(d / "m.h5"), "--preset", "fast", "--epochs", "1", "--hidden",
          "3", "-q"])
    main(["predict", str(d / "symmetry.h5"), "--model", str(d / "m.h5"), "-o", str(d / "auto.h5"), "-q"])
    main(["predict", str(d / "symmetry.h5"), "--model", str(d / "m.h5"), "-o", str(d / "none.h5"), "--no-forces",
          "-q"])
    with h5py.File(d / "auto.h5") as a, h5py.File(d / "none.h5") as n:
        assert "forces_predicted" in a["train"] and "forces_predicted" in a["predict"]
        assert "forces_predicted" not in n["train"]


def test_first_guesses_get_a_line_that_says_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "symmetry.h5: no such file; make it with hdnnp symmetry" in _error(capsys, ["train"])
    assert "nothere.h5: no such file (the input to predict)" in _error(capsys, ["predict", "nothere.h5"])
    with gzip.open(tmp_path / "E.Te.773K.gz", "wt") as fh:
        fh.write("0 -1.0\n")
    with gzip.open(tmp_path / "HISTORY.Te.773K.gz", "wt") as fh:
        fh.write("title\n")
    (tmp_path / "model.h5").write_text("")
    err = _error(capsys, ["predict", "E.Te.773K.gz"])
    assert "is a DL_POLY energy file; give its trajectory HISTORY.Te.773K.gz" in err


def test_a_prediction_only_prepared_file(tmp_path, capsys):
    """hdnnp prepare --predict alone writes a file for hdnnp predict (it was refused)."""
    from ase.io import write

    frames = lj_frames(np.random.default_rng(6), 10)
    d = lj_symmetry_files(tmp_path, frames, 8, 6)
    main(["train", str(d / "symmetry.h5"), "-o", str(d / "m.h5"), "--preset", "fast", "--epochs", "1", "--hidden",
          "3", "-q"])
    from ase.calculators.singlepoint import SinglePointCalculator

    images = []
    for a in frames[8:]:
        b = a.copy()
        del b.info["energy"], b.arrays["ref_forces"]
        b.calc = SinglePointCalculator(b, energy=a.info["energy"], forces=a.arrays["ref_forces"])
        images.append(b)
    write(tmp_path / "new.extxyz", images)
    main(["prepare", "--predict-file", f"{tmp_path / 'new.extxyz'}@150", "-o", str(tmp_path / "only.h5")])
    main(["predict", str(tmp_path / "only.h5"), "--model", str(d / "m.h5"), "-o", str(tmp_path / "p1.h5"), "-q"])
    main(["predict", str(d / "symmetry.h5"), "--model", str(d / "m.h5"), "-o", str(tmp_path / "p2.h5"), "-q",
          "--sets", "predict"])
    with h5py.File(tmp_path / "p1.h5") as p1, h5py.File(tmp_path / "p2.h5") as p2:
        np.testing.assert_allclose(p1["predict/energy_predicted"][:], p2["predict/energy_predicted"][:], rtol=1e-6)
    err = _error(capsys, ["symmetry", tmp_path / "only.h5", "-o", tmp_path / "s.h5"])
    assert "has no training frames (a prediction-only file)" in err
