"""extxyz (through ASE) and n2p2 input.data (own streaming reader, ASE as oracle) into prepare."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hdnnp.cli import main
from hdnnp.errors import InputFileError
from hdnnp.inputs import resolve_inputs
from hdnnp.io.n2p2 import iter_n2p2
from hdnnp.stages.prepare import prepare
from hdnnp.units import BOHR_IN_ANGSTROM, ENERGY_UNITS_IN_EV

ase = pytest.importorskip("ase")
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from ase.io import read as ase_read, write as ase_write  # noqa: E402

N2P2 = """\
# two structures, Cu and S, triclinic then non-periodic
begin
comment first structure
lattice 8.0 0.0 0.0
lattice 0.5 7.0 0.0
lattice -0.3 0.2 9.0
atom 1.0 2.0 3.0 Cu 0.0 0.0 0.1 -0.2 0.3
atom 4.0 5.0 6.0 S 0.0 0.0 -0.1 0.2 -0.3
atom 2.5 1.5 0.5 Cu 0.0 0.0 0.0 0.0 0.0
energy -12.5
charge 0.0
end
begin
comment molecule
atom 0.0 0.0 0.0 S 0.0 0.0 1.0 0.0 0.0
atom 1.2 0.0 0.0 Cu 0.0 0.0 -1.0 0.0 0.0
energy -3.25
charge 0.0
end
"""


def _atoms(n_frames, seed):
    rng = np.random.default_rng(seed)
    images = []
    for k in range(n_frames):
        atoms = ase.Atoms("CuCuS", positions=rng.uniform(0, 5, (3, 3)), cell=np.diag([6.0, 6.5, 7.0]), pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=-10.0 - k, forces=rng.normal(size=(3, 3)))
        images.append(atoms)
    return images


def test_n2p2_reader_against_ase(tmp_path):
    from ase.io.runner.runneratoms import Units

    path = tmp_path / "input.data"
    path.write_text(N2P2)
    ours = list(iter_n2p2(path))
    images = ase_read(path, format="runnerdata", index=":", input_units=Units.ASE)
    assert [line for line, _ in ours] == [2, 13]
    assert len(images) == 2
    for (_, frame), atoms in zip(ours, images):
        np.testing.assert_allclose(frame.positions, atoms.positions)
        np.testing.assert_array_equal(frame.species, atoms.numbers)
        np.testing.assert_allclose(frame.forces, atoms.get_forces())
        assert frame.energy == pytest.approx(atoms.get_potential_energy())
        assert frame.pbc.all() == atoms.pbc.all()
    np.testing.assert_allclose(ours[0][1].cell, [[8, 0, 0], [0.5, 7, 0], [-0.3, 0.2, 9]])
    assert not ours[1][1].pbc.any()
    # atomic units: lengths x 0.529177 Å, energies x 27.2114 eV, forces x 27.2114/0.529177
    (_, au), _ = list(iter_n2p2(path, length_unit="bohr", energy_unit="Hartree"))
    np.testing.assert_allclose(au.positions[0], np.array([1.0, 2.0, 3.0]) * 0.529177210903, rtol=1e-9)
    assert au.energy == pytest.approx(-12.5 * 27.211386245988, rel=1e-10)
    np.testing.assert_allclose(au.forces[0, 0], 0.1 * 27.211386245988 / 0.529177210903, rtol=1e-9)
    assert BOHR_IN_ANGSTROM == pytest.approx(0.529177210903) and ENERGY_UNITS_IN_EV["Hartree"] > 27


def test_n2p2_writer_round_trip(tmp_path):
    """write_n2p2 is the reader's inverse, at full precision, in either unit system."""
    from hdnnp.io.n2p2 import write_n2p2

    frames = [f for _, f in iter_n2p2(_write(tmp_path, N2P2))]
    for units in (("angstrom", "eV"), ("bohr", "Hartree")):
        write_n2p2(tmp_path / "back.data", frames, *units)
        back = [f for _, f in iter_n2p2(tmp_path / "back.data", *units)]
        for a, b in zip(frames, back):
            np.testing.assert_allclose(b.positions, a.positions, rtol=1e-15, atol=1e-15)
            np.testing.assert_allclose(b.cell, a.cell, rtol=1e-15, atol=1e-15)
            np.testing.assert_allclose(b.forces, a.forces, rtol=1e-15)
            assert b.energy == pytest.approx(a.energy, rel=1e-15)
            np.testing.assert_array_equal(b.species, a.species)
            np.testing.assert_array_equal(b.pbc, a.pbc)


