"""Stage 1: which input files to read, from command-line options or a TOML study file.

Two ways to name inputs, which may be combined:

* by system and temperature (DL_POLY): ``data_dir``, ``system``, ``train = ["673K", "723K"]``,
  ``predict = ["773K"]`` resolve to ``<data_dir>/HISTORY.<system>.<T>K`` and
  ``<data_dir>/E.<system>.<T>K`` (either may carry ``.gz``);
* by file: ``train_files`` / ``predict_files``, each ``PATH`` or ``PATH@T`` (``T`` in K, e.g.
  ``run1.xyz@673K``), in any format of :data:`FILE_FORMATS` or any format ASE reads. A DL_POLY
  ``HISTORY.<x>`` file pairs with ``E.<x>`` in the same directory, and with ``STRESS.<x>``
  (reference stresses, optional: :func:`hdnnp.io.dlpoly.iter_stresses`) where that exists; its temperature is taken
  from a ``<T>K`` name ending when no ``@T`` is given. Otherwise the temperature is unknown
  (NaN).

A study file (``--config study.toml``) holds the same keys in its ``[prepare]`` table, plus
the reading options of ``hdnnp prepare`` (:data:`PREPARE_KEYS`; ``-`` or ``_`` both work)::

    [prepare]
    data_dir = "data"          # relative to the study file's directory
    system = "Te"
    train = ["673K", "723K"]   # or "673K,723K"
    predict = "773K"
    skip = 100
    energy_unit = "eV"

Command-line options override the file. Other tables (``[symmetry]``, ``[train]``, ...) and
top-level keys belong to other stages and are ignored here; an unknown key in ``[prepare]``
is an error (catches typos). Every missing or unreadable file is named, all at once, before
any work starts.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hdnnp.errors import HdnnpError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Formats read by hdnnp's own streaming readers; any other name is passed to ``ase.io``.
FILE_FORMATS = ("dlpoly", "extxyz", "n2p2")

#: Keys of the input selection (also valid in a study file).
SELECTION_KEYS = ("data_dir", "system", "train", "predict", "train_files", "predict_files", "format")
#: Reading options of ``hdnnp prepare`` (also valid in a study file).
PREPARE_KEYS = ("skip", "stride", "forces_unit", "energy_unit", "energy_column",
                "allow_missing_energies", "length_unit")

_TEMPERATURE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*K?\s*$", re.IGNORECASE)
_NAME_TEMPERATURE = re.compile(r"\.([0-9]+(?:\.[0-9]*)?)K$")


@dataclass
class InputFile:
    """One trajectory to read: its path, format, energy file (DL_POLY) and temperature (K)."""

    path: Path
    format: str | None  # "dlpoly", "extxyz", "n2p2" or an ASE format name; None: ASE guesses
    temperature: float = math.nan  # K; NaN when unknown
    energy_path: Path | None = None  # DL_POLY energy file
    stress_path: Path | None = None  # DL_POLY: the optional stress file STRESS<suffix> beside it

    @property
    def paths(self) -> list[Path]:
        return [self.path] + [p for p in (self.energy_path, self.stress_path) if p is not None]

    @property
    def label(self) -> str:
        t = "" if math.isnan(self.temperature) else f" ({format_temperature(self.temperature)})"
        return f"{self.path.name}{t}"


@dataclass
class InputSelection:
    """The resolved training and prediction inputs, in the order given."""

    train: list[InputFile] = field(default_factory=list)
    predict: list[InputFile] = field(default_factory=list)

    def sets(self) -> dict[str, list[InputFile]]:
        return {"train": self.train, "predict": self.predict}

    def all_paths(self) -> list[Path]:
        seen: dict[Path, None] = {}
        for f in self.train + self.predict:
            for p in f.paths:
                seen.setdefault(p, None)
        return list(seen)


def parse_temperature(text) -> float:
    """``673``, ``"673"``, ``"673K"``, ``"673.5 K"`` -> 673.0 (K)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _TEMPERATURE.match(str(text))
        if not m:
            raise HdnnpError(f"not a temperature: {text!r} (expected e.g. 673 or 673K)")
        value = float(m.group(1))
    if not math.isfinite(value) or value <= 0:
        raise HdnnpError(f"not a temperature: {text!r} (expected a positive number of kelvin)")
    return value


def format_temperature(t: float) -> str:
    """673.0 -> ``"673K"``, 673.5 -> ``"673.5K"`` (the file-name spelling)."""
    return f"{int(t)}K" if float(t).is_integer() else f"{t:g}K"


