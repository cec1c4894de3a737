"""``hdnnp run``: prepare -> symmetry -> train -> predict -> report in one process.

:func:`run_pipeline` calls the library function of every stage in turn (no subprocesses) and
leaves the intermediates in ``work_dir`` under the names the single-stage commands use by
default, so any stage can be re-run alone afterwards::

    <work_dir>/prepared.h5      hdnnp prepare   (train + predict frame sets)
    <work_dir>/symmetry.h5      hdnnp symmetry  (selection and scaling fitted on the training set)
    <work_dir>/model.h5         hdnnp train
    <work_dir>/predictions.h5   hdnnp predict   (every set of symmetry.h5)
    <work_dir>/metrics.json     hdnnp report --json (the printed table, as numbers)
    <out_dir>/*.png             hdnnp report    (LEARNING_PROCESS.png, FINAL_PREDICTION.png, ...)

Existing outputs (intermediates and figures) are never replaced silently: the run stops
before any work and names them unless ``overwrite`` is true (which is then passed to every
stage).

Study files (TOML, ``--config``) hold one table per stage; command-line options override
them. ``[prepare]`` is read by :func:`hdnnp.inputs.load_config`; the others by
:func:`load_stage_config`::

    [prepare]                  # inputs and reading options (hdnnp prepare)
    data_dir = "example"       # relative to the study file's directory
    system = "Te"
    train = "673K,723K,823K,873K,973K"
    predict = "773K"

    [symmetry]                 # hdnnp symmetry: n_features, selection, cutoff, device, ...
    n_features = 30

    [train]                    # hdnnp train: preset, then any training option by name
    preset = "default"         # default | seed | fast
    optimizer = "lbfgs"
    epochs = 200
    time_limit = 300           # s

    [predict]
    forces = true              # default: when the data have forces

    [report]
    out_dir = "figures"        # relative to the study file's directory

    [run]
    work_dir = "run1"          # relative to the study file's directory

    [study]                    # hdnnp study only
    sets = ["673,973", "673,723,973"]
    presets = ["default", "seed"]

Keys may be spelled with ``-`` or ``_``; an unknown key is an error (catches typos).
"""

from __future__ import annotations

import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from hdnnp.errors import HdnnpError
from hdnnp.h5io import check_not_an_input

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: File names of the intermediates in the work directory (the single-stage defaults).
INTERMEDIATES = {
    "prepared": "prepared.h5",
    "symmetry": "symmetry.h5",
    "model": "model.h5",
    "predictions": "predictions.h5",
}
#: The report's numbers as JSON, next to the intermediates.
METRICS_JSON = "metrics.json"

#: The bundled example: liquid Te, 32-atom boxes, GFN1-xTB (what ``hdnnp run`` does with no
#: input options); ``data_dir`` is relative to the current directory (the clone's root).
EXAMPLE_INPUTS = {
    "data_dir": "data/example",
    "system": "Te",
    "train": "673K,723K,823K,873K,973K",
    "predict": "773K",
}

#: Keys of the stage tables of a study file (besides ``[prepare]``) and their value types.
SYMMETRY_KEYS = {"n_features": int, "selection": str, "cutoff": float, "device": str,
                 "chunk_frames": int, "derivatives": str, "fit_atoms": int, "grid": str, "grid_points": int}
PREDICT_KEYS = {"forces": bool}
REPORT_KEYS = {"out_dir": str}
RUN_KEYS = {"work_dir": str}
STUDY_KEYS = {"sets": (str, list), "presets": (str, list), "work_dir": str}
#: Existing outputs named at most in the refusal to overwrite.
_MAX_NAMED = 6
#: Keys whose values are paths, taken relative to the study file's directory.
_PATH_KEYS = ("out_dir", "work_dir")


def train_keys() -> dict:
    """Keys of ``[train]`` and their types: ``preset`` and every field of
    :class:`hdnnp.training.presets.TrainOptions` (typed as its default value)."""
    from hdnnp.training.presets import TrainOptions

    defaults = TrainOptions()
    keys = {"preset": str}
    for f in fields(TrainOptions):
        kind = type(getattr(defaults, f.name))
        keys[f.name] = list if kind is tuple else kind if kind in _TYPE_NAMES else None
    return keys


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true/false", str: "a string",
               list: "a list"}


