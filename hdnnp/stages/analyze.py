"""Stage ``hdnnp analyze``: structure, dynamics and thermodynamics of frame sets.

Inputs are frame-set specs ``PATH[:GROUP][@T]``: ``md.h5`` (group ``trajectory``),
``prepared.h5:predict``, ``prepared.h5:train@773`` (only frames whose ``frames/temperature``
is 773 K), ``symmetry.h5:train@773``. For each: g(r) per element pair
(:mod:`hdnnp.analysis.rdf`), bond-angle distribution (:mod:`hdnnp.analysis.adf`), MSD and D
(:mod:`hdnnp.analysis.msd`; one trajectory only: same atoms, one source file, increasing
step), and block-averaged means (:mod:`hdnnp.analysis.blocking`) of the density (g/cm³), the
pressure (GPa, from ``frames/stress`` where present), the potential energy per atom
(eV/atom) and the temperature (K: instantaneous in md.h5, nominal in reference sets). The
lag axis is ``frames/time`` (ps) where present and evenly spaced, else the frame index
(reference sets: the DL_POLY timestep is not stored). With a reference, the first g(r) peaks
and ∫|Δg(r)| dr are compared. Figures RDF.png, ADF.png, MSD.png, TIME_SERIES.png and an
optional JSON summary; nothing is written when an input is bad.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hdnnp.analysis import figures
from hdnnp.analysis.adf import DEFAULT_BOND_CUTOFF, ADFAccumulator
from hdnnp.analysis.blocking import block_average, format_mean_error
from hdnnp.analysis.msd import (ANGSTROM2_PER_PS_IN_CM2_PER_S, Unwrapper, diffusion_coefficient,
                                mean_square_displacement)
from hdnnp.analysis.observables import cell_volume, mass_density, pressure_gpa
from hdnnp.analysis.rdf import RDFAccumulator, first_peak, integrated_abs_difference
from hdnnp.elements import symbol
from hdnnp.errors import HdnnpError
from hdnnp.h5io import iter_frame_chunks, open_stage_file
from hdnnp.progress import Progress
from hdnnp.stages.report import check_figure_outputs, write_json_summary

FIGURE_NAMES = {"rdf": "RDF.png", "adf": "ADF.png", "msd": "MSD.png",
                "time_series": "TIME_SERIES.png"}
#: Per-frame series, block-averaged: g/cm³, GPa, eV/atom, K.
SERIES = ("density_g_per_cm3", "pressure_gpa", "energy_per_atom_ev", "temperature_k")
DEFAULT_GROUP = {"md": "trajectory"}
_SPEC = re.compile(r"^(?P<rest>.+?)(?:@(?P<t>[0-9]+(?:\.[0-9]*)?)\s*K?)?$")


@dataclass
class FrameSetSpec:
    """``text`` as given; ``path``; ``group`` (None: the file kind's default); ``temperature``
    (K) or None."""

    text: str
    path: Path
    group: str | None
    temperature: float | None


def parse_spec(text: str) -> FrameSetSpec:
    """``PATH[:GROUP][@T]`` -> :class:`FrameSetSpec` (``@773`` or ``@773K``)."""
    match = _SPEC.match(text.strip())
    if not match:
        raise HdnnpError(f"'{text}': expected PATH[:GROUP][@T], e.g. prepared.h5:train@773")
    rest, t = match.group("rest"), match.group("t")
    path, group = rest, None
    if ":" in rest:
        head, tail = rest.rsplit(":", 1)
        if head and tail:
            path, group = head, tail
    return FrameSetSpec(text, Path(path), group, None if t is None else float(t))


def select_frames(spec: FrameSetSpec, h5, skip: int = 0, stride: int = 1):
    """Open the frame-set group of ``spec`` in ``h5`` and choose its frames.

    Returns ``(group, index)``: the h5py group and the sorted frame indices kept (temperature
    filter, then the first ``skip`` dropped, then every ``stride``-th). Raises
    :class:`HdnnpError` naming the spec for an unknown group, no frames or non-periodic frames.
    """
    stage = h5.attrs["stage"]
    stage = stage.decode() if isinstance(stage, bytes) else str(stage)
    name = spec.group or DEFAULT_GROUP.get(stage)
    sets = [k for k in h5 if isinstance(h5[k], h5py.Group) and "frames/atom_offset" in h5[k]]
    if name is None:
        raise HdnnpError(f"{spec.path}: name the frame set, e.g. {spec.path}:"
                         f"{(sets or ['train'])[0]} (frame sets: {', '.join(sets) or 'none'})")
    if name not in sets:
        raise HdnnpError(f"{spec.path}: no frame set '{name}' (frame sets: "
                         f"{', '.join(sets) or 'none'})")
    group = h5[name]
    for member in ("frames/cell", "frames/pbc", "frames/energy", "frames/temperature",
                   "frames/step", "atoms/positions", "atoms/species"):
        if member not in group:
            raise HdnnpError(f"{spec.path}: frame set '{name}' lacks {member} (incomplete file)")
    n_frames = len(group["frames/atom_offset"]) - 1
    index = np.arange(n_frames)
    if n_frames == 0:
        raise HdnnpError(f"{spec.text}: the frame set '{name}' holds no frames")
    if spec.temperature is not None:
        temperature = group["frames/temperature"][:]
        index = index[np.isclose(temperature, spec.temperature, rtol=0.0, atol=1e-6)]
        if len(index) == 0:
            found = np.unique(temperature[np.isfinite(temperature)])[:12]
            found = ", ".join(f"{t:g}" for t in found)
            raise HdnnpError(f"{spec.text}: no frames at {spec.temperature:g} K in '{name}' "
                             f"(temperatures: {found or 'none'})")
    index = index[skip::stride]
    if len(index) == 0:
        raise HdnnpError(f"{spec.text}: no frames left after --skip {skip}")
    if not group["frames/pbc"][:][index].all():
        raise HdnnpError(f"{spec.text}: frames are not periodic in x, y and z; the RDF and the "
                         "density need a cell volume")
    return group, index


def _uniform_step(values) -> float | None:
    """The spacing of evenly spaced increasing ``values``, else None."""
    if values is None or len(values) < 2:
        return None
    d = np.diff(values)
    if d[0] > 0 and np.allclose(d, d[0], rtol=1e-6, atol=1e-12):
        return float(d[0])
    return None


def _series_summary(values, dt_ps):
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    if len(finite) == 0:
        return None
    out = block_average(finite).as_dict()  # block_size, correlation_time in frames
    out["correlation_time_frames"] = out.pop("correlation_time")
    out["correlation_time_ps"] = out["correlation_time_frames"] * dt_ps if dt_ps else None
    return out


def analyze_frame_set(spec: FrameSetSpec, group, index, r_max, bins, bond_cutoff,
                      quiet=False) -> dict:
    """All observables of the chosen frames of one set (arrays kept for the figures)."""
    rdf_acc, adf_acc = RDFAccumulator(r_max, bins), ADFAccumulator(bond_cutoff)
    sources = group["frames/source"][:][index] if "frames/source" in group else np.zeros(1)
    steps = group["frames/step"][:][index]
    time = group["frames/time"][:][index] if "frames/time" in group else None
    stress = group["frames/stress"][:][index] if "frames/stress" in group else None
    dt_ps = _uniform_step(time)
    series = {key: np.full(len(index), np.nan) for key in SERIES}
    if stress is not None:
        series["pressure_gpa"] = pressure_gpa(stress)
    msd_reason = None
    if len(index) < 3:
        msd_reason = "fewer than 3 frames"
    elif len(np.unique(sources)) > 1:
        msd_reason = (f"frames from {len(np.unique(sources))} source files (not one trajectory); "
                      "select one temperature with @T")
    elif not np.all(np.diff(steps) > 0):
        msd_reason = "steps not increasing (not one trajectory in order)"
    unwrapper, unwrapped, species0 = Unwrapper(), [], None
    position = {int(f): k for k, f in enumerate(index)}  # frame index -> row of the selection
    progress = Progress(len(index), f"analyze {spec.text}", quiet=quiet)
    for start, chunk in iter_frame_chunks(group, 256):
        for f in range(len(chunk)):
            k = position.get(start + f)
            if k is None:
                continue
            frame = chunk.frame(f)
            rdf_acc.add(frame)
            adf_acc.add(frame)
            series["density_g_per_cm3"][k] = mass_density(frame.species, frame.cell)
            series["energy_per_atom_ev"][k] = frame.energy / len(frame.species)
            series["temperature_k"][k] = frame.temperature
            if msd_reason is None:
                if species0 is None:
                    species0 = frame.species.copy()
                if len(frame.species) != len(species0) or np.any(frame.species != species0):
                    msd_reason, unwrapped = "the atoms differ between frames", []
                else:
                    unwrapped.append(unwrapper.add(frame.positions, frame.cell, frame.pbc))
            progress.update(1)
    progress.close()
    rdf = rdf_acc.result()
    cells = group["frames/cell"][:][index]
    result = {"spec": spec, "group": group.name.lstrip("/"), "n_frames": len(index),
              "elements": list(rdf.density), "rdf": rdf, "adf": adf_acc.result(),
              "series": series, "time": time if dt_ps else None,
              "time_unit": "ps" if dt_ps else "frame", "dt": dt_ps or 1.0, "msd": None,
              "msd_reason": msd_reason,
              "n_atoms": int(np.diff(group["frames/atom_offset"][:])[index].mean().round()),
              "volume": float(np.mean([cell_volume(c) for c in cells]))}
    if msd_reason is None:
        groups = {symbol(z): np.nonzero(species0 == z)[0] for z in np.unique(species0)}
        msd = mean_square_displacement(np.array(unwrapped), groups if len(groups) > 1 else None)
        lag = np.arange(len(index)) * result["dt"]
        result["msd"] = {"lag": lag, "curves": msd, "fit": diffusion_coefficient(lag, msd["all"])}
    result["summary"] = _set_summary(result, dt_ps)
    return result


def _set_summary(res: dict, dt_ps) -> dict:
    spec, rdf, adf = res["spec"], res["rdf"], res["adf"]
    peaks = {}
    for label, g in rdf.g.items():
        pos, height = first_peak(rdf.r, g)
        peaks[label] = {"position_angstrom": pos, "height": height}
    out = {"label": spec.text, "path": str(spec.path.resolve()), "group": res["group"],
           "temperature_filter_k": spec.temperature,
           "n_frames": res["n_frames"], "n_atoms": res["n_atoms"], "elements": res["elements"],
           "mean_volume_angstrom3": res["volume"], "time_unit": res["time_unit"],
           "time_step_ps": dt_ps,
           "rdf": {"r_max_angstrom": float(rdf.edges[-1]), "bins": len(rdf.r),
                   "first_peak": peaks, "r_angstrom": rdf.r, "g": rdf.g,
                   "number_density_per_angstrom3": rdf.density},
           "adf": {"bond_cutoff_angstrom": adf.bond_cutoff,
                   "coordination_within_bond_cutoff": adf.mean_bonds,
                   "n_triplets": adf.n_triplets,
                   "most_probable_angle_degrees": float(adf.theta[np.argmax(adf.density)])
                   if adf.n_triplets else None,
                   "theta_degrees": adf.theta, "density_per_degree": adf.density},
           "time_series": {key: _series_summary(values, dt_ps)
                           for key, values in res["series"].items()}}
    if res["msd"] is None:
        out["msd"] = {"unavailable": res["msd_reason"]}
    else:
        fit, lag, curves = res["msd"]["fit"], res["msd"]["lag"], res["msd"]["curves"]
        unit = "Å²/ps" if dt_ps else "Å²/frame"
        thin = slice(None, None, max(1, len(lag) // 1000))
        out["msd"] = {"D": fit["D"], "D_unit": unit,
                      "D_cm2_per_s": fit["D"] * ANGSTROM2_PER_PS_IN_CM2_PER_S if dt_ps else None,
                      "intercept_angstrom2": fit["intercept"], "fit_start": fit["fit_start"],
                      "fit_end": fit["fit_end"], "fit_points": fit["n_points"],
                      "D_per_element": {k: diffusion_coefficient(lag, v)["D"]
                                        for k, v in curves.items() if k != "all"},
                      "lag": lag[thin], "msd_angstrom2": {k: v[thin] for k, v in curves.items()}}
    return out


def compare(result: dict, reference: dict) -> dict:
    """First g(r) peaks of both, ∫|Δg| dr (Å) per common pair, ∫|ΔP(θ)| dθ of the ADFs."""
    pairs = {}
    for label in result["rdf"].g:
        if label not in reference["rdf"].g:
            continue
        r = result["rdf"].r
        g1, g2 = result["rdf"].g[label], reference["rdf"].g[label]
        (p1, h1), (p2, h2) = first_peak(r, g1), first_peak(r, g2)
        pairs[label] = {"first_peak_position_angstrom": p1, "first_peak_height": h1,
                        "reference_first_peak_position_angstrom": p2,
                        "reference_first_peak_height": h2,
                        "integrated_abs_difference_angstrom": integrated_abs_difference(r, g1, g2)}
    a1, a2 = result["adf"], reference["adf"]
    adf_diff = (float(np.sum(np.abs(a1.density - a2.density)) * (a1.edges[1] - a1.edges[0]))
                if a1.n_triplets and a2.n_triplets else None)
    return {"input": result["spec"].text, "reference": reference["spec"].text, "rdf": pairs,
            "adf_integrated_abs_difference": adf_diff}


def analyze(inputs, reference=None, out_dir="data", json_path=None, r_max: float = 8.0,
            bins: int = 160, bond_cutoff: float = DEFAULT_BOND_CUTOFF, skip: int = 0,
            stride: int = 1, overwrite: bool = False, quiet: bool = False) -> dict:
    """Analyse the frame sets ``inputs`` (specs, see the module docstring) and ``reference``.

    Writes ``RDF.png``, ``ADF.png``, ``MSD.png``, ``TIME_SERIES.png`` into ``out_dir``
    (created if missing) and, with ``json_path``, the summary as JSON; existing outputs are
    replaced only with ``overwrite``. Every input is checked before anything is computed or
    written. Returns the summary: ``inputs`` (one dict per input), ``reference`` (or None),
    ``comparison`` (one per input when there is a reference), ``figures``, ``json``.
    """
    if not inputs:
        raise HdnnpError("no input frame sets (e.g. hdnnp analyze md.h5)")
    if not r_max > 0 or int(bins) < 1 or not bond_cutoff > 0:
        raise HdnnpError("--r-max, --bins and --bond-cutoff must be positive")
    if int(skip) < 0 or int(stride) < 1:
        raise HdnnpError("--skip must be >= 0 and --stride >= 1")
    out_dir, json_path = check_figure_outputs(
        out_dir, json_path, FIGURE_NAMES.values(), overwrite,
        inputs=[parse_spec(text).path for text in [*inputs, *([reference] if reference else [])]])

    specs = [parse_spec(text) for text in inputs]
    if reference is not None:
        specs.append(parse_spec(reference))
    with contextlib.ExitStack() as stack:
        chosen = []  # every input checked before any work
        for spec in specs:
            h5 = stack.enter_context(open_stage_file(spec.path, ("md", "prepare", "symmetry")))
            chosen.append((spec, *select_frames(spec, h5, int(skip), int(stride))))
        results = [analyze_frame_set(spec, group, index, r_max, bins, bond_cutoff, quiet)
                   for spec, group, index in chosen]
    ref_result = results.pop() if reference is not None else None
    summary = {"options": {"r_max_angstrom": r_max, "bins": int(bins),
                           "bond_cutoff_angstrom": bond_cutoff, "skip": int(skip),
                           "stride": int(stride)},
               "inputs": [res["summary"] for res in results],
               "reference": ref_result["summary"] if ref_result else None,
               "comparison": [compare(res, ref_result) for res in results] if ref_result else []}

    out_dir.mkdir(parents=True, exist_ok=True)
    built = {"rdf": figures.rdf_figure(results, ref_result),
             "adf": figures.adf_figure(results, ref_result),
             "msd": figures.msd_figure(results, ref_result),
             "time_series": figures.time_series_figure(results, ref_result)}
    summary["figures"] = {
        key: str(figures.save_figure(fig, out_dir / FIGURE_NAMES[key]))
        for key, fig in built.items()}
    return write_json_summary(summary, json_path, overwrite)


def _pm(stats) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    return format_mean_error(stats["mean"], stats.get("error"))


def format_table(summary: dict) -> str:
    """One row per input (and the reference): means ± standard errors, D and the g(r) peak;
    then one comparison line per input."""
    head = ["set", "frames", "ρ (g/cm³)", "P (GPa)", "E/N (eV/atom)", "T (K)", "D",
            "g(r) 1st peak"]
    rows = []
    sets = [(s, "") for s in summary["inputs"]]
    if summary.get("reference"):
        sets.append((summary["reference"], " (ref)"))
    for s, tag in sets:
        ts = s["time_series"]
        msd = s["msd"]
        d = ("n/a" if "unavailable" in msd or msd["D"] is None
             else f"{msd['D']:.4g} {msd['D_unit']}")
        label = "total" if "total" in s["rdf"]["first_peak"] and len(s["elements"]) > 1 else None
        label = label or next(iter(s["rdf"]["first_peak"]))
        peak = s["rdf"]["first_peak"][label]
        peak_text = ("n/a" if peak["position_angstrom"] is None else
                     f"{peak['position_angstrom']:.3f} Å / {peak['height']:.2f}")
        if label == "total":
            peak_text = f"total {peak_text}"
        rows.append([s["label"] + tag, str(s["n_frames"]), _pm(ts["density_g_per_cm3"]),
                     _pm(ts["pressure_gpa"]), _pm(ts["energy_per_atom_ev"]),
                     _pm(ts["temperature_k"]), d, peak_text])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells):
        return "  ".join([cells[0].ljust(widths[0])] +
                         [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]).rstrip()

    lines = [line(head), "-" * len(line(head)), *(line(r) for r in rows)]
    for comp in summary.get("comparison", []):
        for pair, c in comp["rdf"].items():
            if pair == "total" and len(comp["rdf"]) == 2:
                continue  # one element: total is the same curve as its one pair
            lines.append(
                f"{comp['input']} vs {comp['reference']}: {pair} first peak "
                f"{_num(c['first_peak_position_angstrom'], 3)} Å / "
                f"{_num(c['first_peak_height'], 2)} vs "
                f"{_num(c['reference_first_peak_position_angstrom'], 3)} Å / "
                f"{_num(c['reference_first_peak_height'], 2)}; ∫|Δg| dr = "
                f"{_num(c['integrated_abs_difference_angstrom'], 3)} Å")
        if comp.get("adf_integrated_abs_difference") is not None:
            lines.append(f"{comp['input']} vs {comp['reference']}: bond angles ∫|ΔP(θ)| dθ = "
                         f"{comp['adf_integrated_abs_difference']:.3f} (0 = same, 2 = disjoint)")
    return "\n".join(lines)


def _num(value, digits):
    return "n/a" if value is None else f"{value:.{digits}f}"
