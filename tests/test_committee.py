"""Committees (SPEC §10): the prediction is the members' mean, the uncertainty their population
standard deviation; hdnnp train --committee trains each member exactly as a single model with
its own seed; predict, the ASE calculator and the MD guard see the spread."""

import h5py
import numpy as np
import pytest

from _nn_fixtures import fitted_feature_set, lj_frames, lj_symmetry_files, write_prepared
from hdnnp import nn
from hdnnp.cli import main
from hdnnp.model import Potential


@pytest.fixture(scope="module")
def committee():
    frames = lj_frames(np.random.default_rng(11), 8)
    fs = fitted_feature_set(frames, n_features=8)
    arch = nn.Architecture(elements=(18,), n_inputs={18: 8}, hidden=(5,))
    thetas = np.stack([nn.init_parameters(arch, np.random.default_rng(k), {18: -0.05}, output_scale=0.05)
                       for k in range(3)])
    singles = [Potential(fs, arch, t, {18: -0.05}) for t in thetas]
    return Potential(fs, arch, thetas[0], {18: -0.05}, members=thetas), singles, frames


def test_mean_and_population_spread_of_the_members(committee):
    pot, singles, frames = committee
    a = frames[0]
    p = pot.evaluate(a.positions, a.cell.array, a.pbc, a.numbers, stress=True)
    parts = [s.predict(a.positions, a.cell.array, a.pbc, a.numbers, stress=True) for s in singles]
    energies = np.array([e for e, _, _ in parts])
    forces = np.array([f for _, f, _ in parts])
    assert p.energy == pytest.approx(energies.mean(), rel=1e-14)
    np.testing.assert_allclose(p.forces, forces.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(p.stress, np.mean([s for _, _, s in parts], axis=0), rtol=1e-12, atol=1e-15)
    # population standard deviation (ddof = 0), by hand
    hand = np.sqrt(np.mean((energies - energies.mean()) ** 2)) / len(a)
    assert p.energy_spread == pytest.approx(hand, rel=1e-10) and hand > 0
    np.testing.assert_allclose(p.forces_spread, np.sqrt(np.mean((forces - forces.mean(0)) ** 2, axis=0)),
                               rtol=1e-10, atol=1e-15)
    assert p.force_spread == p.forces_spread.max()
    single = singles[0].evaluate(a.positions, a.cell.array, a.pbc, a.numbers)
    assert np.isnan(single.energy_spread) and single.forces_spread is None


def test_committee_save_load_and_calculator(committee, tmp_path):
    ase = pytest.importorskip("ase")
    from hdnnp.ase_calculator import HDNNPCalculator

    pot, _, frames = committee
    pot.save(tmp_path / "model.h5")
    loaded = Potential.load(tmp_path / "model.h5")
    assert loaded.n_members == 3
    np.testing.assert_array_equal(loaded.members, pot.members)
    a = frames[1]
    atoms = ase.Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=True)
    atoms.calc = HDNNPCalculator(str(tmp_path / "model.h5"))
    p = pot.evaluate(a.positions, a.cell.array, a.pbc, a.numbers)
    atoms.get_forces()
    assert atoms.get_potential_energy() == p.energy
    assert atoms.calc.results["energy_spread"] == p.energy_spread
    assert atoms.calc.results["force_spread"] == p.force_spread


@pytest.fixture(scope="module")
def symmetry_file(tmp_path_factory):
    return lj_symmetry_files(tmp_path_factory.mktemp("committee"), lj_frames(np.random.default_rng(2), 16), 12, 8)


