"""hdnnp inspect: summary figures computed from the file equal those of the frames written."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from _dlpoly_fixtures import make_frames, write_pair
from hdnnp.cli import main
from hdnnp.errors import HdnnpError
from hdnnp.inputs import resolve_inputs
from hdnnp.inspect import inspect_file
from hdnnp.stages.prepare import prepare


def test_inspect_prepared(tmp_path, capsys):
    a = make_frames(3, species=(52, 52, 31), seed=1)
    b = make_frames(2, species=(52, 52, 31), seed=2)
    write_pair(tmp_path, "GaTe", 673, a)
    write_pair(tmp_path, "GaTe", 723, b, keytrj=0)
    sel = resolve_inputs(data_dir=tmp_path, system="GaTe", train="673K", predict="723K")
    prepare(sel, tmp_path / "prepared.h5", quiet=True)
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(tmp_path / "prepared.h5")])
        raise SystemExit(0)
    assert exc.value.code == 0
    text = capsys.readouterr().out
    energies = np.array([f.energy for f in a])
    assert "stage: prepare" in text and "command: " in text and "created: " in text
    assert "elements: Ga, Te" in text
    assert "set 'train':\n  frames: 3, atoms: 9" in text
    assert "atoms per element: Ga 3, Te 6" in text
    assert "temperatures (frames): 673 K: 3" in text
    assert f"energy: {energies.min():.6f} .. {energies.max():.6f} eV" in text
    assert f"energy per atom: {energies.min() / 3:.6f} .. {energies.max() / 3:.6f} eV/atom" in text
    predict = text[text.index("set 'predict':"):text.index("set 'train':")]
    assert "temperatures (frames): 723 K: 2" in predict and "forces: no" in predict
    assert "forces: yes" in text[text.index("set 'train':"):]
    assert "positions  (9, 3) float64" in text


def test_inspect_generic_file(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["stage"] = "symmetry"
        h5.create_dataset("train/features/Te/values", data=np.zeros((7, 30)))
    text = inspect_file(path)
    assert "stage: symmetry" in text
    assert "values  (7, 30) float64" in text
    with pytest.raises(HdnnpError, match="no such file"):
        inspect_file(tmp_path / "none.h5")
    (tmp_path / "bad.h5").write_text("not hdf5")
    with pytest.raises(HdnnpError, match="not a readable HDF5 file"):
        inspect_file(tmp_path / "bad.h5")
