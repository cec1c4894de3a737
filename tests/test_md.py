"""hdnnp md: integrators against their known properties, guards, checkpoint/resume, outputs,
bad input. A small smooth potential (random tanh networks on Lennard-Jones-argon features)
keeps every run to a fraction of a second."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

pytest.importorskip("ase")

from _nn_fixtures import write_smooth_argon_model  # noqa: E402
from hdnnp.cli import main  # noqa: E402
from hdnnp.errors import HdnnpError  # noqa: E402
from hdnnp.md.driver import EXIT_GUARD_STOP, MDSettings, run_md  # noqa: E402
from hdnnp.md.guards import GuardLimits  # noqa: E402
from hdnnp.model import Potential  # noqa: E402

NO_GUARDS = GuardLimits(max_extrapolation_excess=np.inf, min_distance_angstrom=0.0, on_extrapolation="warn")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """model.h5 of a smooth random potential for Ar and a prepared.h5 with Ar start frames."""
    return write_smooth_argon_model(tmp_path_factory.mktemp("md"))


def argon(model, supercell=(1, 1, 1)):
    from hdnnp.ase_calculator import HDNNPCalculator
    from hdnnp.md.driver import start_atoms
    from hdnnp.stages.md import load_start

    atoms = start_atoms(load_start(model / "prepared.h5", "predict", 0), supercell)
    atoms.calc = HDNNPCalculator(str(model / "model.h5"))
    return atoms


def trajectory(path):
    with h5py.File(path) as h5:
        g = h5["trajectory"]
        return {k: g[k][:] for k in ("frames/energy", "frames/kinetic_energy", "frames/conserved_energy",
                                      "frames/step", "frames/time", "atoms/positions", "frames/stress",
                                      "frames/cell", "guards/min_distance")} | {"status": h5.attrs["status"]}


def nve_fluctuation(model, tmp_path, timestep_fs, time_fs=400.0):
    s = MDSettings(ensemble="nve", temperature_K=80.0, timestep_fs=timestep_fs,
                   n_steps=int(time_fs / timestep_fs), write_every=1, guard_every=1, limits=NO_GUARDS)
    run_md(argon(model), s, tmp_path / f"nve{timestep_fs}.h5", quiet=True)
    t = trajectory(tmp_path / f"nve{timestep_fs}.h5")
    total = t["frames/energy"] + t["frames/kinetic_energy"]
    np.testing.assert_allclose(t["frames/conserved_energy"], total, rtol=1e-12)
    return total, t


def test_nve_conserves_energy_with_second_order_error(model, tmp_path):
    """Velocity Verlet: the total energy fluctuates by O(dt²) around a constant, so halving the
    time step divides the RMS fluctuation by ~4; over the run it does not drift by more than
    the size of its fluctuation (a symplectic integrator has no secular drift)."""
    total_1, t = nve_fluctuation(model, tmp_path, 4.0)
    total_2, _ = nve_fluctuation(model, tmp_path, 2.0)
    kinetic_scale = np.std(t["frames/kinetic_energy"])
    assert kinetic_scale > 1e-4  # the atoms move: energy flows between kinetic and potential
    rms_1, rms_2 = np.std(total_1), np.std(total_2)
    assert rms_1 < 0.05 * kinetic_scale
    assert 3.0 < rms_1 / rms_2 < 5.0
    half = len(total_2) // 2
    assert abs(total_2[half:].mean() - total_2[:half].mean()) < 2 * rms_2
    # the drift hdnnp md reports: the least-squares slope of E_total per atom against time
    from scipy.stats import linregress

    with h5py.File(tmp_path / "nve2.0.h5") as h5:
        reported = h5.attrs["conserved_energy_drift_meV_per_atom_ps"]
        n_atoms, time_ps = len(h5["trajectory/atoms/species"]) // len(total_2), h5["trajectory/frames/time"][:]
    assert n_atoms == 8
    assert reported == pytest.approx(linregress(time_ps, total_2 / n_atoms).slope * 1e3, rel=1e-9)


def test_nve_is_time_reversible(model, tmp_path):
    """N steps forward, momenta reversed, N steps: back at the start to rounding."""
    from hdnnp.md.driver import initial_velocities, make_dynamics

    atoms = argon(model)
    initial_velocities(atoms, 80.0, seed=4)
    start = atoms.get_positions().copy()
    dyn = make_dynamics(atoms, MDSettings(ensemble="nve", temperature_K=80.0, timestep_fs=2.0))
    dyn.run(100)
    assert np.abs(atoms.get_positions() - start).max() > 0.05
    atoms.set_momenta(-atoms.get_momenta())
    dyn.run(100)
    np.testing.assert_allclose(atoms.get_positions(), start, atol=1e-8)


def test_stored_frames_match_the_potential(model, tmp_path):
    """Every stored frame: energy, forces and stress equal a fresh evaluation of its positions;
    steps and times follow --write-every."""
    s = MDSettings(ensemble="nvt", temperature_K=120.0, timestep_fs=2.0, n_steps=30, write_every=10,
                   limits=NO_GUARDS)
    run_md(argon(model), s, tmp_path / "md.h5", quiet=True)
    pot = Potential.load(model / "model.h5")
    with h5py.File(tmp_path / "md.h5") as h5:
        g = h5["trajectory"]
        assert h5.attrs["stage"] == "md" and h5.attrs["status"] == "complete"
        np.testing.assert_array_equal(g["frames/step"][:], [0, 10, 20, 30])
        np.testing.assert_allclose(g["frames/time"][:], [0, 0.02, 0.04, 0.06])
        off = g["frames/atom_offset"][:]
        for f in range(4):
            pos = g["atoms/positions"][off[f]:off[f + 1]]
            e, forces, stress = pot.predict(pos, g["frames/cell"][f], True, g["atoms/species"][off[f]:off[f + 1]],
                                            stress=True)
            assert g["frames/energy"][f] == pytest.approx(e, rel=1e-12)
            np.testing.assert_allclose(g["atoms/forces"][off[f]:off[f + 1]], forces, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(g["frames/stress"][f], stress, rtol=1e-10, atol=1e-14)
    assert not (tmp_path / "md.h5.partial").exists() and not (tmp_path / "md.h5.checkpoint").exists()


def test_npt_holds_the_set_pressure(tmp_path):
    """Isotropic MTK barostat with ASE's Lennard-Jones argon (its equation of state is the
    model's own): the time-averaged instantaneous pressure (virial + kinetic) equals the set
    pressure within three standard errors, and the volume responds to the pressure."""
    from ase.build import bulk
    from ase.calculators.lj import LennardJones

    from hdnnp.analysis.observables import instantaneous_pressure_gpa

    volumes = {}
    for pressure in (0.05, 0.5):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
        atoms.calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.0, smooth=True)
        s = MDSettings(ensemble="npt", temperature_K=40.0, pressure_GPa=pressure, timestep_fs=5.0, n_steps=3000,
                       tdamp_fs=200.0, pdamp_fs=1000.0, write_every=5, guard_every=50, seed=2,
                       limits=GuardLimits(max_extrapolation_excess=np.inf, min_distance_angstrom=0.0))
        run_md(atoms, s, tmp_path / f"npt{pressure}.h5", quiet=True)
        t = trajectory(tmp_path / f"npt{pressure}.h5")
        volume = np.abs(np.linalg.det(t["frames/cell"]))
        p_inst = instantaneous_pressure_gpa(t["frames/stress"], t["frames/kinetic_energy"], t["frames/cell"])
        keep = slice(len(p_inst) // 4, None)
        from hdnnp.analysis.blocking import block_average

        avg = block_average(p_inst[keep])
        assert abs(avg.mean - pressure) < 3 * avg.error + 0.01, (avg.mean, avg.error)
        volumes[pressure] = volume[keep].mean()
    assert volumes[0.5] < volumes[0.05]


def test_guard_stops_on_close_contact_with_status_and_saved_frames(model, tmp_path):
    """Two atoms 0.5 Å apart: the run stops at once, exit status 3, md.h5 keeps the frame and
    says why, the offending frames are saved as extxyz."""
    import ase.io

    atoms = argon(model)
    pos = atoms.get_positions()
    pos[1] = pos[0] + [0.5, 0.0, 0.0]
    atoms.set_positions(pos)
    ase.io.write(tmp_path / "close.xyz", atoms, format="extxyz")
    with pytest.raises(SystemExit) as exc:
        main(["md", "--model", str(model / "model.h5"), "--start", str(tmp_path / "close.xyz"),
              "--temperature", "100", "--steps", "50", "-o", str(tmp_path / "md.h5"), "-q"])
    assert exc.value.code == EXIT_GUARD_STOP
    t = trajectory(tmp_path / "md.h5")
    assert t["status"].startswith("stopped: step 0") and "shortest interatomic distance" in t["status"]
    assert t["guards/min_distance"][0] == pytest.approx(0.5, abs=1e-9)
    saved = ase.io.read(tmp_path / "md.guard.xyz", index=":")
    assert len(saved) == 1 and saved[0].get_distance(0, 1, mic=True) == pytest.approx(0.5, abs=1e-6)


def test_extrapolation_guard_warns_or_stops(model, tmp_path):
    """A box compressed by 15 %: features leave the training range; stop ends it (status 3),
    warn runs it to the end."""
    import ase.io

    atoms = argon(model)
    atoms.set_cell(atoms.cell * 0.85, scale_atoms=True)
    ase.io.write(tmp_path / "dense.xyz", atoms, format="extxyz")
    args = ["md", "--model", str(model / "model.h5"), "--start", str(tmp_path / "dense.xyz"),
            "--temperature", "50", "--steps", "20", "--min-distance", "0", "-q"]
    with pytest.raises(SystemExit) as exc:
        main(args + ["-o", str(tmp_path / "stop.h5")])
    assert exc.value.code == EXIT_GUARD_STOP
    assert "outside the training range" in trajectory(tmp_path / "stop.h5")["status"]
    main(args + ["-o", str(tmp_path / "warn.h5"), "--on-extrapolation", "warn"])
    t = trajectory(tmp_path / "warn.h5")
    assert t["status"] == "complete" and t["frames/step"][-1] == 20


class _Interrupt:
    """Wrap a calculator; raise KeyboardInterrupt at the n-th calculation (a kill mid-run)."""

    def __init__(self, atoms, n):
        self.n, self.count, self.inner = n, 0, atoms.calc
        inner_calculate = self.inner.calculate

        def calculate(*args, **kwargs):
            self.count += 1
            if self.count == self.n:
                raise KeyboardInterrupt
            return inner_calculate(*args, **kwargs)

        self.inner.calculate = calculate


@pytest.mark.parametrize("ensemble,thermostat", [("nvt", "langevin"), ("nvt", "nose-hoover"), ("npt", "langevin")])
def test_resume_continues_the_same_trajectory(model, tmp_path, ensemble, thermostat):
    """Interrupted after some chunks, then --resume: the same frames as an uninterrupted run
    (integrator state, thermostat chains, barostat and the Langevin generator restored)."""
    def settings():
        return MDSettings(ensemble=ensemble, thermostat=thermostat, temperature_K=100.0, timestep_fs=2.0,
                          n_steps=60, write_every=5, chunk_frames=2, limits=NO_GUARDS, seed=3)

    run_md(argon(model), settings(), tmp_path / "full.h5", quiet=True)
    atoms = argon(model)
    _Interrupt(atoms, 37)
    with pytest.raises(KeyboardInterrupt):
        run_md(atoms, settings(), tmp_path / "cut.h5", quiet=True)
    assert (tmp_path / "cut.h5.checkpoint").exists() and not (tmp_path / "cut.h5").exists()
    with pytest.raises(HdnnpError, match="--resume"):
        run_md(argon(model), settings(), tmp_path / "cut.h5", quiet=True)
    run_md(argon(model), settings(), tmp_path / "cut.h5", resume=True, quiet=True)
    full, cut = trajectory(tmp_path / "full.h5"), trajectory(tmp_path / "cut.h5")
    np.testing.assert_array_equal(cut["frames/step"], full["frames/step"])
    np.testing.assert_allclose(cut["atoms/positions"], full["atoms/positions"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(cut["frames/cell"], full["frames/cell"], rtol=0, atol=1e-10)


def test_kill_then_resume_from_the_command_line(model, tmp_path):
    """SIGKILL a running ``hdnnp md`` after its first checkpoint; --resume finishes it (the total
    may change on resume) and nothing but the partial file and checkpoint was left meanwhile."""
    out = tmp_path / "md.h5"
    args = ["--model", str(model / "model.h5"), "--start", str(model / "prepared.h5"), "--temperature", "100",
            "--write-every", "2", "--on-extrapolation", "warn", "-o", str(out), "-q"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "hdnnp", "md", *args, "--steps", "1000000"], env=env)
    ckpt = tmp_path / "md.h5.checkpoint"
    deadline = time.time() + 60
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and (tmp_path / "md.h5.partial").exists() and not out.exists()
    with h5py.File(ckpt) as h5:
        done = int(h5["nsteps"][()])
    main(["md", *args, "--steps", str(done + 20), "--resume"])
    t = trajectory(out)
    assert t["status"] == "complete" and t["frames/step"][-1] == done + 20
    np.testing.assert_array_equal(t["frames/step"], np.arange(0, done + 21, 2))
    assert not ckpt.exists()


def test_outputs_extxyz_and_history_read_back(model, tmp_path):
    """--xyz and --history: the same frames, read back by ASE and by hdnnp prepare's reader."""
    import ase.io

    from hdnnp.inputs import structure_file
    from hdnnp.stages.prepare import ReadOptions, SourceStats, iter_source

    main(["md", "--model", str(model / "model.h5"), "--start", str(model / "prepared.h5"), "--temperature", "100",
          "--steps", "20", "--write-every", "5", "-o", str(tmp_path / "md.h5"), "--xyz", str(tmp_path / "md.xyz"),
          "--history", str(tmp_path / "HISTORY.md"), "-q"])
    t = trajectory(tmp_path / "md.h5")
    images = ase.io.read(tmp_path / "md.xyz", index=":")
    assert len(images) == 5
    np.testing.assert_allclose(images[-1].positions, t["atoms/positions"][-8:], atol=1e-8)
    assert images[-1].get_potential_energy() == pytest.approx(t["frames/energy"][-1], rel=1e-10)
    entry = structure_file(tmp_path / "HISTORY.md", "dlpoly")
    frames = list(iter_source(entry, ReadOptions(), SourceStats("h", entry.temperature)))
    assert [f.step for f in frames] == [0, 5, 10, 15, 20]
    np.testing.assert_allclose(frames[-1].positions, t["atoms/positions"][-8:], atol=1e-8)
    assert frames[-1].energy == pytest.approx(t["frames/energy"][-1], rel=1e-9)


