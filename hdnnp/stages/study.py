"""``hdnnp study``: the seed's study — prediction error and time against training temperatures.

The seed trained on 2, 3, 4 and 5 temperatures (:data:`SEED_STUDY_SETS`), always predicted
773 K, and concluded that the mean prediction error falls as training temperatures are added
while the time grows about linearly. :func:`run_study` repeats this for any list of training
sets and any training presets, and writes one table (:func:`study_table`, CSV) and two
figures (``STUDY_ERROR.png``, ``STUDY_TIME.png``).

What is shared and what is not (correctness first):

* per training set, ``prepare`` and ``symmetry`` run once and are shared by every preset: the
  feature selection (CUR/FPS) and the ranging to [-1, 1] are fitted on that set's training
  frames only, exactly as ``hdnnp run`` would, so a preset sees the same descriptors it would
  see in a run of its own;
* ``train`` and ``predict`` run once per (set, preset);
* not shared across training sets: the descriptors of the prediction frames (773 K) and of
  the training temperatures common to several sets. Their *raw* candidate values are the same,
  but the selected, scaled values and their derivatives depend on the set's selection and
  scaling, and the raw pass is a small part of the time, so they are recomputed rather than
  cached. Measured on the bundled example (2-core CPU): symmetry of a whole set (300-600
  frames of 32 atoms, the 100 prediction frames included) took 4-6 s, training 25-100 s per
  run; caching the 773 K raw values would save about 1 s per set.

Layout under ``work_dir`` (default ``study/``)::

    <work_dir>/T673_973/prepared.h5, symmetry.h5           shared by the presets
    <work_dir>/T673_973/<preset>/model.h5, predictions.h5, metrics.json, run.json
    (<preset>-seed<k>/ instead, one per training seed, with several ``seeds``)

``run.json`` holds the run's table row; with ``reuse=True`` a run whose ``run.json`` exists is
taken from it instead of being recomputed (to finish an interrupted study), if it was trained
with the same options. Without ``reuse`` or ``overwrite`` the study stops before any work if
any of these files or of the table and figures in ``out_dir`` exists; with ``reuse`` the table
and figures are redrawn from the runs.

Times are wall-clock seconds of each stage's library call in this process; a row's
``total_s`` = prepare + symmetry + train + predict, i.e. what one ``hdnnp run`` of that set
and preset costs (prepare and symmetry are counted in every preset's row although they ran
once).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from hdnnp.errors import HdnnpError
from hdnnp.inputs import format_temperature, parse_temperature_list
from hdnnp.stages.report import json_ready

#: The seed's training sets (K); it always predicted 773 K.
SEED_STUDY_SETS = ((673.0, 973.0), (673.0, 723.0, 973.0), (673.0, 723.0, 873.0, 973.0),
                   (673.0, 723.0, 823.0, 873.0, 973.0))
SEED_PREDICT = (773.0,)
DEFAULT_PRESETS = ("default", "seed")

STUDY_CSV = "STUDY.csv"
STUDY_ERROR_PNG = "STUDY_ERROR.png"
STUDY_TIME_PNG = "STUDY_TIME.png"

#: Columns of the study table (CSV header = keys), with the printed header and unit.
COLUMNS = (
    ("training_temperatures", "training T", "K"),
    ("n_temperatures", "n_T", ""),
    ("preset", "preset", ""),
    ("seed", "seed", ""),
    ("optimizer", "optimizer", ""),
    ("fitted_to", "fit to", ""),
    ("train_frames", "fit", "frames"),
    ("validation_frames", "val.", "frames"),
    ("predict_frames", "pred.", "frames"),
    ("energy_per_atom_mae_mev", "E/N MAE", "meV/atom"),
    ("energy_per_atom_rmse_mev", "E/N RMSE", "meV/atom"),
    ("energy_mae_ev", "E MAE", "eV"),
    ("energy_rmse_ev", "E RMSE", "eV"),
    ("force_rmse_mev_per_angstrom", "F RMSE", "meV/Å"),
    ("extrapolating_frames", "extrap.", "frames"),
    ("extrapolation_count", "extrap.", "values"),
    ("prepare_s", "prepare", "s"),
    ("symmetry_s", "symmetry", "s"),
    ("train_s", "train", "s"),
    ("predict_s", "predict", "s"),
    ("total_s", "total", "s"),
    ("device", "device", ""),
)


def parse_sets(text) -> list[tuple[float, ...]]:
    """Training sets from ``"673,973;673,723,973"`` (``;`` between sets, ``,`` within; ``K``
    optional) or a list of such strings / lists. Each set is sorted; duplicates are errors."""
    if isinstance(text, str):
        items = [part for part in text.split(";") if part.strip()]
    else:
        items = list(text)
    sets = []
    for item in items:
        temps = parse_temperature_list(item)
        if not temps:
            raise HdnnpError(f"empty training set in {text!r}")
        if len(set(temps)) != len(temps):
            raise HdnnpError(f"a temperature is listed twice in the training set {item!r}")
        sets.append(tuple(sorted(temps)))
    if not sets:
        raise HdnnpError("no training sets given (e.g. --sets \"673,973;673,723,973\")")
    if len(set(sets)) != len(sets):
        raise HdnnpError(f"a training set is listed twice in {text!r}")
    return sets


def set_label(temperatures) -> str:
    """``(673.0, 973.0)`` -> ``"673,973"`` (the table's training-temperature cell)."""
    return ",".join(format_temperature(t)[:-1] for t in temperatures)


def set_dirname(temperatures) -> str:
    """``(673.0, 973.0)`` -> ``"T673_973"`` (directory of the set under the work directory)."""
    return "T" + "_".join(format_temperature(t)[:-1] for t in temperatures)


def row_from_metrics(temperatures, preset: str, metrics_summary: dict, times: dict,
                     device: str, options=None, with_forces: bool = True) -> dict:
    """One table row from :func:`hdnnp.metrics.summarize` of a run's predictions.h5.

    Errors are those of the ``predict`` set; frame counts from the ``train`` set's fitted /
    validation split and the ``predict`` set; ``options`` (TrainOptions) give the optimiser
    and whether forces were fitted (``fitted_to`` = ``E`` or ``E+F``).
    """
    sets = metrics_summary["sets"]
    if "predict" not in sets or not sets["predict"]["all"]["n_frames"]:
        raise HdnnpError("the study needs prediction frames (--predict)")
    pred = sets["predict"]["all"]
    train = sets.get("train", {})
    n_val = train["validation"]["n_frames"] if "validation" in train else 0
    n_train = train["all"]["n_frames"] - n_val if "all" in train else 0
    row = {
        "training_temperatures": set_label(temperatures),
        "n_temperatures": len(temperatures),
        "preset": preset,
        "seed": None if options is None else options.seed,
        "optimizer": None if options is None else options.optimizer,
        "fitted_to": None if options is None else
        ("E+F" if options.use_forces and with_forces else "E"),
        "train_frames": n_train,
        "validation_frames": n_val,
        "predict_frames": pred["n_frames"],
    }
    for key in ("energy_per_atom_mae_mev", "energy_per_atom_rmse_mev", "energy_mae_ev",
                "energy_rmse_ev", "force_rmse_mev_per_angstrom", "extrapolating_frames",
                "extrapolation_count"):
        row[key] = pred[key]
    for stage in ("prepare", "symmetry", "train", "predict"):
        row[f"{stage}_s"] = float(times[stage])
    row["total_s"] = sum(row[f"{s}_s"] for s in ("prepare", "symmetry", "train", "predict"))
    row["device"] = device
    return row


def study_inputs(config_path=None, **given) -> dict:
    """Inputs of a study: ``data_dir``, ``system``, ``predict`` and the reading options
    (``reading``: skip, stride, ...) from a study file's ``[prepare]`` table overridden by the
    ``given`` command-line values (None = not given). With neither ``data_dir`` nor
    ``system`` anywhere, the bundled example (``data/example``, Te, 773 K). ``[prepare]``
    ``train`` is ignored: the study's sets replace it.
    """
    from hdnnp.inputs import PREPARE_KEYS, load_config, merge_options
    from hdnnp.stages.run import EXAMPLE_INPUTS, example_missing_message

    inputs = merge_options(load_config(config_path) if config_path else {}, given)
    if "data_dir" not in inputs and "system" not in inputs:
        if not Path(EXAMPLE_INPUTS["data_dir"]).is_dir():
            raise HdnnpError(example_missing_message(EXAMPLE_INPUTS["data_dir"]))
        inputs.update(data_dir=EXAMPLE_INPUTS["data_dir"], system=EXAMPLE_INPUTS["system"])
    if "system" not in inputs:
        raise HdnnpError("--system is needed with --data-dir (files are HISTORY.<system>.<T>K)")
    return {"data_dir": inputs.get("data_dir", "."), "system": inputs["system"],
            "predict": inputs.get("predict", SEED_PREDICT),
            "reading": {k: inputs[k] for k in PREPARE_KEYS if k in inputs}}


def run_study(data_dir, system: str, sets=SEED_STUDY_SETS, predict=SEED_PREDICT,
              presets=DEFAULT_PRESETS, *, reading: dict | None = None, work_dir="study",
              out_dir="data", symmetry_options: dict | None = None,
              train_overrides: dict | None = None, device: str = "auto",
              forces: bool | None = None, seeds=None, overwrite: bool = False,
              reuse: bool = False, quiet: bool = False, log=None) -> dict:
    """Run prepare + symmetry per training set and train + predict per (set, preset).

    ``data_dir``/``system``/``predict``: the DL_POLY inputs ``HISTORY.<system>.<T>K`` (as in
    :func:`hdnnp.inputs.resolve_inputs`); ``sets``: training sets (K) as tuples or as text for
    :func:`parse_sets`; ``presets``: names of :data:`hdnnp.training.presets.PRESETS`;
    ``train_overrides``: training options applied on top of every preset (e.g. ``epochs``,
    ``time_limit``, ``max_evals``); ``reading``, ``symmetry_options``, ``device``, ``forces``
    as in :func:`hdnnp.stages.run.run_pipeline`; ``seeds``: training seeds, one run per seed
    (split, initial weights; the figures then show the mean and the range over the seeds).
    Every input file of every set is checked before any work.

    Writes ``<out_dir>/STUDY.csv``, ``STUDY_ERROR.png``, ``STUDY_TIME.png`` and returns
    ``{"rows": [row, ...], "csv": path, "figures": {...}, "device": ..., "wall_time_s": s}``.
    """
    from hdnnp.inputs import resolve_inputs
    from hdnnp.kernels import resolve_device
    from hdnnp.metrics import summarize
    from hdnnp.stages.prepare import prepare
    from hdnnp.stages.run import check_outputs_free, data_has_forces, predict_sets
    from hdnnp.stages.symmetry import symmetry
    from hdnnp.stages.train import train
    from hdnnp.training.presets import make_options

    log = log or (lambda line: None)
    sets = parse_sets(sets)
    presets = presets.split(",") if isinstance(presets, str) else list(presets)
    presets = [p.strip() for p in presets if p.strip()]
    if not presets:
        raise HdnnpError("no training preset given (--presets default,seed)")
    overrides = dict(train_overrides or {})
    if seeds is not None and len(seeds) and "seed" in overrides:
        raise HdnnpError("give either the training seed (--seed) or several seeds (--seeds)")
    seeds = list(seeds) if seeds is not None and len(seeds) else [overrides.get("seed")]
    # one run per (preset, training seed); with one seed the run directory is the preset's name
    runs = [(p, seed) for p in presets for seed in seeds]
    options = {(p, seed): make_options(p, **{**overrides, "seed": seed}) for p, seed in runs}

    def run_name(p, seed):
        return p if len(seeds) == 1 else f"{p}-seed{seed}"

    predict = parse_temperature_list(predict)
    selections = {s: resolve_inputs(data_dir=data_dir, system=system, train=list(s),
                                    predict=predict) for s in sets}
    if not all(sel.predict for sel in selections.values()):
        raise HdnnpError("the study needs a prediction temperature (--predict)")
    work_dir, out_dir = Path(work_dir), Path(out_dir)
    device = resolve_device(device)
    csv_path = out_dir / STUDY_CSV
    # the table and figures summarise the runs: --reuse redraws them from the finished runs
    summaries = [csv_path, out_dir / STUDY_ERROR_PNG, out_dir / STUDY_TIME_PNG]
    outputs = list(summaries)
    for s in sets:
        set_dir = work_dir / set_dirname(s)
        outputs += [set_dir / "prepared.h5", set_dir / "symmetry.h5"]
        for run in runs:
            outputs += [set_dir / run_name(*run) / name for name in
                        ("model.h5", "predictions.h5", "metrics.json", "run.json")]
    if not reuse:
        check_outputs_free(outputs, overwrite, what="hdnnp study",
                           hint="pass --reuse to keep the finished runs and compute the rest, "
                                "--overwrite to recompute everything, or --work-dir DIR")
    sym_kwargs = {k: v for k, v in (symmetry_options or {}).items() if k != "device"}
    t_all = time.perf_counter()
    rows = []
    n_runs = len(sets) * len(runs)
    for i_set, s in enumerate(sets):
        set_dir = work_dir / set_dirname(s)
        tag = f"[{set_label(s)} K]"
        record_paths = {run: set_dir / run_name(*run) / "run.json" for run in runs}
        done = {run: _load_record(record_paths[run], s, run[0], options[run]) if reuse else None
                for run in runs}
        if all(done.values()):
            log(f"{tag} reusing the finished runs in {set_dir}")
            rows += [done[run] for run in runs]
            continue
        set_dir.mkdir(parents=True, exist_ok=True)
        shared = {"prepare": set_dir / "prepared.h5", "symmetry": set_dir / "symmetry.h5"}
        times = {}
        log(f"{tag} set {i_set + 1}/{len(sets)}: prepare -> {shared['prepare']}")
        t0 = time.perf_counter()
        prep = prepare(selections[s], shared["prepare"], overwrite=overwrite or reuse,
                       quiet=quiet, **(reading or {}))
        times["prepare"] = time.perf_counter() - t0
        log(f"{tag} symmetry ({device}) -> {shared['symmetry']}")
        t0 = time.perf_counter()
        symmetry(shared["prepare"], shared["symmetry"], device=device,
                 overwrite=overwrite or reuse, quiet=quiet, **sym_kwargs)
        times["symmetry"] = time.perf_counter() - t0
        with_forces = data_has_forces(prep) if forces is None else bool(forces)
        for run in runs:
            name = run_name(*run)
            if done[run]:
                log(f"{tag} {name}: reusing {record_paths[run]}")
                rows.append(done[run])
                continue
            run_dir = set_dir / name
            run_dir.mkdir(exist_ok=True)
            k = len(rows) + 1
            log(f"{tag} run {k}/{n_runs}, {name}: train ({options[run].optimizer}) -> "
                f"{run_dir / 'model.h5'}")
            t0 = time.perf_counter()
            train(shared["symmetry"], run_dir / "model.h5", options[run],
                  overwrite=overwrite or reuse, device=device, quiet=quiet)
            run_times = dict(times, train=time.perf_counter() - t0)
            log(f"{tag} run {k}/{n_runs}, {name}: predict -> {run_dir / 'predictions.h5'}")
            t0 = time.perf_counter()
            predict_sets(run_dir / "model.h5", shared["symmetry"], run_dir / "predictions.h5",
                         forces=with_forces, device=device, overwrite=overwrite or reuse,
                         quiet=quiet)
            run_times["predict"] = time.perf_counter() - t0
            summary = summarize(run_dir / "predictions.h5")
            _write_json(run_dir / "metrics.json", summary)
            row = row_from_metrics(s, run[0], summary, run_times, device, options[run],
                                   prep["sets"]["train"]["forces"])
            _write_json(record_paths[run], {"row": row, "train_options": options[run].as_attrs()})
            rows.append(row)
            log(f"{tag} {name}: E/N RMSE {_fmt(row['energy_per_atom_rmse_mev'])} meV/atom, "
                f"F RMSE {_fmt(row['force_rmse_mev_per_angstrom'])} meV/Å, "
                f"{row['total_s']:.1f} s")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(csv_path, rows, overwrite=overwrite or reuse)
    figures = write_figures(rows, out_dir, ", ".join(f"{t:g} K" for t in predict),
                            overwrite=overwrite or reuse)
    return {"rows": rows, "csv": str(csv_path), "figures": figures, "device": device,
            "presets": presets, "wall_time_s": time.perf_counter() - t_all}


def _load_record(path: Path, temperatures, preset: str, options) -> dict | None:
    """The row stored in ``run.json`` if it is of this set and preset and was trained with
    the same options (``options``: TrainOptions), else None (the run is then recomputed)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        row, stored = record["row"], record["train_options"]
    except (ValueError, KeyError, TypeError):
        return None
    if row.get("training_temperatures") != set_label(temperatures) or row.get("preset") != preset:
        return None
    if stored != json.loads(json.dumps(options.as_attrs())):
        return None
    return row


def _write_json(path: Path, obj) -> None:
    from hdnnp.h5io import atomic_output

    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(json_ready(obj), indent=2) + "\n")


def _fmt(value) -> str:
    from hdnnp.stages.report import format_value

    return format_value(value)


def write_csv(path, rows, overwrite: bool = False) -> None:
    """The study table as CSV (header = :data:`COLUMNS` keys; empty cell = undefined)."""
    from hdnnp.h5io import atomic_output

    with atomic_output(Path(path), overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([c[0] for c in COLUMNS])
            for row in rows:
                writer.writerow(["" if row.get(key) is None else
                                 (f"{row[key]:.6g}" if isinstance(row[key], float) else row[key])
                                 for key, _, _ in COLUMNS])


def read_csv(path) -> list[dict]:
    """Rows of a study CSV with numbers parsed (None for empty cells)."""
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            parsed = {}
            for key, value in row.items():
                if value == "":
                    parsed[key] = None
                elif key in ("training_temperatures", "preset", "device", "optimizer",
                             "fitted_to"):
                    parsed[key] = value
                else:
                    number = float(value)
                    parsed[key] = int(number) if number.is_integer() and not key.endswith(
                        ("_s", "_mev", "_ev", "_angstrom")) else number
            out.append(parsed)
    return out


def study_table(rows) -> str:
    """The study table as fixed-width text (the printed form of STUDY.csv)."""
    from hdnnp.stages.report import format_value

    head = [c[1] for c in COLUMNS]
    units = [c[2] for c in COLUMNS]
    body = []
    for row in rows:
        cells = []
        for key, _, _ in COLUMNS:
            value = row.get(key)
            cells.append(f"{value:.1f}" if key.endswith("_s") and value is not None
                         else format_value(value) if not isinstance(value, str) else value)
        body.append(cells)
    widths = [max(len(r[i]) for r in [head, units, *body]) for i in range(len(head))]
    left = {i for i, (key, _, _) in enumerate(COLUMNS)
            if key in ("training_temperatures", "preset", "optimizer", "fitted_to", "device")}

    def line(cells):
        return "  ".join(c.ljust(widths[i]) if i in left else c.rjust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    return "\n".join([line(head), line(units), "-" * len(line(head)), *map(line, body)])


# --- figures ---------------------------------------------------------------------------------

_PRESET_STYLE = {"default": ("tab:blue", "o"), "seed": ("tab:red", "s"), "fast": ("tab:green", "^")}


def _by_preset(rows):
    """(legend label, rows sorted by number of temperatures, colour, marker, x shift) per
    preset."""
    presets = list(dict.fromkeys(r["preset"] for r in rows))
    for i, p in enumerate(presets):
        sel = sorted((r for r in rows if r["preset"] == p), key=lambda r: r["n_temperatures"])
        color, marker = _PRESET_STYLE.get(p, (None, "D"))
        label = f"preset {p}"
        if sel[0].get("optimizer"):
            label += f" ({sel[0]['optimizer']}, fit to {sel[0]['fitted_to']})"
        yield label, sel, color, marker, 0.06 * (i - (len(presets) - 1) / 2)


def _values(rows, key):
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows])


def _per_n(rows, key):
    """(numbers of temperatures, mean, mean - min, max - mean) of ``key`` over the runs
    (training seeds) of each number of temperatures."""
    n = _values(rows, "n_temperatures")
    y = _values(rows, key)
    xs = np.unique(n)
    groups = [y[n == x] for x in xs]
    mean = np.array([np.mean(g) for g in groups])
    low = mean - np.array([np.min(g) for g in groups])
    high = np.array([np.max(g) for g in groups]) - mean
    return xs, mean, low, high


def _plot_runs(ax, rows, key, color, marker, label, shift: float = 0.0, spread: bool = True,
               **style):
    """Mean over the seeds (line), their range (error bars) and each run (faint points),
    drawn ``shift`` to the right of the integer positions so presets do not overlap."""
    xs, mean, low, high = _per_n(rows, key)
    if spread and np.any(high + low > 0):
        ax.errorbar(xs + shift, mean, yerr=[low, high], marker=marker, color=color, label=label,
                    capsize=3, **style)
        ax.plot(_values(rows, "n_temperatures") + shift, _values(rows, key), ls="none",
                marker=marker, color=color, alpha=0.3, ms=4)
    else:
        ax.plot(xs + shift, mean, marker=marker, color=color, label=label, **style)
    return xs, mean


def _set_ticks(ax, rows):
    """x ticks at each number of temperatures, labelled with the training sets."""
    labels = {}
    for r in rows:
        labels.setdefault(r["n_temperatures"], []).append(r["training_temperatures"])
    xs = sorted(labels)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{n}\n" + "\n".join(dict.fromkeys(labels[n])) for n in xs],
                       fontsize="small")


def _seeds_note(rows) -> str:
    """Title suffix when the runs were repeated with several training seeds."""
    seeds = {r.get("seed") for r in rows}
    return f"\nmean (line) and range (bars) over {len(seeds)} training seeds" if len(seeds) > 1 else ""


def _pad_x(ax, rows, pad: float = 0.3):
    ns = [r["n_temperatures"] for r in rows]
    ax.set_xlim(min(ns) - pad, max(ns) + pad)


def study_error_figure(rows, predict_label: str = "773 K"):
    """Prediction error against the number of training temperatures, one line per preset:
    energy RMSE per atom (meV/atom, left) and force RMSE (meV/Å, right, when known); with
    several training seeds the mean over the seeds, their range as error bars."""
    from matplotlib.figure import Figure

    has_forces = any(r.get("force_rmse_mev_per_angstrom") is not None for r in rows)
    fig = Figure(figsize=(11 if has_forces else 6.5, 4.8), layout="constrained")
    axes = fig.subplots(1, 2 if has_forces else 1, squeeze=False)[0]
    panels = [("energy_per_atom_rmse_mev", "energy RMSE per atom (meV/atom)"),
              ("force_rmse_mev_per_angstrom", "force RMSE per component (meV/Å)")]
    for ax, (key, ylabel) in zip(axes, panels):
        for label, sel, color, marker, shift in _by_preset(rows):
            _plot_runs(ax, sel, key, color, marker, label, shift)
            if key == "energy_per_atom_rmse_mev":
                _plot_runs(ax, sel, "energy_per_atom_mae_mev", color, marker,
                           f"{label.split(' (')[0]}: MAE", shift, spread=False, ls=":",
                           mfc="none")
        ax.set_xlabel("number of training temperatures (training set, K)")
        _pad_x(ax, rows)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        _set_ticks(ax, rows)
        ax.legend(fontsize="small")
    fig.suptitle(f"Prediction error at {predict_label} against the training temperatures"
                 + _seeds_note(rows))
    return fig


def study_time_figure(rows):
    """Wall time against the number of training temperatures, one colour per preset: the
    whole pipeline (solid) and training alone (dashed), seconds on a log axis when the
    presets differ by more than a factor 20."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax = fig.subplots()
    for label, sel, color, marker, shift in _by_preset(rows):
        x, total = _plot_runs(ax, sel, "total_s", color, marker, f"{label}: total", shift)
        _plot_runs(ax, sel, "train_s", color, marker, f"{label.split(' (')[0]}: train only",
                   shift, spread=False, ls="--", mfc="none")
        if len(x) >= 3:
            # least-squares line t = a + b n: is the time linear in the number of temperatures?
            slope, intercept = np.polyfit(x, total, 1)
            grid = np.linspace(x.min(), x.max(), 50)
            ax.plot(grid, intercept + slope * grid, color=color, ls=":", lw=1,
                    label=f"{label.split(' (')[0]}: total, linear fit, {slope:.3g} s/temperature")
    totals = _values(rows, "total_s")
    finite = totals[np.isfinite(totals) & (totals > 0)]
    if len(finite) and finite.max() / finite.min() > 20:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    devices = ", ".join(dict.fromkeys(str(r.get("device")) for r in rows))
    ax.set_xlabel("number of training temperatures (training set, K)")
    _pad_x(ax, rows)
    ax.set_ylabel(f"wall time (s, {devices})")
    ax.grid(alpha=0.3, which="both")
    _set_ticks(ax, rows)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("Wall time against the training temperatures "
                 "(total = prepare + symmetry + train + predict)" + _seeds_note(rows))
    return fig


def write_figures(rows, out_dir, predict_label: str | None = None,
                  overwrite: bool = False) -> dict:
    """Write STUDY_ERROR.png and STUDY_TIME.png into ``out_dir``; returns name -> path."""
    from hdnnp.plots import save_figure

    out_dir = Path(out_dir)
    label = predict_label or "the prediction temperature"
    return {"error": str(save_figure(study_error_figure(rows, label), out_dir / STUDY_ERROR_PNG)),
            "time": str(save_figure(study_time_figure(rows), out_dir / STUDY_TIME_PNG))}

