"""Prediction errors of a potential: energies per box and per atom, forces, per temperature.

Definitions (N_f frames with a reference energy, n_f atoms in frame f, eV and eV/Å in, the
reported units in the key names)::

    energy error of a box      dE_f = E_pred,f - E_ref,f                      (eV)
    energy_mae_ev              = (1/N_f) sum_f |dE_f|
    energy_rmse_ev             = sqrt((1/N_f) sum_f dE_f^2)
    energy_per_atom_mae_mev    = 1000 (1/N_f) sum_f |dE_f| / n_f              (meV/atom)
    energy_per_atom_rmse_mev   = 1000 sqrt((1/N_f) sum_f (dE_f / n_f)^2)      (meV/atom)
    force_rmse_mev_per_angstrom = 1000 sqrt((1/M) sum_{i,alpha} (F_pred - F_ref)_{i,alpha}^2)
    force_mae_mev_per_angstrom  = 1000 (1/M) sum_{i,alpha} |F_pred - F_ref|_{i,alpha}

with M the number of force components with a known reference, 3 x (number of atoms) when all
are known (the component-wise RMSE that n2p2 and RuNNer report). Frames whose reference
energy is unknown (NaN) are left out of the energy errors and counted in
``n_frames_without_reference``. Extrapolation: the number of
scaled symmetry-function values outside [-1, 1] per frame (written by ``hdnnp predict``);
``extrapolating_frames`` counts frames with at least one such value, ``extrapolation_count``
sums the values.

The input is ``predictions.h5`` (see docs/DESIGN.md): one group per set with per-frame
``energy_reference``, ``energy_predicted``, ``n_atoms``, ``temperature``, ``step``,
``extrapolation``, ``atom_offset`` and (train set) ``is_validation``; optional per-atom
``forces_reference``/``forces_predicted``. Forces are read in chunks, so memory stays bounded
by the number of frames, not atoms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hdnnp.errors import InputFileError
from hdnnp.h5io import open_stage_file, read_strings

#: meV per eV.
MEV_PER_EV = 1000.0

#: Atoms read at once when accumulating force errors.
FORCE_CHUNK_ATOMS = 1 << 20

#: Force components kept (evenly strided) for parity plots and histograms.
FORCE_SAMPLE_SIZE = 200_000

_FRAME_DATASETS = ("energy_reference", "energy_predicted", "n_atoms", "temperature", "step",
                   "extrapolation", "atom_offset")


@dataclass
class PredictionSet:
    """Per-frame predictions of one set (``train`` or ``predict``) and force-error sums.

    Energies in eV; ``force_sq_error``/``force_abs_error`` are per-frame sums over the frame's
    force components of (F_pred - F_ref)^2 (eV²/Å²) and |F_pred - F_ref| (eV/Å), and
    ``force_components`` the number of components summed (those with a finite reference:
    ``hdnnp predict`` writes NaN reference forces where none are known);
    ``force_sample_*`` are an evenly strided sample of such components (eV/Å) for plots.
    """

    name: str
    energy_reference: np.ndarray
    energy_predicted: np.ndarray
    n_atoms: np.ndarray
    temperature: np.ndarray
    step: np.ndarray
    extrapolation: np.ndarray
    atom_offset: np.ndarray
    is_validation: np.ndarray | None = None
    force_sq_error: np.ndarray | None = None
    force_abs_error: np.ndarray | None = None
    force_components: np.ndarray | None = None
    force_sample_reference: np.ndarray | None = None
    force_sample_predicted: np.ndarray | None = None
    energy_spread: np.ndarray | None = None  # committee: members' std of E/N per frame, eV/atom

    def __len__(self) -> int:
        return len(self.energy_reference)

    @property
    def has_forces(self) -> bool:
        return self.force_sq_error is not None

    @property
    def energy_error_per_atom_mev(self) -> np.ndarray:
        """(E_pred - E_ref) / n_atoms per frame, meV/atom (NaN where the reference is unknown)."""
        return MEV_PER_EV * (self.energy_predicted - self.energy_reference) / self.n_atoms


def energy_errors(energy_reference, energy_predicted, n_atoms) -> dict:
    """MAE and RMSE of box energies (eV) and energies per atom (meV/atom); NaN references skipped.

    Returns ``n_frames_with_reference``, ``energy_mae_ev``, ``energy_rmse_ev``,
    ``energy_per_atom_mae_mev``, ``energy_per_atom_rmse_mev`` (None when no frame has a reference).
    """
    e_ref = np.asarray(energy_reference, float)
    e_pred = np.asarray(energy_predicted, float)
    n_atoms = np.asarray(n_atoms, float)
    known = np.isfinite(e_ref)
    error = (e_pred - e_ref)[known]
    error_per_atom = MEV_PER_EV * error / n_atoms[known]
    out = {"n_frames_with_reference": int(known.sum())}
    if not known.any():
        out.update(energy_mae_ev=None, energy_rmse_ev=None, energy_per_atom_mae_mev=None,
                   energy_per_atom_rmse_mev=None)
        return out
    out.update(
        energy_mae_ev=float(np.mean(np.abs(error))),
        energy_rmse_ev=float(np.sqrt(np.mean(error ** 2))),
        energy_per_atom_mae_mev=float(np.mean(np.abs(error_per_atom))),
        energy_per_atom_rmse_mev=float(np.sqrt(np.mean(error_per_atom ** 2))),
    )
    return out


def force_errors(forces_reference, forces_predicted) -> dict:
    """Component-wise force MAE and RMSE in meV/Å of two (n_atoms, 3) arrays in eV/Å."""
    diff = np.asarray(forces_predicted, float) - np.asarray(forces_reference, float)
    return _force_metrics(float(np.sum(diff ** 2)), float(np.sum(np.abs(diff))), diff.size)


def _force_metrics(sq_sum: float, abs_sum: float, n_components: int) -> dict:
    if n_components == 0:
        return {"n_force_components": 0, "force_mae_mev_per_angstrom": None,
                "force_rmse_mev_per_angstrom": None}
    return {
        "n_force_components": int(n_components),
        "force_mae_mev_per_angstrom": MEV_PER_EV * abs_sum / n_components,
        "force_rmse_mev_per_angstrom": MEV_PER_EV * math.sqrt(sq_sum / n_components),
    }


def subset_metrics(pset: PredictionSet, mask=None) -> dict:
    """All metrics of the frames of ``pset`` selected by the boolean ``mask`` (all if None)."""
    mask = np.ones(len(pset), bool) if mask is None else np.asarray(mask, bool)
    out = {"n_frames": int(mask.sum()), "n_atoms": int(pset.n_atoms[mask].sum())}
    out.update(energy_errors(pset.energy_reference[mask], pset.energy_predicted[mask],
                             pset.n_atoms[mask]))
    out["n_frames_without_reference"] = out["n_frames"] - out["n_frames_with_reference"]
    if pset.has_forces:
        out.update(_force_metrics(float(pset.force_sq_error[mask].sum()),
                                  float(pset.force_abs_error[mask].sum()),
                                  int(pset.force_components[mask].sum())))
    else:
        out.update(n_force_components=0, force_mae_mev_per_angstrom=None,
                   force_rmse_mev_per_angstrom=None)
    extrapolation = pset.extrapolation[mask]
    out["extrapolating_frames"] = int(np.count_nonzero(extrapolation > 0))
    out["extrapolation_count"] = int(extrapolation.sum())
    return out


def temperature_label(temperature: float) -> str:
    """Key of a temperature in the summary: ``"673"`` for 673.0 K, ``"unknown"`` for NaN."""
    return "unknown" if not np.isfinite(temperature) else f"{temperature:g}"


def summarize_set(pset: PredictionSet) -> dict:
    """Metrics of one set: ``all``; for the training set ``training`` and ``validation``
    (frames fitted and held out); ``per_temperature`` keyed by :func:`temperature_label`."""
    out = {"all": subset_metrics(pset)}
    if pset.is_validation is not None and pset.is_validation.any():
        out["training"] = subset_metrics(pset, ~pset.is_validation)
        out["validation"] = subset_metrics(pset, pset.is_validation)
    labels = np.array([temperature_label(t) for t in pset.temperature], dtype=object)
    per_t = {}
    for label in sorted(set(labels), key=lambda s: (s == "unknown", float(s) if s != "unknown" else 0)):
        per_t[label] = subset_metrics(pset, labels == label)
    out["per_temperature"] = per_t
    return out


def _read(path, group, name):
    if name not in group:
        raise InputFileError(path, f"missing dataset {group.name.strip('/')}/{name}; "
                                   "is it an output of 'hdnnp predict'?")
    return group[name][()]


def read_prediction_set(path, group, force_sample_size: int = FORCE_SAMPLE_SIZE) -> PredictionSet:
    """Read one set group of an open ``predictions.h5`` (forces in chunks of atoms)."""
    arrays = {name: _read(path, group, name) for name in _FRAME_DATASETS}
    n_frames = len(arrays["energy_reference"])
    set_name = group.name.strip("/")
    for name in ("energy_predicted", "n_atoms", "temperature", "step", "extrapolation"):
        if len(arrays[name]) != n_frames:
            raise InputFileError(path, f"{set_name}/{name} has {len(arrays[name])} entries, "
                                       f"energy_reference has {n_frames}")
    offsets = np.asarray(arrays["atom_offset"], np.int64)
    if len(offsets) != n_frames + 1 or np.any(np.diff(offsets) != arrays["n_atoms"]):
        raise InputFileError(path, f"{set_name}/atom_offset does not match {set_name}/n_atoms")
    if n_frames and np.any(arrays["n_atoms"] <= 0):
        raise InputFileError(path, f"{set_name}/n_atoms: every frame needs at least one atom")
    pset = PredictionSet(
        name=set_name,
        energy_reference=np.asarray(arrays["energy_reference"], float),
        energy_predicted=np.asarray(arrays["energy_predicted"], float),
        n_atoms=np.asarray(arrays["n_atoms"], np.int64),
        temperature=np.asarray(arrays["temperature"], float),
        step=np.asarray(arrays["step"], np.int64),
        extrapolation=np.asarray(arrays["extrapolation"], np.int64),
        atom_offset=offsets,
    )
    if "is_validation" in group:
        pset.is_validation = np.asarray(group["is_validation"][()], bool)
        if len(pset.is_validation) != n_frames:
            raise InputFileError(path, f"{set_name}/is_validation has {len(pset.is_validation)} "
                                       f"entries, expected {n_frames}")
    if "energy_spread" in group:
        pset.energy_spread = np.asarray(group["energy_spread"][()], float)
        if len(pset.energy_spread) != n_frames:
            raise InputFileError(path, f"{set_name}/energy_spread has {len(pset.energy_spread)} entries, "
                                       f"expected {n_frames}")
    if "forces_reference" in group and "forces_predicted" in group and n_frames:
        _accumulate_forces(path, group, pset, force_sample_size)
    return pset


def committee_spread_summary(pset: PredictionSet) -> dict | None:
    """Is a committee's spread an error estimate? Per set: mean energy spread and mean |error|
    (meV/atom) and the Spearman rank correlation of |E_pred − E_ref|/N with the spread over the
    frames with a reference (None without a committee)."""
    if pset.energy_spread is None:
        return None
    from scipy.stats import spearmanr

    err = np.abs(pset.energy_error_per_atom_mev)
    known = np.isfinite(err)
    spread = MEV_PER_EV * pset.energy_spread
    out = {"mean_energy_spread_mev_per_atom": float(np.mean(spread)) if len(spread) else None,
           "mean_abs_energy_error_mev_per_atom": float(np.mean(err[known])) if known.any() else None,
           "spearman_abs_error_vs_spread": None}
    if known.sum() > 2 and np.ptp(spread[known]) > 0:
        out["spearman_abs_error_vs_spread"] = float(spearmanr(err[known], spread[known])[0])
    return out


def _accumulate_forces(path, group, pset: PredictionSet, force_sample_size: int) -> None:
    """Per-frame sums of squared and absolute force-component errors, read in atom chunks."""
    f_ref, f_pred = group["forces_reference"], group["forces_predicted"]
    n_atoms_total = int(pset.atom_offset[-1])
    if f_ref.shape != (n_atoms_total, 3) or f_pred.shape != (n_atoms_total, 3):
        raise InputFileError(path, f"{pset.name}/forces_*: shapes {f_ref.shape} and "
                                   f"{f_pred.shape}, expected ({n_atoms_total}, 3)")
    n_frames = len(pset)
    sq_error = np.zeros(n_frames)
    abs_error = np.zeros(n_frames)
    n_components = np.zeros(n_frames, np.int64)
    stride = max(1, math.ceil(3 * n_atoms_total / force_sample_size))
    sample_ref, sample_pred = [], []
    start = 0
    while start < n_frames:
        # whole frames, about FORCE_CHUNK_ATOMS atoms (at least one frame)
        a0 = int(pset.atom_offset[start])
        stop = int(np.searchsorted(pset.atom_offset, a0 + FORCE_CHUNK_ATOMS, side="right")) - 1
        stop = min(max(stop, start + 1), n_frames)
        a1 = int(pset.atom_offset[stop])
        ref = f_ref[a0:a1].astype(float)
        pred = f_pred[a0:a1].astype(float)
        known = np.isfinite(ref) & np.isfinite(pred)
        diff = np.where(known, pred - ref, 0.0)
        starts = pset.atom_offset[start:stop] - a0
        sq_error[start:stop] = np.add.reduceat((diff ** 2).sum(axis=1), starts)
        abs_error[start:stop] = np.add.reduceat(np.abs(diff).sum(axis=1), starts)
        n_components[start:stop] = np.add.reduceat(known.sum(axis=1), starts)
        # global component index 3*a + alpha, kept when divisible by the stride
        first = (-3 * a0) % stride
        keep = known.ravel()[first::stride]
        sample_ref.append(ref.ravel()[first::stride][keep])
        sample_pred.append(pred.ravel()[first::stride][keep])
        start = stop
    if not n_components.any():
        return  # no reference forces at all: as if none were stored
    pset.force_sq_error = sq_error
    pset.force_abs_error = abs_error
    pset.force_components = n_components
    pset.force_sample_reference = np.concatenate(sample_ref)
    pset.force_sample_predicted = np.concatenate(sample_pred)


def load_predictions(predictions_path, force_sample_size: int = FORCE_SAMPLE_SIZE) -> dict:
    """Read every set of ``predictions.h5``: ``{set name: PredictionSet}`` (``train`` first)."""
    with open_stage_file(predictions_path, "predict") as h5:
        names = [k for k in h5.keys()
                 if isinstance(h5[k], h5py.Group) and "energy_reference" in h5[k]]
        if not names:
            raise InputFileError(predictions_path, "no predicted set (no group with energy_reference)")
        order = {"train": 0, "predict": 1}
        names.sort(key=lambda k: (order.get(k, 2), k))
        return {k: read_prediction_set(predictions_path, h5[k], force_sample_size) for k in names}


def summarize_sets(sets: dict) -> dict:
    """Summary of already loaded sets (see :func:`summarize`)."""
    return {
        "units": {"energy": "eV", "energy_per_atom": "meV/atom", "force": "meV/Angstrom"},
        "sets": {name: summarize_set(pset) for name, pset in sets.items()},
        **({"committee": {name: committee_spread_summary(pset) for name, pset in sets.items()}}
           if any(pset.energy_spread is not None for pset in sets.values()) else {}),
    }


def summarize(predictions_path) -> dict:
    """Metrics of every set in ``predictions.h5`` as a JSON-ready dict.

    ``{"predictions": path, "units": {...}, "sets": {set: {"all": M, "training": M,
    "validation": M, "per_temperature": {"673": M, ...}}}}`` where each M holds ``n_frames``,
    ``n_atoms``, ``n_frames_with_reference``, ``n_frames_without_reference``,
    ``energy_mae_ev``, ``energy_rmse_ev``, ``energy_per_atom_mae_mev``,
    ``energy_per_atom_rmse_mev``, ``n_force_components``, ``force_mae_mev_per_angstrom``,
    ``force_rmse_mev_per_angstrom``, ``extrapolating_frames``, ``extrapolation_count``
    (None where undefined, e.g. no forces). ``training``/``validation`` only for a set with
    validation frames.
    """
    out = {"predictions": str(Path(predictions_path).resolve())}
    out.update(summarize_sets(load_predictions(predictions_path)))
    return out


# --- other inputs of the report ------------------------------------------------------------

TRAINING_LOG_COLUMNS = ("epoch", "train_energy_rmse", "val_energy_rmse", "train_force_rmse",
                        "val_force_rmse", "wall_time")


def read_training_log(model_path) -> dict | None:
    """Learning curve of ``model.h5`` (``/training/log/*``): arrays keyed by column name.

    ``epoch``; ``train_energy_rmse``, ``val_energy_rmse`` (meV/atom); ``train_force_rmse``,
    ``val_force_rmse`` (meV/Å); ``wall_time`` (s). Missing columns are absent from the dict;
    ``validation_frames`` (indices into the training set), ``best_epoch`` (the epoch whose
    weights were kept: lowest validation loss) and ``stop_reason`` when stored. None for a
    potential imported from another code (``hdnnp import``), which has no learning curve.
    """
    with open_stage_file(model_path, "train") as h5:
        if "training" in h5 and "import_format" in h5["training"].attrs and not len(h5["training"].get("log", [])):
            return None
        if "training/log" not in h5:
            raise InputFileError(model_path, "no /training/log (learning curve); "
                                             "is it an output of 'hdnnp train'?")
        log = h5["training/log"]
        out = {k: np.asarray(log[k][()], float) for k in TRAINING_LOG_COLUMNS if k in log}
        if "epoch" not in out:
            raise InputFileError(model_path, "missing dataset training/log/epoch")
        if "training/validation_frames" in h5:
            out["validation_frames"] = np.asarray(h5["training/validation_frames"][()], np.int64)
        attrs = h5["training"].attrs
        if "best_epoch" in attrs and int(attrs["best_epoch"]) >= 0:
            out["best_epoch"] = int(attrs["best_epoch"])
        if "stop_reason" in attrs:
            reason = attrs["stop_reason"]
            out["stop_reason"] = reason.decode() if isinstance(reason, bytes) else str(reason)
    return out


def training_summary(log: dict) -> dict:
    """Headline numbers of a learning curve: epochs, best validation and final RMSEs, and the
    RMSEs at the epoch whose weights were kept (``best_epoch``, when stored)."""
    out = {"epochs": int(len(log["epoch"]))}
    kept = None
    if "best_epoch" in log:
        out["best_epoch"] = log["best_epoch"]
        rows = np.flatnonzero(log["epoch"] == log["best_epoch"])
        kept = int(rows[0]) if len(rows) else None
    if "stop_reason" in log:
        out["stop_reason"] = log["stop_reason"]

    def finite(name):
        values = log.get(name)
        return values[np.isfinite(values)] if values is not None else np.empty(0)

    for name in ("train_energy_rmse", "val_energy_rmse", "train_force_rmse", "val_force_rmse"):
        values = finite(name)
        unit = "mev_per_atom" if "energy" in name else "mev_per_angstrom"
        out[f"final_{name}_{unit}"] = float(values[-1]) if len(values) else None
        if name.startswith("val"):
            out[f"best_{name}_{unit}"] = float(values.min()) if len(values) else None
        if kept is not None and name in log:
            value = float(log[name][kept])
            out[f"kept_{name}_{unit}"] = value if math.isfinite(value) else None
    if "wall_time" in log and len(log["wall_time"]):
        out["wall_time_s"] = float(np.nanmax(log["wall_time"]))
    return out


def read_descriptor_check(symmetry_path) -> dict | None:
    """The descriptor check of ``symmetry.h5`` (``/descriptor_check/``), or None when the
    symmetry stage could not make one (group attribute ``unavailable``, e.g. no forces).

    Returns ``{"n_features": int array, "labels": ["1", "15", "30", "all"], "correlation":
    float array, "force_difference": F_ij = |F_i - F_j| (eV/Å) of the sampled pairs,
    "distance": {label: d_ij = |G'_i - G'_j| with that many scaled features}, "element":
    atomic number of each pair (or None)}``. The label ``all`` stands for every informative
    candidate (its count is the last ``n_features``); without a ``labels`` dataset the labels
    are the counts. Distances are read from ``distance_<label>``.
    """
    with open_stage_file(symmetry_path, "symmetry") as h5:
        if "descriptor_check" not in h5:
            raise InputFileError(symmetry_path, "no /descriptor_check group; is it an output of "
                                                "'hdnnp symmetry'?")
        group = h5["descriptor_check"]
        if "unavailable" in group.attrs and "n_features" not in group:
            return None
        for name in ("n_features", "force_difference"):
            if name not in group:
                raise InputFileError(symmetry_path, f"missing dataset descriptor_check/{name}")
        n_features = np.asarray(group["n_features"][()], np.int64)
        if "labels" in group:
            labels = read_strings(group["labels"])
        else:
            labels = [str(int(n)) for n in n_features]
        if len(labels) != len(n_features):
            raise InputFileError(symmetry_path, "descriptor_check/labels and n_features differ "
                                                "in length")
        force_difference = np.asarray(group["force_difference"][()], float)
        distance = {}
        for label in labels:
            key = f"distance_{label}"
            if key not in group:
                raise InputFileError(symmetry_path, f"missing dataset descriptor_check/{key}")
            distance[label] = np.asarray(group[key][()], float)
            if len(distance[label]) != len(force_difference):
                raise InputFileError(symmetry_path, f"descriptor_check/{key} and "
                                                    "force_difference differ in length")
        if "correlation" in group:
            correlation = np.asarray(group["correlation"][()], float)
        else:
            correlation = np.array([pearson(distance[label], force_difference) for label in labels])
        element = np.asarray(group["element"][()], np.int64) if "element" in group else None
    if len(correlation) != len(n_features):
        raise InputFileError(symmetry_path, f"descriptor_check/correlation has {len(correlation)} "
                                            f"entries, n_features {len(n_features)}")
    return {"n_features": n_features, "labels": labels, "correlation": correlation,
            "force_difference": force_difference, "distance": distance, "element": element}


def pearson(x, y) -> float:
    """Pearson correlation coefficient of two samples (NaN if either is constant)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
