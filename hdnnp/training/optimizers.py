"""Optimisers of the network weights: ``lbfgs``, ``adam``, ``ekf`` and ``derivative-free``.

Every optimiser minimises the *normalised* loss L / L0 of :mod:`hdnnp.training.loss` (L0 = the
variance of the reference energy per atom around the element reference energies, so the
numbers the optimiser sees are O(1) whatever the system; the minimiser is unchanged). Each one
calls ``on_epoch(theta)`` after every epoch (defined per optimiser below); ``on_epoch`` returns
True to stop (early stopping, time limit). ``state`` is a dict of NumPy arrays / numbers the
optimiser keeps between epochs, stored in checkpoints for ``--resume``.

Full-set losses with forces (``lbfgs``) are evaluated ``batch_boxes`` boxes at a time and
summed (:func:`hdnnp.training.loss.evaluate`), the same loss and gradient in less memory.

- ``lbfgs``: SciPy L-BFGS-B on the full training set with analytic gradients, optional box
  bounds |theta_k| <= ``weight_bound`` (output biases: ±bound around their initial value).
  Epoch = one L-BFGS iteration; the curvature memory restarts at every checkpoint, so a resumed
  run is identical to an uninterrupted one.
- ``adam``: Kingma & Ba (2015) on mini-batches of ``batch_boxes`` boxes, frames reshuffled
  each epoch. Epoch = one pass over the training boxes.
- ``ekf``: extended Kalman filter (Singraber et al., JCTC 15, 3075 (2019), as in n2p2), one
  update per box energy and one per box for ``ekf_force_components`` random force components::

      A = H^T P H + R I               (m x m; m = 1 for an energy, k for k force components)
      K = P H A^-1
      theta <- theta + K xi           xi = (reference - prediction) / sigma
      P <- (P - K H^T P) / lambda + q I
      q = max(q_0 exp(-epoch / q_tau), q_min)

  with P_0 = I / epsilon and two variants (``ekf_type``):

  - ``standard`` (n2p2's ``kalman_type 0``, the default): R = 1 / eta, lambda = 1, with the
    learning rate eta = min(eta_0 exp(epoch / eta_tau), eta_max) (0.01 → 1 over ~10 epochs), so
    the first epochs take damped steps;
  - ``fading`` (``kalman_type 1``; Blank & Brown 1994): R = lambda, the forgetting factor
    lambda <- nu lambda + 1 - nu after every update (lambda_0 = 0.99, nu = 0.9987: lambda -> 1).
    Its undamped first steps diverged on several of our data sets (README, "Accuracy by
    optimiser").

  Residuals and Jacobians H are divided by sigma_E (the spread of energies per atom) or sigma_F
  (the RMS reference force), so that R ~ 1 is a measurement noise of the order of the data
  spread; energy and force updates alternate. Epoch = one pass over the training boxes.
- ``derivative-free``: SciPy Powell's method (bounded, |theta_k| <= ``weight_bound``, default 10;
  output biases within ±bound of their initial reference energy) on the
  full training loss, at most ``max_evals`` loss evaluations (the seed's approach: 80 000).
  Epoch = one Powell iteration (a sweep over all search directions).
"""

from __future__ import annotations

import numpy as np
import scipy.optimize

from hdnnp import nn
from hdnnp.errors import HdnnpError
from hdnnp.training.loss import TrainingData, _np, evaluate

OPTIMIZERS = ("lbfgs", "adam", "ekf", "derivative-free")


class _Stop(Exception):
    pass


class Objective:
    """f(theta) = L(theta) / loss_scale and its gradient on NumPy vectors, the last evaluation cached."""

    def __init__(self, arch, data: TrainingData, force_weight: float, loss_scale: float, block_boxes: int = 0,
                 stress_weight: float = 0.0):
        self.arch, self.data, self.force_weight, self.loss_scale = arch, data, force_weight, loss_scale
        self.stress_weight = stress_weight
        self.block_boxes = block_boxes  # evaluate in blocks of this many boxes (0: all at once)
        self.n_evals = 0
        self._last = None

    def evaluation(self, theta, gradient=True):
        key = theta.tobytes()
        if self._last is not None and self._last[0] == key and (self._last[2] or not gradient):
            return self._last[1]
        xp = self.data.xp
        ev = evaluate(self.arch, xp.asarray(theta), self.data, self.force_weight, gradient=gradient,
                      block_boxes=self.block_boxes, stress_weight=self.stress_weight)
        self.n_evals += 1
        self._last = (key, ev, gradient)
        return ev

    def value(self, theta) -> float:
        return self.evaluation(np.asarray(theta, dtype=np.float64), gradient=False).loss / self.loss_scale

    def value_and_gradient(self, theta):
        ev = self.evaluation(np.asarray(theta, dtype=np.float64), gradient=True)
        return ev.loss / self.loss_scale, _np(ev.gradient) / self.loss_scale