def _write(tmp_path, text):
    path = tmp_path / "input.data"
    path.write_text(text)
    return path


@pytest.mark.parametrize("mutation, message", [
    (("atom 4.0 5.0 6.0 S", "atom 4.0 5.0 x S"), r"input.data, line 8: expected 8 numbers \(atom 2 of structure 1"),
    (("energy -3.25\n", ""), r"input.data, line 18: structure 2 \(begin at line 13\) has no 'energy' line"),
    (("lattice 0.5 7.0 0.0\n", ""), r"input.data, line 11: structure 1 \(begin at line 2\) has 2 lattice lines"),
    (("atom 2.5 1.5 0.5 Cu", "atom 2.5 1.5 0.5 Qq"), r"input.data, line 9: unknown element 'Qq'"),
    (("end\nbegin", "begin"), r"input.data, line 12: 'begin' inside structure 1"),
])
def test_n2p2_errors_name_the_line(tmp_path, mutation, message):
    path = tmp_path / "input.data"
    path.write_text(N2P2.replace(*mutation, 1))
    with pytest.raises(InputFileError, match=message):
        list(iter_n2p2(path))


def test_cli_extxyz_train_n2p2_predict(tmp_path, capsys, monkeypatch):
    train = _atoms(3, 1)
    ase_write(tmp_path / "a.xyz", train, format="extxyz")
    (tmp_path / "input.data").write_text(N2P2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "--train-file", "a.xyz@650K", "--predict-file", "input.data", "-q"])
        raise SystemExit(0)
    assert exc.value.code == 0, capsys.readouterr().err
    with h5py.File(tmp_path / "prepared.h5", "r") as h5:
        tr, pr = h5["train"], h5["predict"]
        np.testing.assert_array_equal(h5.attrs["elements"], [16, 29])
        np.testing.assert_allclose(tr["frames/energy"][:], [-10.0, -11.0, -12.0])
        np.testing.assert_array_equal(tr["frames/temperature"][:], [650.0] * 3)
        np.testing.assert_array_equal(tr["frames/step"][:], [0, 1, 2])
        np.testing.assert_allclose(tr["atoms/positions"][3:6], train[1].positions)
        np.testing.assert_allclose(tr["atoms/forces"][6:9], train[2].get_forces())
        np.testing.assert_array_equal(tr["atoms/species"][:3], [29, 29, 16])
        np.testing.assert_array_equal(pr["frames/atom_offset"][:], [0, 3, 5])
        assert np.isnan(pr["frames/temperature"][:]).all()
        np.testing.assert_allclose(pr["frames/energy"][:], [-12.5, -3.25])
        np.testing.assert_array_equal(pr["frames/pbc"][:], [[True] * 3, [False] * 3])


def test_extxyz_without_energy_is_refused_for_training(tmp_path):
    images = _atoms(2, 2)
    images[1].calc = None
    ase_write(tmp_path / "b.xyz", images, format="extxyz")
    sel = resolve_inputs(train_files=[str(tmp_path / "b.xyz")])
    with pytest.raises(InputFileError, match=r"b.xyz: structure/step 1 has no forces"):
        prepare(sel, tmp_path / "p.h5", quiet=True)
    assert not (tmp_path / "p.h5").exists()
    images[1].calc = SinglePointCalculator(images[1], forces=np.zeros((3, 3)))
    ase_write(tmp_path / "b.xyz", images, format="extxyz")
    with pytest.raises(InputFileError, match=r"b.xyz: structure/step 1 has no energy"):
        prepare(sel, tmp_path / "p.h5", quiet=True)


