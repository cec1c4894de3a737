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
