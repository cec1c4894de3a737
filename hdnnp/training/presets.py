"""Named sets of training options (``--preset``); explicit command-line options override them.

- ``seed``: the seed program's set-up: hidden layers of 4 neurons (two, 30-4-4-1), derivative-free
  bounded search (Powell) with at most 80 000 loss evaluations, energies only.
- ``default``: chosen by measurement (``scripts/bench_train.py``): two hidden layers of 15 neurons,
  extended Kalman filter on energies and forces. Measured with ``scripts/bench_train.py
  --synthetic --time-limit 60`` (Lennard-Jones liquid, 16-atom boxes, 144 training + 16
  validation boxes, 30 features, 2-core CPU shared with other jobs), RMSE / spread on 40
  held-out boxes, energy and force: ekf 0.012 / 0.027 (fading filter 0.018 / 0.030), adam
  0.14 / 0.20, lbfgs 0.22 / 0.30. On the full liquid-Te example (train five temperatures,
  predict 773 K, 240 s each; README, "Accuracy by optimiser") the EKF fits the training
  temperatures best (2.5 meV/atom, 260 meV/Å) and has the lowest 773 K energy and force ratios
  (0.57 / 0.55; Adam 0.66 / 0.57, L-BFGS 1.16 / 0.55).
  The EKF variant is n2p2's standard filter (``ekf_type = "standard"``, learning rate rising
  from 0.01 to 1). The fading-memory filter (``"fading"``, the earlier default) diverged or
  kept its first-epoch weights in 4 of 5 settings on the Te data (79 features; five more
  trajectories; 2.16 ps trajectories; two BLAS threads), where the standard filter trained
  stably in the three of them rerun (two BLAS threads not rerun); on the example its 773 K
  energy error was 9.5–10.8 meV/atom against 6.3–7.2 for the standard filter (seeds 0, 1, 2).
- ``fast``: L-BFGS, 10-10, for quick looks and tests.

``epochs`` = 0 and ``patience`` = -1 (unset) take the optimiser's own default (``OPTIMIZER_DEFAULTS``):
an L-BFGS iteration is far cheaper than an EKF pass over all boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from hdnnp.errors import HdnnpError


@dataclass
class TrainOptions:
    """Every option of the training stage (stored as attributes of ``model.h5``/training)."""

    optimizer: str = "ekf"
    hidden: tuple = (15, 15)
    activation: str = "tanh"  # hidden layers: tanh, softplus, logistic (one, or one per layer: "softplus,tanh")
    epochs: int = 0  # lbfgs: iterations; adam/ekf: passes over the boxes; dfo: Powell sweeps; 0: optimiser default
    batch_boxes: int = 32  # NUMBER_OF_BOXES_TO_OPT: boxes per Adam mini-batch and per evaluation block
    learning_rate: float = 3e-3  # adam
    use_forces: bool = True
    force_weight: float = -1.0  # Å²/atom²; < 0: automatic, var(E/N) / mean(F²)
    force_fraction: float = 1.0  # fraction of atoms per box whose forces are trained
    val_fraction: float = 0.1
    val_split: str = "random"  # random frames (as n2p2); blocked: one contiguous run of frames per trajectory
    patience: int = -1  # epochs without validation improvement before stopping; 0: never; -1: optimiser default
    checkpoint_every: int = 0  # epochs; 0: no checkpoints
    seed: int = 0
    max_evals: int = 80000  # derivative-free: loss evaluations
    weight_bound: float = 0.0  # |theta| bound (lbfgs, adam; derivative-free uses 10 if 0)
    time_limit: float = 0.0  # seconds of training; 0: none
    max_memory_mb: float = 4096.0  # in-memory training data budget
    stream: str = "auto"  # descriptors read from symmetry.h5 per step: auto (beyond max_memory_mb), always, never
    ekf_type: str = "standard"  # standard (n2p2 kalman_type 0: learning rate eta) or fading (type 1: lambda)
    ekf_epsilon: float = 0.01  # P_0 = I / epsilon
    ekf_q0: float = 0.01
    ekf_qmin: float = 1e-6
    ekf_qtau: float = 2.302  # epochs
    ekf_lambda0: float = 0.99
    ekf_nu: float = 0.9987
    ekf_force_components: int = 4
    ekf_eta0: float = 0.01  # standard: eta = min(eta0 exp(epoch / etatau), etamax)
    ekf_etatau: float = 2.302  # epochs
    ekf_etamax: float = 1.0
    stress_weight: float = -1.0  # weight of the virial-per-atom term (dimensionless, vs energy per atom); 0: off;
    # < 0: automatic, DEFAULT_STRESS_WEIGHT when the training set has reference stresses, else off
    baseline: str = "none"  # repulsive baseline: zbl or none (hdnnp.baseline)
    baseline_radii: str = ""  # "R_INNER:R_OUTER" Å for every pair; "": from the shortest distances in the data

    def as_attrs(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


#: The stress weight of ``--stress-weight`` automatic (the default) when the training set has
#: reference stresses: the value of the README's Ge/Si runs on PBE data with stresses.
DEFAULT_STRESS_WEIGHT = 0.1


def resolve_stress_weight(options: TrainOptions, has_stresses: bool) -> float:
    """The stress weight a run uses: ``--stress-weight`` when given (>= 0), else
    :data:`DEFAULT_STRESS_WEIGHT` when the training set has reference stresses (and their strain
    derivatives), else 0."""
    if options.stress_weight >= 0:
        return float(options.stress_weight)
    return DEFAULT_STRESS_WEIGHT if has_stresses else 0.0


#: Per-optimiser defaults of ``epochs`` and ``patience``.
OPTIMIZER_DEFAULTS = {
    "lbfgs": dict(epochs=2000, patience=100),
    "adam": dict(epochs=1000, patience=50),
    "ekf": dict(epochs=60, patience=10),
    "derivative-free": dict(epochs=10 ** 6, patience=0),
}

PRESETS = {
    "default": {},
    "seed": dict(optimizer="derivative-free", hidden=(4, 4), max_evals=80000, use_forces=False,
                 epochs=10 ** 6, patience=0, weight_bound=10.0),
    "fast": dict(optimizer="lbfgs", hidden=(10, 10), epochs=200, patience=30),
}


def preset_defaults(name: str) -> str:
    """What ``--help`` shows for option field ``name``: its value under each preset, e.g.
    ``[default: ekf; seed: derivative-free; fast: lbfgs]``, or ``[X]`` when they agree
    (epochs and patience also per optimiser)."""
    def text(v):
        return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)

    values = {p: text(getattr(make_options(p), name)) for p in PRESETS}
    shown = (f"[{values['default']}]" if len(set(values.values())) == 1
             else "[" + "; ".join(f"{p}: {v}" for p, v in values.items()) + "]")
    if name in ("epochs", "patience"):
        per = ", ".join(f"{o} {d[name]}" for o, d in OPTIMIZER_DEFAULTS.items())
        shown = shown[:-1] + f"; by optimiser: {per}]"
    return shown


#: Variants of the extended Kalman filter (``--ekf-type``), the default first.
EKF_TYPES = ("standard", "fading")

#: Ways to pick the validation frames (``--val-split``), the default first.
VAL_SPLITS = ("random", "blocked")


def check_val_split(mode: str) -> None:
    if mode not in VAL_SPLITS:
        raise HdnnpError(f"--val-split must be one of {', '.join(VAL_SPLITS)}, not '{mode}'")


STREAM_MODES = ("auto", "always", "never")


def make_options(preset: str = "default", **overrides) -> TrainOptions:
    """The preset's options with the given (non-None) overrides applied."""
    if preset not in PRESETS:
        raise HdnnpError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    opts = replace(TrainOptions(), **PRESETS[preset])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "hidden" in overrides:
        overrides["hidden"] = tuple(int(h) for h in overrides["hidden"])
    opts = replace(opts, **overrides)
    if opts.optimizer in OPTIMIZER_DEFAULTS:
        unset = dict(epochs=0, patience=-1)
        fill = {k: v for k, v in OPTIMIZER_DEFAULTS[opts.optimizer].items() if getattr(opts, k) == unset[k]}
        opts = replace(opts, **fill)
    if opts.optimizer not in ("lbfgs", "adam", "ekf", "derivative-free"):
        raise HdnnpError(f"unknown optimizer '{opts.optimizer}'")
    if opts.batch_boxes < 1:
        raise HdnnpError("--batch-boxes must be at least 1")
    if not 0 < opts.force_fraction <= 1:
        raise HdnnpError("--force-fraction must be in (0, 1]")
    if not 0 <= opts.val_fraction < 1:
        raise HdnnpError("--val-fraction must be in [0, 1)")
    check_val_split(opts.val_split)
    if opts.stream not in STREAM_MODES:
        raise HdnnpError(f"--stream must be one of {', '.join(STREAM_MODES)}, not '{opts.stream}'")
    if opts.ekf_type not in EKF_TYPES:
        raise HdnnpError(f"--ekf-type must be one of {', '.join(EKF_TYPES)}, not '{opts.ekf_type}'")
    if any(h < 1 for h in opts.hidden):
        raise HdnnpError("hidden layer widths must be positive")
    from hdnnp.nn import layer_activations

    try:
        layer_activations(opts.activation, len(opts.hidden))
    except ValueError as exc:
        raise HdnnpError(f"--activation: {exc}") from None
    _check_ranges(opts)
    from hdnnp.baseline import KINDS, parse_radii

    if opts.baseline not in KINDS:
        raise HdnnpError(f"--baseline: expected one of {', '.join(KINDS)}, got '{opts.baseline}'")
    parse_radii(opts.baseline_radii)  # before any work: a malformed --baseline-radii is one line
    return opts