def parse_temperature_list(values) -> list[float]:
    """Temperatures from ``"673K,723K"``, ``["673K", 723]`` or several such strings."""
    if values is None:
        return []
    if isinstance(values, (str, int, float)):
        values = [values]
    out = []
    for v in values:
        parts = str(v).split(",") if isinstance(v, str) else [v]
        out.extend(parse_temperature(p) for p in parts if str(p).strip())
    return out


def load_config(path) -> dict:
    """Read the ``[prepare]`` table of a TOML study file (stage 1-2 keys), paths made absolute.

    ``data_dir``, ``train_files`` and ``predict_files`` are taken relative to the study file's
    directory. Returns {} when the file has no ``[prepare]`` table. Raises
    :class:`HdnnpError` for unreadable TOML or unknown keys in ``[prepare]``.
    """
    path = Path(path)
    if not path.is_file():
        raise HdnnpError(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}, "
                         f"expected a TOML study file")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise HdnnpError(f"{path}: not valid TOML ({exc})") from None
    table = data.get("prepare", {})
    if not isinstance(table, dict):
        raise HdnnpError(f"{path}: 'prepare' must be a table ([prepare])")
    config = {}
    unknown = []
    for key, value in table.items():
        norm = key.replace("-", "_")
        if norm not in SELECTION_KEYS + PREPARE_KEYS:
            unknown.append(key)
            continue
        config[norm] = value
    if unknown:
        raise HdnnpError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))} in [prepare]; known: "
                         f"{', '.join(SELECTION_KEYS + PREPARE_KEYS)}")
    base = path.resolve().parent
    if "data_dir" in config:
        config["data_dir"] = str(base / str(config["data_dir"]))
    for key in ("train_files", "predict_files"):
        if key in config:
            items = [config[key]] if isinstance(config[key], str) else list(config[key])
            config[key] = [item if Path(str(item).split("@")[0]).is_absolute() else str(base / str(item))
                           for item in items]
    return config


def merge_options(config: dict | None, overrides: dict) -> dict:
    """Study-file values overridden by every command-line value that was given.

    A value counts as not given when it is None or an empty tuple/list (click's defaults for
    unset options).
    """
    merged = dict(config or {})
    for key, value in overrides.items():
        if value is None or (isinstance(value, (tuple, list)) and len(value) == 0):
            continue
        merged[key] = value
    return merged


def _with_gz(path: Path) -> Path | None:
    """``path`` or ``path.gz``, whichever exists (plain first)."""
    for p in (path, path.with_name(path.name + ".gz")):
        if p.exists():
            return p
    return None