def _check_value(path, table: str, key: str, value, kind):
    """``value`` if it has the type ``kind`` (an int is a float too; None: any); else
    HdnnpError."""
    if kind is None:
        return value
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join(_TYPE_NAMES[k] for k in kinds)
        raise HdnnpError(f"{path}: [{table}] {key} = {value!r}: expected {names}")
    return value


def load_stage_config(path) -> dict:
    """The stage tables of a TOML study file: ``{"symmetry": {...}, "train": {...},
    "predict": {...}, "report": {...}, "run": {...}, "study": {...}}`` (missing tables are
    empty; ``[prepare]`` is left to :func:`hdnnp.inputs.load_config`).

    ``out_dir`` and ``work_dir`` are made absolute relative to the study file's directory.
    Raises :class:`HdnnpError` for unreadable TOML, a table that is not a table, or an
    unknown key.
    """
    path = Path(path)
    if not path.is_file():
        raise HdnnpError(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}, "
                         "expected a TOML study file")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise HdnnpError(f"{path}: not valid TOML ({exc})") from None
    known = {"symmetry": SYMMETRY_KEYS, "train": train_keys(), "predict": PREDICT_KEYS,
             "report": REPORT_KEYS, "run": RUN_KEYS, "study": STUDY_KEYS}
    unknown = [name for name in data if name not in known and name != "prepare"]
    if unknown:
        raise HdnnpError(f"{path}: unknown table or key {', '.join(map(repr, unknown))}; "
                         f"known tables: prepare, {', '.join(known)}")
    base = path.resolve().parent
    out = {}
    for table, keys in known.items():
        raw = data.get(table, {})
        if not isinstance(raw, dict):
            raise HdnnpError(f"{path}: '{table}' must be a table ([{table}])")
        values = {}
        for key, value in raw.items():
            norm = key.replace("-", "_")
            if norm not in keys:
                raise HdnnpError(f"{path}: unknown key '{key}' in [{table}]; known: "
                                 f"{', '.join(keys)}")
            value = _check_value(path, table, key, value, keys[norm])
            if norm in _PATH_KEYS:
                value = str(base / value)
            values[norm] = value
        out[table] = values
    return out


def merge(table: dict, overrides: dict) -> dict:
    """``table`` overridden by every value of ``overrides`` that is not None."""
    merged = dict(table)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return merged


def resolve_stage_options(config: dict | None = None, *, work_dir=None, out_dir=None,
                          n_features=None, device=None, preset=None, forces=None,
                          default_work_dir=".", **train_overrides) -> dict:
    """Options of :func:`run_pipeline` from a study file's stage tables
    (:func:`load_stage_config`) overridden by command-line values (None = not given).

    Returns ``{"work_dir", "out_dir", "device", "symmetry_options", "train_options", "forces",
    "preset"}``; ``train_options`` is the preset (``--preset``, else ``[train] preset``, else
    ``default``) with ``[train]`` and then the command-line training options applied.
    """
    from hdnnp.training.presets import make_options

    config = config or {}
    symmetry_options = merge(config.get("symmetry", {}), {"n_features": n_features,
                                                          "device": device})
    device = symmetry_options.pop("device", "auto")
    train_table = dict(config.get("train", {}))
    table_preset = train_table.pop("preset", None)
    preset = preset or table_preset or "default"
    train_overrides = merge(train_table, train_overrides)
    if forces is None:
        forces = config.get("predict", {}).get("forces")
    return {
        "work_dir": work_dir or config.get("run", {}).get("work_dir", default_work_dir),
        "out_dir": out_dir or config.get("report", {}).get("out_dir", "data"),
        "device": device,
        "symmetry_options": symmetry_options,
        "train_options": make_options(preset, **train_overrides),
        "train_overrides": train_overrides,
        "forces": forces,
        "preset": preset,
    }


