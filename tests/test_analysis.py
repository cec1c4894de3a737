"""hdnnp.analysis (g(r), bond angles, MSD, block averaging) and the ``analyze`` stage, against
analytic truth: crystal shells, ideal gas, ballistic and random-walk motion, AR(1) series."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from ase.build import bulk
from ase.data import atomic_masses
from click.testing import CliRunner
from scipy.signal import lfilter

from hdnnp.analysis.adf import ADFAccumulator, bond_angles
from hdnnp.analysis.blocking import block_average
from hdnnp.analysis.msd import (ANGSTROM2_PER_PS_IN_CM2_PER_S, diffusion_coefficient,
                                mean_square_displacement, unwrap)
from hdnnp.analysis.rdf import first_peak, integrated_abs_difference, rdf, shell_volumes
from hdnnp.commands.analyze import analyze_command
from hdnnp.errors import HdnnpError
from hdnnp.frames import Frame
from hdnnp.h5io import FrameSetWriter, write_root_attrs
from hdnnp.neighbors import neighbor_list
from hdnnp.stages.analyze import analyze

EV_PER_A3_IN_GPA = 160.2176634  # e · 1e30 / 1e9, exact
DA_PER_A3_IN_G_PER_CM3 = 1.66053906892  # CODATA 2022 atomic mass constant (scipy.constants)


def frame_of(atoms) -> Frame:
    return Frame(positions=atoms.get_positions(), species=atoms.numbers.astype(np.int32),
                 cell=np.array(atoms.cell), pbc=np.ones(3, bool))


# --- g(r) -----------------------------------------------------------------------------------

FCC_SHELLS = [(1, 12), (2, 6), (3, 24), (4, 12), (5, 24)]  # r = a sqrt(n / 2), count


@pytest.mark.parametrize("cubic", [True, False])  # 4-atom cube, or the 1-atom triclinic cell
def test_rdf_fcc_shells_and_coordination(cubic):
    a = 3.6
    atoms = bulk("Cu", "fcc", a=a, cubic=cubic)  # cells far smaller than 2 r_max: images count
    r_max, bins = 6.0, 599  # dr = 0.01002 Å: no shell radius near a bin edge
    res = rdf([frame_of(atoms)], r_max, bins)
    dr = r_max / bins
    radii = [a * np.sqrt(n / 2.0) for n, _ in FCC_SHELLS]
    g = res.g["Cu-Cu"]
    np.testing.assert_array_equal(np.nonzero(g)[0], [int(r / dr) for r in radii])
    n_atoms, volume = len(atoms), atoms.get_volume()
    cumulative = 0
    for (n, count), r in zip(FCC_SHELLS, radii):
        k = int(r / dr)
        # g = V / N² · (N · count) / ΔV_k, the shell's count per atom spread over the bin volume
        assert g[k] == pytest.approx(volume * count / (n_atoms * shell_volumes(res.edges)[k]))
        cumulative += count
        assert res.coordination["Cu-Cu"][k] == pytest.approx(cumulative)  # 12, 18, 42, 54, 78
        assert res.coordination["Cu-Cu"][k - 1] == pytest.approx(cumulative - count)
    np.testing.assert_allclose(res.g["total"], g)
    position, height = first_peak(res.r, g)
    assert abs(position - radii[0]) < dr and height == pytest.approx(g.max())


def test_rdf_ideal_gas_is_one():
    """Uniform random positions: g_aa = 1 − 1/N for r shorter than the box (no self images).

    Tolerance per bin: 4 standard deviations of a Poisson count, σ_k = 1/sqrt(c_k) with c_k the
    expected number of unordered pairs in bin k over all frames (each pair is counted twice,
    so the counts of unordered pairs are the independent ones)."""
    rng = np.random.default_rng(7)
    n_atoms, box, n_frames = 100, 10.0, 50
    frames = [Frame(positions=rng.uniform(0.0, box, (n_atoms, 3)),
                    species=np.full(n_atoms, 18, np.int32), cell=np.eye(3) * box,
                    pbc=np.ones(3, bool)) for _ in range(n_frames)]
    res = rdf(frames, r_max=4.5, bins=18)
    use = res.r > 1.0
    expected = 1.0 - 1.0 / n_atoms
    pairs = n_frames * 0.5 * n_atoms * (n_atoms - 1) / box ** 3 * shell_volumes(res.edges)
    sigma = expected / np.sqrt(pairs)
    assert np.all(np.abs(res.g["Ar-Ar"][use] - expected) < 4.0 * sigma[use])
    assert np.mean(res.g["Ar-Ar"][use]) == pytest.approx(expected, abs=0.01)
    assert res.density["Ar"] == pytest.approx(n_atoms / box ** 3)


def test_rdf_rocksalt_partials():
    """NaCl (a = 5.64 Å, 8-atom cube, r_max > L/2): Na–Cl 6 at a/2, Na–Na 12 at a/√2."""
    a = 5.64
    atoms = bulk("NaCl", "rocksalt", a=a, cubic=True)
    r_max, bins = 6.2, 307  # dr = 0.0202 Å: no shell radius near a bin edge
    res = rdf([frame_of(atoms)], r_max, bins)
    assert set(res.g) == {"Na-Na", "Na-Cl", "Cl-Cl", "total"}

    def at(r):  # bin of a distance
        return int(r / (r_max / bins))

    between_1_2, between_2_3 = at(3.4), at(4.5)
    assert res.coordination["Na-Cl"][between_1_2] == pytest.approx(6.0)
    assert res.coordination["Cl-Na"][between_1_2] == pytest.approx(6.0)
    assert res.coordination["Na-Na"][between_1_2] == pytest.approx(0.0)
    assert res.coordination["Na-Na"][between_2_3] == pytest.approx(12.0)
    assert res.coordination["total"][between_2_3] == pytest.approx(18.0)
    k = at(a / 2)
    # partial normalisation: g_NaCl = V/(N_Na N_Cl) · (N_Na · 6) / ΔV
    dv = shell_volumes(res.edges)[k]
    assert res.g["Na-Cl"][k] == pytest.approx(atoms.get_volume() * 6 / (4 * dv))
    assert first_peak(res.r, res.g["Na-Cl"])[0] == pytest.approx(a / 2, abs=0.02)
    assert first_peak(res.r, res.g["Na-Na"])[0] == pytest.approx(a / np.sqrt(2), abs=0.02)
    # g_total = Σ_ab x_a x_b g_ab over ordered pairs (x = 1/2 each)
    np.testing.assert_allclose(res.g["total"], 0.25 * (res.g["Na-Na"] + 2 * res.g["Na-Cl"]
                                                      + res.g["Cl-Cl"]))
    assert res.density == pytest.approx({"Na": 4 / a ** 3, "Cl": 4 / a ** 3})


def test_first_peak_parabola_and_difference():
    r = np.arange(100) * 0.05 + 0.025
    g = 3.0 - 4.0 * (r - 2.51) ** 2  # a parabola: exact vertex
    g[r > 3.2] = 1.0
    position, height = first_peak(r, g)
    assert position == pytest.approx(2.51) and height == pytest.approx(3.0)
    wiggly = g.copy()
    wiggly[np.searchsorted(r, 2.2)] += 0.3  # a noise maximum on the rising flank, above g_max/2
    assert first_peak(r, wiggly) == pytest.approx((2.51, 3.0))
    assert integrated_abs_difference(r, g, g + 0.5) == pytest.approx(0.5 * 5.0)
    with pytest.raises(HdnnpError):
        integrated_abs_difference(r, g, g[:-1])


def test_rdf_refuses_non_periodic_frame():
    frame = frame_of(bulk("Cu", "fcc", a=3.6))
    frame.pbc = np.array([True, True, False])
    with pytest.raises(HdnnpError, match="periodic"):
        rdf([frame])


# --- bond angles ------------------------------------------------------------------------------

def test_adf_simple_cubic_90_and_180_in_ratio_4_to_1():
    acc = ADFAccumulator(bond_cutoff=3.1, bins=45)  # 4° bins: 90° is mid-bin
    acc.add(frame_of(bulk("Po", "sc", a=3.0)))  # 1 atom: the 6 neighbours are its own images
    res = acc.result()
    fraction = res.density * np.diff(res.edges)
    assert fraction.sum() == pytest.approx(1.0)
    assert fraction[np.searchsorted(res.edges, 90.0) - 1] == pytest.approx(12 / 15)
    assert fraction[-1] == pytest.approx(3 / 15)
    assert res.n_triplets == 15 and res.mean_bonds == pytest.approx(6.0)


def test_adf_diamond_tetrahedral_angle():
    atoms = bulk("C", "diamond", a=3.567)
    nl = neighbor_list(atoms.get_positions(), atoms.cell, True, 1.8)
    angles = bond_angles(nl)
    assert len(angles) == 2 * 6
    np.testing.assert_allclose(angles, np.degrees(np.arccos(-1.0 / 3.0)), atol=1e-9)


# --- MSD -------------------------------------------------------------------------------------

def wrap(positions, cell):
    frac = np.linalg.solve(cell.T, positions.reshape(-1, 3).T).T
    return ((frac % 1.0) @ cell).reshape(positions.shape)


@pytest.mark.parametrize("cell", [np.eye(3) * 5.0,
                                  np.array([[5.0, 0.0, 0.0], [2.0, 4.5, 0.0], [1.0, 1.5, 4.0]])])
def test_msd_constant_velocity_through_boundaries(cell):
    rng = np.random.default_rng(3)
    n_frames, n_atoms = 200, 6
    velocity = rng.uniform(-0.4, 0.4, (n_atoms, 3))  # Å/frame, well under half a cell
    true = rng.uniform(0, 5, (1, n_atoms, 3)) + np.arange(n_frames)[:, None, None] * velocity
    wrapped = wrap(true, cell)
    assert np.abs(wrapped - true).max() > 10.0  # the atoms did cross the boundaries
    unwrapped = unwrap(wrapped, cell)
    np.testing.assert_allclose(unwrapped - unwrapped[0], true - true[0], atol=1e-9)
    np.testing.assert_allclose(unwrap(true, cell), true, atol=1e-9)  # unwrapped input stays
    lag = np.arange(n_frames)
    msd = mean_square_displacement(unwrapped, {"odd": [1, 3, 5]})
    np.testing.assert_allclose(msd["all"], np.mean(np.sum(velocity ** 2, axis=1)) * lag ** 2,
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(msd["odd"], np.mean(np.sum(velocity[1::2] ** 2, axis=1)) * lag ** 2,
                               rtol=1e-9, atol=1e-9)


def test_msd_random_walk_diffusion_coefficient():
    """Steps N(0, σ²) per component every dt: MSD = 3 σ² t / dt, D = σ² / (2 dt) = 2.5 Å²/ps.

    1000 atoms × 1000 frames: over 10 seeds the fitted D scatters by 3.4 % (measured), so a
    12 % tolerance is ~3.5 standard deviations."""
    rng = np.random.default_rng(11)
    sigma, dt, box = 0.1, 0.002, 8.0
    walk = (np.cumsum(rng.normal(0.0, sigma, (1000, 1000, 3)), axis=0)
            + rng.uniform(0, box, (1, 1000, 3)))
    unwrapped = unwrap(walk % box, np.eye(3) * box)
    lag = np.arange(1000) * dt
    fit = diffusion_coefficient(lag, mean_square_displacement(unwrapped)["all"])
    assert fit["D"] == pytest.approx(sigma ** 2 / (2 * dt), rel=0.12)
    assert fit["fit_start"] == pytest.approx(0.2 * lag[-1], abs=dt)
    assert fit["fit_end"] == pytest.approx(0.8 * lag[-1], abs=dt)
    assert ANGSTROM2_PER_PS_IN_CM2_PER_S == 1e-4


def test_diffusion_fit_of_exact_line_and_short_series():
    t = np.arange(50) * 0.1
    fit = diffusion_coefficient(t, 6 * 0.7 * t + 0.3)
    assert fit["D"] == pytest.approx(0.7) and fit["intercept"] == pytest.approx(0.3)
    three = diffusion_coefficient([0.0, 1.0, 2.0], [0.0, 6.0, 12.0])  # window empty: lags 1, 2
    assert three["D"] == pytest.approx(1.0) and three["n_points"] == 2
    assert np.isnan(diffusion_coefficient([0.0, 1.0], [0.0, 1.0])["D"])


# --- block averaging -------------------------------------------------------------------------

def test_blocking_ar1_matches_analytic_error():
    """x_t = φ x_{t−1} + ε_t: var(mean) = σ² (1 + φ) / (1 − φ) / n, σ² = 1 / (1 − φ²),
    τ = φ / (1 − φ) = 9. Over 200 seeds the estimate / exact is 0.97 ± 0.04 at this length,
    so 15 % is a 3.5-σ tolerance."""
    phi, n = 0.9, 2 ** 16
    rng = np.random.default_rng(5)
    x = lfilter([1.0], [1.0, -phi], rng.normal(size=n),
                zi=[phi * rng.normal() / np.sqrt(1 - phi ** 2)])[0]
    res = block_average(x)
    exact = np.sqrt(1.0 / (1.0 - phi ** 2) * (1 + phi) / (1 - phi) / n)
    assert res.error == pytest.approx(exact, rel=0.15)
    assert res.converged and res.mean == pytest.approx(x.mean())
    assert 6.0 < res.correlation_time < 12.0
    assert res.n_blocks * res.block_size <= n and res.block_size >= 16


def test_blocking_uncorrelated_series():
    rng = np.random.default_rng(2)
    x = rng.normal(4.0, 2.0, 2 ** 14)
    res = block_average(x)
    assert res.error == pytest.approx(2.0 / np.sqrt(len(x)), rel=0.05)
    assert res.converged and res.block_size <= 2 and res.correlation_time < 0.1
    constant = block_average(np.full(100, 3.0))
    assert constant.mean == 3.0 and constant.error == 0.0


# --- the stage -------------------------------------------------------------------------------

TE = 52
N_FRAMES_MD, DT_PS = 41, 0.01
VELOCITY = np.array([0.05, -0.03, 0.02])  # Å/frame, the same for every atom: rigid motion
P_GPA = 0.01 * EV_PER_A3_IN_GPA  # mean of −tr σ / 3 for σ = −(0.01 ± 0.002) I eV/Å³


def sc_lattice(a, n_side=2):
    grid = np.arange(n_side, dtype=float)
    return np.array(np.meshgrid(grid, grid, grid, indexing="ij")).reshape(3, -1).T * a


def write_md(path):
    """8 Te atoms, simple cubic a = 3.01 Å, moving rigidly; known stress, energy, temperature."""
    a = 3.01
    base = sc_lattice(a)
    frames = [Frame(positions=(base + k * VELOCITY) % (2 * a), species=np.full(8, TE, np.int32),
                    cell=np.eye(3) * 2 * a, pbc=np.ones(3, bool),
                    energy=8 * (-3.0 + 0.01 * (-1) ** k),
                    temperature=700.0 + 20.0 * (-1) ** k, step=10 * k, source="md",
                    stress=-(0.01 + 0.002 * (-1.0) ** k) * np.eye(3))
              for k in range(N_FRAMES_MD)]
    with h5py.File(path, "w") as h5:
        write_root_attrs(h5, "md")
        writer = FrameSetWriter(h5.create_group("trajectory"), with_forces=False)
        writer.append(frames)
        writer.close()
        h5["trajectory/frames/time"] = np.arange(N_FRAMES_MD) * DT_PS
    return path


def write_reference(path, pbc=True):
    """A prepared-like file: train set interleaving 700 K (a = 3.5 Å) and 800 K (a = 3.11 Å)."""
    frames = []
    for k in range(6):
        t, a = (700.0, 3.5) if k % 2 == 0 else (800.0, 3.11)
        frames.append(Frame(positions=sc_lattice(a), species=np.full(8, TE, np.int32),
                            cell=np.eye(3) * 2 * a, pbc=np.full(3, pbc), energy=-24.0,
                            temperature=t, step=k, source=f"HISTORY.Te.{t:g}K"))
    with h5py.File(path, "w") as h5:
        write_root_attrs(h5, "prepare")
        writer = FrameSetWriter(h5.create_group("train"), with_forces=False)
        writer.append(frames)
        writer.close()
    return path


SC_SHELLS = [(1, 6), (2, 12), (3, 8)]  # r = a sqrt(n), count


def crystal_abs_integral(a, r_max, bins):
    """∫ g dr of a one-element crystal on the grid: Σ_shells dr · count · (V/N) / ΔV_k."""
    edges = np.linspace(0.0, r_max, bins + 1)
    dv, dr = shell_volumes(edges), r_max / bins
    return sum(dr * count * a ** 3 / dv[int(a * np.sqrt(n) / dr)]
               for n, count in SC_SHELLS if a * np.sqrt(n) < r_max)


def test_stage_numbers_figures_and_json(tmp_path):
    md, ref = write_md(tmp_path / "md.h5"), write_reference(tmp_path / "prepared.h5")
    out, js = tmp_path / "figs", tmp_path / "analysis.json"
    r_max, bins = 5.5, 500  # dr = 0.011 Å: no shell radius near a bin edge
    summary = analyze([str(md)], reference=f"{ref}:train@800", out_dir=out, json_path=js,
                      r_max=r_max, bins=bins, quiet=True)
    for name in ("RDF.png", "ADF.png", "MSD.png", "TIME_SERIES.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert set(data) == {"options", "inputs", "reference", "comparison", "figures"}
    s = data["inputs"][0]
    assert s["group"] == "trajectory" and s["n_frames"] == N_FRAMES_MD and s["time_unit"] == "ps"
    ts = s["time_series"]
    density = 8 * atomic_masses[TE] / (2 * 3.01) ** 3 * DA_PER_A3_IN_G_PER_CM3
    assert ts["density_g_per_cm3"]["mean"] == pytest.approx(density, rel=1e-9)
    assert ts["density_g_per_cm3"]["error"] == 0.0
    # 41 alternating values: the mean carries one extra +: (21 − 20) / 41 of the amplitude
    assert ts["pressure_gpa"]["mean"] == pytest.approx(P_GPA + 0.002 * EV_PER_A3_IN_GPA / 41)
    assert ts["energy_per_atom_ev"]["mean"] == pytest.approx(-3.0 + 0.01 / 41)
    assert ts["temperature_k"]["mean"] == pytest.approx(700.0 + 20.0 / 41)
    # rigid motion: MSD = |v|² t² exactly; a least-squares line through t² over [t1, t2] has
    # slope |v|² (t1 + t2) / dt², so D = |v|² (t1 + t2) / (6 dt²)
    msd = s["msd"]
    v2 = float(VELOCITY @ VELOCITY)
    assert msd["D_unit"] == "Å²/ps"
    assert msd["D"] == pytest.approx(v2 * (msd["fit_start"] + msd["fit_end"]) / (6 * DT_PS ** 2))
    assert msd["D_cm2_per_s"] == pytest.approx(msd["D"] * 1e-4)
    assert msd["fit_start"] == pytest.approx(0.2 * 0.4, abs=DT_PS)  # lags 0 .. 0.4 ps
    assert msd["fit_end"] == pytest.approx(0.8 * 0.4, abs=DT_PS)
    assert s["rdf"]["first_peak"]["Te-Te"]["position_angstrom"] == pytest.approx(3.01, abs=0.011)
    assert s["adf"]["coordination_within_bond_cutoff"] == pytest.approx(6.0)
    # the reference: only the 800 K frames (a = 3.11 Å), one source, lag in frames, no stress
    r = data["reference"]
    assert r["n_frames"] == 3 and r["temperature_filter_k"] == 800.0 and r["time_unit"] == "frame"
    assert r["rdf"]["first_peak"]["Te-Te"]["position_angstrom"] == pytest.approx(3.11, abs=0.011)
    assert r["time_series"]["pressure_gpa"] is None
    assert r["msd"]["D"] == pytest.approx(0.0, abs=1e-12) and r["msd"]["D_unit"] == "Å²/frame"
    comp = data["comparison"][0]["rdf"]["Te-Te"]
    assert comp["first_peak_position_angstrom"] == pytest.approx(3.01, abs=0.011)
    assert comp["reference_first_peak_position_angstrom"] == pytest.approx(3.11, abs=0.011)
    # disjoint delta peaks: ∫|Δg| dr = ∫g1 dr + ∫g2 dr
    expected = crystal_abs_integral(3.01, r_max, bins) + crystal_abs_integral(3.11, r_max, bins)
    assert comp["integrated_abs_difference_angstrom"] == pytest.approx(expected, rel=1e-9)
    assert summary["inputs"][0]["label"] == str(md)


def test_figures_are_redrawn_but_data_files_are_kept(tmp_path):
    """Figures are derived output: analyze replaces them; its JSON is data and needs --overwrite."""
    md = write_md(tmp_path / "md.h5")
    out = tmp_path / "figs"
    analyze([str(md)], out_dir=out, json_path=tmp_path / "a.json", quiet=True)
    names = sorted(p.name for p in out.iterdir())
    json_before = (tmp_path / "a.json").read_bytes()
    with pytest.raises(HdnnpError, match="a.json: exists already; pass --overwrite"):
        analyze([str(md)], out_dir=out, json_path=tmp_path / "a.json", quiet=True)
    assert (tmp_path / "a.json").read_bytes() == json_before
    analyze([str(md)], out_dir=out, quiet=True)  # figures only: no --overwrite needed
    assert sorted(p.name for p in out.iterdir()) == names


@pytest.mark.parametrize("spec, match", [
    ("missing.h5", r"missing\.h5: no such file"),
    ("md.h5:nonsense", r"md\.h5: no frame set 'nonsense' \(frame sets: trajectory\)"),
    ("prepared.h5", r"prepared\.h5: name the frame set"),
    ("prepared.h5:train@900", r"prepared\.h5:train@900: no frames at 900 K .*700, 800"),
    ("slab.h5:train", r"slab\.h5:train: frames are not periodic"),
])
def test_stage_bad_inputs_write_nothing(tmp_path, monkeypatch, spec, match):
    monkeypatch.chdir(tmp_path)
    write_md(tmp_path / "md.h5")
    write_reference(tmp_path / "prepared.h5")
    write_reference(tmp_path / "slab.h5", pbc=False)
    with pytest.raises(HdnnpError, match=match):
        analyze(["md.h5"], reference=spec, out_dir="out", json_path="a.json", quiet=True)
    assert not (tmp_path / "out").exists() and not (tmp_path / "a.json").exists()


def test_cli_prints_table_and_reports_bad_input(tmp_path):
    md, ref = write_md(tmp_path / "md.h5"), write_reference(tmp_path / "prepared.h5")
    runner = CliRunner()
    result = runner.invoke(analyze_command, [str(md), "--reference", f"{ref}:train@800",
                                             "--out-dir", str(tmp_path / "o"), "--r-max", "5.5",
                                             "--bins", "500", "-q"])
    assert result.exit_code == 0, result.output
    density = 8 * atomic_masses[TE] / (2 * 3.01) ** 3 * DA_PER_A3_IN_G_PER_CM3
    assert f"{density:.6g} ± 0" in result.output
    assert "Te-Te first peak 3.0" in result.output and "vs 3.1" in result.output
    assert "Å²/ps" in result.output and "(ref)" in result.output
    bad = runner.invoke(analyze_command, [str(tmp_path / "nope.h5"), "--out-dir",
                                          str(tmp_path / "o2")])
    assert isinstance(bad.exception, HdnnpError) and "nope.h5: no such file" in str(bad.exception)
    assert not (tmp_path / "o2").exists()