def test_train_committee_members_are_single_models_with_their_seeds(symmetry_file, tmp_path):
    d = symmetry_file
    common = ["--preset", "fast", "--epochs", "3", "--hidden", "4", "--seed", "5", "-q"]
    main(["train", str(d / "symmetry.h5"), "-o", str(tmp_path / "committee.h5"), "--committee", "2", *common])
    for seed in (5, 6):
        main(["train", str(d / "symmetry.h5"), "-o", str(tmp_path / f"single{seed}.h5"),
              *[c if c != "5" else str(seed) for c in common]])
    pot = Potential.load(tmp_path / "committee.h5")
    assert pot.n_members == 2
    for k, seed in enumerate((5, 6)):
        np.testing.assert_array_equal(pot.members[k], Potential.load(tmp_path / f"single{seed}.h5").theta)
    assert not list(tmp_path.glob("committee.h5.member*"))
    with h5py.File(tmp_path / "committee.h5") as h5:
        np.testing.assert_array_equal(h5["committee"].attrs["seeds"], [5, 6])

    # hdnnp predict stores the committee mean and the members' spread
    from hdnnp.stages.predict import predict

    predict(tmp_path / "committee.h5", d / "symmetry.h5", tmp_path / "p.h5", forces=True, quiet=True)
    singles = [Potential.load(tmp_path / f"single{seed}.h5") for seed in (5, 6)]
    frames = lj_frames(np.random.default_rng(2), 16)[12:]
    with h5py.File(tmp_path / "p.h5") as h5:
        for k, a in enumerate(frames):
            e = [s.predict(a.positions, a.cell.array, a.pbc, a.numbers, forces=False)[0] for s in singles]
            assert h5["predict/energy_predicted"][k] == pytest.approx(np.mean(e), rel=1e-12)
            assert h5["predict/energy_spread"][k] == pytest.approx(abs(e[0] - e[1]) / 2 / len(a), rel=1e-8)
        assert h5["predict/forces_spread"].shape == h5["predict/forces_predicted"].shape
        err = np.abs(h5["train/energy_predicted"][:] - h5["train/energy_reference"][:]) / h5["train/n_atoms"][:]
        spread = h5["train/energy_spread"][:]

    # hdnnp report: the spread against the error, in numbers and in COMMITTEE_SPREAD.png
    import json

    from scipy.stats import spearmanr

    main(["report", "--model", str(tmp_path / "committee.h5"), "--predictions", str(tmp_path / "p.h5"),
          "--out-dir", str(tmp_path / "figs"), "--json", str(tmp_path / "m.json")])
    committee_summary = json.loads((tmp_path / "m.json").read_text())["committee"]["train"]
    assert committee_summary["spearman_abs_error_vs_spread"] == pytest.approx(spearmanr(err, spread)[0], rel=1e-12)
    assert committee_summary["mean_energy_spread_mev_per_atom"] == pytest.approx(1e3 * spread.mean(), rel=1e-12)
    assert (tmp_path / "figs" / "COMMITTEE_SPREAD.png").stat().st_size > 0


def test_interrupted_committee_resumes_with_finished_members(symmetry_file, tmp_path, capsys):
    """A finished member file is kept by --resume; without it the leftovers are refused."""
    import shutil

    d = symmetry_file
    common = ["--preset", "fast", "--epochs", "3", "--hidden", "4", "--seed", "5", "-q"]
    main(["train", str(d / "symmetry.h5"), "-o", str(tmp_path / "single5.h5"), *common])
    shutil.copy(tmp_path / "single5.h5", tmp_path / "model.h5.member0")
    with pytest.raises(SystemExit) as exc:
        main(["train", str(d / "symmetry.h5"), "-o", str(tmp_path / "model.h5"), "--committee", "2", *common])
    assert exc.value.code == 2 and "--resume" in capsys.readouterr().err
    main(["train", str(d / "symmetry.h5"), "-o", str(tmp_path / "model.h5"), "--committee", "2", "--resume",
          *common])
    assert "kept from the interrupted run" in capsys.readouterr().out
    pot = Potential.load(tmp_path / "model.h5")
    np.testing.assert_array_equal(pot.members[0], Potential.load(tmp_path / "single5.h5").theta)


def test_md_guard_stops_on_committee_force_spread(committee, tmp_path):
    pytest.importorskip("ase")
    from hdnnp.md.driver import EXIT_GUARD_STOP

    pot, _, frames = committee
    pot.save(tmp_path / "model.h5")
    write_prepared(tmp_path / "prepared.h5", frames[:4], frames[4:])
    with pytest.raises(SystemExit) as exc:
        main(["md", "--model", str(tmp_path / "model.h5"), "--start", str(tmp_path / "prepared.h5"),
              "--temperature", "50", "--steps", "20", "--max-force-spread", "1e-9", "--on-extrapolation", "warn",
              "-o", str(tmp_path / "md.h5"), "-q"])
    assert exc.value.code == EXIT_GUARD_STOP
    with h5py.File(tmp_path / "md.h5") as h5:
        assert "committee force spread" in h5.attrs["status"]
        assert h5["trajectory/guards/force_spread"][0] > 1e-9
