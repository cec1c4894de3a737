"""hdnnp predict: predictions.h5 against an independent per-frame evaluation with Potential.predict,
the same numbers from symmetry.h5, prepared.h5 and an extxyz file, validation flags, CLI."""

import h5py
import numpy as np
import pytest

from _nn_fixtures import lj_frames, lj_symmetry_files
from hdnnp.cli import main
from hdnnp.model import Potential
from hdnnp.training.presets import make_options


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from hdnnp.stages.train import train

    frames = lj_frames(np.random.default_rng(2), 26)
    d = lj_symmetry_files(tmp_path_factory.mktemp("predict"), frames, 20, 10)
    train(d / "symmetry.h5", d / "model.h5", make_options("fast", epochs=10, hidden=(4,), val_fraction=0.2),
          quiet=True)
    return d, frames


def test_predictions_match_potential_predict(trained, tmp_path):
    from hdnnp.stages.predict import predict

    d, frames = trained
    summary = predict(d / "model.h5", d / "symmetry.h5", tmp_path / "p.h5", forces=True, atomic_energies=True,
                      quiet=True)
    pot = Potential.load(d / "model.h5")
    with h5py.File(tmp_path / "p.h5") as h5:
        assert h5.attrs["stage"] == "predict"
        for name, images in (("train", frames[:20]), ("predict", frames[20:])):
            g = h5[name]
            off = g["atom_offset"][:]
            for k, a in enumerate(images):
                e, f, atomic = pot.predict(a.positions, a.cell.array, a.pbc, a.numbers, atomic_energies=True)
                assert g["energy_predicted"][k] == pytest.approx(e, rel=1e-12)
                np.testing.assert_allclose(g["forces_predicted"][off[k]:off[k + 1]], f, rtol=1e-10, atol=1e-13)
                np.testing.assert_allclose(g["atomic_energies"][off[k]:off[k + 1]], atomic, rtol=1e-12)
                assert g["energy_reference"][k] == a.info["energy"]
                np.testing.assert_array_equal(g["forces_reference"][off[k]:off[k + 1]], a.arrays["ref_forces"])
        flags = h5["train/is_validation"][:]
        assert np.array_equal(np.flatnonzero(flags), np.sort(pot.training["validation_frames"]))
        assert "is_validation" not in h5["predict"]
        np.testing.assert_array_equal(h5["train/temperature"][:4], [100.0, 200.0, 100.0, 200.0])
        err = (h5["predict/energy_predicted"][:] - h5["predict/energy_reference"][:]) / 8
    assert summary["predict"]["energy_rmse_mev_per_atom"] == pytest.approx(1e3 * np.sqrt(np.mean(err ** 2)))


def test_cli_predict_stress_matches_potential(trained, tmp_path):
    """``hdnnp predict --stress`` stores each frame's stress as Potential.predict gives it."""
    d, frames = trained
    out = tmp_path / "p.h5"
    main(["predict", str(d / "symmetry.h5"), "--model", str(d / "model.h5"), "-o", str(out),
          "--stress", "--sets", "predict", "-q"])
    pot = Potential.load(d / "model.h5")
    with h5py.File(out) as h5:
        stored = h5["predict/stress_predicted"][:]
    assert stored.shape == (6, 3, 3)
    for k, a in enumerate(frames[20:]):
        s = pot.predict(a.positions, a.cell.array, a.pbc, a.numbers, forces=False, stress=True)[-1]
        np.testing.assert_array_equal(stored[k], s)