def uses_example(input_values: dict, config_path=None) -> bool:
    """True when no input is named, neither on the command line nor in a study file's
    ``[prepare]`` table: ``hdnnp run`` then runs the bundled example (:data:`EXAMPLE_INPUTS`)."""
    from hdnnp.inputs import SELECTION_KEYS, load_config

    given = any(input_values.get(k) not in (None, (), []) for k in SELECTION_KEYS)
    if given:
        return False
    config = load_config(config_path) if config_path else {}
    return not any(k in config for k in SELECTION_KEYS if k != "format")


def example_inputs(learned: bool = False) -> dict:
    """:data:`EXAMPLE_INPUTS` as command-line values (with ``learned``, plus the learned frames
    of ``data/example/learned``, which must then exist); raises :class:`HdnnpError` (saying
    where to run or what to pass) when ``data/example`` is not under the current directory."""
    if not Path(EXAMPLE_INPUTS["data_dir"]).is_dir():
        raise HdnnpError(example_missing_message(EXAMPLE_INPUTS["data_dir"]))
    files = learned_example_files(EXAMPLE_INPUTS["data_dir"]) if learned else ()
    if learned and not files:
        raise HdnnpError(f"--learned: no learned frames in {EXAMPLE_INPUTS['data_dir']}/learned "
                         "(make them with scripts/learn_example.py)")
    return {"data_dir": EXAMPLE_INPUTS["data_dir"], "system": EXAMPLE_INPUTS["system"],
            "train": (EXAMPLE_INPUTS["train"],), "predict": (EXAMPLE_INPUTS["predict"],),
            "train_files": files}


def learned_example_files(data_dir) -> tuple:
    """``PATH@T`` of the learned frames shipped with the example (``<data_dir>/learned/
    learned.<system>.<T>K.extxyz``, made by ``scripts/learn_example.py``); empty if none."""
    import re

    out = []
    for path in sorted(Path(data_dir, "learned").glob("learned.*K.extxyz")):
        m = re.search(r"\.(\d+(?:\.\d+)?)K\.extxyz$", path.name)
        if m:
            out.append(f"{path}@{m.group(1)}K")
    return tuple(out)


def intermediate_paths(work_dir) -> dict:
    """``{"prepared": Path, "symmetry": ..., "model": ..., "predictions": ..., "metrics": ...}``."""
    work_dir = Path(work_dir)
    paths = {key: work_dir / name for key, name in INTERMEDIATES.items()}
    paths["metrics"] = work_dir / METRICS_JSON
    return paths


def check_outputs_free(paths, overwrite: bool, what: str = "hdnnp run",
                       hint: str | None = None) -> None:
    """Fail before any work if any of ``paths`` exists and ``overwrite`` is false, naming
    them (the first few) and saying what to do (``hint``)."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        named = ", ".join(existing[:_MAX_NAMED])
        if len(existing) > _MAX_NAMED:
            named += f" and {len(existing) - _MAX_NAMED} more"
        hint = hint or ("pass --overwrite to replace them, or --work-dir DIR and --out-dir "
                        "DIR to keep them (single stages can also be re-run alone, e.g. "
                        "'hdnnp train --overwrite')")
        raise HdnnpError(f"{what} would replace the outputs of an earlier run: {named}; {hint}")


def example_missing_message(data_dir) -> str:
    """Why the bundled example cannot be found, and what to do."""
    return (f"{data_dir}: the bundled example data is not here; run 'hdnnp run' from the root "
            "of the hdnnp clone (where data/example/ lives), or name your inputs with "
            "--data-dir DIR --system NAME --train T1,T2 --predict T (or --config study.toml)")


def data_has_forces(prepared_summary: dict) -> bool:
    """Whether every non-empty set of prepare's summary has forces (predict forces then)."""
    sets = [s for s in prepared_summary["sets"].values() if s["n_frames"]]
    return bool(sets) and all(s["forces"] for s in sets)


