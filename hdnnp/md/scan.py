"""Density against temperature from constant-pressure MD: ``hdnnp md --scan T1,T2,...``.

One isotropic-MTK NPT run per temperature (each from the same start structure, the same
settings otherwise), then the mass density of the frames after ``equilibration_ps``, as a mean
with a block-averaged standard error (:func:`hdnnp.analysis.blocking.block_average`). A run that
a guard stops contributes only the frames before the stop and is marked. The density maximum of
a liquid (liquid Te: near 615–630 K, in the supercooled liquid) shows as a turning point of
ρ(T); telling it from noise needs error bars smaller than the change of ρ between neighbouring
temperatures, which is why the scan reports them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DENSITY_FIGURE = "DENSITY_VS_T.png"


@dataclass
class ScanPoint:
    temperature_K: float
    md_path: str
    status: str
    time_ps: float
    n_frames_used: int
    density_g_cm3: float
    density_error: float
    pressure_GPa: float
    pressure_error: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def scan_paths(output, temperatures) -> list[Path]:
    """``md.h5`` -> ``md_573K.h5``, ... (one trajectory per temperature)."""
    output = Path(output)
    return [output.with_name(f"{output.stem}_{t:g}K{output.suffix}") for t in temperatures]


def density_points(md_path, equilibration_ps: float) -> tuple[int, tuple, tuple]:
    """(frames used, (ρ g/cm³, error), (P GPa, error)) of an md.h5 after ``equilibration_ps``.
    P includes the kinetic (ideal-gas) term 2 E_kin / (3 V)."""
    import h5py

    from hdnnp.analysis.blocking import block_average
    from hdnnp.analysis.observables import instantaneous_pressure_gpa, mass_density

    with h5py.File(md_path, "r") as h5:
        g = h5["trajectory"]
        keep = np.flatnonzero(g["frames/time"][:] >= equilibration_ps)
        if len(keep) < 2:
            return len(keep), (np.nan, np.nan), (np.nan, np.nan)
        cells = g["frames/cell"][:][keep]
        species = g["atoms/species"][: int(g["frames/atom_offset"][1])]
        density = np.array([mass_density(species, c) for c in cells])
        pressure = instantaneous_pressure_gpa(g["frames/stress"][:][keep], g["frames/kinetic_energy"][:][keep],
                                              cells)
    d, p = block_average(density), block_average(pressure)
    return len(keep), (d.mean, d.error), (p.mean, p.error)


def density_scan(atoms_factory, settings, temperatures, output, equilibration_ps: float, overwrite: bool = False,
                 quiet: bool = False, log=print) -> list[ScanPoint]:
    """NPT at each temperature; ``atoms_factory()`` gives a fresh start structure with its calculator.

    ``settings``: :class:`hdnnp.md.driver.MDSettings` with ``ensemble = "npt"``; its
    temperature is replaced by each of ``temperatures``; an infinite temperature guard becomes
    3 x each temperature.
    """
    from hdnnp.h5io import check_can_write
    from hdnnp.md.driver import run_md
    from hdnnp.md.guards import DEFAULT_MAX_TEMPERATURE_FACTOR

    paths = scan_paths(output, temperatures)
    for path in paths:
        check_can_write(path, overwrite)
    points = []
    for temperature, path in zip(temperatures, paths):
        s = copy.deepcopy(settings)
        s.temperature_K = float(temperature)
        if np.isinf(settings.limits.max_temperature_K):  # no explicit ceiling: scale with T
            s.limits.max_temperature_K = DEFAULT_MAX_TEMPERATURE_FACTOR * temperature
        log(f"[scan] {temperature:g} K: NPT at {s.pressure_GPa:g} GPa for {s.n_steps * s.timestep_fs * 1e-3:g} ps "
            f"-> {path}")
        summary = run_md(atoms_factory(), s, path, overwrite=overwrite, quiet=quiet, log=log)
        used, (rho, rho_err), (p, p_err) = density_points(path, equilibration_ps)
        status = "complete" if summary["status"] == "complete" else f"stopped: {summary['reason']}"
        points.append(ScanPoint(float(temperature), str(path), status, summary["time_ps"], used, rho, rho_err,
                                p, p_err))
        log(f"[scan] {temperature:g} K: ρ = {rho:.4f} ± {rho_err:.4f} g/cm³, P = {p:.3f} ± {p_err:.3f} GPa "
            f"({used} frames after {equilibration_ps:g} ps; {status})")
    return points


def density_figure(points: list[ScanPoint], pressure_GPa: float):
    """ρ(T) with block-averaged error bars; runs a guard stopped are drawn hollow."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2), constrained_layout=True)
    ax = fig.subplots()
    for complete in (True, False):
        sel = [p for p in points if (p.status == "complete") == complete and np.isfinite(p.density_g_cm3)]
        if sel:
            ax.errorbar([p.temperature_K for p in sel], [p.density_g_cm3 for p in sel],
                        yerr=[p.density_error for p in sel], fmt="o" if complete else "o", capsize=3,
                        color="C0", mfc="C0" if complete else "white",
                        label="NPT run" if complete else "stopped by a guard (frames before the stop)")
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel("density (g/cm³)")
    ax.set_title(f"Density at {pressure_GPa:g} GPa (mean ± block-averaged standard error)")
    if points:
        ax.legend(fontsize=8)
    return fig
