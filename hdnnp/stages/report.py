"""Stage 6, report: prediction errors on screen (and JSON) and the report's figures.

Reads ``predictions.h5`` (errors, traces, parity, histograms), ``model.h5`` (learning curve)
and optionally ``symmetry.h5`` (descriptor check); writes into ``out_dir``:

    LEARNING_PROCESS.png   training sequence (reference green, prediction red) + learning curve
    FINAL_PREDICTION.png   prediction trajectory (reference green, prediction red) + error
    PARITY.png             predicted vs reference energy per atom (and force components)
    ERROR_HISTOGRAM.png    distributions of energy (and force) errors
    DESCRIPTOR_CHECK.png   d_ij vs F_ij for 1, 15, 30, all features (when symmetry.h5 is given)

The metrics are those of :mod:`hdnnp.metrics`; :func:`format_table` renders them as the
printed table, and the same numbers go to the JSON file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hdnnp import metrics, plots
from hdnnp.errors import HdnnpError
from hdnnp.h5io import atomic_output, check_can_write, open_stage_file

FIGURE_NAMES = {
    "learning_process": "LEARNING_PROCESS.png",
    "final_prediction": "FINAL_PREDICTION.png",
    "parity": "PARITY.png",
    "error_histogram": "ERROR_HISTOGRAM.png",
    "descriptor_check": "DESCRIPTOR_CHECK.png",
    "committee_spread": "COMMITTEE_SPREAD.png",
}

#: Columns of the printed table: (header, unit line, metric key).
TABLE_COLUMNS = (
    ("frames", "", "n_frames"),
    ("E MAE", "eV", "energy_mae_ev"),
    ("E RMSE", "eV", "energy_rmse_ev"),
    ("E/N MAE", "meV/atom", "energy_per_atom_mae_mev"),
    ("E/N RMSE", "meV/atom", "energy_per_atom_rmse_mev"),
    ("F MAE", "meV/Å", "force_mae_mev_per_angstrom"),
    ("F RMSE", "meV/Å", "force_rmse_mev_per_angstrom"),
    ("extrap.", "frames", "extrapolating_frames"),
    ("extrap.", "values", "extrapolation_count"),
)


def format_value(value) -> str:
    """A table cell: integers as they are, floats with 4 significant digits, ``-`` if None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def table_rows(summary: dict):
    """(set, subset, temperature, metrics) for every row of the table, in print order."""
    for set_name, per_set in summary["sets"].items():
        for subset in ("training", "validation", "all"):
            if subset in per_set:
                yield set_name, subset, "all", per_set[subset]
        if len(per_set["per_temperature"]) > 1:
            for label, m in per_set["per_temperature"].items():
                yield set_name, "all", label, m


def format_table(summary: dict) -> str:
    """The mean prediction errors as a fixed-width text table (one row per set/subset/T)."""
    head = ["set", "subset", "T (K)"] + [c[0] for c in TABLE_COLUMNS]
    units = ["", "", ""] + [c[1] for c in TABLE_COLUMNS]
    rows = [[s, sub, t] + [format_value(m.get(c[2])) for c in TABLE_COLUMNS]
            for s, sub, t, m in table_rows(summary)]
    widths = [max(len(r[i]) for r in [head, units, *rows]) for i in range(len(head))]

    def line(cells):
        left = [cells[i].ljust(widths[i]) for i in range(3)]
        right = [cells[i].rjust(widths[i]) for i in range(3, len(cells))]
        return "  ".join(left + right).rstrip()

    rule = "-" * len(line(head))
    return "\n".join([line(head), line(units), rule, *(line(r) for r in rows)])


