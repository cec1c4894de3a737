"""``hdnnp md``: thin CLI layer over :func:`hdnnp.stages.md.md`."""

from __future__ import annotations

import click
import numpy as np

from hdnnp.commands import device_option
from hdnnp.errors import HdnnpError

from hdnnp.md.driver import ENSEMBLES, EXIT_GUARD_STOP, THERMOSTATS
from hdnnp.md.guards import (DEFAULT_MAX_EXTRAPOLATION_EXCESS, DEFAULT_MAX_TEMPERATURE_FACTOR,
                             DEFAULT_MIN_DISTANCE_ANGSTROM)


def md_settings_options(func):
    """Options that define an MD run (``md``; the MD check of ``run`` reuses the defaults)."""
    options = [
        click.option("--ensemble", type=click.Choice(ENSEMBLES), default="nvt", show_default=True,
                     help="nve: velocity Verlet; nvt: --thermostat; npt: isotropic MTK barostat "
                          "with Nosé–Hoover chains."),
        click.option("--thermostat", type=click.Choice(THERMOSTATS), default="langevin", show_default=True,
                     help="NVT thermostat."),
        click.option("--temperature", type=float, default=None,
                     help="Temperature (K): thermostat target, initial velocities (required unless --scan)."),
        click.option("--pressure", type=float, default=0.0, show_default=True, help="npt: pressure (GPa)."),
        click.option("--timestep", type=float, default=2.0, show_default=True, help="Time step (fs)."),
        click.option("--time", "time_ps", type=float, default=None, help="Length of the run (ps)."),
        click.option("--steps", type=int, default=None, help="Length of the run in steps [--time, else 1000]."),
        click.option("--tdamp", type=float, default=100.0, show_default=True,
                     help="Thermostat time constant (fs; Langevin friction = 1/tdamp)."),
        click.option("--pdamp", type=float, default=1000.0, show_default=True,
                     help="Barostat time constant (fs)."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the initial velocities and the Langevin noise."),
        click.option("--write-every", type=int, default=10, show_default=True,
                     help="Store a frame every N steps."),
        click.option("--guard-every", type=int, default=10, show_default=True,
                     help="Check the guards every N steps."),
        click.option("--on-extrapolation", type=click.Choice(["stop", "warn"]), default="stop",
                     show_default=True, help="What a run does when a feature leaves the training range "
                                             "by more than --max-extrapolation."),
        click.option("--max-extrapolation", type=float, default=DEFAULT_MAX_EXTRAPOLATION_EXCESS,
                     show_default=True, help="Largest excess max|x'| - 1 of a scaled feature "
                                             "(0.1 = 5%% of its training range)."),
        click.option("--min-distance", type=float, default=DEFAULT_MIN_DISTANCE_ANGSTROM, show_default=True,
                     help="Stop when two atoms come closer than this (Å)."),
        click.option("--max-force-spread", type=float, default=float("inf"),
                     help="Committee models: stop when the members' force components disagree by more "
                          "than this standard deviation (eV/Å) [no limit]."),
        click.option("--max-temperature", type=float, default=None,
                     help=f"Stop above this temperature (K) [{DEFAULT_MAX_TEMPERATURE_FACTOR:g} x --temperature]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def settings_from_options(ensemble, thermostat, temperature, pressure, timestep, time_ps, steps, tdamp,
                          pdamp, seed, write_every, guard_every, on_extrapolation, max_extrapolation,
                          min_distance, max_temperature, max_force_spread=float("inf")):
    """:class:`MDSettings` from the values of :func:`md_settings_options` (checked)."""
    from hdnnp.errors import HdnnpError
    from hdnnp.md.driver import MDSettings
    from hdnnp.md.guards import GuardLimits

    if time_ps is not None and steps is not None:
        raise HdnnpError("--time and --steps: give one of them")
    if temperature is None:
        raise HdnnpError("--temperature: required (the thermostat target and initial velocities)")
    if time_ps is not None:
        if not time_ps > 0:
            raise HdnnpError(f"--time: expected a length > 0 ps, got {time_ps}")
        steps = int(round(time_ps * 1000.0 / timestep)) if timestep > 0 else 0
    limits = GuardLimits(max_extrapolation_excess=max_extrapolation, min_distance_angstrom=min_distance,
                         max_temperature_K=(max_temperature if max_temperature is not None
                                            else DEFAULT_MAX_TEMPERATURE_FACTOR * temperature),
                         max_force_spread=max_force_spread, on_extrapolation=on_extrapolation)
    settings = MDSettings(ensemble=ensemble, thermostat=thermostat, temperature_K=temperature,
                          pressure_GPa=pressure, timestep_fs=timestep, n_steps=1000 if steps is None else steps,
                          tdamp_fs=tdamp, pdamp_fs=pdamp, seed=seed, write_every=write_every,
                          guard_every=guard_every, limits=limits)
    settings.check()
    return settings


@click.command("md")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False),
              help="Potential (model.h5 from hdnnp train) [model.h5; not with --reference].")
