"""The symmetry stage end to end on tiny prepared-like files built here."""

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from hdnnp.cli import cli
from hdnnp.descriptors import FeatureSet, compute_descriptors, compute_raw
from hdnnp.descriptors.selection import informative_candidates
from hdnnp.errors import HdnnpError
from hdnnp.frames import Frame
from hdnnp.h5io import FrameSetWriter, write_root_attrs
from hdnnp.kernels import gpu_available
from hdnnp.stages.symmetry import symmetry

TE = 52
SIDE = 10.0


def random_frames(rng, n_frames, n_atoms=10, side=SIDE, forces=True):
    frames = []
    for f in range(n_frames):
        frames.append(Frame(positions=rng.uniform(0, side, (n_atoms, 3)), species=np.full(n_atoms, TE),
                            cell=np.eye(3) * side, pbc=np.ones(3, bool), energy=float(f),
                            forces=rng.normal(size=(n_atoms, 3)) if forces else None,
                            temperature=673.0, step=f, source="HISTORY.Te.673K"))
    return frames


def write_prepared(path, train, predict):
    with h5py.File(path, "w") as h5:
        write_root_attrs(h5, "prepare")
        h5.attrs["elements"] = np.array([TE], np.int32)
        for name, frames in (("train", train), ("predict", predict)):
            w = FrameSetWriter(h5.create_group(name), with_forces=frames[0].forces is not None)
            w.append(frames)
            w.close()


@pytest.fixture
def prepared(tmp_path):
    rng = np.random.default_rng(0)
    train = random_frames(rng, 5)
    predict = random_frames(rng, 2, forces=False)
    # a squeezed prediction box: closer neighbours than in training -> extrapolation
    predict.append(Frame(positions=rng.uniform(0, 5.0, (10, 3)), species=np.full(10, TE), cell=np.eye(3) * 5.0,
                         pbc=np.ones(3, bool), energy=0.0, temperature=900.0, step=9, source="x"))
    path = tmp_path / "prepared.h5"
    write_prepared(path, train, predict)
    return path


def test_stage_output_matches_library(prepared, tmp_path):
    out = tmp_path / "symmetry.h5"
    summary = symmetry(prepared, out, n_features=12, device="cpu", chunk_frames=2, quiet=True)
    assert summary["sets"]["train"]["derivatives"] and not summary["sets"]["predict"]["derivatives"]
    with h5py.File(out, "r") as h5, h5py.File(prepared, "r") as src:
        assert h5.attrs["stage"] == "symmetry"
        fs = FeatureSet.from_h5(h5["feature_set"])
        sel = fs.selected[TE]
        assert len(sel) == 12
        for s in ("train", "predict"):
            np.testing.assert_array_equal(h5[f"{s}/atoms/positions"][:], src[f"{s}/atoms/positions"][:])
            off = h5[f"{s}/frames/atom_offset"][:]
            raw = h5[f"{s}/raw"][:]
            g = h5[f"{s}/features/Te"]
            np.testing.assert_array_equal(g["frame_offset"][:], off)  # one element: rows = atoms
            np.testing.assert_array_equal(g["atom_index"][:], np.arange(off[-1]))
            np.testing.assert_allclose(g["values"][:], fs.scale(TE, raw[:, sel]), rtol=1e-12, atol=1e-12)
            for f in range(len(off) - 1):
                pos = src[f"{s}/atoms/positions"][off[f]:off[f + 1]]
                cell, z = src[f"{s}/frames/cell"][f], src[f"{s}/atoms/species"][off[f]:off[f + 1]]
                np.testing.assert_allclose(raw[off[f]:off[f + 1]], compute_raw(pos, cell, True, z, fs), rtol=1e-12)
        # training range: train values within [-1, 1], reaching both ends; no extrapolation
        v = h5["train/features/Te/values"][:]
        np.testing.assert_allclose([v.min(), v.max()], [-1.0, 1.0], atol=1e-12)
        assert not h5["train/extrapolation"][:].any()
        # extrapolation counted per frame, as the number of scaled values beyond ±1
        pv, poff = h5["predict/features/Te/values"][:], h5["predict/features/Te/frame_offset"][:]
        counts = [np.count_nonzero(np.abs(pv[a:b]) > 1 + 1e-9) for a, b in zip(poff[:-1], poff[1:])]
        np.testing.assert_array_equal(h5["predict/extrapolation"][:], counts)
        assert counts[-1] > 0
        # derivatives of the training set equal the library's for each frame
        dg = h5["train/features/Te/dG"]
        doff = dg["frame_offset"][:]
        off = h5["train/frames/atom_offset"][:]
        for f in range(len(off) - 1):
            pos = h5["train/atoms/positions"][off[f]:off[f + 1]]
            d = compute_descriptors(pos, h5["train/frames/cell"][f], True, np.full(len(pos), TE), fs, derivatives=True)[TE]
            sl = slice(doff[f], doff[f + 1])
            np.testing.assert_array_equal(dg["center"][sl], off[f] + d.pair_row)
            np.testing.assert_array_equal(dg["atom"][sl], off[f] + d.pair_atom)
            np.testing.assert_allclose(dg["values"][sl], d.dvalues, rtol=1e-12, atol=1e-14)
        assert "predict/features/Te/dG" not in h5
        table = h5["features"]
        assert table["selected"][:].sum() == 12 and len(table["eta"]) == fs.n_candidates
        check = h5["descriptor_check"]
        n_informative = len(informative_candidates(h5["train/raw"][:]))
        np.testing.assert_array_equal(check["n_features"][:], [1, 12, n_informative])
        assert len(check["correlation"][:]) == len(check["n_features"][:])
        assert check["distance_all"].shape == check["force_difference"].shape