def run_lbfgs(objective: Objective, theta, options, on_epoch, state: dict):
    """SciPy L-BFGS-B, restarted (fresh curvature memory) every ``checkpoint_every`` iterations.

    SciPy keeps the L-BFGS history inside one ``minimize`` call, where no checkpoint can reach
    it. Restarting at every checkpoint makes the optimiser state at a checkpoint just the
    weights, so ``--resume`` continues exactly as the uninterrupted run would (restarted
    L-BFGS; Nocedal & Wright, Numerical Optimization, 2nd ed., §7.2). Without checkpoints
    there is a single call. The bounds are centred on the weights of the very first start.
    """
    center = np.array(state.setdefault("lbfgs_bound_center", np.array(theta)))
    bounds = None
    if options.weight_bound:
        bounds = list(zip(*nn.weight_bounds(objective.arch, center, options.weight_bound)))
    segment = int(options.checkpoint_every) or max(int(options.epochs), 1)
    stopped = False

    def callback(intermediate_result):
        nonlocal stopped
        if on_epoch(np.array(intermediate_result.x)):
            stopped = True
            raise StopIteration

    while True:
        res = scipy.optimize.minimize(
            objective.value_and_gradient, theta, jac=True, method="L-BFGS-B", bounds=bounds,
            callback=callback,
            options={"maxiter": segment, "maxfun": 10 ** 9, "ftol": 1e-14, "gtol": 1e-12, "maxcor": 20},
        )
        theta = np.array(res.x)
        if stopped or res.nit < segment:  # stopped by the loop, converged, or line search failed
            return theta


def run_adam(objective: Objective, theta, options, on_epoch, state: dict, rng):
    data = objective.data
    lr = options.learning_rate
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    m = state.get("adam_m", np.zeros_like(theta))
    v = state.get("adam_v", np.zeros_like(theta))
    t = int(state.get("adam_t", 0))
    theta = theta.copy()
    bs = max(1, int(options.batch_boxes))
    if options.weight_bound:
        lower, upper = nn.weight_bounds(objective.arch, theta, options.weight_bound)
    for _epoch in range(int(options.epochs)):
        order = rng.permutation(data.n_frames)
        for start in range(0, data.n_frames, bs):
            batch = data.subset(np.sort(order[start:start + bs]))
            ev = evaluate(objective.arch, data.xp.asarray(theta), batch, objective.force_weight,
                          stress_weight=objective.stress_weight)
            objective.n_evals += 1
            g = _np(ev.gradient) / objective.loss_scale
            t += 1
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            theta -= lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
            if options.weight_bound:
                np.clip(theta, lower, upper, out=theta)
        state.update(adam_m=m, adam_v=v, adam_t=t)
        if on_epoch(theta.copy()):
            break
    return theta


