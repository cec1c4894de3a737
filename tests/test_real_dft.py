"""A tiny run on real PBE data (three mlearn frames each of Ge and Si, with stresses; two frames
of n2p2's Cu2S example, two elements): prepare reads ASE's stresses and groups, symmetry --grid
auto, train with --stress-weight completes and lowers the loss, predict scores the stress."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from ase.io import read as ase_read

from hdnnp.cli import main

DATA = Path(__file__).parent / "data" / "mlearn"


@pytest.mark.parametrize("element", ["Ge", "Si"])
def test_tiny_training_on_pbe_frames(tmp_path, capsys, element):
    frames = DATA / f"{element}.3frames.extxyz"
    main(["prepare", "--train-file", str(frames), "-o", str(tmp_path / "p.h5"), "-q"])
    with h5py.File(tmp_path / "p.h5") as h5:
        for k, a in enumerate(ase_read(frames, ":")):
            np.testing.assert_allclose(h5["train/frames/stress"][k], a.get_stress(voigt=False), rtol=1e-12)
        assert sorted(g.decode() for g in h5["train/groups"][:]) == ["AIMD-NVT", "Elastic", "Surface"]
    main(["symmetry", str(tmp_path / "p.h5"), "-o", str(tmp_path / "s.h5"), "--grid", "auto", "--grid-points", "5",
          "--n-features", "12", "-q"])
    main(["train", str(tmp_path / "s.h5"), "-o", str(tmp_path / "m.h5"), "--hidden", "6", "--epochs", "8",
          "--patience", "0", "--val-fraction", "0", "--stress-weight", "0.1", "-q"])
    with h5py.File(tmp_path / "m.h5") as h5:
        loss = h5["training/log/train_loss"][:]
    assert loss[-1] < 0.5 * loss[0], loss
    capsys.readouterr()
    main(["predict", str(tmp_path / "p.h5"), "--model", str(tmp_path / "m.h5"), "-o", str(tmp_path / "pr.h5")])
    out = capsys.readouterr().out
    assert "stress RMSE" in out and "  Surface: 1 frames" in out


def test_tiny_training_on_two_element_pbe_frames(tmp_path, capsys):
    """Cu2S (n2p2 input.data, 2 x 144 atoms): both elements get networks; the loss falls."""
    frames = Path(__file__).parent / "data" / "cu2s" / "Cu2S.2frames.data"
    main(["prepare", "--train-file", str(frames), "-o", str(tmp_path / "p.h5"), "-q"])
    main(["symmetry", str(tmp_path / "p.h5"), "-o", str(tmp_path / "s.h5"), "--grid", "auto", "--grid-points", "4",
          "--n-features", "10", "-q"])
    main(["train", str(tmp_path / "s.h5"), "-o", str(tmp_path / "m.h5"), "--hidden", "6", "--epochs", "30",
          "--optimizer", "lbfgs", "--patience", "0", "--val-fraction", "0", "-q"])
    with h5py.File(tmp_path / "m.h5") as h5:
        loss = h5["training/log/train_loss"][:]
        assert sorted(h5["networks"]) == ["Cu", "S"]
    assert loss[-1] < 0.8 * loss[0], loss  # forces of 288 atoms dominate: a 6-neuron net fits slowly
    capsys.readouterr()
    main(["predict", str(tmp_path / "p.h5"), "--model", str(tmp_path / "m.h5"), "-o", str(tmp_path / "pr.h5")])
    assert "force RMSE" in capsys.readouterr().out
