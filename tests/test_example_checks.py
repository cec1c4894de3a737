"""The shipped reference checks (data/example/checks, made by scripts/generate_te_reference.py
through hdnnp md --reference tblite:GFN1-xTB): each run's files agree with its summary, the
pressures come from the stored stresses, and the data hold the finding they document: GFN1-xTB's
liquid Te compresses far beyond 5.7 g/cm³ at 0 GPa. Where tblite is installed, stored frames are
labelled again by the reference itself."""

import json
from pathlib import Path

import numpy as np
import pytest

from hdnnp.analysis.observables import instantaneous_pressure_gpa, mass_density
from hdnnp.md.reference_checks import find_checks

CHECKS = Path(__file__).resolve().parents[1] / "data" / "example" / "checks"
RUNS = find_checks(CHECKS)


def test_the_checks_hold_an_isotherm_and_npt_runs():
    kinds = {r.kind for r in RUNS}
    assert kinds == {"isotherm", "npt"}
    assert any(r.kind == "npt" and r.temperature_K == 773 for r in RUNS)
    assert sum(r.kind == "isotherm" for r in RUNS) >= 2


@pytest.mark.parametrize("run", RUNS, ids=lambda r: f"{r.name}.{r.temperature_K:g}K")
def test_files_agree_with_the_summary(run):
    summary = json.loads((CHECKS / f"summary.{run.name}.{run.temperature_K:g}K.json").read_text())
    frames, times = run.frames()
    series = summary["series"]
    assert len(frames) == summary["n_frames"] == len(series["time_ps"])
    np.testing.assert_allclose(times, series["time_ps"], atol=1e-9)
    np.testing.assert_allclose([mass_density(f.species, f.cell) for f in frames], series["density_g_cm3"], rtol=1e-8)
    np.testing.assert_allclose([f.energy / len(f.species) for f in frames], series["energy_eV_per_atom"], atol=1e-10)
    # the pressure of the summary = −tr σ/3 of the STRESS file + the kinetic term of its temperature
    n = len(frames[0].species)
    # E_kin = 3/2 N k_B T (with the NVT runs' fixed centre of mass 3/2 (N - 1) k_B T: 0.01 GPa less)
    kinetic = 1.5 * n * 8.617333262e-5 * np.array(series["temperature_K"])
    p = instantaneous_pressure_gpa(np.array([f.stress for f in frames]), kinetic, np.array([f.cell for f in frames]))
    np.testing.assert_allclose(p, series["pressure_GPa"], atol=0.02)
    assert summary["md"]["reference"] == "tblite:GFN1-xTB"
    assert summary["md"]["status"] == "complete"


def test_gfn1_xtb_liquid_te_compresses_at_zero_pressure():
    """The finding the checks document: from 5.70 g/cm³, the reference's own NPT at 0 GPa and
    773 K ends far denser than real liquid Te (5.7 g/cm³), its energy falling all the way."""
    run = next(r for r in RUNS if r.kind == "npt" and r.temperature_K == 773)
    frames, times = run.frames()
    rho = np.array([mass_density(f.species, f.cell) for f in frames])
    energy = np.array([f.energy for f in frames]) / len(frames[0].species)
    last = times >= times[-1] - 1.0
    assert rho[0] == pytest.approx(5.70, abs=0.01)
    assert rho[last].mean() > 8.5
    assert energy[last].mean() < energy[times < 0.5].mean() - 0.2  # eV/atom


def test_stored_frames_are_the_reference_itself():
    tblite = pytest.importorskip("tblite.ase")
    from ase import Atoms

    run = next(r for r in RUNS if r.kind == "npt" and r.temperature_K == 773)
    frames, _ = run.frames()
    for f in (frames[0], frames[len(frames) // 2], frames[-1]):
        atoms = Atoms(numbers=f.species, positions=f.positions, cell=f.cell, pbc=True)
        atoms.calc = tblite.TBLite(method="GFN1-xTB", electronic_temperature=300.0, verbosity=0)
        assert atoms.get_potential_energy() == pytest.approx(f.energy, abs=1e-6)
        # in MD each SCF starts from the previous step's density: converged to tblite's tolerance, not bit for bit
        np.testing.assert_allclose(atoms.get_forces(), f.forces, atol=5e-4)
        np.testing.assert_allclose(atoms.get_stress(voigt=False), f.stress, atol=2e-6)  # 0.3 MPa