@pytest.mark.parametrize("extra,message", [
    (["--ensemble", "npx"], "--ensemble"),
    (["--timestep", "-1"], "--timestep"),
    (["--temperature", "-5"], "--temperature"),
    (["--supercell", "2x2"], "--supercell"),
    (["--supercell", "0x1x1"], "--supercell"),
    (["--time", "1", "--steps", "5"], "--time and --steps"),
    (["--start-set", "nope"], "no frame set 'nope'"),
])
def test_bad_input_is_one_clear_line_and_nothing_written(model, tmp_path, capsys, extra, message):
    args = ["md", "--model", str(model / "model.h5"), "--start", str(model / "prepared.h5"),
            "--temperature", "100", "--steps", "5", "-o", str(tmp_path / "md.h5")]
    with pytest.raises(SystemExit) as exc:
        main(args + extra)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_element_the_model_lacks_is_refused(model, tmp_path, capsys):
    import ase.io
    from ase.build import bulk

    ase.io.write(tmp_path / "cu.xyz", bulk("Cu", cubic=True), format="extxyz")
    with pytest.raises(SystemExit) as exc:
        main(["md", "--model", str(model / "model.h5"), "--start", str(tmp_path / "cu.xyz"), "--temperature", "100",
              "-o", str(tmp_path / "md.h5")])
    assert exc.value.code == 2
    assert "Cu" in capsys.readouterr().err
    assert not (tmp_path / "md.h5").exists()


