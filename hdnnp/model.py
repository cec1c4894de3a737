"""``Potential``: a trained HDNNP, self-contained in ``model.h5``, predicting energies and forces.

Layout of model.h5 (``stage = "train"``; see docs/DESIGN.md)::

    /feature_set                 FeatureSet.to_h5: candidates, selection, scaling
    /networks                    attrs: elements (Z), hidden, activation
    /networks/<Sym>/weights_<k>  (n_in_k, n_out_k), k = 0 .. L-1 (last: output layer)
    /networks/<Sym>/biases_<k>   (n_out_k,)
                                 attrs: atomic_number, hidden, activation, n_inputs,
                                 reference_energy (eV/atom; the initial output bias)
    /training/log/<column>       learning curve (epoch, train/val energy RMSE meV/atom,
                                 train/val force RMSE meV/Å, losses, wall_time s, n_evals)
    /training/validation_frames  indices into the training set of symmetry.h5
                                 attrs: every TrainOptions field, force_weight, loss_scale,
                                 best_epoch, stop_reason
    /baseline                    optional repulsive baseline (attrs kind = zbl; pairs, r_inner,
                                 r_outer; :mod:`hdnnp.baseline`), added to every prediction

Prediction: E = sum_i E_Z(i)(G'_i) + E_base (eV), F_j = -sum_i dE_i/dG'_i . dG'_i/dr_j + F_base,j
(eV/Å), with G' from :func:`hdnnp.descriptors.compute_descriptors` using the stored feature set
and E_base the repulsive baseline (zero without one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hdnnp import nn
from hdnnp.elements import symbol
from hdnnp.errors import HdnnpError
from hdnnp.h5io import atomic_output, open_stage_file, write_root_attrs

#: Scaled features beyond ±(1 + this) count as extrapolation (a rounding margin; SPEC §4, §10).
EXTRAPOLATION_TOLERANCE = 1e-9


class Potential:
    """A trained potential: feature set + element networks (+ training record).

    ``theta`` is the flat parameter vector laid out by :func:`hdnnp.nn.unflatten`.
    """

    def __init__(self, feature_set, architecture: nn.Architecture, theta, reference_energies: dict,
                 training: dict | None = None, members=None, baseline=None):
        self.feature_set = feature_set
        self.architecture = architecture
        self.theta = np.asarray(theta, dtype=np.float64)
        self.reference_energies = {int(z): float(e) for z, e in reference_energies.items()}
        self.training = training or {}
        self._views = nn.unflatten(architecture, self.theta)
        #: Committee (SPEC §10): every member's flat weights, (n_members, n_parameters); the
        #: prediction is the members' mean, the uncertainty their population standard deviation.
        #: A single potential is a committee of one (``members[0] is theta``).
        self.members = (self.theta[None, :] if members is None
                        else np.asarray(members, dtype=np.float64).reshape(-1, architecture.n_parameters))
        if members is not None and not np.array_equal(self.members[0], self.theta):
            raise HdnnpError("a committee's theta must be its first member")
        #: :class:`hdnnp.baseline.ZBLBaseline` or None; the networks learned E_ref − E_base.
        self.baseline = baseline

    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def elements(self) -> tuple:
        return self.architecture.elements

    # -- storage ---------------------------------------------------------------------------

    def write_h5(self, h5: h5py.File) -> None:
        """Write /feature_set, /networks and /training into an open file."""
        self.feature_set.to_h5(h5.create_group("feature_set"))
        nets = h5.create_group("networks")
        nets.attrs["elements"] = np.array(self.elements, np.int32)
        nets.attrs["hidden"] = np.array(self.architecture.hidden, np.int64)
        nets.attrs["activation"] = self.architecture.activation
        for z in self.elements:
            g = nets.create_group(symbol(z))
            g.attrs.update(atomic_number=z, hidden=np.array(self.architecture.hidden, np.int64),
                           activation=self.architecture.activation,
                           n_inputs=int(self.architecture.n_inputs[z]),
                           reference_energy=self.reference_energies.get(z, 0.0))
            weights, biases = self._views[z]
            for k, (w, b) in enumerate(zip(weights, biases)):
                g.create_dataset(f"weights_{k}", data=w)
                g.create_dataset(f"biases_{k}", data=b)
        tr = h5.create_group("training")
        log = tr.create_group("log")
        for key, values in self.training.get("log", {}).items():
            log.create_dataset(key, data=np.asarray(values))
        tr.create_dataset("validation_frames",
                          data=np.asarray(self.training.get("validation_frames", []), np.int64))
        for key, value in self.training.get("attrs", {}).items():
            tr.attrs[key] = value
        if self.n_members > 1:
            com = h5.create_group("committee")
            com.attrs["n_members"] = self.n_members
            com.create_dataset("theta", data=self.members)
            for key, value in self.training.get("committee", {}).items():
                com.attrs[key] = value
        if self.baseline is not None:
            self.baseline.to_h5(h5.create_group("baseline"))

    def save(self, path, overwrite: bool = False, inputs=(), stage: str = "train") -> None:
        """Write a self-contained model.h5 atomically."""
        with atomic_output(path, overwrite) as tmp:
            with h5py.File(tmp, "w") as h5:
                write_root_attrs(h5, stage, inputs)
                self.write_h5(h5)

    @classmethod
    def read_h5(cls, h5: h5py.File) -> "Potential":
        from hdnnp.descriptors import FeatureSet

        feature_set = FeatureSet.from_h5(h5["feature_set"])
        nets = h5["networks"]
        elements = tuple(int(z) for z in nets.attrs["elements"])
        hidden = tuple(int(h) for h in nets.attrs["hidden"])
        activation = nets.attrs.get("activation", nn.ACTIVATION)
        activation = activation.decode() if isinstance(activation, bytes) else str(activation)
        try:
            nn.layer_activations(activation, len(hidden))
        except ValueError as exc:
            raise HdnnpError(f"{h5.filename}: networks: {exc}") from None
        n_inputs = {z: int(nets[symbol(z)].attrs["n_inputs"]) for z in elements}
        arch = nn.Architecture(elements=elements, n_inputs=n_inputs, hidden=hidden, activation=activation)
        parts = []
        for z in elements:
            g = nets[symbol(z)]
            for k in range(len(hidden) + 1):
                for name in (f"weights_{k}", f"biases_{k}"):
                    values = g[name][:].ravel()
                    if not np.all(np.isfinite(values)):
                        raise HdnnpError(f"{h5.filename}: networks/{symbol(z)}/{name} holds non-finite "
                                         "values; the model is unusable (retrain it)")
                    parts.append(values)
        theta = np.concatenate(parts)
        ref = {z: float(nets[symbol(z)].attrs.get("reference_energy", 0.0)) for z in elements}
        training = {}
        if "training" in h5:
            tr = h5["training"]
            training = dict(log={k: tr["log"][k][:] for k in tr["log"]} if "log" in tr else {},
                            validation_frames=tr["validation_frames"][:] if "validation_frames" in tr else [],
                            attrs=dict(tr.attrs))
        members = None
        if "committee" in h5:
            members = h5["committee/theta"][:]
            training["committee"] = dict(h5["committee"].attrs)
            if not np.all(np.isfinite(members)):
                raise HdnnpError(f"{h5.filename}: committee/theta holds non-finite values; the model is unusable")
            if members.shape[1] != arch.n_parameters or not np.array_equal(members[0], theta):
                raise HdnnpError(f"{h5.filename}: /committee/theta does not match /networks")
        baseline = None
        if "baseline" in h5:
            from hdnnp.baseline import ZBLBaseline

            baseline = ZBLBaseline.from_h5(h5["baseline"])
        return cls(feature_set, arch, theta, ref, training, members, baseline)

    @classmethod
    def load(cls, path) -> "Potential":
        """Read a model.h5 written by ``hdnnp train`` (or a training checkpoint)."""
        with open_stage_file(path, ("train", "train-checkpoint")) as h5:
            try:
                return cls.read_h5(h5)
            except KeyError as exc:
                raise HdnnpError(f"{path}: incomplete model file ({exc})") from None

    # -- prediction ------------------------------------------------------------------------

    def predict_from_descriptors(self, descriptors: dict, n_atoms: int, forces: bool = True, xp=np,
                                 stress: bool = False, theta=None):
        """Energy (eV), forces (n_atoms, 3) eV/Å or None, atomic energies (n_atoms,) eV and, with
        ``stress``, the strain derivative ∂E/∂ε (3, 3) eV as a fourth item.

        ``descriptors``: {Z: object with ``atom_index``, ``values`` and, for forces,
        ``pair_row``, ``pair_atom``, ``dvalues``, for the stress ``virial``} as returned by
        ``compute_descriptors``. ∂E/∂ε_ab = Σ_i Σ_c (∂E_i/∂G'_ic) W_i[c, a, b] (SPEC §9).
        ``theta``: the weights to use (default: :attr:`theta`, the first committee member).
        """
        atomic = xp.zeros(n_atoms)
        f_out = xp.zeros((n_atoms, 3)) if forces else None
        strain = xp.zeros((3, 3)) if stress else None
        theta = xp.asarray(self.theta if theta is None else theta)
        views = nn.unflatten(self.architecture, theta)
        for z, d in descriptors.items():
            if z not in views:
                raise HdnnpError(f"element {symbol(z)} is not in the model (elements: "
                                 f"{', '.join(symbol(e) for e in self.elements)})")
            if len(d.atom_index) == 0:
                continue
            w, b = views[z]
            e, cache = nn.forward(w, b, xp.asarray(d.values), xp, self.architecture.activation)
            atomic[xp.asarray(d.atom_index)] = e
            if forces or stress:
                g = nn.input_gradient(w, cache, xp)
            if forces:
                f_out = f_out + nn.forces_from_input_gradient(
                    g, xp.asarray(d.pair_row), xp.asarray(d.pair_atom), xp.asarray(d.dvalues), n_atoms, xp)
            if stress:
                strain = strain + xp.einsum("rc,rcab->ab", g, xp.asarray(d.virial))
        out = (atomic.sum(), f_out, atomic)
        return out + (strain,) if stress else out

    def _member_networks(self, z: int, x, xp=np):
        """Atomic energies (n_members, n) eV and ∂E/∂G' (n_members, n, n_features) of every
        committee member for the scaled descriptors ``x`` (n, n_features) of element ``z``, in
        the array namespace ``xp`` of ``x`` (NumPy, or CuPy on a GPU)."""
        energies, gradients = [], []
        for theta in self.members:
            w, b = nn.unflatten(self.architecture, xp.asarray(theta))[z]
            e, cache = nn.forward(w, b, x, xp, self.architecture.activation)
            energies.append(e)
            gradients.append(nn.input_gradient(w, cache, xp))
        return xp.stack(energies), xp.stack(gradients)

    def evaluate(self, positions, cell, pbc, species, forces: bool = True, stress: bool = False,
                 device: str = "cpu") -> "Prediction":
        """Energy, atomic energies, forces, stress and extrapolation of one box (:class:`Prediction`).

        ``positions`` (n, 3) Å, ``cell`` (3, 3) rows a, b, c in Å, ``pbc`` (3,) bool, ``species``
        atomic numbers. The stress (ASE's convention, eV/Å³, positive = tensile, P = −tr σ/3) is

            σ_ab = (1/V) ∂E/∂ε_ab = (1/V) Σ_i Σ_p R_p,a ∂E_i/∂R_p,b

        over the neighbour-list entries p of every atom i (each periodic image separately; SPEC
        §9), with V = |det cell|; it needs a cell periodic in all three directions. Energy,
        forces and stress include the repulsive baseline when the model has one.
        """
        from hdnnp.descriptors import compute_descriptors
        from hdnnp.descriptors.compute import adjoint_evaluation_batch

        species = np.asarray(species)
        unknown = sorted(set(species.tolist()) - set(self.elements))
        if unknown:
            raise HdnnpError(f"elements {', '.join(symbol(z) for z in unknown)} are not in the model")
        cell = np.asarray(cell, float)
        adjoint = None
        if forces or stress:  # the adjoint pass (compiled on the CPU, or on the GPU), if there
            adjoint = adjoint_evaluation_batch([(np.asarray(positions, float), cell, np.asarray(pbc, bool), species)],
                                               self.feature_set, self._member_networks, stress, device)[0]
        if adjoint is not None:
            desc, atomic, f_members, s_members = adjoint
            outputs = [(a.sum(), f if forces else None, a) + ((s,) if stress else ())
                       for a, f, s in zip(atomic, f_members, s_members)]
        else:
            desc = compute_descriptors(np.asarray(positions, float), cell, np.asarray(pbc, bool), species,
                                       self.feature_set, derivatives=forces, device=device, stress=stress)
            outputs = [self.predict_from_descriptors(desc, len(species), forces, np, stress, theta)
                       for theta in self.members]
        # committee mean of every quantity; a single potential is a committee of one
        energy, f, atomic, *strain = [None if parts[0] is None else np.mean(parts, axis=0)
                                      for parts in zip(*outputs)]
        if self.baseline is not None:  # the same for every member: added to the means only
            e_b, f_b, atomic_b, strain_b = self.baseline.evaluate(positions, cell, pbc, species, forces, stress)
            energy, atomic = energy + e_b, atomic + atomic_b
            f = f + f_b if forces else f
            strain = [strain[0] + strain_b] if stress else strain
        count, excess = extrapolation_of(desc, self.feature_set)
        p = Prediction(energy=float(energy), atomic_energies=atomic, forces=f,
                       stress=strain[0] / abs(np.linalg.det(cell)) if stress else None,
                       extrapolation_count=count, extrapolation_max_excess=excess)
        if self.n_members > 1:
            p.energy_spread = float(np.std([o[0] for o in outputs]) / max(len(species), 1))
            if forces:
                p.forces_spread = np.std([o[1] for o in outputs], axis=0)
        return p

    def predict(self, positions, cell, pbc, species, forces: bool = True, device: str = "cpu",
                atomic_energies: bool = False, stress: bool = False):
        """Energy (eV) and forces (n_atoms, 3) eV/Å (None if ``forces`` is false) of one box.

        ``positions`` (n, 3) Å, ``cell`` (3, 3) rows a, b, c in Å, ``pbc`` (3,) bool, ``species``
        atomic numbers. With ``atomic_energies`` a further item, the energies per atom (eV); with
        ``stress`` a last one, the stress tensor (3, 3) in eV/Å³ (see :meth:`evaluate`).
        """
        p = self.evaluate(positions, cell, pbc, species, forces=forces, stress=stress, device=device)
        out = (p.energy, p.forces)
        if atomic_energies:
            out += (p.atomic_energies,)
        if stress:
            out += (p.stress,)
        return out


def outside_training_range(values, tolerance: float = EXTRAPOLATION_TOLERANCE) -> np.ndarray:
    """Per row of scaled features (n_rows, n_features): how many lie outside the training range
    [-1, 1], i.e. |x'| > 1 + ``tolerance`` (a rounding margin). The one definition of
    extrapolation, used by evaluate, symmetry, predict and the MD guards."""
    values = np.asarray(values)
    return np.count_nonzero(np.abs(values) > 1.0 + tolerance, axis=-1)


def extrapolation_message(set_name: str, n_extrapolating: int, n_frames: int, n_values: int | None = None) -> str:
    """The one wording of the extrapolation warning (symmetry, predict, report)."""
    values = f" ({n_values} scaled feature values outside [-1, 1], the training range)" if n_values else ""
    return (f"{n_extrapolating} of {n_frames} frames of set '{set_name}' extrapolate{values}: their predictions "
            "are less reliable")


def extrapolation_of(descriptors: dict, feature_set=None,
                     tolerance: float = EXTRAPOLATION_TOLERANCE) -> tuple[int, float]:
    """(count, largest excess) of the scaled features of one box outside the training range:
    count from :func:`outside_training_range`, excess = max(|x'|) − 1 (0 if none), x' on the
    training-range scale (:meth:`FeatureSet.unit_scaled`, for imported scalings)."""
    total, excess = 0, 0.0
    for z, d in descriptors.items():
        v = np.asarray(d.values.get() if hasattr(d.values, "get") else d.values)
        if feature_set is not None:
            v = feature_set.unit_scaled(z, v)
        if v.size == 0:
            continue
        total += int(outside_training_range(v, tolerance).sum())
        excess = max(excess, float(np.abs(v).max()) - 1.0)
    return total, (excess if total else 0.0)


@dataclass
class Prediction:
    """What the potential says about one box (units: eV, eV/Å, eV/Å³).

    ``stress`` (3, 3) in ASE's convention (positive = tensile; pressure P = −tr σ / 3) or None;
    ``extrapolation_count`` scaled features outside [-1, 1]; ``extrapolation_max_excess`` the
    largest |x'| − 1 among them (0 when none): how far the box lies outside the training range.
    For a committee (the values above are the members' means): ``energy_spread`` the population
    standard deviation of the members' energies per atom (eV/atom), ``forces_spread`` (n, 3)
    that of every force component (eV/Å); NaN / None for a single potential.
    """

    energy: float
    atomic_energies: np.ndarray
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    extrapolation_count: int = 0
    extrapolation_max_excess: float = 0.0
    energy_spread: float = float("nan")
    forces_spread: np.ndarray | None = None

    @property
    def force_spread(self) -> float:
        """The largest standard deviation of a force component over the members (eV/Å)."""
        return float(self.forces_spread.max()) if self.forces_spread is not None else float("nan")


def model_path_for_checkpoint(output) -> Path:
    """Checkpoint next to the output: ``model.h5`` -> ``model.h5.checkpoint``."""
    output = Path(output)
    return output.with_name(output.name + ".checkpoint")
