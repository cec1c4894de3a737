"""``hdnnp learn``: thin CLI layer over :func:`hdnnp.learning.loop.learn`."""

from __future__ import annotations

import math

import click

from hdnnp.training.presets import preset_defaults

from hdnnp.md.driver import ENSEMBLES


@click.command("learn")
@click.argument("prepared", default="prepared.h5", type=click.Path(dir_okay=False))
@click.option("--temperatures", required=True, metavar="T,T,...", help="Exploration temperatures (K), one MD run each.")
@click.option("--reference", required=True, metavar="SPEC",
              help="Labels: tblite:GFN1-xTB (pip install 'hdnnp[xtb]'), ase:MODULE.CLASS (any ASE calculator), "
                   "or external (write the frames, stop, continue with --resume --add-labels FILES).")
@click.option("--reference-args", default=None, metavar="JSON", help="Keyword arguments of the reference calculator.")
@click.option("--add-labels", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Labelled frames from the external reference (extxyz, vasprun.xml, OUTCAR, DL_POLY HISTORY with "
                   "its E file); repeat for several files. Needs --resume.")
@click.option("--work-dir", default="learn", show_default=True, type=click.Path(file_okay=False),
              help="Directory of the run (learn.json, iter<k>/, learned.extxyz, model.h5, LEARNING_ITERATIONS.png).")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False),
              help="First committee (model.h5 from hdnnp train --committee N) [train one on PREPARED].")
@click.option("--iterations", type=click.IntRange(min=1), default=5, show_default=True,
              help="Most refinement iterations (label + retrain).")
@click.option("--densities", default=None, metavar="RHO,RHO,...",
              help="Also explore at these mass densities (g/cm³): per temperature one NVT run more at each, from "
                   "the start frame scaled to it [none].")
@click.option("--ensemble", type=click.Choice(ENSEMBLES), default="nvt", show_default=True,
              help="Ensemble of the runs from the start frame as read (npt: at --pressure).")
@click.option("--pressure", type=float, default=0.0, show_default=True, help="npt: pressure (GPa).")
@click.option("--md-time", "md_time_ps", type=float, default=5.0, show_default=True,
              help="Length of every exploration run (ps); stable = this long without a guard firing.")
@click.option("--timestep", type=float, default=2.0, show_default=True, help="MD time step (fs).")
@click.option("--supercell", default="1x1x1", show_default=True, help="Repeat the start frame, e.g. 2x2x2.")
@click.option("--write-every", type=int, default=5, show_default=True, help="MD steps between candidate frames.")
@click.option("--max-frames", type=click.IntRange(min=1), default=20, show_default=True,
              help="Most frames labelled per iteration (K).")
@click.option("--spread-threshold", default="auto", show_default=True, metavar="EV_PER_A|auto",
              help="Force spread (largest std of a force component over the members, eV/Å) that makes a frame a "
                   "candidate; auto: 2 x the 95th percentile over the original training frames of the current committee.")
@click.option("--spread-max", type=float, default=math.inf,
              help="Frames with a larger force spread are not labelled, and the MD stops there (eV/Å) [no limit].")
@click.option("--extrapolation-threshold", type=float, default=0.05, show_default=True,
              help="Excess max|x'| - 1 of a scaled feature that makes a frame a candidate.")
@click.option("--min-separation", "min_separation_ps", type=float, default=0.1, show_default=True,
              help="Selected frames of one trajectory are at least this far apart (ps).")
@click.option("--committee", type=click.IntRange(min=2), default=3, show_default=True, help="Members per committee.")
@click.option("--n-features", type=int, default=30, show_default=True, help="symmetry: features per element.")
@click.option("--preset", type=click.Choice(["default", "seed", "fast"]), default="default", show_default=True,
              help="train: option set of every committee member.")
@click.option("--epochs", type=int, default=None, help="train: most epochs [optimiser default].")
@click.option("--hidden", default=None, help=f"train: hidden layer widths, e.g. 15,15 {preset_defaults('hidden')}.")
@click.option("--activation", default=None, help="train: hidden-layer activation(s), e.g. softplus [tanh].")
@click.option("--force-weight", type=float, default=None,
              help="train: weight of the force term (Å²/atom²) [the first committee's automatic weight, kept].")