def run_pipeline(selection, reading: dict | None = None, *, work_dir=".", out_dir="data",
                 symmetry_options: dict | None = None, train_options=None, forces=None,
                 device: str = "auto", overwrite: bool = False, quiet: bool = False,
                 report: bool = True, md_check_ps: float | None = None, checks_dir=None, log=None) -> dict:
    """Run stages 2-6 on ``selection`` (an :class:`hdnnp.inputs.InputSelection`).

    ``reading``: reading options of :func:`hdnnp.stages.prepare.prepare` (skip, stride, ...);
    ``symmetry_options``: keyword arguments of :func:`hdnnp.stages.symmetry.symmetry`
    (n_features, selection, cutoff, ...; ``device`` is set from ``device``);
    ``train_options``: a :class:`hdnnp.training.presets.TrainOptions` (default preset if
    None); ``forces``: predict forces (None: when every set has forces); ``device``:
    auto | cpu | gpu, resolved once and used by symmetry, train and predict; ``report``:
    also write ``metrics.json`` and the figures into ``out_dir``; ``log``: a callable taking
    one line (what each stage is doing), e.g. ``click.echo``; ``md_check_ps``: end with the MD
    check of :mod:`hdnnp.md.check` at each prediction temperature, this many ps each (None: no
    check), writing ``md_check_<T>K.h5`` and ``out_dir/MD_CHECK.png``; ``checks_dir``: then the
    checks against direct reference MD of :mod:`hdnnp.md.reference_checks` (P(V) isotherm, NPT
    from the reference's start), writing ``check_<name>_<T>K.h5`` and
    ``out_dir/REFERENCE_CHECKS.png``.

    Returns ``{"device", "work_dir", "paths": {name: str}, "wall_time_s": {stage: s, "total":
    s}, "stages": {stage: the stage's summary}, "metrics": the report summary (when
    ``report``), "train_options": {...}}``.
    """
    from hdnnp.kernels import resolve_device
    from hdnnp.stages.prepare import prepare
    from hdnnp.stages.symmetry import symmetry
    from hdnnp.stages.train import train
    from hdnnp.training.presets import make_options

    log = log or (lambda line: None)
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise HdnnpError(f"{work_dir}: work directory does not exist")
    paths = intermediate_paths(work_dir)
    outputs = [p for k, p in paths.items() if report or k != "metrics"]
    if report:
        from hdnnp.stages.report import FIGURE_NAMES

        outputs += [Path(out_dir) / name for name in FIGURE_NAMES.values()]
    if md_check_ps is not None:
        from hdnnp.md.check import MD_CHECK_FIGURE, check_path

        outputs.append(Path(out_dir) / MD_CHECK_FIGURE)
        outputs += [check_path(work_dir, e.temperature) for e in selection.predict if np.isfinite(e.temperature)]
    if checks_dir is not None:
        from hdnnp.md.reference_checks import REFERENCE_CHECKS_FIGURE, find_checks, npt_output_path

        outputs.append(Path(out_dir) / REFERENCE_CHECKS_FIGURE)
        outputs += [npt_output_path(work_dir, r) for r in find_checks(checks_dir) if r.kind == "npt"]
    check_outputs_free(outputs, overwrite)
    for path in outputs:  # an output that is an input file is refused, --overwrite or not
        check_not_an_input(path, selection.all_paths())
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise HdnnpError(f"{out_dir}: exists and is not a directory (--out-dir)")
    device = resolve_device(device)
    options = train_options if train_options is not None else make_options("default")
    sym_kwargs = dict(symmetry_options or {})
    sym_kwargs.pop("device", None)
    times, stages = {}, {}
    t_all = time.perf_counter()

    def timed(stage, message, func, *args, **kwargs):
        log(f"[{stage}] {message}")
        t0 = time.perf_counter()
        result = func(*args, **kwargs)
        times[stage] = time.perf_counter() - t0
        stages[stage] = result
        return result

    n_train, n_predict = len(selection.train), len(selection.predict)
    prep = timed("prepare", f"reading {n_train} training and {n_predict} prediction "
                 f"trajector{'y' if n_train + n_predict == 1 else 'ies'} -> {paths['prepared']}",
                 prepare, selection, paths["prepared"], overwrite=overwrite, quiet=quiet,
                 **(reading or {}))
    log("          " + "; ".join(f"{name}: {c['n_frames']} frames, {c['n_atoms']} atoms"
                                 for name, c in prep["sets"].items()))
    with_forces = data_has_forces(prep) if forces is None else bool(forces)
    sym = timed("symmetry", f"symmetry functions on {device}, selection and scaling fitted on "
                f"the training set -> {paths['symmetry']}", symmetry, paths["prepared"],
                paths["symmetry"], device=device, overwrite=overwrite, quiet=quiet, **sym_kwargs)
    log("          " + "; ".join(f"{el}: {len(names)} of {sym['n_candidates']} candidates "
                                 "selected" for el, names in sym["selected"].items()))
    trained = timed("train", f"{options.optimizer}, hidden layers {list(options.hidden)}, "
                    f"{'energies and forces' if options.use_forces else 'energies only'} -> "
                    f"{paths['model']}", train, paths["symmetry"], paths["model"], options,
                    overwrite=overwrite, device=device, quiet=quiet)
    log(f"          best epoch {trained['best_epoch']} of {trained['epochs']} "
        f"({trained['stop_reason']}), validation energy RMSE "
        f"{trained['val_energy_rmse']:.4g} meV/atom")
    timed("predict", f"energies{' and forces' if with_forces else ''} of every set -> "
          f"{paths['predictions']}", predict_sets, paths["model"], paths["symmetry"],
          paths["predictions"], forces=with_forces, device=device, overwrite=overwrite,
          quiet=quiet)
    summary = {"device": device, "work_dir": str(work_dir),
               "paths": {k: str(p) for k, p in paths.items()},
               "train_options": options.as_attrs(), "forces": with_forces}
    if report:
        from hdnnp.stages.report import run_report

        summary["metrics"] = timed("report", f"errors and figures -> {paths['metrics']}, "
                                   f"{out_dir}/", run_report, paths["model"],
                                   paths["predictions"], paths["symmetry"], out_dir,
                                   paths["metrics"], overwrite=overwrite)
    else:
        summary["paths"].pop("metrics")
    if md_check_ps is not None and prep["sets"]["predict"]["n_frames"]:
        from hdnnp.md.check import MD_CHECK_FIGURE, md_check, md_check_figure
        from hdnnp.plots import save_figure

        results = timed("md check", f"{md_check_ps:g} ps NVT at each prediction temperature",
                        md_check, paths["model"], paths["prepared"], work_dir, time_ps=md_check_ps,
                        overwrite=overwrite, quiet=quiet, log=log)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        figure = save_figure(md_check_figure(results), Path(out_dir) / MD_CHECK_FIGURE)
        summary["md_check"] = {"results": results, "figure": str(figure)}
        summary["paths"].update({f"md_check_{r.temperature_K:g}K": r.md_path for r in results})
    if checks_dir is not None:
        from hdnnp.md.reference_checks import REFERENCE_CHECKS_FIGURE, reference_checks, reference_checks_figure
        from hdnnp.plots import save_figure

        checks = timed("reference checks", f"P(V) and NPT against the reference runs of {checks_dir}",
                       reference_checks, paths["model"], checks_dir, work_dir, overwrite=overwrite, quiet=quiet,
                       log=log)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        figure = save_figure(reference_checks_figure(checks), Path(out_dir) / REFERENCE_CHECKS_FIGURE)
        summary["reference_checks"] = {"results": checks, "figure": str(figure)}
        summary["paths"].update({f"check_{r.name}_{r.temperature_K:g}K": r.md_path for r in checks.npt})
    times["total"] = time.perf_counter() - t_all
    summary["wall_time_s"] = times
    summary["stages"] = {k: v for k, v in stages.items() if k not in ("report", "md check", "reference checks")}
    return summary


def predict_sets(model_path, symmetry_path, output_path, *, forces: bool, device: str,
                 overwrite: bool, quiet: bool) -> dict:
    """Stage 5 on every set of ``symmetry_path`` (:func:`hdnnp.stages.predict.predict`)."""
    from hdnnp.stages.predict import predict

    return predict(model_path, symmetry_path, output_path, forces=forces, device=device,
                   overwrite=overwrite, quiet=quiet)


def format_wall_times(times: dict) -> str:
    """``prepare 0.4 s, symmetry 12.1 s, ... (total 95.0 s)``."""
    parts = [f"{stage} {seconds:.1f} s" for stage, seconds in times.items() if stage != "total"]
    return ", ".join(parts) + (f" (total {times['total']:.1f} s)" if "total" in times else "")