def test_chunking_does_not_change_the_result(prepared, tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    symmetry(prepared, a, n_features=8, device="cpu", chunk_frames=1, derivatives="always", quiet=True)
    symmetry(prepared, b, n_features=8, device="cpu", chunk_frames=100, derivatives="always", quiet=True)
    with h5py.File(a, "r") as ha, h5py.File(b, "r") as hb:
        for name in ("train/raw", "predict/features/Te/values", "predict/features/Te/dG/values",
                     "train/features/Te/dG/center", "predict/extrapolation"):
            np.testing.assert_array_equal(ha[name][:], hb[name][:])


def test_user_feature_list_no_derivatives_and_errors(prepared, tmp_path):
    out = tmp_path / "s.h5"
    symmetry(prepared, out, features=[1, 40, 7], derivatives="never", device="cpu", quiet=True)
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["feature_set/Te/selected"][:], [1, 40, 7])
        assert "train/features/Te/dG" not in h5
    with pytest.raises(HdnnpError, match="exists"):
        symmetry(prepared, out, device="cpu", quiet=True)
    if not gpu_available():
        with pytest.raises(HdnnpError, match="gpu"):
            symmetry(prepared, tmp_path / "g.h5", device="gpu", quiet=True)
        assert not (tmp_path / "g.h5").exists()


def test_cli(prepared, tmp_path):
    (tmp_path / "list.txt").write_text("# chosen\n0, 3\n45\n")
    out = tmp_path / "cli.h5"
    result = CliRunner().invoke(cli, ["symmetry", str(prepared), "-o", str(out), "--features",
                                      str(tmp_path / "list.txt"), "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert "Te: 3 of 84 candidates selected" in result.output
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["feature_set/Te/selected"][:], [0, 3, 45])


def test_no_forces_and_empty_prediction_set(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "prepared.h5"
    with h5py.File(path, "w") as h5:
        write_root_attrs(h5, "prepare")
        h5.attrs["elements"] = np.array([TE], np.int32)
        w = FrameSetWriter(h5.create_group("train"), with_forces=False)
        w.append(random_frames(rng, 3, forces=False))
        w.close()
        FrameSetWriter(h5.create_group("predict"), with_forces=False).close()
    out = tmp_path / "s.h5"
    summary = symmetry(path, out, n_features=6, device="cpu", quiet=True)
    assert not summary["sets"]["train"]["derivatives"]
    with h5py.File(out, "r") as h5:
        assert "unavailable" in h5["descriptor_check"].attrs
        assert h5["predict/raw"].shape == (0, 84)
        assert h5["predict/features/Te/values"].shape == (0, 6)
        np.testing.assert_array_equal(h5["predict/features/Te/frame_offset"][:], [0])
        assert h5["train/features/Te/values"].shape == (30, 6)


def test_float32_derivatives_halve_the_storage_and_train_alike(prepared, tmp_path):
    """--derivative-precision float32: the same derivatives rounded to float32 (6e-8 relative),
    held as float32 by training, and a training run that follows the float64 one closely."""
    from hdnnp.stages.train import load_training_data, train
    from hdnnp.training.presets import TrainOptions

    a, b = tmp_path / "f64.h5", tmp_path / "f32.h5"
    symmetry(prepared, a, n_features=8, device="cpu", derivatives="always", quiet=True)
    symmetry(prepared, b, n_features=8, device="cpu", derivatives="always", quiet=True,
             derivative_precision="float32")
    with h5py.File(a, "r") as ha, h5py.File(b, "r") as hb:
        d64, d32 = ha["train/features/Te/dG/values"], hb["train/features/Te/dG/values"]
        assert d64.dtype == np.float64 and d32.dtype == np.float32
        np.testing.assert_allclose(d32[:], d64[:], rtol=1e-7, atol=1e-7 * np.abs(d64[:]).max())
        np.testing.assert_array_equal(ha["train/features/Te/values"][:], hb["train/features/Te/values"][:])
        held = load_training_data(hb["train"], (TE,), True)
        assert held.blocks[TE].dvalues.dtype == np.float32
    losses = []
    for path in (a, b):
        train(path, tmp_path / f"{path.stem}_model.h5",
              TrainOptions(hidden=(5,), epochs=4, optimizer="lbfgs", val_fraction=0.0), quiet=True)
        with h5py.File(tmp_path / f"{path.stem}_model.h5", "r") as h5:
            losses.append(h5["training/log/train_loss"][:])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    with pytest.raises(HdnnpError, match="--derivative-precision"):
        symmetry(prepared, tmp_path / "x.h5", device="cpu", quiet=True, derivative_precision="float16")