@click.option("--reference", default=None, metavar="SPEC",
              help="Run the reference method instead of a potential (the specs of hdnnp learn: tblite:GFN1-xTB, "
                   "ase:MODULE.CLASS): reference MD whose frames carry energy, forces and stress, written with "
                   "--history (HISTORY + E + STRESS for hdnnp prepare) or --xyz; every frame is checkpointed.")
@click.option("--reference-args", default=None, metavar="JSON",
              help="Keyword arguments of the reference calculator, e.g. '{\"electronic_temperature\": 773}'.")
@click.option("--start", required=True, metavar="PATH",
              help="Start structure: prepared.h5/symmetry.h5/md.h5 (with --start-set, --start-frame) or a "
                   "structure file (DL_POLY HISTORY, extxyz, input.data, POSCAR, ...).")
@click.option("--start-set", default=None, help="Frame set of an hdnnp file [predict, else train; md.h5: trajectory].")
@click.option("--start-frame", type=int, default=0, show_default=True, help="Frame index (negative: from the end).")
@click.option("--format", "start_format", default=None, help="Format of a structure file [from the name].")
@click.option("--supercell", default="1x1x1", show_default=True, help="Repeat the start structure, e.g. 2x2x2.")
@click.option("--density", type=float, default=None,
              help="Scale the start cell and positions isotropically to this mass density (g/cm³) [as read].")
@md_settings_options
@click.option("-o", "--output", default="md.h5", show_default=True, type=click.Path(dir_okay=False),
              help="Trajectory file.")
@click.option("--xyz", default=None, type=click.Path(dir_okay=False), help="Also write the trajectory as extxyz.")
@click.option("--history", default=None, type=click.Path(dir_okay=False),
              help="Also write it as DL_POLY HISTORY<suffix> + E<suffix>.")
@click.option("--scan", default=None, metavar="T,T,...",
              help="Density scan: one NPT run per temperature (K) -> OUTPUT-stem_<T>K.h5, DENSITY_VS_T.png "
                   "and OUTPUT-stem_density.json beside OUTPUT.")
@click.option("--equilibration", type=float, default=None,
              help="--scan: discard the first ps of each run [a fifth of the run].")