def format_training(training: dict) -> str:
    """One line about the learning curve of model.h5."""
    if "unavailable" in training:
        return f"Training: {training['unavailable']}"
    head = f"Training: {training['epochs']} epochs"
    if training.get("stop_reason"):
        head += f" (stopped: {training['stop_reason']})"
    parts = [head]
    if training.get("best_epoch") is not None:
        kept = f"weights of epoch {training['best_epoch']} kept"
        e = training.get("kept_val_energy_rmse_mev_per_atom")
        f = training.get("kept_val_force_rmse_mev_per_angstrom")
        if e is not None:
            kept += f": validation energy RMSE {format_value(e)} meV/atom"
            if f is not None:
                kept += f", force RMSE {format_value(f)} meV/Å"
        parts.append(kept)
    else:
        best = training.get("best_val_energy_rmse_mev_per_atom")
        if best is not None:
            parts.append(f"best validation energy RMSE {format_value(best)} meV/atom")
    if training.get("wall_time_s") is not None:
        parts.append(f"{training['wall_time_s']:.1f} s")
    return "; ".join(parts)


def format_committee(summary: dict) -> list[str]:
    """One line per set of a committee model: mean spread, mean |error|, Spearman ρ."""
    lines = []
    for name, c in (summary.get("committee") or {}).items():
        if c:
            rho = c["spearman_abs_error_vs_spread"]
            lines.append(f"Committee, {name}: mean spread of E/N {format_value(c['mean_energy_spread_mev_per_atom'])} "
                         f"meV/atom against mean |error| {format_value(c['mean_abs_energy_error_mev_per_atom'])} "
                         f"meV/atom; Spearman rho(|error|, spread) = "
                         f"{'n/a' if rho is None else f'{rho:.2f}'}")
    return lines


def extrapolation_warnings(summary: dict) -> list[str]:
    """One warning per set whose frames have scaled features outside [-1, 1]."""
    from hdnnp.model import extrapolation_message

    out = []
    for set_name, per_set in summary["sets"].items():
        m = per_set["all"]
        if m["extrapolating_frames"]:
            out.append("Warning: " + extrapolation_message(set_name, m["extrapolating_frames"], m["n_frames"],
                                                           m["extrapolation_count"]))
    return out


_ROLE_OF_STAGE = {"train": "model", "predict": "predictions", "symmetry": "symmetry"}


def classify_inputs(paths) -> dict:
    """Map positional input files to their role by the ``stage`` attribute each carries:
    ``{"model": ..., "predictions": ..., "symmetry": ...}`` (so ``hdnnp report model.h5
    predictions.h5`` works in any order). Two files of one kind are an error."""
    out = {}
    for path in paths:
        with open_stage_file(path, tuple(_ROLE_OF_STAGE)) as h5:
            stage = h5.attrs["stage"]
            stage = stage.decode() if isinstance(stage, bytes) else str(stage)
        role = _ROLE_OF_STAGE[stage]
        if role in out:
            raise HdnnpError(f"two {role} files given: {out[role]} and {path}")
        out[role] = path
    return out


def _check_inputs(model_path, predictions_path, symmetry_path) -> None:
    """Fail before any work if an input is missing or of the wrong kind."""
    for path, stage in ((predictions_path, "predict"), (model_path, "train"),
                        (symmetry_path, "symmetry")):
        if path is not None:
            open_stage_file(path, stage).close()
    if model_path is not None and predictions_path is not None:
        check_made_with(predictions_path, model_path)


def check_made_with(predictions_path, model_path) -> None:
    """Refuse to mix two runs: predictions.h5 records the SHA-256 of the model it was made with
    (its first input); ``model_path`` must be that model (the same bytes)."""
    import json

    from hdnnp.h5io import sha256_of

    with open_stage_file(predictions_path, "predict") as h5:
        try:
            recorded = json.loads(h5.attrs.get("inputs", "[]"))[0]
        except (ValueError, IndexError, TypeError):
            return  # written without provenance (by hand): nothing to compare
    if recorded.get("sha256") and recorded["sha256"] != sha256_of(model_path):
        raise HdnnpError(f"{predictions_path} was made with another model ({recorded.get('path')}, sha256 "
                         f"{recorded['sha256'][:12]}…), not {model_path}; report a model with its own predictions "
                         "(hdnnp predict --model ... first)")