def _detect_format(path: Path, required: bool = True) -> str | None:
    """File format from the name; None (ASE guesses from the content) when the name says
    nothing and ``required`` is false."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.startswith("history"):
        return "dlpoly"
    if name.startswith("e.") and (path.parent / ("HISTORY" + path.name[1:])).exists():
        raise HdnnpError(f"{path}: is a DL_POLY energy file; give its trajectory "
                         f"{path.parent / ('HISTORY' + path.name[1:])} (the energies are read from {path.name} "
                         "beside it)")
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    if name == "input.data" or name.endswith(".data"):
        return "n2p2"
    if not required:
        return None
    raise HdnnpError(f"{path}: cannot tell the file format from the name; pass --format "
                     f"({', '.join(FILE_FORMATS)} or an ASE format name)")


def structure_file(item, file_format: str | None = None) -> InputFile:
    """One trajectory or structure file (``PATH[@T]``) as an :class:`InputFile`, read later by
    the same readers as ``hdnnp prepare``. The format comes from ``file_format`` or the name;
    when the name says nothing, ASE guesses it from the content. A missing file (or the energy
    file of a DL_POLY HISTORY) is an :class:`HdnnpError`."""
    missing: list[str] = []
    entry = _file_entry(item, file_format, missing, format_required=False)
    missing += [str(p) for p in entry.paths if not p.exists()]
    if missing:
        raise HdnnpError(f"missing input file(s): {', '.join(missing)}")
    from hdnnp.io.dlpoly import check_readable_file

    for p in entry.paths:
        check_readable_file(p)
    return entry


def _file_entry(item, file_format: str | None, missing: list[str], format_required: bool = True) -> InputFile:
    text = str(item)
    temperature = math.nan
    if "@" in text:
        text, t = text.rsplit("@", 1)
        temperature = parse_temperature(t)
    path = Path(text)
    fmt = file_format if file_format not in (None, "auto") else _detect_format(path, format_required)
    entry = InputFile(path=path, format=fmt, temperature=temperature)
    if fmt == "dlpoly":
        name = path.name[:-3] if path.name.endswith(".gz") else path.name
        if not name.startswith("HISTORY"):
            raise HdnnpError(f"{path}: a DL_POLY trajectory must be named HISTORY<suffix> so "
                             f"that its energy file E<suffix> can be found")
        if math.isnan(temperature):
            m = _NAME_TEMPERATURE.search(name)
            if m:
                entry.temperature = float(m.group(1))
        energy = _with_gz(path.parent / ("E" + name[len("HISTORY"):]))
        if energy is None:
            missing.append(f"{path.parent / ('E' + name[len('HISTORY'):])}[.gz] (energies for {path.name})")
        entry.energy_path = energy
        entry.stress_path = _with_gz(path.parent / ("STRESS" + name[len("HISTORY"):]))
    return entry


def resolve_inputs(data_dir=None, system=None, train=(), predict=(), train_files=(),
                   predict_files=(), format=None) -> InputSelection:  # noqa: A002 - option name
    """Resolve an input selection to existing files; every missing one is named at once.

    ``train``/``predict``: temperatures (``"673K,723K"``, ``[673, "723K"]``) of the files
    ``<data_dir>/HISTORY.<system>.<T>K`` and ``E.<system>.<T>K`` (``.gz`` accepted);
    ``train_files``/``predict_files``: ``PATH`` or ``PATH@T`` items (see module docstring);
    ``format``: ``auto`` (from the name), ``dlpoly``, ``extxyz``, ``n2p2`` or an ASE format.
    Raises :class:`HdnnpError` listing every missing, unreadable or duplicated input.
    """
    from hdnnp.io.dlpoly import check_readable_file

    missing: list[str] = []
    selection = InputSelection()
    temps = {"train": parse_temperature_list(train), "predict": parse_temperature_list(predict)}
    if (temps["train"] or temps["predict"]) and not system:
        raise HdnnpError("temperatures given without --system (files are HISTORY.<system>.<T>K)")
    base = Path(data_dir) if data_dir is not None else Path(".")
    if data_dir is not None and not base.is_dir():
        raise HdnnpError(f"{base}: data directory does not exist")
    for set_name, ts in temps.items():
        for t in ts:
            tag = f"{system}.{format_temperature(t)}"
            hist = _with_gz(base / f"HISTORY.{tag}")
            energy = _with_gz(base / f"E.{tag}")
            if hist is None:
                missing.append(f"{base / f'HISTORY.{tag}'}[.gz]")
            if energy is None:
                missing.append(f"{base / f'E.{tag}'}[.gz]")
            selection.sets()[set_name].append(
                InputFile(path=hist or base / f"HISTORY.{tag}", format="dlpoly", temperature=t,
                          energy_path=energy, stress_path=_with_gz(base / f"STRESS.{tag}")))
    for set_name, items in (("train", train_files), ("predict", predict_files)):
        if isinstance(items, str):
            items = [items]
        for item in items or ():
            selection.sets()[set_name].append(_file_entry(item, format, missing))
    if not selection.train and not selection.predict:
        raise HdnnpError("no input data: give --train/--predict temperatures (with --system) or "
                         "--train-file/--predict-file, on the command line or in the study file")
    for entry in selection.train + selection.predict:
        for p in entry.paths:
            if p.exists() or any(m.startswith(str(p)) for m in missing):
                continue
            missing.append(str(p))
    unreadable = []
    for p in selection.all_paths():
        if p.exists():
            try:
                check_readable_file(p)
            except HdnnpError as exc:
                unreadable.append(str(exc))
    problems = [f"missing: {m}" for m in dict.fromkeys(missing)] + unreadable
    if problems:
        raise HdnnpError("input files not found or not readable:\n  " + "\n  ".join(problems))
    for set_name, entries in selection.sets().items():
        seen = set()
        for e in entries:
            key = e.path.resolve()
            if key in seen:
                raise HdnnpError(f"{e.path} is listed twice in the {set_name} set")
            seen.add(key)
    return selection


def resolve_inputs_from_options(options: dict, config_path=None) -> tuple[InputSelection, dict]:
    """Merge a study file with command-line options; return the selection and reading options.

    ``options`` maps the keys of :data:`SELECTION_KEYS` and :data:`PREPARE_KEYS` to the values
    given on the command line (None / empty when not given). The second value returned holds
    the merged :data:`PREPARE_KEYS` that were set (for :func:`hdnnp.stages.prepare.prepare`).
    """
    config = load_config(config_path) if config_path else {}
    merged = merge_options(config, options)
    selection = resolve_inputs(**{k: merged[k] for k in SELECTION_KEYS if k in merged})
    reading = {k: merged[k] for k in PREPARE_KEYS if k in merged}
    return selection, reading