def _frame_jacobians(arch, theta, data: TrainingData, f: int, rng, n_force: int):
    """Energy per atom of frame ``f``, its gradient, and ``n_force`` random force components
    (atom, component) of the trained atoms with their predictions and gradients."""
    sub = data.frame_range(f, f + 1)  # views, no copy
    xp = data.xp
    views = nn.unflatten(arch, xp.asarray(theta))
    n = float(sub.n_atoms[0])
    energy = 0.0
    caches = {}
    for z, blk in sub.blocks.items():
        e, cache = nn.forward(*views[z], blk.values, xp, arch.activation)
        caches[z] = cache
        energy += float(e.sum())
    grads = {z: nn.backward(views[z][0], caches[z], xp.full(sub.blocks[z].values.shape[0], 1.0 / n), None, xp)
             for z in sub.blocks}
    h_energy = _np(nn.flatten_gradients(arch, grads, xp))
    out = dict(energy_per_atom=energy / n, ref_energy_per_atom=float(sub.energy[0]) / n, h_energy=h_energy)
    if n_force and sub.has_forces:
        mask = _np(sub.force_mask) if sub.force_mask is not None else np.ones(sub.n_atoms_total, bool)
        atoms = np.flatnonzero(mask)
        if len(atoms):
            comps = rng.choice(len(atoms) * 3, size=min(n_force, 3 * len(atoms)), replace=False)
            g_in = {z: nn.input_gradient(views[z][0], caches[z], xp) for z in sub.blocks if sub.blocks[z].has_pairs}
            forces = xp.zeros((sub.n_atoms_total, 3))
            for z, g in g_in.items():
                blk = sub.blocks[z]
                forces = forces + nn.forces_from_input_gradient(g, blk.pair_row, blk.pair_atom, blk.dvalues,
                                                                sub.n_atoms_total, xp)
            forces = _np(forces)
            ref = _np(sub.forces)
            hs, pred, refs = [], [], []
            for cidx in comps:
                j, c = int(atoms[cidx // 3]), int(cidx % 3)
                phi = xp.zeros((sub.n_atoms_total, 3))
                phi[j, c] = 1.0
                grads = {}
                for z, blk in sub.blocks.items():
                    u = None
                    if blk.has_pairs:
                        u = nn.input_adjoint_from_force_adjoint(phi, blk.pair_row, blk.pair_atom, blk.dvalues,
                                                                blk.values.shape[0], xp)
                    grads[z] = nn.backward(views[z][0], caches[z], None, u, xp)
                hs.append(_np(nn.flatten_gradients(arch, grads, xp)))
                pred.append(forces[j, c])
                refs.append(ref[j, c])
            out.update(h_force=np.array(hs).T, force_pred=np.array(pred), force_ref=np.array(refs))
    return out


#: The six independent components (a, c) of the symmetric virial, EKF measurements of stress training.
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def _frame_virial_jacobians(arch, theta, data: TrainingData, f: int):
    """Virial per atom v = D/N of frame ``f`` (its six independent components with a finite
    reference), the references and their gradients (n_par, k); None without a reference."""
    sub = data.frame_range(f, f + 1)
    ref = _np(sub.virial_ref[0])
    comps = [(a, c) for a, c in VOIGT if np.isfinite(ref[a, c])]
    if not comps:
        return None
    xp = data.xp
    views = nn.unflatten(arch, xp.asarray(theta))
    n = float(sub.n_atoms[0])
    caches, strain = {}, np.zeros((3, 3))
    for z, blk in sub.blocks.items():
        _, caches[z] = nn.forward(*views[z], blk.values, xp, arch.activation)
        g = nn.input_gradient(views[z][0], caches[z], xp)
        strain += _np(xp.einsum("rc,rcab->ab", g, blk.virial))
    hs = []
    for a, c in comps:
        grads = {z: nn.backward(views[z][0], caches[z], None, blk.virial[:, :, a, c] / n, xp)
                 for z, blk in sub.blocks.items()}
        hs.append(_np(nn.flatten_gradients(arch, grads, xp)))
    return dict(pred=np.array([strain[a, c] / n for a, c in comps]), ref=np.array([ref[a, c] for a, c in comps]),
                h=np.array(hs).T)


def ekf_measurement_noise(options, epoch: int, lam: float) -> float:
    """R of the EKF update (A = H^T P H + R I): 1/eta for ``standard``, with
    eta = min(eta_0 exp(epoch / eta_tau), eta_max); the forgetting factor ``lam`` for ``fading``."""
    if options.ekf_type == "standard":
        return 1.0 / min(options.ekf_eta0 * np.exp(epoch / options.ekf_etatau), options.ekf_etamax)
    return lam


def run_ekf(objective: Objective, theta, options, on_epoch, state: dict, rng, sigma_energy: float,
            sigma_force: float):
    data = objective.data
    n_par = len(theta)
    if n_par > 20000:
        raise HdnnpError(f"ekf: {n_par} weights need a {n_par}x{n_par} covariance; use lbfgs or adam")
    P = np.array(state.get("ekf_P", np.eye(n_par) / options.ekf_epsilon), dtype=np.float64)
    lam = float(state.get("ekf_lambda", options.ekf_lambda0))
    epoch0 = int(state.get("ekf_epoch", 0))
    theta = theta.copy()
    n_force = int(options.ekf_force_components) if objective.force_weight > 0 else 0

    def update(H, xi, q, epoch):
        nonlocal P, lam
        PH = P @ H
        A = H.T @ PH + ekf_measurement_noise(options, epoch, lam) * np.eye(H.shape[1])
        K = np.linalg.solve(A, PH.T).T
        theta[:] += K @ xi
        P -= K @ PH.T  # in place: P is the largest array here
        if options.ekf_type == "fading":
            P *= 1.0 / lam
            lam = options.ekf_nu * lam + 1.0 - options.ekf_nu
        P.flat[::n_par + 1] += q

    for epoch in range(epoch0, epoch0 + int(options.epochs)):
        q = max(options.ekf_q0 * np.exp(-epoch / options.ekf_qtau), options.ekf_qmin)
        for f in rng.permutation(data.n_frames):
            jac = _frame_jacobians(objective.arch, theta, data, int(f), rng, 0)
            xi = np.array([(jac["ref_energy_per_atom"] - jac["energy_per_atom"]) / sigma_energy])
            update(jac["h_energy"][:, None] / sigma_energy, xi, q, epoch)
            objective.n_evals += 1
            if n_force:
                jac = _frame_jacobians(objective.arch, theta, data, int(f), rng, n_force)
                if "h_force" in jac:
                    xi = (jac["force_ref"] - jac["force_pred"]) / sigma_force
                    update(jac["h_force"] / sigma_force, xi, q, epoch)
            if objective.stress_weight > 0 and data.has_stress:
                # the virial components as measurements, weighted like the loss: sqrt(w_S) / sigma_E
                jac = _frame_virial_jacobians(objective.arch, theta, data, int(f))
                if jac is not None:
                    scale = np.sqrt(objective.stress_weight) / sigma_energy
                    update(jac["h"] * scale, (jac["ref"] - jac["pred"]) * scale, q, epoch)
        P = 0.5 * (P + P.T)  # remove the rounding asymmetry once per epoch
        state.update(ekf_P=P, ekf_lambda=lam, ekf_epoch=epoch + 1)
        if on_epoch(theta.copy()):
            break
    return theta


def run_derivative_free(objective: Objective, theta, options, on_epoch, state: dict):
    """Powell, restarted from the best point while evaluations remain.

    SciPy's bounded Powell can accept a worse point and then stop on its ftol test (the
    difference of the last two values becomes negative); restarting from the best point so far
    keeps the search going, as the seed's 80 000-call budget intends.
    """
    lower, upper = nn.weight_bounds(objective.arch, theta, options.weight_bound or 10.0)
    bounds = list(zip(lower, upper))
    best = dict(x=np.clip(theta, lower, upper), f=np.inf, stop=False)
    used0 = objective.n_evals - int(state.get("dfo_evals", 0))

    def used():
        return objective.n_evals - used0

    def callback(intermediate_result):
        state["dfo_evals"] = used()
        if intermediate_result.fun < best["f"]:
            best.update(x=np.array(intermediate_result.x), f=float(intermediate_result.fun))
        if on_epoch(np.array(intermediate_result.x)):
            best["stop"] = True
            raise StopIteration

    while not best["stop"] and used() < int(options.max_evals):
        before = best["f"]
        res = scipy.optimize.minimize(
            objective.value, best["x"], method="Powell", bounds=bounds, callback=callback,
            options={"maxfev": int(options.max_evals) - used(), "maxiter": max(int(options.epochs), 1),
                     "xtol": 1e-8, "ftol": 1e-12},
        )
        state["dfo_evals"] = used()
        if res.fun < best["f"]:
            best.update(x=np.array(res.x), f=float(res.fun))
        if not best["f"] < before * (1 - 1e-10) or res.nit >= options.epochs:
            state["stop_reason"] = f"Powell stopped improving after {used()} loss evaluations"
            break
    return best["x"]
