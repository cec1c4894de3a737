"""n2p2 import and export against n2p2's own predictions (golden values in tests/data/n2p2/,
made by scripts/make_n2p2_golden.py with n2p2 built from source), round trips, and bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hdnnp import nn
from hdnnp.cli import main
from hdnnp.errors import HdnnpError
from hdnnp.interop.n2p2 import export_potential, read_potential
from hdnnp.model import Potential

DATA = Path(__file__).parent / "data" / "n2p2"
UNITS = {"synthetic": ("bohr", "hartree"), "te_export": ("angstrom", "eV"), "ge_mlearn": ("bohr", "hartree")}


def run_cli(capsys, *argv):
    """(exit status, stdout + stderr) of ``hdnnp argv``."""
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        status = 0
    except SystemExit as exc:
        status = exc.code
    out = capsys.readouterr()
    return status, out.out + out.err


def golden(name):
    return json.loads((DATA / name / "frames.json").read_text())


def predict(potential, frame, stress=False):
    return potential.predict(np.array(frame["positions"]), np.array(frame["cell"]), np.array(frame["pbc"]),
                             np.array(frame["numbers"]), stress=stress)


@pytest.mark.parametrize("name", sorted(UNITS))
def test_import_reproduces_n2p2(name):
    """Energies and forces of n2p2's nnp-predict (full precision) on the stored structures."""
    potential = read_potential(DATA / name, *UNITS[name])
    for frame in golden(name):
        energy, forces = predict(potential, frame)
        ref = np.array(frame["forces"])
        assert energy == pytest.approx(frame["energy"], rel=1e-11)
        np.testing.assert_allclose(forces, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_export_is_a_fixed_point(tmp_path):
    """te_export/ is hdnnp export's output (n2p2 agrees with it: above); importing and exporting
    it again gives the same files, its [-1, 1] scaling recognised as hdnnp's own ranging."""
    potential = read_potential(DATA / "te_export")
    assert potential.feature_set.scaling == {}
    export_potential(potential, tmp_path / "again")
    for f in ("input.nn", "scaling.data", "weights.052.data"):  # comments may differ (provenance)
        body, stored = ([line for line in (d / f).read_text().splitlines() if not line.startswith("#")]
                        for d in (tmp_path / "again", DATA / "te_export"))
        assert body == stored
    assert "pair_style      hdnnp 6.0 dir . " in (tmp_path / "again" / "lammps.in").read_text()


def _two_element_model(activation="softplus,tanh", members=1, seed=3):
    """A random hdnnp potential with every kind hdnnp evaluates (G2, shifted G4 and G5, two
    cutoff radii, cutoff type 6 with alpha), two elements, and a constant-in-training feature."""
    from test_imported_features import CU, S, custom_set

    fs = custom_set(cutoff_type=6, alpha=0.1)
    rng = np.random.default_rng(seed)
    for z, cols in ((S, np.array([0, 3, 5, 8, 13, 15, 10])), (CU, np.array([1, 2, 6, 9, 11, 14, 7, 4]))):
        fs.selected[z] = cols
        fs.min[z] = rng.uniform(0.0, 0.1, len(cols))
        fs.max[z] = fs.min[z] + rng.uniform(0.5, 3.0, len(cols))
    fs.max[S][2] = fs.min[S][2]  # constant in training: hdnnp feeds 0
    arch = nn.Architecture(elements=fs.elements, n_inputs={z: len(fs.selected[z]) for z in fs.elements},
                           hidden=(6, 5), activation=activation)
    thetas = [nn.init_parameters(arch, rng, {S: -1.0, CU: -3.0}, output_scale=0.5) for _ in range(members)]
    return Potential(fs, arch, thetas[0], {}, members=np.array(thetas) if members > 1 else None)


def test_round_trip_hdnnp_n2p2_hdnnp(tmp_path):
    """hdnnp -> n2p2 -> hdnnp: energies, forces and stress to 1e-12 relative."""
    from test_imported_features import CELL, frame

    model = _two_element_model()
    export_potential(model, tmp_path / "pot")
    back = read_potential(tmp_path / "pot")
    assert back.architecture.activation == "softplus,tanh"
    pos, z = frame(6, n=10)
    e0, f0, s0 = model.predict(pos, CELL, True, z, stress=True)
    e1, f1, s1 = back.predict(pos, CELL, True, z, stress=True)
    assert e1 == pytest.approx(e0, rel=1e-12)
    np.testing.assert_allclose(f1, f0, rtol=0, atol=1e-12 * np.abs(f0).max())
    np.testing.assert_allclose(s1, s0, rtol=0, atol=1e-12 * np.abs(s0).max())
    text = (tmp_path / "pot" / "input.nn").read_text()
    assert "symfunction_short S 9 S Cu" in text and "cutoff_type 6 0.1" in text and "global_activation_short p t l" in text


def test_committee_exports_one_directory_per_member(tmp_path):
    from test_imported_features import CELL, frame

    model = _two_element_model(members=3)
    written = export_potential(model, tmp_path / "com")
    assert [p.name for p in written] == ["member_1", "member_2", "member_3"]
    pos, z = frame(7)
    energies = [read_potential(p).predict(pos, CELL, True, z, forces=False)[0] for p in written]
    mean = model.predict(pos, CELL, True, z, forces=False)[0]
    assert np.mean(energies) == pytest.approx(mean, rel=1e-12)
    assert len(set(np.round(energies, 6))) == 3


def test_baseline_is_refused(tmp_path):
    from hdnnp.baseline import ZBLBaseline

    model = _two_element_model()
    model.baseline = ZBLBaseline([(16, 16), (16, 29), (29, 29)], [1.0] * 3, [1.5] * 3)
    with pytest.raises(HdnnpError, match="baseline"):
        export_potential(model, tmp_path / "x")
    assert not (tmp_path / "x").exists()


# -- command line and bad input -------------------------------------------------------------------

def test_cli_import_predict_export(tmp_path, capsys):
    code, out = run_cli(capsys, "import", DATA / "ge_mlearn", "-o", tmp_path / "ge.h5", "--length-unit", "bohr",
                        "--energy-unit", "hartree")
    assert code == 0, out
    assert "Ge 27 symmetry functions" in out and "training-only keywords ignored" in out
    frame = golden("ge_mlearn")[0]
    energy, _ = predict(Potential.load(tmp_path / "ge.h5"), frame)
    assert energy == pytest.approx(frame["energy"], rel=1e-11)
    # exported again in Å and eV with its own (0..1 min/max) scaling: n2p2's predictions again
    code, out = run_cli(capsys, "export", tmp_path / "ge.h5", "-o", tmp_path / "ge_out")
    assert code == 0, out
    text = (tmp_path / "ge_out" / "input.nn").read_text()
    assert "scale_min_short 0.0" in text and "scale_max_short 1.0" in text and "-1.0" not in text.split("scale")[1]
    again = read_potential(tmp_path / "ge_out")  # Å and eV now: no units to give
    for frame in golden("ge_mlearn"):
        energy, forces = predict(again, frame)
        assert energy == pytest.approx(frame["energy"], rel=1e-11)
        np.testing.assert_allclose(forces, frame["forces"], rtol=0, atol=1e-10 * np.abs(frame["forces"]).max())


@pytest.mark.parametrize("name", ["synthetic", "ge_mlearn"])
def test_imported_potentials_export_back_exactly(tmp_path, name):
    """n2p2 -> hdnnp -> n2p2 -> hdnnp: the scaling keywords and statistics come back (sigma
    scaling, normalisation and normalize_nodes folded into Å/eV weights), predictions to 1e-12."""
    first = read_potential(DATA / name, *UNITS[name])
    export_potential(first, tmp_path / "out")
    second = read_potential(tmp_path / "out")
    assert second.feature_set.scaling_keywords == first.feature_set.scaling_keywords
    for frame in golden(name):
        e1, f1 = predict(first, frame)
        e2, f2 = predict(second, frame)
        assert e2 == pytest.approx(e1, rel=1e-12)
        np.testing.assert_allclose(f2, f1, rtol=0, atol=1e-12 * np.abs(f1).max())


def test_cli_export_refuses_existing_directory(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    model = read_potential(DATA / "te_export")
    model.save(tmp_path / "m.h5")
    code, out = run_cli(capsys, "export", tmp_path / "m.h5", "-o", tmp_path / "out")
    assert code == 2 and "exists already; pass --overwrite" in out
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    code, out = run_cli(capsys, "export", tmp_path / "m.h5", "-o", tmp_path / "out", "--overwrite")
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["input.nn", "lammps.in", "scaling.data",
                                                                     "weights.052.data"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporaries left


def test_bohr_potential_without_units_warns():
    notes = []
    read_potential(DATA / "ge_mlearn", warn=notes.append)
    assert any("--length-unit bohr" in n for n in notes)


def _copy(tmp_path, name="synthetic"):
    target = tmp_path / name
    shutil.copytree(DATA / name, target)
    return target


@pytest.mark.parametrize("edit, message", [
    (lambda d: (d / "input.nn").unlink(), "no input.nn"),
    (lambda d: (d / "weights.029.data").write_text("\n".join(["0.1"] * 10)),
     "weights.029.data: 10 values, expected 179 for the 18-7-5-1 network of Cu"),
    (lambda d: (d / "weights.016.data").unlink(), "weights.016.data: missing"),
    (lambda d: (d / "scaling.data").write_text((d / "scaling.data").read_text().replace("\n2 1 ", "\n3 1 ", 1)),
     "scaling.data: row 19 is for element index 3, function 1; expected 2 (Cu)"),
    (lambda d: (d / "scaling.data").write_text("\n".join((d / "scaling.data").read_text().splitlines()[:-1])),
     "scaling.data: 35 values, expected 36"),
    (lambda d: _append(d, "symfunction_short Cu 12 S 0.1 1.0 9.0"), "line 55: symmetry-function type 12 is not"),
    (lambda d: _append(d, "element_nodes_short Cu 2 5"), "line 55: keyword 'element_nodes_short'"),
    (lambda d: _append(d, "symfunction_short Cu 2 Te 0.1 1.0 9.0"), "line 55: element Te is not in the elements"),
    (lambda d: _append(d, "cutoff_type 1"), "line 55: keyword 'cutoff_type' given twice (first on line 9)"),
    (lambda d: (d / "input.nn").write_text((d / "input.nn").read_text().replace("p s l", "p s t")),
     "line 15: the output activation must be 'l'"),
    (lambda d: (d / "input.nn").write_text((d / "input.nn").read_text().replace("p s l", "p x l")),
     "line 15: activation 'x' is not supported"),
])
def test_bad_potential_directories(tmp_path, capsys, edit, message):
    d = _copy(tmp_path)
    edit(d)
    code, out = run_cli(capsys, "import", d, "-o", tmp_path / "m.h5", "--length-unit", "bohr",
                        "--energy-unit", "hartree")
    assert code == 2 and message in out, out
    assert not (tmp_path / "m.h5").exists()


def _append(d, line):
    with open(d / "input.nn", "a") as fh:
        fh.write(line + "\n")


# -- fuzzing the readers: a clear HdnnpError or a potential, never another exception -----------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

FILES = ("input.nn", "scaling.data", "weights.016.data")
TOKENS = ["abc", "nan", "inf", "-1", "0", "1e999", "", "#", "!", "3", "9", "12", "Te", "S", "l", "x", "\x00", "é"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(FILES), line=st.integers(0, 400), word=st.integers(0, 9),
       action=st.sampled_from(["token", "delete", "duplicate", "truncate"]), token=st.sampled_from(TOKENS))
def test_fuzzed_potential_files(tmp_path_factory, which, line, word, action, token):
    d = tmp_path_factory.mktemp("fuzz") / "pot"
    shutil.copytree(DATA / "synthetic", d)
    lines = (d / which).read_text().splitlines()
    k = line % len(lines)
    if action == "token":
        words = lines[k].split() or [""]
        words[word % len(words)] = token
        lines[k] = " ".join(words)
    elif action == "delete":
        del lines[k]
    elif action == "duplicate":
        lines.insert(k, lines[k])
    else:
        lines = lines[:k]
    (d / which).write_text("\n".join(lines) + "\n")
    try:
        potential = read_potential(d, "bohr", "hartree")
    except HdnnpError as exc:
        assert str(d) in str(exc)  # names the directory or one of its files
        return
    frame = golden("synthetic")[0]
    energy, forces = predict(potential, frame)  # a potential that reads also predicts
    assert np.isfinite(energy) or not np.isfinite(potential.theta).all()


def test_calculator_refuses_non_finite_positions():
    """A diverged integrator (NaN positions) gets one clear error, not a neighbour-list crash
    (seen in a guard-less hdnnp md run of the bundled potential after its collapse)."""
    import ase

    from hdnnp.ase_calculator import HDNNPCalculator

    frame = golden("te_export")[0]
    atoms = ase.Atoms(numbers=frame["numbers"], positions=frame["positions"], cell=frame["cell"], pbc=True)
    atoms.calc = HDNNPCalculator(read_potential(DATA / "te_export"))
    assert np.isfinite(atoms.get_potential_energy())
    atoms.positions[3, 1] = np.nan
    with pytest.raises(HdnnpError, match="non-finite positions or cell: the integration diverged"):
        atoms.get_forces()


def test_imported_potential_through_predict_and_report(tmp_path, capsys):
    """predict and report take an imported potential (no learning curve: report says so and
    draws no LEARNING_PROCESS.png); its errors against n2p2's own predictions are ~0."""
    import ase
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    images = []
    for frame in golden("ge_mlearn"):
        a = ase.Atoms(numbers=frame["numbers"], positions=frame["positions"], cell=frame["cell"], pbc=frame["pbc"])
        a.calc = SinglePointCalculator(a, energy=frame["energy"], forces=np.array(frame["forces"]))
        images.append(a)
    write(tmp_path / "ge.extxyz", images)
    assert run_cli(capsys, "import", DATA / "ge_mlearn", "-o", tmp_path / "ge.h5", "--length-unit", "bohr",
                   "--energy-unit", "hartree")[0] == 0
    code, out = run_cli(capsys, "predict", tmp_path / "ge.extxyz", "--model", tmp_path / "ge.h5", "-o",
                        tmp_path / "p.h5")
    assert code == 0, out
    assert "energy RMSE 0.00 meV/atom, force RMSE 0.0 meV/Å" in out
    code, out = run_cli(capsys, "report", "--model", tmp_path / "ge.h5", "--predictions", tmp_path / "p.h5",
                        "--out-dir", tmp_path / "figs")
    assert code == 0, out
    assert "Training: an imported potential (hdnnp import): no learning curve" in out
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["ERROR_HISTOGRAM.png", "FINAL_PREDICTION.png",
                                                                     "PARITY.png"]


def test_scaling_data_without_sigma(tmp_path):
    """Older n2p2 versions write scaling.data without the sigma column: fine unless the
    potential scales by sigma."""
    for name in ("ge_mlearn", "synthetic"):
        d = _copy(tmp_path, name)
        lines = [line if line.startswith("#") else " ".join(line.split()[:5])
                 for line in (d / "scaling.data").read_text().splitlines()]
        (d / "scaling.data").write_text("\n".join(lines) + "\n")
    frame = golden("ge_mlearn")[0]
    e_full = predict(read_potential(DATA / "ge_mlearn", "bohr", "hartree"), frame)[0]
    assert predict(read_potential(tmp_path / "ge_mlearn", "bohr", "hartree"), frame)[0] == e_full
    with pytest.raises(HdnnpError, match="sigma <= 0 or none"):
        read_potential(tmp_path / "synthetic", "bohr", "hartree")
