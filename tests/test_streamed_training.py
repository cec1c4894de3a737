"""Streamed training (descriptors read from symmetry.h5 per step) against in-memory training:
the same weights after a few epochs, for every gradient optimiser, with a force fraction, a
validation split, float32 derivatives and stress training; and nothing of the descriptors held."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from hdnnp.cli import main
from hdnnp.stages.symmetry import symmetry
from hdnnp.stages.train import load_training_data, stream_training_data, train
from hdnnp.training.presets import make_options
from test_symmetry_stage import TE, random_frames, write_prepared

MLEARN = Path(__file__).parent / "data" / "mlearn" / "Ge.3frames.extxyz"


@pytest.fixture(scope="module")
def sym(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(3)
    write_prepared(d / "prepared.h5", random_frames(rng, 12, n_atoms=8), random_frames(rng, 2, n_atoms=8))
    symmetry(d / "prepared.h5", d / "symmetry.h5", n_features=8, device="cpu", quiet=True)
    symmetry(d / "prepared.h5", d / "symmetry32.h5", n_features=8, device="cpu", quiet=True,
             derivative_precision="float32")
    return d


def weights(path):
    with h5py.File(path, "r") as h5:
        return np.concatenate([h5[f"networks/Te/{k}"][:].ravel() for k in sorted(h5["networks/Te"])])


@pytest.mark.parametrize("optimizer,extra", [("ekf", {}), ("adam", {"batch_boxes": 3}), ("lbfgs", {}),
                                             ("lbfgs", {"batch_boxes": 4})])
@pytest.mark.parametrize("file", ["symmetry.h5", "symmetry32.h5"])
def test_streamed_training_follows_in_memory_training(sym, tmp_path, optimizer, extra, file):
    out = {}
    for mode in ("never", "always"):
        opts = make_options(optimizer=optimizer, hidden=(5,), epochs=3, patience=0, val_fraction=0.25,
                            force_fraction=0.5, stream=mode, **extra)
        train(sym / file, tmp_path / f"{mode}.h5", opts, quiet=True)
        out[mode] = weights(tmp_path / f"{mode}.h5")
        with h5py.File(tmp_path / f"{mode}.h5", "r") as h5:
            out[mode + "log"] = h5["training/log/train_loss"][:]
    # EKF and Adam see the very same batches: equal to the last bit; L-BFGS sums blocks (rounding)
    tol = 0 if optimizer != "lbfgs" else 1e-8
    np.testing.assert_allclose(out["always"], out["never"], rtol=tol, atol=tol)
    np.testing.assert_allclose(out["alwayslog"], out["neverlog"], rtol=max(tol, 1e-12))


def test_a_streamed_set_gives_the_in_memory_batches_and_holds_no_descriptors(sym):
    with h5py.File(sym / "symmetry.h5", "r") as h5:
        args = (h5["train"], (TE,), True, 0.5)
        frames = np.array([0, 2, 3, 4, 9])
        held = load_training_data(*args, np.random.default_rng(1), frames=frames)
        streamed = stream_training_data(*args, np.random.default_rng(1), frames=frames)
        assert streamed.nbytes() == 0 and streamed.blocks[TE].values is None
        assert streamed.has_forces and not streamed.has_stress
        for pick in ([0, 1, 2, 3, 4], [4, 0, 2], [3]):
            a, b = held.subset(pick), streamed.subset(pick)
            for name in ("energy", "forces", "force_mask", "atom_offset", "frame_index"):
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
            for name in ("values", "row_frame", "atom_index", "row_offset", "pair_row", "pair_atom", "dvalues",
                         "pair_offset"):
                np.testing.assert_array_equal(getattr(a.blocks[TE], name), getattr(b.blocks[TE], name))
        r_a, r_b = held.frame_range(1, 4), streamed.frame_range(1, 4)
        np.testing.assert_array_equal(r_a.blocks[TE].dvalues, r_b.blocks[TE].dvalues)
        np.testing.assert_array_equal(r_a.blocks[TE].pair_row, r_b.blocks[TE].pair_row)


def test_streamed_stress_training_follows_in_memory(tmp_path):
    main(["prepare", "--train-file", str(MLEARN), "-o", str(tmp_path / "p.h5"), "-q"])
    main(["symmetry", str(tmp_path / "p.h5"), "-o", str(tmp_path / "s.h5"), "--grid", "auto", "--grid-points", "4",
          "--n-features", "8", "-q"])
    out = []
    for mode in ("never", "always"):
        main(["train", str(tmp_path / "s.h5"), "-o", str(tmp_path / f"{mode}.h5"), "--hidden", "4", "--epochs", "3",
              "--patience", "0", "--val-fraction", "0", "--stress-weight", "0.1", "--stream", mode, "-q"])
        with h5py.File(tmp_path / f"{mode}.h5", "r") as h5:
            out.append(np.concatenate([h5[f"networks/Ge/{k}"][:].ravel() for k in sorted(h5["networks/Ge"])]))
    np.testing.assert_array_equal(out[1], out[0])


def test_auto_streams_beyond_the_budget_and_never_refuses(sym, tmp_path, capsys):
    main(["train", str(sym / "symmetry.h5"), "-o", str(tmp_path / "m.h5"), "--epochs", "1", "--hidden", "4",
          "--max-memory", "0.001"])
    assert "streaming the descriptors" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", str(sym / "symmetry.h5"), "-o", str(tmp_path / "n.h5"), "--epochs", "1", "--max-memory",
              "0.001", "--stream", "never"])
    assert "--stream auto" in capsys.readouterr().err