def _emt_frames(n=6, seed=0):
    """Strained, rattled fcc Cu boxes with EMT energies, forces and stresses, two groups."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
        a.set_cell(a.cell.array @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True)
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        a.info["group"] = "Elastic" if k % 2 else "AIMD"
        frames.append(a)
    return frames


def test_stress_and_groups_are_read_and_scored(tmp_path, capsys):
    """extxyz stresses (ASE's Voigt, eV/Å³) land in prepared.h5 as ASE's 3x3 tensors with the
    frame's group; predict scores them (stress RMSE in GPa, overall and per group, by hand)."""
    frames = _emt_frames()
    ase_write(tmp_path / "train.extxyz", frames)
    ase_write(tmp_path / "test.extxyz", frames[:4])
    main(["prepare", "--train-file", str(tmp_path / "train.extxyz"), "--predict-file", str(tmp_path / "test.extxyz"),
          "-o", str(tmp_path / "p.h5"), "-q"])
    with h5py.File(tmp_path / "p.h5") as h5:
        for k, a in enumerate(ase_read(tmp_path / "train.extxyz", ":")):
            np.testing.assert_allclose(h5["train/frames/stress"][k], a.get_stress(voigt=False), rtol=1e-12)
        assert [g.decode() for g in h5["train/groups"][:]] == ["AIMD", "Elastic"]
        np.testing.assert_array_equal(h5["train/frames/group"][:], [0, 1, 0, 1, 0, 1])
    main(["symmetry", str(tmp_path / "p.h5"), "-o", str(tmp_path / "s.h5"), "--n-features", "6", "-q"])
    main(["train", str(tmp_path / "s.h5"), "-o", str(tmp_path / "m.h5"), "--hidden", "4", "--epochs", "3", "-q"])
    capsys.readouterr()
    main(["predict", str(tmp_path / "p.h5"), "--model", str(tmp_path / "m.h5"), "-o", str(tmp_path / "pr.h5")])
    out = capsys.readouterr().out
    from hdnnp.model import Potential
    from hdnnp.units import EV_PER_ANGSTROM3_IN_GPA

    model = Potential.load(tmp_path / "m.h5")
    diff = [model.predict(a.positions, a.cell.array, a.pbc, a.numbers, forces=False, stress=True)[2]
            - a.get_stress(voigt=False) for a in frames[:4]]
    rmse = EV_PER_ANGSTROM3_IN_GPA * np.sqrt(np.mean(np.square(diff)))
    elastic = EV_PER_ANGSTROM3_IN_GPA * np.sqrt(np.mean(np.square(diff[1::2])))
    assert "predict: 4 frames" in out and f"stress RMSE {rmse:.3f} GPa" in out, out
    assert "  Elastic: 2 frames" in out and f"stress RMSE {elastic:.3f} GPa" in out.split("  Elastic:")[-1], out
    with h5py.File(tmp_path / "pr.h5") as h5:
        np.testing.assert_allclose(h5["predict/stress_reference"][:], [a.get_stress(voigt=False) for a in frames[:4]])


def _ase_vasp_testdata(name):
    """A VASP output from ASE's own test data (installed with ASE; LGPL, not copied here)."""
    import ase.test

    path = __import__("pathlib").Path(ase.test.__file__).parent / "testdata" / "vasp" / name
    if not path.exists():
        pytest.skip(f"ASE's test data {name} is not installed")
    return path


@pytest.mark.parametrize("name,fmt", [("vasprun_pstress.xml", "vasp-xml"), ("OUTCAR_example_1", "vasp-out")])
def test_vasp_outputs_are_read_with_their_stress(tmp_path, name, fmt):
    """vasprun.xml and OUTCAR (through ASE) carry the stress: prepare stores ASE's energy, forces
    and 3x3 stress (eV/Å³, kBar converted by ASE) of the last ionic step."""
    path = _ase_vasp_testdata(name)
    main(["prepare", "--train-file", str(path), "--format", fmt, "-o", str(tmp_path / "p.h5"), "-q"])
    ref = ase_read(path, index=":", format=fmt)
    with h5py.File(tmp_path / "p.h5") as h5:
        assert len(h5["train/frames/energy"]) == len(ref)
        a = ref[-1]
        assert h5["train/frames/energy"][-1] == pytest.approx(a.get_potential_energy(), rel=1e-12)
        np.testing.assert_allclose(h5["train/atoms/forces"][-len(a):], a.get_forces(), rtol=1e-12, atol=1e-12)
        stress = h5["train/frames/stress"][-1]
        assert np.abs(stress).max() > 1e-4  # a real, nonzero stress
        np.testing.assert_allclose(stress, a.get_stress(voigt=False), rtol=1e-12, atol=1e-15)