@click.option("--baseline", type=click.Choice(["zbl", "none"]), default="none", show_default=True,
              help="train: repulsive baseline (see hdnnp train --help).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds of the training and the MD.")
@click.option("--resume", is_flag=True, help="Continue the run in --work-dir where it stopped.")
@click.option("--overwrite", is_flag=True, help="Start again, replacing the run in --work-dir.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def learn_command(prepared, temperatures, reference, reference_args, add_labels, work_dir, model_path, iterations,
                  densities, ensemble, pressure, md_time_ps, timestep, supercell, write_every, max_frames, spread_threshold,
                  spread_max, extrapolation_threshold, min_separation_ps, committee, n_features, preset, epochs,
                  hidden, activation, force_weight, baseline, seed, resume, overwrite, quiet):
    """Refine a committee potential by query by committee: MD at the given temperatures, label the
    frames where the committee disagrees or extrapolates with the reference, retrain; repeat until
    every run survives --md-time without a guard firing, or --iterations.

    \b
    hdnnp learn prepared.h5 --temperatures 673,773,973 --reference tblite:GFN1-xTB
    hdnnp learn prepared.h5 --temperatures 300 --reference ase:ase.calculators.emt.EMT
    hdnnp learn prepared.h5 --temperatures 673,973 --ensemble npt --densities 5.4,7.5 --reference tblite:GFN1-xTB
    hdnnp learn prepared.h5 --temperatures 773 --reference external        # writes frames, exit 4
    hdnnp learn prepared.h5 --temperatures 773 --reference external --resume --add-labels vasprun.xml
    """
    from hdnnp.cli import _parse_hidden
    from hdnnp.commands.md import _parse_temperatures
    from hdnnp.errors import HdnnpError
    from hdnnp.learning.loop import EXIT_NEEDS_LABELS, LearnSettings, NeedsLabels, learn
    from hdnnp.stages.md import parse_supercell

    if spread_threshold == "auto":
        threshold = -1.0
    else:
        try:
            threshold = float(spread_threshold)
        except ValueError:
            threshold = float("nan")
        if not threshold > 0:
            raise HdnnpError(f"--spread-threshold: expected a force spread > 0 eV/Å or auto, got '{spread_threshold}'")
    train = {"preset": preset, "baseline": baseline}
    if epochs is not None:
        train["epochs"] = epochs
    if hidden is not None:
        train["hidden"] = list(_parse_hidden(hidden))
    if activation is not None:
        train["activation"] = activation
    if force_weight is not None:
        train["force_weight"] = force_weight
    settings = LearnSettings(
        temperatures=_parse_temperatures(temperatures), densities=_parse_densities(densities),
        ensemble=ensemble, pressure_GPa=pressure,
        md_time_ps=md_time_ps, timestep_fs=timestep, supercell=list(parse_supercell(supercell)),
        iterations=iterations, max_frames=max_frames, spread_threshold=threshold, spread_max=spread_max,
        extrapolation_threshold=extrapolation_threshold, min_separation_ps=min_separation_ps,
        write_every=write_every, committee=committee, n_features=n_features, train=train,
        reference=reference, reference_args=reference_args or "", seed=seed)
    try:
        result = learn(prepared, work_dir, settings, model=model_path, add_labels=list(add_labels) or None,
                       resume=resume, overwrite=overwrite, quiet=quiet, log=lambda m: click.echo(m, err=True))
    except NeedsLabels as exc:
        click.echo(str(exc), err=True)
        return EXIT_NEEDS_LABELS
    click.echo(f"{result['status']}; final committee {result['model']}")
    return 0


def _parse_densities(text) -> list[float]:
    from hdnnp.errors import HdnnpError

    if text is None:
        return []
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise HdnnpError(f"--densities: expected mass densities in g/cm³ like 5.4,7.5, got '{text}'")
    return values