def test_density_scan_writes_one_run_per_temperature_and_the_density(model, tmp_path):
    """--scan: one NPT run per temperature, the density of each the block average of its frames'
    mass densities after the equilibration, the figure and JSON beside the output."""
    import json

    from hdnnp.analysis.observables import mass_density

    main(["md", "--model", str(model / "model.h5"), "--start", str(model / "prepared.h5"), "--ensemble", "npt",
          "--scan", "60,120", "--steps", "40", "--write-every", "4", "--equilibration", "0.02",
          "--on-extrapolation", "warn", "--min-distance", "0", "-o", str(tmp_path / "md.h5"), "-q"])
    summary = json.loads((tmp_path / "md_density.json").read_text())
    assert [p["temperature_K"] for p in summary["points"]] == [60.0, 120.0]
    assert (tmp_path / "DENSITY_VS_T.png").stat().st_size > 0
    for point in summary["points"]:
        with h5py.File(point["md_path"]) as h5:
            g = h5["trajectory"]
            assert h5.attrs["settings"] and '"ensemble": "npt"' in h5.attrs["settings"]
            keep = g["frames/time"][:] >= 0.02
            rho = [mass_density(g["atoms/species"][:8], c) for c in g["frames/cell"][:][keep]]
        assert point["n_frames_used"] == int(keep.sum())
        assert point["density_g_cm3"] == pytest.approx(np.mean(rho), rel=1e-12)
    with pytest.raises(SystemExit) as exc:
        main(["md", "--model", str(model / "model.h5"), "--start", str(model / "prepared.h5"), "--scan", "60",
              "-o", str(tmp_path / "x.h5")])
    assert exc.value.code == 2