def check_figure_outputs(out_dir, json_path, figure_names, overwrite: bool, inputs=()):
    """Before any work: ``--out-dir`` is a directory (or absent: created later), ``--json``
    names a file in an existing directory, neither the figures nor the JSON exist unless
    ``overwrite``, and none of them is one of the command's ``inputs``. Returns
    ``(Path(out_dir), Path(json_path) or None)``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HdnnpError(f"{out_dir}: exists and is not a directory (--out-dir)")
    if json_path is not None:
        json_path = Path(json_path)
        if json_path.is_dir():
            raise HdnnpError(f"{json_path}: is a directory, expected a JSON file name (--json)")
        if not json_path.parent.exists():
            raise HdnnpError(f"{json_path.parent}: output directory does not exist (--json)")
        check_can_write(json_path, overwrite, inputs)
    if out_dir.is_dir():
        for name in figure_names:  # figures are derived output: replaced without --overwrite
            check_can_write(out_dir / name, True, inputs)
    return out_dir, json_path


def write_json_summary(summary: dict, json_path, overwrite: bool, indent: int = 1) -> dict:
    """``json_ready(summary)``, written atomically to ``json_path`` when given (then with a
    ``json`` key naming the file); returns it."""
    summary = json_ready(summary)
    if json_path is not None:
        with atomic_output(json_path, overwrite) as tmp:
            tmp.write_text(json.dumps(summary, indent=indent) + "\n")
        summary["json"] = str(json_path)
    return summary


def json_ready(obj):
    """Replace NaN/inf by None and NumPy arrays/scalars by Python ones, recursively."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if hasattr(obj, "tolist"):
        return json_ready(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj




def run_report(model_path, predictions_path, symmetry_path=None, out_dir="data",
               json_path=None, overwrite: bool = False) -> dict:
    """Compute the metrics, write the figures into ``out_dir`` (created if missing) and,
    with ``json_path``, the metrics as JSON. ``model_path`` may be None (no learning curve).

    Returns the summary of :func:`hdnnp.metrics.summarize` plus ``model``, ``training``
    (:func:`hdnnp.metrics.training_summary`), ``descriptor_check`` (n_features, correlation)
    and ``figures`` (name -> path written). Existing figures or JSON are replaced only with
    ``overwrite`` (checked before any work).
    """
    _check_inputs(model_path, predictions_path, symmetry_path)
    out_dir, json_path = check_figure_outputs(out_dir, json_path, FIGURE_NAMES.values(), overwrite,
                                              inputs=[model_path, predictions_path, symmetry_path])

    sets = metrics.load_predictions(predictions_path)
    summary = {"predictions": str(Path(predictions_path).resolve())}
    summary.update(metrics.summarize_sets(sets))
    log = None
    if model_path is not None:
        log = metrics.read_training_log(model_path)
        summary["model"] = str(Path(model_path).resolve())
        summary["training"] = (metrics.training_summary(log) if log is not None
                               else {"unavailable": "an imported potential (hdnnp import): no learning curve"})
    check = None
    if symmetry_path is not None:
        check = metrics.read_descriptor_check(symmetry_path)
        summary["descriptor_check"] = (
            {"unavailable": "no descriptor check in symmetry.h5 (no training forces)"}
            if check is None else
            {"n_features": check["n_features"], "labels": check["labels"],
             "correlation": check["correlation"]})

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {}

    def save(name, fig):
        figures[name] = str(plots.save_figure(fig, out_dir / FIGURE_NAMES[name]))

    per_set = summary["sets"]
    if "train" in sets or log is not None:  # nothing to draw for a prediction-only imported potential
        save("learning_process",
             plots.learning_process_figure(sets.get("train"), log, per_set.get("train")))
    if "predict" in sets and len(sets["predict"]):
        save("final_prediction", plots.final_prediction_figure(sets["predict"], per_set["predict"]))
    save("parity", plots.parity_figure(sets, summary))
    save("error_histogram", plots.error_histogram_figure(sets, summary))
    if check is not None:
        save("descriptor_check", plots.descriptor_check_figure(check))
    if "committee" in summary:
        save("committee_spread", plots.committee_spread_figure(sets, summary))
    summary["figures"] = figures
    return write_json_summary(summary, json_path, overwrite, indent=2)