@device_option
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUTPUT.checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (and an unfinished run).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def md_command(model_path, reference, reference_args, start, start_set, start_frame, start_format, supercell,
               density, output, xyz, history, scan, equilibration, device, resume, overwrite, quiet, **settings_kwargs):
    """Molecular dynamics with a trained potential, or with the reference method (ASE integrators) -> md.h5.

    Frames (positions, forces, stress, energies, temperature, guard quantities) are stored every
    --write-every steps, in chunks, with a checkpoint after each chunk. Guards watch every
    --guard-every steps for extrapolation, close contacts and overheating; a run that leaves the
    potential's domain stops with one line saying when and why, keeps its frames, saves the last
    ones to OUTPUT-stem.guard.xyz (ready for the reference method) and exits with status 3.

    \b
    hdnnp md --start prepared.h5 --temperature 773 --time 10
    hdnnp md --start HISTORY.Te.773K --supercell 2x2x2 --ensemble npt --temperature 773 --steps 20000
    hdnnp md --start prepared.h5 --temperature 773 --time 10 --resume
    hdnnp md --start prepared.h5 --supercell 2x2x2 --ensemble npt --scan 573,673,773,873,973 --time 20
    hdnnp md --reference tblite:GFN1-xTB --start prepared.h5 --temperature 773 --time 2 --history HISTORY.Te.773K
    """
    from hdnnp.stages.md import density_scan_command, md, parse_supercell

    if reference is not None:
        from hdnnp.learning.references import parse_reference

        if model_path is not None:
            raise HdnnpError("--model and --reference: give one of them (a potential, or the reference method)")
        reference = parse_reference(reference, reference_args)
    elif reference_args is not None:
        raise HdnnpError("--reference-args: needs --reference")
    model_path = model_path or "model.h5"

    if scan is not None:
        if settings_kwargs["ensemble"] != "npt":
            raise HdnnpError("--scan: a density scan needs --ensemble npt")
        temperatures = _parse_temperatures(scan)
        ceiling = settings_kwargs["max_temperature"]
        if settings_kwargs["temperature"] is None:
            settings_kwargs["temperature"] = temperatures[0]
        settings = settings_from_options(**settings_kwargs)
        if ceiling is None:
            settings.limits.max_temperature_K = float("inf")  # 3 x each temperature of the scan
        result = density_scan_command(model_path, start, output, settings, temperatures, equilibration,
                                      start_set=start_set, start_frame=start_frame, start_format=start_format,
                                      supercell=parse_supercell(supercell), device=device, overwrite=overwrite,
                                      quiet=quiet, log=lambda m: click.echo(m, err=True), reference=reference,
                                      density=density)
        click.echo("T (K)   density (g/cm³)      P (GPa)          frames  run")
        for p in result["points"]:
            click.echo(f"{p.temperature_K:6.0f}  {p.density_g_cm3:.4f} ± {p.density_error:.4f}  "
                       f"{p.pressure_GPa:7.3f} ± {p.pressure_error:.3f}  {p.n_frames_used:6d}  {p.status}")
        click.echo(f"wrote {', '.join(result['files'])}")
        return
    settings = settings_from_options(**settings_kwargs)
    summary = md(model_path, start, output, settings, start_set=start_set, start_frame=start_frame,
                 start_format=start_format, supercell=parse_supercell(supercell), device=device, xyz=xyz,
                 history=history, resume=resume, overwrite=overwrite, quiet=quiet,
                 log=lambda m: click.echo(m, err=True), reference=reference, density=density)
    click.echo(format_md_summary(summary))
    for key in ("output", "xyz", "history"):
        if summary.get(key):
            click.echo(f"wrote {summary[key]}")
    if summary["status"] != "complete":
        click.echo(f"Stopped: {summary['reason']}", err=True)
        click.echo(f"wrote {summary['guard_file']} (the last frames, for labelling)", err=True)
        raise SystemExit(EXIT_GUARD_STOP)


def _parse_temperatures(text) -> list[float]:
    from hdnnp.errors import HdnnpError

    try:
        values = [float(t.strip().rstrip("Kk")) for t in str(text).split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise HdnnpError(f"--scan: expected temperatures in K like 573,673,773, got '{text}'")
    return values


def format_md_summary(summary: dict) -> str:
    g = summary["last_guard"]
    text = (f"md: {summary['status']} at step {summary['steps']} ({summary['time_ps']:.3f} ps), "
            f"{summary['n_frames']} frames; {summary['ns_per_day']:.3g} ns/day, "
            f"{summary['atom_steps_per_s']:.0f} atom-steps/s")
    if np.isfinite(summary.get("drift_meV_per_atom_ps", float("nan"))):
        text += f"; conserved-energy drift {summary['drift_meV_per_atom_ps']:+.3g} meV/atom/ps"
    if g is not None and summary.get("reference"):
        text += (f"; last check: T {g.temperature_K:.0f} K, shortest distance {g.min_distance_angstrom:.2f} Å")
    elif g is not None:
        text += (f"; last check: T {g.temperature_K:.0f} K, shortest distance {g.min_distance_angstrom:.2f} Å, "
                 f"{g.extrapolation_count} extrapolating features (largest excess "
                 f"{g.extrapolation_max_excess:.3g})")
    return text


__all__ = ["md_command", "md_settings_options", "settings_from_options"]