#: Largest hidden layer width accepted (a 10⁴-wide layer already needs ~1 GB per EKF matrix row).
MAX_HIDDEN_WIDTH = 4096


def _check_ranges(opts: TrainOptions) -> None:
    """One line naming the option for any value no training can use (NaN, negative, absurd)."""
    import math

    def finite(x):
        return isinstance(x, (int, float)) and math.isfinite(x)

    o = opts
    checks = [  # (option, its value, acceptable, what is expected)
        ("--learning-rate", o.learning_rate, finite(o.learning_rate) and o.learning_rate > 0, "a step size > 0"),
        ("--force-weight", o.force_weight, finite(o.force_weight), "a finite weight (negative: automatic)"),
        ("--stress-weight", o.stress_weight, finite(o.stress_weight), "a finite weight (0: off; negative: automatic)"),
        ("--seed", o.seed, isinstance(o.seed, int) and 0 <= o.seed < 2 ** 32 - 1000, "an integer in [0, 2³²)"),
        ("--epochs", o.epochs, o.epochs >= 0, "a number of epochs >= 0"),
        ("--patience", o.patience, o.patience >= -1, "a number of epochs >= 0 (0: never stop early)"),
        ("--checkpoint-every", o.checkpoint_every, o.checkpoint_every >= 0, "a number of epochs >= 0"),
        ("--max-evals", o.max_evals, o.max_evals >= 0, "a number of evaluations >= 0"),
        ("--weight-bound", o.weight_bound, finite(o.weight_bound) and o.weight_bound >= 0, "a bound >= 0 (0: none)"),
        ("--time-limit", o.time_limit, finite(o.time_limit) and o.time_limit >= 0, "seconds >= 0 (0: none)"),
        ("--max-memory", o.max_memory_mb, finite(o.max_memory_mb) and o.max_memory_mb > 0, "MiB > 0"),
        ("--hidden", ",".join(map(str, o.hidden)), all(h <= MAX_HIDDEN_WIDTH for h in o.hidden) and len(o.hidden) <= 16,
         f"at most 16 layers of at most {MAX_HIDDEN_WIDTH} neurons"),
    ]
    for option, value, ok, expected in checks:
        if not ok:
            raise HdnnpError(f"{option}: expected {expected}, got {value}")
