"""The training loop: optimiser epochs, validation, early stopping, best weights, checkpoints.

After every epoch the loop evaluates the energy RMSE (meV/atom) and force RMSE (meV/Å) on
the training and validation boxes, appends them to the learning curve, keeps the weights with
the lowest validation loss (training loss when there is no validation set) and stops when it
has not improved for ``patience`` epochs, when ``time_limit`` is reached or when the
optimiser ends. ``checkpoint(state)`` is called every ``checkpoint_every`` epochs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from hdnnp import nn
from hdnnp.errors import HdnnpError
from hdnnp.progress import Progress
from hdnnp.training import optimizers
from hdnnp.training.loss import TrainingData, _np, element_reference_energies, evaluate
from hdnnp.training.presets import TrainOptions

EV_TO_MEV = 1000.0
LOG_COLUMNS = ("epoch", "train_energy_rmse", "val_energy_rmse", "train_force_rmse", "val_force_rmse",
               "train_loss", "val_loss", "wall_time", "n_evals")


@dataclass
class TrainResult:
    theta: np.ndarray  # best weights
    log: dict  # learning curve columns (see LOG_COLUMNS)
    best_epoch: int
    stop_reason: str
    force_weight: float
    loss_scale: float
    state: dict = field(default_factory=dict)


#: Spread of the reference energies per atom (eV/atom, after the element references) beyond
#: which training refuses the data: 10⁴ eV/atom is beyond any chemistry (a units mix-up, or a
#: broken frame such as an energy of -1e300).
ABSURD_ENERGY_SPREAD = 1e4


def data_statistics(data: TrainingData, reference: dict) -> tuple:
    """(sigma_E eV/atom, RMS reference force eV/Å): spread of E/N after the element references."""
    energy = _np(data.energy)
    counts = np.stack([np.diff(data.blocks[z].row_offset) for z in data.elements], axis=1)
    resid = (energy - counts @ np.array([reference[z] for z in data.elements])) / data.n_atoms
    with np.errstate(over="ignore", invalid="ignore"):
        sigma_e = float(np.sqrt(np.mean(resid ** 2))) if len(resid) else 0.0
    if not np.isfinite(sigma_e) or sigma_e > ABSURD_ENERGY_SPREAD:
        k = int(np.nanargmax(np.abs(resid - np.nanmedian(resid)))) if np.isfinite(resid).any() else 0
        frame = int(data.frame_index[k]) if data.frame_index is not None else k
        raise HdnnpError(f"the reference energies spread by {sigma_e:.3g} eV/atom around the element references, "
                         f"which no physical data do; the farthest is training frame {frame} ({energy[k]:.6g} eV for "
                         f"{int(data.n_atoms[k])} atoms): fix or remove it")
    sigma_f = 0.0
    if data.forces is not None:
        f = _np(data.forces)
        if data.force_mask is not None:
            f = f[_np(data.force_mask)]
        sigma_f = float(np.sqrt(np.mean(f ** 2))) if f.size else 0.0
    return max(sigma_e, 1e-6), max(sigma_f, 1e-6)


def initial_parameters(arch: nn.Architecture, data: TrainingData, seed: int):
    """Random weights with output biases = element reference energies (least squares)."""
    reference = element_reference_energies(data)
    sigma_e, _ = data_statistics(data, reference)
    theta = nn.init_parameters(arch, np.random.default_rng(seed), reference, output_scale=sigma_e)
    return theta, reference


def train_networks(arch: nn.Architecture, train: TrainingData, val: TrainingData | None,
                   options: TrainOptions, theta0: np.ndarray, reference: dict,
                   checkpoint=None, resume: dict | None = None, quiet: bool = False) -> TrainResult:
    """Optimise ``theta0`` on ``train``; returns the best weights and the learning curve.

    ``resume``: a state dict from a checkpoint (keys ``theta``, ``best_theta``, ``log``,
    ``epoch``, ``best_val``, ``best_epoch`` and the optimiser's own).
    """
    sigma_e, sigma_f = data_statistics(train, reference)
    use_forces = options.use_forces and train.has_forces
    if not use_forces:
        force_weight = 0.0
    elif options.force_weight >= 0:
        force_weight = float(options.force_weight)
    else:
        force_weight = sigma_e ** 2 / sigma_f ** 2
    loss_scale = sigma_e ** 2
    stress_weight = float(options.stress_weight) if train.has_stress else 0.0
    objective = optimizers.Objective(arch, train, force_weight, loss_scale, block_boxes=options.batch_boxes,
                                     stress_weight=stress_weight)
    rng = np.random.default_rng(options.seed + 1)
    state = dict(resume or {})
    if "rng_state" in state:  # resumed: continue the same random sequence (mini-batches, EKF order)
        rng_state = state.pop("rng_state")
        rng.bit_generator.state = json.loads(rng_state.decode() if isinstance(rng_state, bytes) else str(rng_state))
    log = {k: list(v) for k, v in state.pop("log", {}).items()} or {k: [] for k in LOG_COLUMNS}
    theta = np.array(state.pop("theta", theta0), dtype=np.float64)
    best = dict(theta=np.array(state.pop("best_theta", theta)), val=float(state.pop("best_val", np.inf)),
                epoch=int(state.pop("best_epoch", -1)))
    epoch0 = int(state.pop("epoch", 0))
    counter = dict(epoch=epoch0, stop="optimizer finished")
    t0 = time.perf_counter() - (log["wall_time"][-1] if log["wall_time"] else 0.0)
    progress = Progress(options.epochs, f"train ({options.optimizer})", unit="epochs", quiet=quiet)

    def metrics(theta_np, data):
        if data is None or data.n_frames == 0:
            return float("nan"), float("nan"), float("nan")
        if data is train:
            ev = objective.evaluation(theta_np, gradient=False)
        else:
            ev = evaluate(arch, data.xp.asarray(theta_np), data, force_weight, gradient=False,
                          forces=use_forces, block_boxes=options.batch_boxes, stress_weight=stress_weight)
        return (EV_TO_MEV * np.sqrt(ev.energy_mse_per_atom), EV_TO_MEV * np.sqrt(ev.force_mse),
                ev.loss / loss_scale)

    def on_epoch(theta_np) -> bool:
        counter["epoch"] += 1
        epoch = counter["epoch"]
        tr_e, tr_f, tr_loss = metrics(theta_np, train)
        va_e, va_f, va_loss = metrics(theta_np, val)
        for k, v in zip(LOG_COLUMNS, (epoch, tr_e, va_e, tr_f, va_f, tr_loss, va_loss,
                                      time.perf_counter() - t0, objective.n_evals)):
            log[k].append(v)
        score = va_loss if np.isfinite(va_loss) else tr_loss
        if score < best["val"]:
            best.update(theta=np.array(theta_np), val=score, epoch=epoch)
        extra = f"E {tr_e:.2f}/{va_e:.2f} meV/atom"
        if use_forces:
            extra += f"  F {tr_f:.0f}/{va_f:.0f} meV/Å"
        progress.update(1, extra=extra + " (train/val)")
        if checkpoint is not None and options.checkpoint_every and epoch % options.checkpoint_every == 0:
            checkpoint(dict(state, rng_state=json.dumps(rng.bit_generator.state), theta=np.array(theta_np), best_theta=best["theta"], best_val=best["val"],
                            best_epoch=best["epoch"], epoch=epoch, log=log))
        if options.patience and best["epoch"] >= 0 and epoch - best["epoch"] >= options.patience:
            counter["stop"] = f"early stopping: no validation improvement for {options.patience} epochs"
            return True
        if options.time_limit and time.perf_counter() - t0 >= options.time_limit:
            counter["stop"] = f"time limit {options.time_limit:g} s"
            return True
        if epoch >= options.epochs:  # total, counting the epochs before a resume
            counter["stop"] = f"{options.epochs} epochs"
            return True
        return False

    if options.optimizer == "lbfgs":
        optimizers.run_lbfgs(objective, theta, options, on_epoch, state)
    elif options.optimizer == "adam":
        optimizers.run_adam(objective, theta, options, on_epoch, state, rng)
    elif options.optimizer == "ekf":
        optimizers.run_ekf(objective, theta, options, on_epoch, state, rng, sigma_e, sigma_f)
    elif options.optimizer == "derivative-free":
        optimizers.run_derivative_free(objective, theta, options, on_epoch, state)
        if state.get("dfo_evals", 0) >= options.max_evals:
            counter["stop"] = f"{options.max_evals} loss evaluations"
        elif counter["stop"] == "optimizer finished" and "stop_reason" in state:
            counter["stop"] = state.pop("stop_reason")
    progress.close(extra=f"best epoch {best['epoch']}, {counter['stop']}")
    if best["epoch"] < 0 and log["epoch"]:
        raise HdnnpError(f"training failed: the loss was not finite in any of its {len(log['epoch'])} epochs, so no "
                         "weights were learned (the data are finite and the start was; look at --learning-rate, "
                         "--force-weight and at absurd reference values); nothing was written")
    if best["epoch"] < 0:  # no epoch completed (e.g. zero iterations): keep the start
        best["theta"] = theta
    return TrainResult(theta=best["theta"], log={k: np.asarray(v) for k, v in log.items()},
                       best_epoch=best["epoch"], stop_reason=counter["stop"], force_weight=force_weight,
                       loss_scale=loss_scale, state=state)