def test_prepared_and_extxyz_inputs_give_the_same_predictions(trained, tmp_path):
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from hdnnp.stages.predict import predict

    d, frames = trained
    predict(d / "model.h5", d / "symmetry.h5", tmp_path / "a.h5", forces=True, sets=["predict"], quiet=True)
    predict(d / "model.h5", d / "prepared.h5", tmp_path / "b.h5", forces=True, sets=["predict"], quiet=True)
    images = []
    for a in frames[20:]:
        b = a.copy()
        b.info.pop("energy")
        del b.arrays["ref_forces"]
        b.calc = SinglePointCalculator(b, energy=a.info["energy"], forces=a.arrays["ref_forces"])
        images.append(b)
    ase.io.write(tmp_path / "in.extxyz", images)
    predict(d / "model.h5", tmp_path / "in.extxyz", tmp_path / "c.h5", forces=True, quiet=True)
    # n2p2 input.data in Å and eV (ASE's own reader would take it as Bohr and Hartree)
    with open(tmp_path / "input.data", "w") as fh:
        for a in images:
            fh.write("begin\n" + "".join(f"lattice {v[0]:.12f} {v[1]:.12f} {v[2]:.12f}\n" for v in a.cell))
            for r, sym, f in zip(a.positions, a.get_chemical_symbols(), a.get_forces()):
                fh.write(f"atom {r[0]:.12f} {r[1]:.12f} {r[2]:.12f} {sym} 0 0 {f[0]:.12f} {f[1]:.12f} {f[2]:.12f}\n")
            fh.write(f"energy {a.get_potential_energy():.12f}\ncharge 0\nend\n")
    predict(d / "model.h5", tmp_path / "input.data", tmp_path / "n.h5", forces=True, quiet=True)
    with (h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b, h5py.File(tmp_path / "c.h5") as c,
          h5py.File(tmp_path / "n.h5") as n):
        assert list(a) == ["predict"]
        # extxyz stores positions with 8 decimals (1e-8 Å), hence the looser tolerance there
        for other, rtol in ((b, 1e-12), (c, 1e-6), (n, 1e-9)):
            np.testing.assert_allclose(other["predict/energy_predicted"][:], a["predict/energy_predicted"][:],
                                       rtol=rtol)
            np.testing.assert_allclose(other["predict/forces_predicted"][:], a["predict/forces_predicted"][:],
                                       rtol=1e3 * rtol, atol=1e3 * rtol * 1e-3)
        np.testing.assert_allclose(c["predict/energy_reference"][:], a["predict/energy_reference"][:], rtol=1e-12)
        np.testing.assert_allclose(n["predict/energy_reference"][:], a["predict/energy_reference"][:], atol=1e-11)


def test_cli_train_and_predict(trained, tmp_path, capsys):
    d, _ = trained
    model = tmp_path / "m.h5"
    main(["train", str(d / "symmetry.h5"), "-o", str(model), "--preset", "fast", "--epochs", "3",
          "--hidden", "3", "-q"])
    out = capsys.readouterr().out
    assert "wrote" in out and "best epoch" in out
    assert Potential.load(model).architecture.hidden == (3,)
    main(["predict", str(d / "symmetry.h5"), "--model", str(model), "-o", str(tmp_path / "p.h5"), "-q"])
    assert "predict: 6 frames" in capsys.readouterr().out
    # user errors: one line and exit status 2
    with pytest.raises(SystemExit) as exc:
        main(["train", str(d / "symmetry.h5"), "-o", str(model), "-q"])
    assert exc.value.code == 2
    assert "exists already" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(d / "symmetry.h5"), "--model", str(d / "prepared.h5"), "-o", str(tmp_path / "q.h5")])
    assert exc.value.code == 2


def test_extrapolation_counts_agree_with_a_count_by_hand(tmp_path):
    """One definition of extrapolation (|x'| > 1 + 1e-9 of a scaled feature), checked where it is
    reported: symmetry.h5, predictions.h5 and Potential.evaluate, against a loop written here."""
    import h5py

    from _nn_fixtures import lj_frames, lj_symmetry_files
    from hdnnp.cli import main
    from hdnnp.model import Potential

    frames = lj_frames(np.random.default_rng(8), 8, jitter_angstrom=0.1)
    frames += lj_frames(np.random.default_rng(9), 4, jitter_angstrom=0.5)  # outside the training range
    d = lj_symmetry_files(tmp_path, frames, 8, 6)
    main(["train", str(d / "symmetry.h5"), "-o", str(d / "m.h5"), "--preset", "fast", "--epochs", "1", "--hidden",
          "3", "-q"])
    main(["predict", str(d / "symmetry.h5"), "--model", str(d / "m.h5"), "-o", str(d / "p.h5"), "-q"])
    with h5py.File(d / "symmetry.h5") as s, h5py.File(d / "p.h5") as p:
        g = s["predict/features/Ar"]
        values, offset = g["values"][:], g["frame_offset"][:]
        by_hand = []
        for f in range(len(offset) - 1):
            n = 0
            for row in values[offset[f]:offset[f + 1]]:
                for x in row:
                    if abs(x) > 1.0 + 1e-9:
                        n += 1
            by_hand.append(n)
        assert sum(by_hand) > 0
        np.testing.assert_array_equal(s["predict/extrapolation"][:], by_hand)
        np.testing.assert_array_equal(p["predict/extrapolation"][:], by_hand)
    pot = Potential.load(d / "m.h5")
    for f, a in enumerate(frames[8:]):
        assert pot.evaluate(a.positions, a.cell.array, a.pbc, a.numbers).extrapolation_count == by_hand[f]
