"""Command-line interface: parses options and calls one library function per stage.

No science here: every command is a thin layer over ``hdnnp.stages``.
"""

from __future__ import annotations

import sys

import click

from hdnnp import __version__
from hdnnp.commands import device_option, parallel_options
from hdnnp.interrupts import Terminated
from hdnnp.errors import HdnnpError
from hdnnp.training.presets import preset_defaults


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="hdnnp")
def cli():
    """hdnnp: Behler-Parrinello neural network potentials from ab initio trajectories.

    Stages: prepare -> symmetry -> train -> predict -> report (``hdnnp run`` chains them).
    Each reads and writes HDF5 intermediates, so each can run alone.
    """


# --- stage 1-2: prepare, inspect -------------------------------------------------------------

_INPUT_OPTION_KEYS = ("config_path", "data_dir", "system", "train", "predict", "train_files",
                      "predict_files", "file_format", "skip", "stride", "forces_unit",
                      "energy_unit", "energy_column", "allow_missing_energies", "length_unit")


def input_selection_options(func):
    """Click options naming the inputs and how to read them (``prepare``; reused by ``run``).

    The command receives them as keyword arguments; pass its ``kwargs`` to
    :func:`resolve_input_options` to get the selection and the reading options. Every default
    is None, so a TOML study file (``--config``) fills what the command line leaves out.
    """
    from hdnnp.units import ENERGY_UNITS_IN_EV

    options = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                     help="TOML study file; its [prepare] table takes these options' names "
                          "(data_dir, system, train, ...); command-line options override it."),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="Directory of HISTORY.<system>.<T>K and E.<system>.<T>K [default: .; hdnnp run "
                          "with no input named at all runs the bundled data/example]."),
        click.option("--system", default=None, help="System name in the file names, e.g. Te."),
        click.option("--train", multiple=True, metavar="T[,T...]",
                     help="Training temperatures, e.g. 673K,723K (repeatable)."),
        click.option("--predict", multiple=True, metavar="T[,T...]",
                     help="Prediction temperature(s), e.g. 773K (repeatable)."),
        click.option("--train-file", "train_files", multiple=True, metavar="PATH[@T]",
                     help="A training file in any supported format, optionally @temperature "
                          "(repeatable)."),
        click.option("--predict-file", "predict_files", multiple=True, metavar="PATH[@T]",
                     help="A prediction file, optionally @temperature (repeatable)."),
        click.option("--format", "file_format", default=None, metavar="FORMAT",
                     help="Format of --train-file/--predict-file: auto (from the name), dlpoly, "
                          "extxyz, n2p2, or an ASE format name [default: auto]."),
        click.option("--skip", type=click.IntRange(min=0), default=None,
                     help="Drop the first N frames of each file (equilibration) [default: 0]."),
        click.option("--stride", type=click.IntRange(min=1), default=None,
                     help="Then keep every k-th frame [default: 1]."),
        click.option("--forces-unit", type=click.Choice(["dlpoly", "eV/A"]), default=None,
                     help="Unit of HISTORY forces: dlpoly (10 J/mol/Å) or eV/A [default: dlpoly]."),
        click.option("--energy-unit", type=click.Choice(list(ENERGY_UNITS_IN_EV)), default=None,
                     help="Unit of the energy files (and n2p2 energies) [default: eV]."),
        click.option("--energy-column", type=click.IntRange(min=2), default=None,
                     help="1-based column of the energy in the energy files (column 1 is the "
                          "timestep) [default: 2]."),
        click.option("--allow-missing-energies", is_flag=True, default=None,
                     help="Skip HISTORY frames without an energy (count printed) instead of failing."),
        click.option("--length-unit", type=click.Choice(["angstrom", "bohr"]), default=None,
                     help="Length unit of n2p2 input.data files [default: angstrom]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def resolve_input_options(kwargs: dict):
    """Pop the :func:`input_selection_options` values from ``kwargs``; return
    ``(InputSelection, reading options for hdnnp.stages.prepare.prepare)``."""
    from hdnnp.inputs import resolve_inputs_from_options

    given = {key: kwargs.pop(key) for key in _INPUT_OPTION_KEYS}
    config_path = given.pop("config_path")
    given["format"] = given.pop("file_format")
    return resolve_inputs_from_options(given, config_path)


@cli.command("prepare")
@input_selection_options
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="prepared.h5",
              show_default=True, help="Output file (train and predict frame sets).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def prepare_command(output, overwrite, quiet, **kwargs):
    """Read trajectories and energies into prepared.h5 (stage 2).

    \b
    hdnnp prepare --data-dir data --system Te --train 673K,723K --predict 773K
    hdnnp prepare --train-file a.xyz@673K --predict-file input.data
    hdnnp prepare --config study.toml --skip 100
    """
    from hdnnp.stages.prepare import prepare

    selection, reading = resolve_input_options(kwargs)
    summary = prepare(selection, output, overwrite=overwrite, quiet=quiet, **reading)
    for set_name, counts in summary["sets"].items():
        click.echo(f"{set_name}: {counts['n_frames']} frames, {counts['n_atoms']} atoms, "
                   f"forces {'yes' if counts['forces'] else 'no'}, stresses "
                   f"{'yes' if counts['n_stresses'] == counts['n_frames'] > 0 else counts['n_stresses'] or 'no'}")
        for s in summary["sources"][set_name]:
            notes = []
            if s.n_missing_energies:
                notes.append(f"{s.n_missing_energies} frames without energy skipped")
            if s.n_unmatched_energies:
                notes.append(f"{s.n_unmatched_energies} energies without a frame")
            click.echo(f"  {s.path}: {s.n_kept} of {s.n_frames} frames"
                       + (f" ({'; '.join(notes)})" if notes else ""))
    from hdnnp.elements import symbol

    click.echo(f"elements: {', '.join(symbol(z) for z in summary['elements'])}")
    click.echo(f"wrote {summary['output']}")


@cli.command("inspect")
@click.argument("path", type=click.Path(dir_okay=True))
def inspect_command(path):
    """Summarise an hdnnp HDF5 file: attributes, frame sets, groups and datasets."""
    from hdnnp.inspect import inspect_file

    click.echo(inspect_file(path))


# --- stage 3: symmetry ------------------------------------------------------------------------


def _parse_feature_list(text):
    """``--features``: comma-separated candidate indices, or a file of indices (commas/whitespace, # comments)."""
    from pathlib import Path

    if text is None:
        return None
    if Path(text).is_file():
        lines = [line.split("#", 1)[0] for line in Path(text).read_text().splitlines()]
        text = " ".join(lines)
    tokens = [t for t in text.replace(",", " ").split() if t]
    try:
        return [int(t) for t in tokens]
    except ValueError:
        raise HdnnpError(f"--features: expected candidate indices like 0,3,7 or a file of them, got '{text}'") from None


def _parse_zetas(text):
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(not v >= 1 for v in values):
        raise HdnnpError(f"--grid-zetas: expected values >= 1 like 1,2,4,16, got '{text}'")
    return tuple(values)


@cli.command("symmetry")
@click.argument("prepared", default="prepared.h5", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default="symmetry.h5", show_default=True, type=click.Path(dir_okay=False),
              help="Output HDF5 file.")
@click.option("--n-features", default=30, show_default=True, type=int,
              help="Features kept per element (network inputs).")
@click.option("--selection", type=click.Choice(["cur", "fps"]), default="cur", show_default=True,
              help="Selection criterion (Imbalzano et al. 2018): greedy CUR or farthest-point sampling.")
@click.option("--features", "features", default=None,
              help="Keep exactly these candidate indices (e.g. 0,3,7 or a file) instead of selecting.")
@device_option
@click.option("--cutoff", default=6.0, show_default=True, type=float, help="Cutoff radius Rc (Å).")
@click.option("--grid", default="seed", show_default=True, metavar="seed|auto|FILE",
              help="Candidate functions: the seed's grid; auto, generated from the cutoff, the shortest "
                   "distance of the training frames, --grid-points and --grid-zetas (radial centred and "
                   "shifted, narrow and wide angular); or a file of n2p2 symfunction_short lines (Å).")
@click.option("--grid-points", default=8, show_default=True, type=click.IntRange(min=2),
              help="--grid auto: radial points between the shortest distance and the cutoff.")
@click.option("--grid-zetas", default="1,2,4,16", show_default=True, help="--grid auto: angular zetas.")
@click.option("--chunk-frames", default=32, show_default=True, type=int, help="Frames held in memory at once.")
@click.option("--derivatives", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="Store dG/dr: auto = for sets with forces.")
@click.option("--derivative-precision", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True, help="Type of the stored derivatives (float32: half the file and the training "
                                      "memory of forces).")
@click.option("--fit-atoms", default=20000, show_default=True, type=int,
              help="Training atoms per element sampled to fit the selection.")
@parallel_options
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def symmetry_command(prepared, output, n_features, selection, features, device, cutoff, grid, grid_points,
                     grid_zetas, chunk_frames, derivatives, derivative_precision, fit_atoms, workers, scheduler,
                     overwrite, quiet):
    """Symmetry functions of PREPARED (default prepared.h5): candidates, selection, scaling -> symmetry.h5."""
    from hdnnp.stages.symmetry import symmetry

    summary = symmetry(prepared, output, n_features=n_features, device=device, selection=selection,
                       features=_parse_feature_list(features), cutoff=cutoff, chunk_frames=chunk_frames,
                       derivatives=derivatives, fit_atoms=fit_atoms, overwrite=overwrite, quiet=quiet,
                       grid=grid, grid_points=grid_points, grid_zetas=_parse_zetas(grid_zetas),
                       derivative_precision=derivative_precision, workers=workers, scheduler=scheduler)
    for sym, names in summary["selected"].items():
        click.echo(f"{sym}: {len(names)} of {summary['n_candidates']} candidates selected")
    for n, corr in summary.get("descriptor_check", {}).items():
        click.echo(f"descriptor check: corr(d, |dF|) = {corr:.3f} with {n} features")
    from hdnnp.model import extrapolation_message

    for name, counts in summary["sets"].items():
        if counts.get("extrapolating_frames"):
            click.echo("Warning: " + extrapolation_message(name, counts["extrapolating_frames"], counts["n_frames"]),
                       err=True)
    click.echo(f"wrote {output} in {summary['wall_time_s']:.1f} s ({summary['device']})")

# --- stages 4-5: train, predict ---------------------------------------------------------------


def _parse_hidden(text):
    if text is None:
        return None
    try:
        widths = tuple(int(t) for t in str(text).replace(" ", "").split(",") if t)
    except ValueError:
        raise HdnnpError(f"--hidden: expected widths like 15,15, got '{text}'") from None
    if not widths:
        raise HdnnpError("--hidden: at least one hidden layer")
    return widths


@cli.command("train")
@click.argument("symmetry_file", default="symmetry.h5", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default="model.h5", show_default=True, type=click.Path(dir_okay=False),
              help="Output model file.")
@click.option("--preset", type=click.Choice(["default", "seed", "fast"]), default="default", show_default=True,
              help="Option set; 'seed' = 30-4-4-1, derivative-free, 80000 evaluations. Options below override it.")
@click.option("--optimizer", type=click.Choice(["lbfgs", "adam", "ekf", "derivative-free"]), default=None,
              help=f"Optimiser {preset_defaults('optimizer')}.")
@click.option("--hidden", default=None, help=f"Hidden layer widths, e.g. 15,15 {preset_defaults('hidden')}.")
@click.option("--activation", default=None,
              help="Hidden-layer activation: tanh, softplus or logistic, or one per layer, e.g. softplus,tanh "
                   "[tanh].")
@click.option("--epochs", type=int, default=None,
              help="Max epochs in total, counting those before --resume (lbfgs: iterations; adam/ekf: "
                   "passes over the boxes; derivative-free: Powell sweeps) "
                   f"{preset_defaults('epochs')}.")
@click.option("--batch-boxes", type=int, default=None,
              help="Boxes per Adam mini-batch, and per block when the loss of a whole set is evaluated with "
                   "forces (lbfgs, validation), which bounds the memory; the seed's NUMBER_OF_BOXES_TO_OPT "
                   f"{preset_defaults('batch_boxes')}.")
@click.option("--learning-rate", type=float, default=None,
              help=f"Adam step size {preset_defaults('learning_rate')}.")
@click.option("--forces/--no-forces", "use_forces", default=None,
              help=f"Train on forces when the data has them {preset_defaults('use_forces')}.")
@click.option("--force-weight", type=float, default=None,
              help="Weight of the force term (Å²/atom²); negative: automatic var(E/N)/<F²>.")
@click.option("--stress-weight", type=float, default=None,
              help="Weight of the stress term: the virial per atom σV/N against the energy per atom "
                   "(dimensionless; needs reference stresses; 0: off) [0.1 when the training set has reference "
                   "stresses, else 0].")
@click.option("--force-fraction", type=float, default=None,
              help="Fraction of atoms per box whose forces are trained (saves memory).")
@click.option("--val-fraction", type=float, default=None,
              help=f"Fraction of training frames kept for validation {preset_defaults('val_fraction')}.")
@click.option("--val-split", type=click.Choice(["random", "blocked"]), default=None,
              help="Validation frames: random (default) or one contiguous block per trajectory.")
@click.option("--ekf-type", type=click.Choice(["standard", "fading"]), default=None,
              help="ekf: standard (learning rate eta rising from 0.01 to 1; n2p2's kalman_type 0) or fading "
                   "memory (forgetting factor lambda; kalman_type 1) [preset default: standard].")
@click.option("--patience", type=int, default=None,
              help=f"Stop after this many epochs without validation gain (0: never) {preset_defaults('patience')}.")
@click.option("--checkpoint-every", type=int, default=None, help="Write OUTPUT.checkpoint every N epochs.")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT.checkpoint.")
@click.option("--committee", "n_members", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train N networks sets (seeds SEED..SEED+N-1: initial weights, validation split) into one "
                   "model; predictions are their mean, the uncertainty their spread.")
@click.option("--baseline", type=click.Choice(["zbl", "none"]), default=None,
              help="Short-range repulsion added to the networks: ZBL screened nuclear repulsion switched off "
                   "at the shortest distance of the training data [none].")
@click.option("--baseline-radii", default=None, metavar="R_INNER:R_OUTER",
              help="Switch the baseline off between these radii (Å) for every element pair "
                   "[per pair: 0.8·d_min to d_min, the shortest distance in the training data].")
@click.option("--seed", type=int, default=None, help="Random seed (split, initial weights, batches).")
@click.option("--max-evals", type=int, default=None, help="derivative-free: loss evaluations (seed: 80000).")
@click.option("--weight-bound", type=float, default=None,
              help=f"Bound |w| on the weights (0: none) {preset_defaults('weight_bound')}.")
@click.option("--time-limit", type=float, default=None, help="Stop training after this many seconds.")
@click.option("--max-memory", "max_memory_mb", type=float, default=None,
              help="Memory budget of the training data (MiB) [4096]; beyond it they are streamed (--stream auto).")
@click.option("--stream", type=click.Choice(["auto", "always", "never"]), default=None,
              help="Read the descriptors from SYMMETRY_FILE step by step instead of holding them: memory "
                   "independent of the data size [auto: when they exceed --max-memory].")
@device_option
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def train_command(symmetry_file, output, preset, hidden, resume, n_members, device, overwrite, quiet, **kwargs):
    """Train the element networks on the train set of SYMMETRY_FILE (default symmetry.h5) -> model.h5."""
    from hdnnp.kernels import resolve_device
    from hdnnp.stages.train import train_committee
    from hdnnp.training.presets import make_options

    options = make_options(preset, hidden=_parse_hidden(hidden), **kwargs)
    summary = train_committee(symmetry_file, output, options, n_members, overwrite=overwrite, resume=resume,
                              device=resolve_device(device), quiet=quiet, log=lambda m: click.echo(m, err=True))
    for k, s in enumerate(summary.get("members", [summary])):
        if s.get("reused"):
            click.echo(f"member {k + 1}: kept from the interrupted run ({s['output']})")
            continue
        click.echo(("" if n_members == 1 else f"member {k + 1}: ")
                   + f"best epoch {s['best_epoch']} of {s['epochs']} ({s['stop_reason']}); "
                   f"energy RMSE train/val {s['train_energy_rmse']:.2f}/{s['val_energy_rmse']:.2f} meV/atom, "
                   f"force RMSE {s['train_force_rmse']:.1f}/{s['val_force_rmse']:.1f} meV/Å; {s['wall_time']:.1f} s")
    click.echo(f"wrote {output} ({summary['n_parameters']} weights"
               + (f", a committee of {n_members}" if n_members > 1 else "") + ")")


@cli.command("predict")
@click.argument("input_file", default="symmetry.h5", type=click.Path(dir_okay=False))
@click.option("--model", "model_path", default="model.h5", show_default=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", default="predictions.h5", show_default=True, type=click.Path(dir_okay=False))
@click.option("--forces/--no-forces", default=None,
              help="Predict forces too [for every set whose frames have reference forces].")
@click.option("--atomic-energies", is_flag=True, help="Store the energy of every atom.")
@click.option("--stress/--no-stress", default=None,
              help="Predict the stress of every periodic frame (eV/Å³, ASE sign: positive = tensile) "
                   "[for every set whose frames have reference stresses].")
@click.option("--sets", default=None, help="Sets of an HDF5 input, e.g. train,predict [all].")
@click.option("--format", "file_format", default=None,
              help="Format of a structure-file INPUT: dlpoly, extxyz, n2p2 or an ASE format name "
                   "[from the name; else ASE guesses].")
@device_option
@parallel_options
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def predict_command(input_file, model_path, output, forces, atomic_energies, stress, sets, file_format,
                    device, workers, scheduler, overwrite, quiet):
    """Energies (and forces) of INPUT_FILE (symmetry.h5, prepared.h5 or a structure file) -> predictions.h5."""
    import warnings

    from hdnnp.stages.predict import predict

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = predict(model_path, input_file, output, forces=forces, atomic_energies=atomic_energies,
                          stress=stress, file_format=file_format,
                          sets=[s for s in sets.split(",") if s] if sets else None, overwrite=overwrite,
                          device=device, quiet=quiet, workers=workers, scheduler=scheduler)
    for w in caught:
        click.echo(f"Warning: {w.message}", err=True)
    for name, s in summary.items():
        line = f"{name}: {s['n_frames']} frames"
        if "energy_rmse_mev_per_atom" in s:
            line += f", energy RMSE {s['energy_rmse_mev_per_atom']:.2f} meV/atom"
        if "force_rmse_mev_per_angstrom" in s:
            line += f", force RMSE {s['force_rmse_mev_per_angstrom']:.1f} meV/Å"
        if "stress_rmse_gpa" in s:
            line += f", stress RMSE {s['stress_rmse_gpa']:.3f} GPa"
        click.echo(line + f", {s['extrapolating_frames']} extrapolating")
        for group, g in s.get("groups", {}).items():
            click.echo(f"  {group}: {g['n_frames']} frames"
                       + (f", energy RMSE {g['energy_rmse_mev_per_atom']:.2f} meV/atom" if "energy_rmse_mev_per_atom" in g else "")
                       + (f", force RMSE {g['force_rmse_mev_per_angstrom']:.1f} meV/Å" if "force_rmse_mev_per_angstrom" in g else "")
                       + (f", stress RMSE {g['stress_rmse_gpa']:.3f} GPa" if "stress_rmse_gpa" in g else ""))
    click.echo(f"wrote {output}")


# --- stage 6: report; run; study --------------------------------------------------------------


@cli.command("report")
@click.argument("inputs", nargs=-1, type=click.Path(dir_okay=False), metavar="[FILES]...")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="model.h5 from 'hdnnp train' (learning curve).  [default: model.h5]")
@click.option("--predictions", "predictions_path", type=click.Path(dir_okay=False),
              default=None, help="predictions.h5 from 'hdnnp predict' (errors, traces, "
                                 "parity).  [default: predictions.h5]")
@click.option("--symmetry", "symmetry_path", type=click.Path(dir_okay=False), default=None,
              help="symmetry.h5 from 'hdnnp symmetry': adds the descriptor-check figure.")
@click.option("--out-dir", type=click.Path(file_okay=False), default="data", show_default=True,
              help="Directory for the PNG figures (created if missing).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the printed metrics to this JSON file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file (figures are derived output: always redrawn).")
def report_command(inputs, model_path, predictions_path, symmetry_path, out_dir, json_path, overwrite):
    """Mean prediction errors (energy per box and per atom, forces, per temperature,
    extrapolation) and the figures LEARNING_PROCESS.png, FINAL_PREDICTION.png, PARITY.png,
    ERROR_HISTOGRAM.png and DESCRIPTOR_CHECK.png.

    Inputs by option, or as FILES in any order (model.h5, predictions.h5, symmetry.h5 are told
    apart by the stage that wrote them):

    \b
    hdnnp report --model model.h5 --predictions predictions.h5 --symmetry symmetry.h5
    hdnnp report model.h5 predictions.h5 --out-dir figures --json metrics.json
    """
    from hdnnp.stages.report import (classify_inputs, extrapolation_warnings, format_committee, format_table,
                                     format_training, run_report)

    given = classify_inputs(inputs)
    for role, option in (("model", model_path), ("predictions", predictions_path),
                         ("symmetry", symmetry_path)):
        if option is not None and role in given:
            raise HdnnpError(f"{role} file given twice: --{role} {option} and {given[role]}")
    model_path = model_path or given.get("model", "model.h5")
    predictions_path = predictions_path or given.get("predictions", "predictions.h5")
    symmetry_path = symmetry_path or given.get("symmetry")
    summary = run_report(model_path, predictions_path, symmetry_path, out_dir, json_path, overwrite)
    click.echo(f"Mean prediction error ({predictions_path}; E per box, E/N per atom, F per "
               "Cartesian component):")
    click.echo(format_table(summary))
    if "training" in summary:
        click.echo(format_training(summary["training"]))
    for line in format_committee(summary):
        click.echo(line)
    check = summary.get("descriptor_check")
    if check and "unavailable" in check:
        click.echo(f"Descriptor check: {check['unavailable']}")
    elif check:
        pairs = ", ".join(f"{'all ' if label == 'all' else ''}{n}: "
                          f"{'-' if r is None else f'{r:.3f}'}"
                          for label, n, r in zip(check["labels"], check["n_features"],
                                                 check["correlation"]))
        click.echo(f"Descriptor check, correlation of d_ij with F_ij (features: r): {pairs}")
    for line in extrapolation_warnings(summary):
        click.echo(line, err=True)
    for path in summary["figures"].values():
        click.echo(f"wrote {path}")
    if json_path:
        click.echo(f"wrote {json_path}")


def _pipeline_options(func):
    """Options of ``run`` and ``study`` beyond the inputs: the main ones of each stage (the
    single-stage commands have the rest; a study file's tables can set any of them)."""
    options = [
        click.option("--work-dir", type=click.Path(file_okay=False), default=None,
                     help="Directory of the intermediates [run: ., study: study]."),
        click.option("--out-dir", type=click.Path(file_okay=False), default=None,
                     help="Directory of the figures [default: data]."),
        click.option("--n-features", type=click.IntRange(min=1), default=None,
                     help="symmetry: features kept per element [default: 30]."),
        click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default=None,
                     help="symmetry, train, predict: auto = the GPU when CuPy sees one "
                          "[default: auto]."),
        click.option("--optimizer", type=click.Choice(["lbfgs", "adam", "ekf", "derivative-free"]),
                     default=None, help=f"train: optimiser {preset_defaults('optimizer')}."),
        click.option("--epochs", type=click.IntRange(min=1), default=None,
                     help=f"train: max epochs / iterations {preset_defaults('epochs')}."),
        click.option("--max-evals", type=click.IntRange(min=1), default=None,
                     help="train, derivative-free: loss evaluations [seed preset: 80000]."),
        click.option("--time-limit", type=float, default=None,
                     help="train: stop training after this many seconds."),
        click.option("--seed", type=int, default=None, help="train: random seed."),
        click.option("--force-weight", type=float, default=None,
                     help="train: weight of the force term (Å²/atom²; negative: automatic)."),
        click.option("--forces/--no-forces", default=None,
                     help="predict: forces too [default: when the data have forces]."),
        click.option("--overwrite", is_flag=True,
                     help="Replace the outputs of an earlier run (passed to every stage)."),
        click.option("-q", "--quiet", is_flag=True, help="No progress lines."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _parse_seeds(text):
    """``--seeds 0,1,2`` -> [0, 1, 2] (None when not given)."""
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise HdnnpError(f"--seeds: expected integers like 0,1,2, got '{text}'") from None


def _echo_warnings(caught):
    """Warnings raised by the stages, except extrapolation (the error table counts it)."""
    for w in caught:
        if "extrapolat" not in str(w.message):
            click.echo(f"Warning: {w.message}", err=True)


@cli.command("run")
@input_selection_options
@click.option("--preset", type=click.Choice(["default", "seed", "fast"]), default=None,
              help="train: option set (see 'hdnnp train --help') [default: default].")
@click.option("--md-check", "md_check_ps", type=float, default=2.0, show_default=True,
              help="End with this many ps of NVT MD at each prediction temperature (MD_CHECK.png).")
@click.option("--no-md", is_flag=True, help="Skip the MD check (and the reference checks).")
@click.option("--checks", "checks_dir", default=None, type=click.Path(file_okay=False),
              help="Then check the potential against the direct reference MD in this directory: P(V) on its "
                   "isotherm frames, NPT from its starts (REFERENCE_CHECKS.png) [bundled example: "
                   "data/example/checks].")
@click.option("--learned", is_flag=True,
              help="Bundled example: also train on its learned frames (data/example/learned, made by hdnnp learn "
                   "with GFN1-xTB). Measured before the near-constant-feature rule of hdnnp symmetry: no 773 K "
                   "frame extrapolated any more, but the MD check still left the training domain (0.38 ps) and the "
                   "773 K energy error rose from 6.3 to 24 meV/atom (README).")
@_pipeline_options
def run_command(work_dir, out_dir, n_features, device, preset, optimizer, epochs, max_evals,
                time_limit, seed, force_weight, forces, overwrite, quiet, md_check_ps, no_md, checks_dir, learned,
                **kwargs):
    """Run every stage: prepare -> symmetry -> train -> predict -> report, then a short MD check.

    With no input options it runs the bundled example (from the clone's root):
    --data-dir data/example --system Te --train 673K,723K,823K,873K,973K --predict 773K.
    The intermediates prepared.h5, symmetry.h5, model.h5, predictions.h5 and metrics.json stay
    in --work-dir, so any stage can be re-run alone; the figures go to --out-dir. Options of a
    --config study file ([prepare], [symmetry], [train], [predict], [report], [run] tables;
    see scripts/example_run.toml) are overridden by the command line. For the other options
    of a stage, run that stage alone (hdnnp train --help, ...).

    \b
    hdnnp run
    hdnnp run --data-dir mydata --system Te --train 673K,973K --predict 773K --work-dir run1
    hdnnp run --config scripts/example_run.toml --preset seed --overwrite
    """
    import warnings
    from pathlib import Path

    from hdnnp.stages.report import extrapolation_warnings, format_table, format_training
    from hdnnp.stages.run import (example_inputs, format_wall_times, load_stage_config,
                                  resolve_stage_options, run_pipeline, uses_example)

    config_path = kwargs["config_path"]
    config = load_stage_config(config_path) if config_path else {}
    if uses_example(kwargs, config_path):
        kwargs.update(example_inputs(learned))
        if checks_dir is None and Path(kwargs["data_dir"], "checks").is_dir():
            checks_dir = str(Path(kwargs["data_dir"], "checks"))
        learned = len(kwargs["train_files"])
        click.echo(f"No inputs named: running the bundled example ({kwargs['data_dir']}, "
                   f"train {kwargs['train'][0]}" + (f" + the learned frames of {learned} temperatures "
                                                    f"({kwargs['data_dir']}/learned)" if learned else "")
                   + f", predict {kwargs['predict'][0]}).")
    elif learned:
        raise HdnnpError("--learned: adds the learned frames of the bundled example; with your own inputs, name "
                         "learned frames with --train-file learned.extxyz@T")
    selection, reading = resolve_input_options(kwargs)
    opts = resolve_stage_options(config, work_dir=work_dir, out_dir=out_dir,
                                 n_features=n_features, device=device, preset=preset,
                                 forces=forces, optimizer=optimizer, epochs=epochs,
                                 max_evals=max_evals, time_limit=time_limit, seed=seed,
                                 force_weight=force_weight)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_pipeline(selection, reading, work_dir=opts["work_dir"],
                               out_dir=opts["out_dir"],
                               symmetry_options=opts["symmetry_options"],
                               train_options=opts["train_options"], forces=opts["forces"],
                               device=opts["device"], overwrite=overwrite, quiet=quiet,
                               md_check_ps=None if no_md else md_check_ps,
                               checks_dir=None if no_md else checks_dir, log=click.echo)
    _echo_warnings(caught)
    metrics = summary["metrics"]
    click.echo(f"Mean prediction error ({summary['paths']['predictions']}; E per box, E/N per "
               "atom, F per Cartesian component):")
    click.echo(format_table(metrics))
    if "training" in metrics:
        click.echo(format_training(metrics["training"]))
    for line in extrapolation_warnings(metrics):
        click.echo(line, err=True)
    if "md_check" in summary:
        click.echo("MD check (Langevin NVT from the first reference frame; g(r) against the reference "
                   "trajectory):")
        for result in summary["md_check"]["results"]:
            click.echo("  " + result.line())
    if "reference_checks" in summary:
        checks = summary["reference_checks"]["results"]
        click.echo(f"Reference checks (direct reference MD in {checks.directory}, never trained on):")
        for line in checks.lines():
            click.echo("  " + line)
    click.echo(f"Wall time on {summary['device']} ({opts['preset']} preset): "
               f"{format_wall_times(summary['wall_time_s'])}")
    click.echo(f"Intermediates: {', '.join(summary['paths'].values())}")
    figures = list(metrics["figures"].values())
    for key in ("md_check", "reference_checks"):
        if key in summary:
            figures.append(summary[key]["figure"])
    click.echo(f"Figures: {', '.join(figures)}")


@cli.command("study")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML study file: [study] sets/presets/work_dir, [prepare] data_dir/system/"
                   "predict and reading options, [symmetry], [train], [predict], [report].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Directory of HISTORY.<system>.<T>K and E.<system>.<T>K [default: "
                   "data/example].")
@click.option("--system", default=None, help="System name in the file names [default: Te].")
@click.option("--sets", default=None, metavar="T,T;T,T,T",
              help="Training sets, ';' between sets [default: the seed's "
                   "673,973;673,723,973;673,723,873,973;673,723,823,873,973].")
@click.option("--predict", default=None, metavar="T[,T...]",
              help="Prediction temperature(s) [default: 773K].")
@click.option("--presets", default=None, metavar="P[,P...]",
              help="Training presets compared [default: default,seed].")
@click.option("--skip", type=click.IntRange(min=0), default=None,
              help="Drop the first N frames of each file.")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Then keep every k-th frame.")
@click.option("--seeds", default=None, metavar="S[,S...]",
              help="Repeat every run with these training seeds (validation split, initial "
                   "weights); the figures show the mean and the range.")
@click.option("--reuse", is_flag=True,
              help="Keep the runs of an earlier (interrupted) study that finished (their "
                   "run.json) with the same options; compute the rest.")
@_pipeline_options
def study_command(config_path, data_dir, system, sets, predict, presets, seeds, skip, stride,
                  reuse, work_dir, out_dir, n_features, device, optimizer, epochs, max_evals,
                  time_limit, seed, force_weight, forces, overwrite, quiet):
    """The seed's study: prediction error and time against the number of training temperatures.

    For each training set (--sets) and each preset (--presets): prepare, symmetry (once per
    set, shared by the presets), train, predict; then one table (printed and
    OUT_DIR/STUDY.csv) and two figures (OUT_DIR/STUDY_ERROR.png, STUDY_TIME.png). Each run's
    files stay under WORK_DIR/T<set>/<preset>/. Training options given here apply to every
    preset. A command of its own rather than an option of 'run': it takes a list of training
    sets and presets instead of one input selection, writes a table and per-run directories,
    and can resume (--reuse).

    \b
    hdnnp study                                   # the seed's study on data/example
    hdnnp study --data-dir mydata --system Te --sets "673,973;673,723,973" --predict 773
    hdnnp study --config scripts/example_study.toml --reuse
    """
    import warnings

    from hdnnp.stages.run import load_stage_config, resolve_stage_options
    from hdnnp.stages.study import DEFAULT_PRESETS, SEED_STUDY_SETS, run_study, study_inputs, study_table

    config = load_stage_config(config_path) if config_path else {}
    study_config = config.get("study", {})
    inputs = study_inputs(config_path, data_dir=data_dir, system=system, predict=predict,
                          skip=skip, stride=stride)
    opts = resolve_stage_options(config, work_dir=work_dir or study_config.get("work_dir"),
                                 out_dir=out_dir, n_features=n_features, device=device,
                                 forces=forces, default_work_dir="study", optimizer=optimizer,
                                 epochs=epochs, max_evals=max_evals, time_limit=time_limit,
                                 seed=seed, force_weight=force_weight)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_study(inputs["data_dir"], inputs["system"],
                            sets=sets or study_config.get("sets", SEED_STUDY_SETS),
                            predict=inputs["predict"],
                            presets=presets or study_config.get("presets", DEFAULT_PRESETS),
                            reading=inputs["reading"], work_dir=opts["work_dir"],
                            out_dir=opts["out_dir"], symmetry_options=opts["symmetry_options"],
                            train_overrides=opts["train_overrides"], device=opts["device"],
                            forces=opts["forces"], seeds=_parse_seeds(seeds),
                            overwrite=overwrite, reuse=reuse, quiet=quiet, log=click.echo)
    _echo_warnings(caught)
    click.echo("Study: mean prediction error of the prediction set, per training set and preset")
    click.echo(study_table(summary["rows"]))
    click.echo(f"Study wall time {summary['wall_time_s']:.1f} s on {summary['device']}")
    click.echo(f"wrote {summary['csv']}, {', '.join(summary['figures'].values())}")


# --- MD and its analysis: commands with their stages (hdnnp/commands/) ----------------------

def _register_commands():
    from hdnnp.commands.analyze import analyze_command
    from hdnnp.commands.interop import export_command, import_command
    from hdnnp.commands.learn import learn_command
    from hdnnp.commands.md import md_command

    cli.add_command(md_command)
    cli.add_command(learn_command)
    cli.add_command(analyze_command)
    cli.add_command(export_command)
    cli.add_command(import_command)


_register_commands()


def _interrupted(exc) -> None:
    """The one line for Ctrl-C / SIGTERM, then exit 130 / 143 (128 + the signal)."""
    term = isinstance(exc, Terminated)
    click.echo(("Terminated (SIGTERM)" if term else "Interrupted") + "; no partial output was left under a final "
               "name (train with --checkpoint-every, md, learn and committees continue with --resume).", err=True)
    sys.exit(143 if term else 130)


def main(argv=None):
    """Entry point of the ``hdnnp`` console script: user errors exit 2 with one clear line."""
    import threading

    from hdnnp import interrupts

    if threading.current_thread() is threading.main_thread():
        interrupts.install()  # SIGINT -> KeyboardInterrupt, SIGTERM -> Terminated, held in compiled code
    try:
        status = cli.main(args=argv, prog_name="hdnnp", standalone_mode=False)
        if isinstance(status, int) and status:
            sys.exit(status)
    except click.exceptions.Abort as exc:  # click turns Ctrl-C (SIGINT) into Abort
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, KeyboardInterrupt):
            _interrupted(cause)
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except HdnnpError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    finally:
        from hdnnp.h5io import release_all_claims

        release_all_claims()
