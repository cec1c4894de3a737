"""Checks against direct reference MD (hdnnp.md.reference_checks). Two truths: a potential
checked against reference runs made with itself (``hdnnp md --reference`` with hdnnp's own ASE
calculator) must agree to rounding — same start, thermostat, barostat and seed — and against a
Lennard-Jones reference every compared number must be what the two calculators give on the
frames read back."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones

from _learn_fixtures import LJ_ARGS
from _nn_fixtures import write_smooth_argon_model
from hdnnp.analysis.observables import pressure_gpa
from hdnnp.cli import main
from hdnnp.errors import HdnnpError
from hdnnp.md.reference_checks import (find_checks, reference_checks, reference_checks_figure, run_summary)


def reference_run(directory, reference, reference_args, start, tag, *options):
    md = directory / f"md.{tag}.h5"
    history = directory / f"HISTORY.{tag}.gz"
    main(["md", "--reference", reference, "--reference-args", json.dumps(reference_args), "--start", str(start),
          "--start-set", "predict", "-o", str(md), "--history", str(history), "--on-extrapolation", "warn", "-q",
          *map(str, options)])
    run_summary(md, history, wall_s=0.0)
    md.unlink()  # a checks directory holds the triples and summaries only


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_smooth_argon_model(tmp_path_factory.mktemp("model"))


def make_checks(directory, model, reference, reference_args):
    start = model / "prepared.h5"
    for rho in (1.4, 1.8):
        reference_run(directory, reference, reference_args, start, f"Ar-rho{rho}.80K", "--ensemble", "nvt",
                      "--temperature", 80, "--density", rho, "--steps", 300, "--write-every", 20, "--seed", 5)
    reference_run(directory, reference, reference_args, start, "Ar-npt0.80K", "--ensemble", "npt",
                  "--temperature", 80, "--pressure", 0.01, "--steps", 100, "--write-every", 10, "--seed", 9,
                  "--pdamp", 200)
    return directory


def test_a_potential_checked_against_itself_agrees(model, tmp_path):
    (tmp_path / "self").mkdir()
    checks_dir = make_checks(tmp_path / "self", model, "ase:hdnnp.ase_calculator.HDNNPCalculator",
                             {"model": str(model / "model.h5")})
    runs = find_checks(checks_dir)
    assert [(r.kind, r.name) for r in runs] == [("isotherm", "Ar-rho1.4"), ("isotherm", "Ar-rho1.8"), ("npt", "Ar-npt0")]
    checks = reference_checks(model / "model.h5", checks_dir, tmp_path)
    assert [p.density_g_cm3 for p in checks.isotherm] == pytest.approx([1.4, 1.8], abs=1e-9)
    assert all(p.n_frames == 3 for p in checks.isotherm)  # steps 260, 280, 300: after 0.5 ps
    assert checks.pressure_rmse_GPa < 1e-8  # positions rounded to 1e-10 Å in HISTORY
    (npt,) = checks.npt
    assert npt.status == "complete" and npt.pressure_GPa == 0.01
    assert len(npt.model["time_ps"]) == len(npt.reference["time_ps"]) == 11
    np.testing.assert_allclose(npt.model["density_g_cm3"], npt.reference["density_g_cm3"], rtol=1e-8)
    np.testing.assert_allclose(npt.model["energy_eV_per_atom"], npt.reference["energy_eV_per_atom"], atol=1e-8)
    assert abs(npt.relative_density_error) < 1e-8
    assert np.ptp(npt.reference["density_g_cm3"]) > 1e-4  # the barostat did move the cell
    lines = checks.lines()
    assert lines[0].startswith("P(V) at 80 K") and "RMSE 0.00 GPa over 6 frames" in lines[0]
    assert lines[1].startswith("NPT 0.01 GPa 80 K") and "(+0.0 %); ran to the end" in lines[1]
    reference_checks_figure(checks)


def test_pressures_are_the_two_calculators_on_the_frames(model, tmp_path):
    from hdnnp.ase_calculator import HDNNPCalculator

    (tmp_path / "lj").mkdir()
    checks_dir = make_checks(tmp_path / "lj", model, "ase:ase.calculators.lj.LennardJones", LJ_ARGS)
    checks = reference_checks(model / "model.h5", checks_dir, tmp_path)
    lj, hdnnp = LennardJones(**LJ_ARGS), HDNNPCalculator(str(model / "model.h5"))
    for point, run in zip(checks.isotherm, find_checks(checks_dir)):
        frames, times = run.frames()
        p_ref, p_model = [], []
        for f in [f for f, t in zip(frames, times) if t >= 0.5]:
            atoms = Atoms(numbers=f.species, positions=f.positions, cell=f.cell, pbc=True)
            atoms.calc = lj
            p_ref.append(pressure_gpa(atoms.get_stress(voigt=False)))
            atoms.calc = hdnnp
            p_model.append(pressure_gpa(atoms.get_stress(voigt=False)))
        assert point.pressure_reference_GPa == pytest.approx(np.mean(p_ref), rel=1e-9)
        assert point.pressure_model_GPa == pytest.approx(np.mean(p_model), rel=1e-9)
        assert abs(point.pressure_model_GPa - point.pressure_reference_GPa) > 1e-3  # two different potentials


def test_an_empty_checks_directory_is_one_clear_error(model, tmp_path):
    with pytest.raises(HdnnpError, match="no finished reference runs"):
        reference_checks(model / "model.h5", tmp_path, tmp_path)
    with pytest.raises(HdnnpError, match="no such checks directory"):
        find_checks(tmp_path / "nowhere")
