"""n2p2 potentials in and out: ``input.nn``, ``scaling.data``, ``weights.ZZZ.data`` (the files
n2p2's ``nnp-predict`` and LAMMPS's ``pair_style hdnnp`` read).

n2p2's conventions, as its library (libnnp) implements them (checked against n2p2 itself by
``scripts/check_n2p2.sh`` and by golden values in the tests):

- Elements are ordered by atomic number; the symmetry functions of each central element are
  sorted (``SymFnc::operator<``) by type, cutoff type, cutoff radius, η, Rs, then ζ, λ (angular),
  then the neighbour element indices. That sorted order is the network's input order and the
  row order of scaling.data (``element-index function-index Gmin Gmax Gmean Gsigma``, 1-based,
  the elements one after the other).
- ``symfunction_short <c> 2 <n> <η> <Rs> <Rc>``; ``<c> 3|9 <n1> <n2> <η> <λ> <ζ> <Rc> [<Rs>]``
  (type 3 = hdnnp's narrow G4, type 9 = the wide G5, see
  :mod:`hdnnp.descriptors.symmetry_functions`), lengths in the units of the training data.
- Scaling: ``scale_symmetry_functions`` Gs = Smin + (Smax − Smin)(G − Gmin)/(Gmax − Gmin);
  ``center_symmetry_functions`` Gs = G − Gmean; both: Smin + (Smax − Smin)(G − Gmean)/(Gmax −
  Gmin); ``scale_symmetry_functions_sigma`` Smin + (Smax − Smin)(G − Gmean)/Gsigma; none: Gs = G.
  Smin, Smax = ``scale_min_short``, ``scale_max_short`` (defaults 0 and 1).
- Networks: ``global_activation_short`` one letter per hidden layer and the output (which must
  be ``l``, linear); ``weights.ZZZ.data`` (ZZZ = atomic number) lists, layer by layer, the
  weights with the previous-layer neuron outer and this layer's neuron inner, then the
  biases: hdnnp's own flat order (W of shape (n_in, n_out) row-major, then b).
  ``normalize_nodes`` divides every neuron's input sum (bias included) by the previous
  layer's width.
- Energies: E = Σ_i NN_i / conv_energy + N · mean_energy + Σ_i atom_energy(Z_i); lengths inside
  the networks are R · conv_length (``mean_energy``, ``conv_*`` appear after n2p2's
  normalisation, ``nnp-norm``), all in the data's units.

Import folds units, normalisation and the atomic energies into hdnnp's weights exactly
(η → η/L², Rs and Rc → Rs·L, Rc·L with L the length unit in Å; output layer ×U/conv_energy and
output bias + (mean_energy + atom_energy)·U with U the energy unit in eV; ``normalize_nodes`` →
W/n, b/n), and keeps n2p2's scaling. Export writes hdnnp's potential in Å and eV, without
normalisation, with ``scale_symmetry_functions`` between −1 and 1 (hdnnp's ranging).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hdnnp import nn
from hdnnp.elements import atomic_number, symbol
from hdnnp.errors import HdnnpError
from hdnnp.io.n2p2 import LENGTH_UNITS_IN_ANGSTROM
from hdnnp.units import ENERGY_UNITS_IN_EV

#: Å per length unit and eV per energy unit of the potential files: hdnnp's own constants
#: (:mod:`hdnnp.units`, CODATA 2018), the ones ``prepare`` converts n2p2 data with.
#: Names match ``prepare``'s ``--length-unit``/``--energy-unit``, compared without case.
LENGTH_UNITS = LENGTH_UNITS_IN_ANGSTROM
ENERGY_UNITS = {k: ENERGY_UNITS_IN_EV[k] for k in ("eV", "Hartree")}


def unit_name(name: str, table: dict) -> str:
    """The key of ``table`` that ``name`` spells, case ignored (``hartree`` -> ``Hartree``)."""
    for key in table:
        if key.lower() == str(name).lower():
            return key
    raise HdnnpError(f"unknown unit '{name}'; expected one of {', '.join(table)}")
#: n2p2 symmetry-function type -> hdnnp kind (2 radial, 4 narrow angular, 5 wide angular).
TYPES = {2: 2, 3: 4, 9: 5}
KINDS = {v: k for k, v in TYPES.items()}
#: n2p2 activation letters -> :data:`hdnnp.nn.ACTIVATIONS` names.
LETTERS = {letter: name for name, (letter, _) in nn.ACTIVATIONS.items()}
#: input.nn keywords that change predictions and that hdnnp cannot evaluate.
UNSUPPORTED = {
    "element_hidden_layers_short": "per-element network sizes",
    "element_nodes_short": "per-element network sizes",
    "element_activation_short": "per-element activations",
    "global_hidden_layers_electrostatic": "electrostatics (4G-HDNNP)",
    "global_nodes_electrostatic": "electrostatics (4G-HDNNP)",
    "global_activation_electrostatic": "electrostatics (4G-HDNNP)",
    "element_hidden_layers_electrostatic": "electrostatics (4G-HDNNP)",
    "element_nodes_electrostatic": "electrostatics (4G-HDNNP)",
    "element_activation_electrostatic": "electrostatics (4G-HDNNP)",
    "fixed_gausswidth": "electrostatics (4G-HDNNP)",
    "ewald_truncation_error_method": "electrostatics (4G-HDNNP)",
    "ewald_prec": "electrostatics (4G-HDNNP)",
    "screen_electrostatics": "electrostatics (4G-HDNNP)",
    "conv_charge": "charges",
}
#: Keywords read by this module; every other n2p2 keyword only steers training and is ignored.
READ = {"number_of_elements", "elements", "atom_energy", "cutoff_type", "symfunction_short",
        "scale_symmetry_functions", "center_symmetry_functions", "scale_symmetry_functions_sigma",
        "scale_min_short", "scale_max_short", "global_hidden_layers_short", "global_nodes_short",
        "global_activation_short", "normalize_nodes", "mean_energy", "conv_energy", "conv_length",
        "nnp_type"}


@dataclass
class SymmetryFunction:
    """One ``symfunction_short`` line (values in the file's units)."""

    central: int
    type: int
    neighbors: tuple
    eta: float
    rs: float
    zeta: float
    lam: float
    rc: float
    line: int = 0

    def sort_key(self, cutoff_type: int, alpha: float, element_index: dict):
        """n2p2's ``SymFnc::operator<`` (ec, type, cutoff type and α, Rc, η, Rs, ζ, λ, e1, e2)."""
        e = sorted(element_index[z] for z in self.neighbors)
        angular = (self.zeta, self.lam) if self.type != 2 else ()
        return (element_index[self.central], self.type, cutoff_type, alpha, self.rc, self.eta, self.rs,
                *angular, *e)


@dataclass
class InputNN:
    """What hdnnp uses of an input.nn."""

    path: Path
    elements: tuple = ()
    atom_energy: dict = field(default_factory=dict)
    cutoff_type: int = 1
    cutoff_alpha: float = 0.0
    functions: list = field(default_factory=list)
    scaling: str = "none"
    smin: float = 0.0
    smax: float = 1.0
    hidden: tuple = ()
    activations: tuple = ()
    normalize_nodes: bool = False
    mean_energy: float = 0.0
    conv_energy: float = 1.0
    conv_length: float = 1.0
    ignored: list = field(default_factory=list)


def _fail(path, line, message):
    where = f"{path}, line {line}" if line else str(path)
    raise HdnnpError(f"{where}: {message}")


def _float(path, line, word, what):
    try:
        value = float(word)
    except ValueError:
        _fail(path, line, f"{what} must be a number, got '{word}'")
    if not math.isfinite(value):
        _fail(path, line, f"{what} must be finite, got '{word}'")
    return value


def _element(path, line, word, known=None):
    try:
        z = atomic_number(word)
    except (HdnnpError, KeyError, ValueError):
        _fail(path, line, f"unknown element '{word}'")
    if known is not None and z not in known:
        _fail(path, line, f"element {word} is not in the elements line ({', '.join(symbol(e) for e in known)})")
    return z


def input_lines(text: str):
    """``(line number, keyword, arguments)`` of every non-empty line of an input.nn text, as
    n2p2's Settings reads them: '#' and '!' start comments; ``symfunction`` is
    ``symfunction_short``."""
    for number, raw in enumerate(text.splitlines(), 1):
        words = re.split("[#!]", raw, maxsplit=1)[0].split()
        if words:
            key = "symfunction_short" if words[0] == "symfunction" else words[0]
            yield number, key, words[1:]


def read_input_nn(path) -> InputNN:
    """Parse an input.nn; unsupported keywords, types and activations are errors naming the line."""
    path = Path(path)
    out = InputNN(path)
    seen = {}
    lines = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise HdnnpError(f"{path}: cannot be read ({exc.strerror})") from None
    for number, key, args in input_lines(text):
        if key in UNSUPPORTED:
            _fail(path, number, f"keyword '{key}' ({UNSUPPORTED[key]}) is not supported by hdnnp")
        if key not in READ:
            out.ignored.append(key)
            continue
        if key not in ("symfunction_short", "atom_energy") and key in seen:
            _fail(path, number, f"keyword '{key}' given twice (first on line {seen[key]})")
        seen[key] = number
        lines.append((number, key, args))
    for key in ("elements", "global_hidden_layers_short", "global_nodes_short", "global_activation_short"):
        if key not in seen:
            _fail(path, 0, f"no '{key}' line: not a complete n2p2 potential")
    by_key = {key: (number, args) for number, key, args in lines}

    number, args = by_key["elements"]
    out.elements = tuple(sorted(_element(path, number, w) for w in args))
    if not out.elements or len(set(out.elements)) != len(out.elements):
        _fail(path, number, "'elements' must list distinct elements")
    if "number_of_elements" in by_key:
        number, args = by_key["number_of_elements"]
        if not args or args[0] != str(len(out.elements)):
            _fail(path, number, f"number_of_elements {' '.join(args)} does not match the {len(out.elements)} "
                                "elements listed")
    if "nnp_type" in by_key:
        number, args = by_key["nnp_type"]
        if not args or args[0] not in ("2", "2G-HDNNP"):
            _fail(path, number, f"nnp_type {' '.join(args)}: only short-range HDNNPs (type 2) are supported")
    if "cutoff_type" in by_key:
        from hdnnp.descriptors.symmetry_functions import CUTOFF_TYPES

        number, args = by_key["cutoff_type"]
        if not args or not args[0].isdigit() or int(args[0]) not in CUTOFF_TYPES:
            _fail(path, number, f"cutoff_type {' '.join(args)} is not supported (supported: "
                                f"{', '.join(f'{k} {v}' for k, v in CUTOFF_TYPES.items())})")
        out.cutoff_type = int(args[0])
        if len(args) > 1:
            out.cutoff_alpha = _float(path, number, args[1], "the cutoff parameter alpha")
            if not 0.0 <= out.cutoff_alpha < 1.0:
                _fail(path, number, f"the cutoff parameter alpha must be in [0, 1), got {args[1]}")
    for number, key, args in lines:
        if key == "atom_energy":
            if len(args) < 2:
                _fail(path, number, "atom_energy needs an element and an energy")
            out.atom_energy[_element(path, number, args[0], out.elements)] = _float(path, number, args[1],
                                                                                    "the atomic energy")
        elif key == "symfunction_short":
            out.functions.append(_symmetry_function(path, number, args, out.elements))
    if not out.functions:
        _fail(path, 0, "no symfunction_short lines")
    flags = [k for k in ("scale_symmetry_functions", "center_symmetry_functions", "scale_symmetry_functions_sigma")
             if k in by_key]
    out.scaling = ("scale+center" if {"scale_symmetry_functions", "center_symmetry_functions"} <= set(flags)
                   else "scale" if "scale_symmetry_functions" in flags
                   else "center" if "center_symmetry_functions" in flags
                   else "sigma" if flags else "none")
    for key, attr in (("scale_min_short", "smin"), ("scale_max_short", "smax"), ("mean_energy", "mean_energy"),
                      ("conv_energy", "conv_energy"), ("conv_length", "conv_length")):
        if key in by_key:
            number, args = by_key[key]
            if not args:
                _fail(path, number, f"{key} needs a value")
            setattr(out, attr, _float(path, number, args[0], key))
    for key in ("conv_energy", "conv_length"):
        if getattr(out, key) <= 0:
            _fail(path, by_key[key][0], f"{key} must be positive")
    out.normalize_nodes = "normalize_nodes" in by_key
    number, args = by_key["global_hidden_layers_short"]
    if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
        _fail(path, number, f"global_hidden_layers_short must be a positive integer, got '{' '.join(args)}'")
    n_hidden = int(args[0])
    number, args = by_key["global_nodes_short"]
    if len(args) != n_hidden or not all(a.isdigit() and int(a) > 0 for a in args):
        _fail(path, number, f"global_nodes_short must give {n_hidden} positive widths, got '{' '.join(args)}'")
    out.hidden = tuple(int(a) for a in args)
    number, args = by_key["global_activation_short"]
    if len(args) != n_hidden + 1:
        _fail(path, number, f"global_activation_short must give {n_hidden + 1} letters (hidden layers and the "
                            f"output), got '{' '.join(args)}'")
    for a in args[:-1]:
        if a not in LETTERS:
            _fail(path, number, f"activation '{a}' is not supported (supported: "
                                f"{', '.join(f'{k} {v}' for k, v in LETTERS.items())})")
    if args[-1] != "l":
        _fail(path, number, f"the output activation must be 'l' (linear), got '{args[-1]}'")
    out.activations = tuple(LETTERS[a] for a in args[:-1])
    return out


def _symmetry_function(path, number, args, elements) -> SymmetryFunction:
    if len(args) < 2 or not args[1].isdigit():
        _fail(path, number, "symfunction_short needs '<element> <type> ...'")
    central = _element(path, number, args[0], elements)
    t = int(args[1])
    if t not in TYPES:
        _fail(path, number, f"symmetry-function type {t} is not supported (supported: 2 radial, 3 narrow "
                            "angular, 9 wide angular)")
    if t == 2:
        if len(args) != 6:
            _fail(path, number, "type 2 needs '<element> 2 <neighbour> <eta> <rshift> <rcutoff>'")
        nb = (_element(path, number, args[2], elements),)
        eta, rs, rc = (_float(path, number, w, n) for w, n in zip(args[3:6], ("eta", "rshift", "rcutoff")))
        zeta = lam = 0.0
    else:
        if len(args) not in (8, 9):
            _fail(path, number, f"type {t} needs '<element> {t} <neighbour1> <neighbour2> <eta> <lambda> <zeta> "
                                "<rcutoff> [<rshift>]'")
        nb = tuple(sorted(_element(path, number, w, elements) for w in args[2:4]))
        eta, lam, zeta, rc = (_float(path, number, w, n) for w, n in zip(args[4:8], ("eta", "lambda", "zeta",
                                                                                      "rcutoff")))
        rs = _float(path, number, args[8], "rshift") if len(args) == 9 else 0.0
        rs = max(rs, 0.0)  # n2p2 applies an angular shift only when it is positive
        if zeta < 1.0:
            _fail(path, number, f"zeta must be >= 1, got {args[6]}")
        if abs(lam) != 1.0:
            _fail(path, number, f"lambda must be -1 or 1, got {args[5]}")
    if rc <= 0 or eta < 0:
        _fail(path, number, "rcutoff must be positive and eta non-negative")
    return SymmetryFunction(central, t, nb, eta, rs, zeta, lam, rc, number)


def _read_columns(path, expected: int, what: str, n_columns: int = 1, optional: int = 0) -> np.ndarray:
    """The first ``n_columns`` (+ up to ``optional`` more, NaN where absent) numbers of every
    non-comment line of ``path`` (n2p2's ``readColumnsFromFile``), checked to be ``expected`` rows."""
    path = Path(path)
    if not path.is_file():
        raise HdnnpError(f"{path}: missing ({what})")
    rows = []
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        words = raw.split()
        if len(words) < n_columns:
            _fail(path, number, f"expected {n_columns} numbers, got '{raw.strip()}'")
        values = [_float(path, number, w, "a value") for w in words[:n_columns + optional]]
        rows.append(values + [np.nan] * (n_columns + optional - len(values)))
    if len(rows) != expected:
        raise HdnnpError(f"{path}: {len(rows)} values, expected {expected} for {what}")
    return np.array(rows, float).reshape(len(rows), n_columns + optional)


def read_potential(directory, length_unit: str = "angstrom", energy_unit: str = "eV", warn=None):
    """An n2p2 potential directory as a :class:`hdnnp.model.Potential` in Å and eV.

    ``length_unit``, ``energy_unit``: the units of the potential's training data (keys of
    :data:`LENGTH_UNITS`, :data:`ENERGY_UNITS`). ``warn(message)`` receives the notes (ignored
    training keywords, units that look like Bohr)."""
    from hdnnp.descriptors import FeatureSet
    from hdnnp.model import Potential

    directory = Path(directory)
    if not directory.is_dir():
        raise HdnnpError(f"{directory}: not a directory (expected an n2p2 potential directory)")
    if not (directory / "input.nn").is_file():
        raise HdnnpError(f"{directory}: no input.nn (an n2p2 potential needs input.nn, scaling.data, "
                         "weights.ZZZ.data)")
    length_unit, energy_unit = unit_name(length_unit, LENGTH_UNITS), unit_name(energy_unit, ENERGY_UNITS)
    spec = read_input_nn(directory / "input.nn")
    length, energy = LENGTH_UNITS[length_unit], ENERGY_UNITS[energy_unit]
    warn = warn or (lambda message: None)
    rc_file = max(f.rc for f in spec.functions)
    if length_unit == "angstrom" and rc_file >= 9.0:
        warn(f"{directory / 'input.nn'}: cutoff radius {rc_file:g} is unusually large for Å; if the potential "
             "was trained in Bohr, pass --length-unit bohr (and --energy-unit hartree)")

    index = {z: k for k, z in enumerate(spec.elements)}
    per_element = {z: sorted((f for f in spec.functions if f.central == z),
                             key=lambda f: f.sort_key(spec.cutoff_type, spec.cutoff_alpha, index))
                   for z in spec.elements}
    for z, fns in per_element.items():  # (a function listed twice is two equal inputs, as in n2p2)
        if not fns:
            raise HdnnpError(f"{directory / 'input.nn'}: no symmetry functions for element {symbol(z)}")
    n_total = sum(len(f) for f in per_element.values())
    stats = _read_columns(directory / "scaling.data", n_total, f"{n_total} symmetry functions "
                          f"({', '.join(f'{len(per_element[z])} of {symbol(z)}' for z in spec.elements)})",
                          5, optional=1)  # older n2p2 versions write no sigma
    # candidates: the union of all elements' functions, one row per distinct definition (Å)
    keys, rows = {}, []
    selected = {}
    for z in spec.elements:
        cols = []
        for f in per_element[z]:
            row = (TYPES[f.type], f.neighbors[0], f.neighbors[1] if len(f.neighbors) > 1 else 0,
                   f.eta / length ** 2, f.rs * length, f.zeta, f.lam, f.rc * length)
            if row not in keys:
                keys[row] = len(rows)
                rows.append(row)
            cols.append(keys[row])
        selected[z] = np.array(cols, np.int64)
    c = list(zip(*rows))
    rc = np.array(c[7])
    fs = FeatureSet(elements=spec.elements, cutoff=float(rc.max()), kind=np.array(c[0], np.int32),
                    neighbor_a=np.array(c[1], np.int32), neighbor_b=np.array(c[2], np.int32),
                    eta=np.array(c[3]), rs=np.array(c[4]), zeta=np.array(c[5]), lambda_=np.array(c[6]), rc=rc,
                    cutoff_type=spec.cutoff_type, cutoff_alpha=spec.cutoff_alpha)
    fs.selection_method = "n2p2"
    fs.scaling_keywords = "\n".join(
        {"scale": ["scale_symmetry_functions"], "center": ["center_symmetry_functions"],
         "scale+center": ["scale_symmetry_functions", "center_symmetry_functions"],
         "sigma": ["scale_symmetry_functions_sigma"], "none": []}[spec.scaling]
        + ([f"scale_min_short {_fmt(spec.smin)}", f"scale_max_short {_fmt(spec.smax)}"]
           if spec.scaling in ("scale", "scale+center", "sigma") else []))
    start = 0
    for z in spec.elements:
        n = len(per_element[z])
        block = stats[start:start + n]
        start += n
        gmin, gmax, gmean, gsigma = block[:, 2], block[:, 3], block[:, 4], block[:, 5]
        ids = block[:, :2].astype(int)
        expected_ids = np.stack([np.full(n, index[z] + 1), np.arange(1, n + 1)], 1)
        if not np.array_equal(ids, expected_ids):
            bad = int(np.flatnonzero(np.any(ids != expected_ids, axis=1))[0])
            raise HdnnpError(f"{directory / 'scaling.data'}: row {start - n + bad + 1} is for element index "
                             f"{ids[bad, 0]}, function {ids[bad, 1]}; expected {expected_ids[bad, 0]} "
                             f"({symbol(z)}), function {expected_ids[bad, 1]}")
        fs.selected[z] = selected[z]
        fs.min[z], fs.max[z] = gmin.copy(), gmax.copy()
        fs.candidate_mean[z], fs.candidate_sigma[z] = _per_candidate(selected[z], len(rows), gmean, gsigma)
        if not (spec.scaling == "scale" and (spec.smin, spec.smax) == (-1.0, 1.0)):  # else hdnnp's own ranging
            fs.scaling[z] = _scaling(spec, gmin, gmax, gmean, gsigma, directory / "scaling.data", z)

    arch = nn.Architecture(elements=spec.elements, n_inputs={z: len(per_element[z]) for z in spec.elements},
                           hidden=spec.hidden, activation=",".join(spec.activations) if len(set(spec.activations)) > 1
                           else spec.activations[0])
    parts = []
    for z in spec.elements:
        sizes = arch.layer_sizes(z)
        n_par = sum(sizes[k] * sizes[k + 1] + sizes[k + 1] for k in range(len(sizes) - 1))
        name = directory / f"weights.{z:03d}.data"
        values = _read_columns(name, n_par, f"the {'-'.join(map(str, sizes))} network of {symbol(z)}")[:, 0]
        pos = 0
        for k in range(len(sizes) - 1):
            w = values[pos:pos + sizes[k] * sizes[k + 1]].reshape(sizes[k], sizes[k + 1])
            pos += w.size
            b = values[pos:pos + sizes[k + 1]]
            pos += b.size
            if spec.normalize_nodes:
                w, b = w / sizes[k], b / sizes[k]
            if k == len(sizes) - 2:  # output: physical energy per atom in eV
                w = w * (energy / spec.conv_energy)
                b = (b / spec.conv_energy + spec.mean_energy + spec.atom_energy.get(z, 0.0)) * energy
            parts += [w.ravel(), b]
    theta = np.concatenate(parts)
    notes = sorted(set(spec.ignored))
    if notes:
        warn(f"{directory / 'input.nn'}: training-only keywords ignored: {', '.join(notes)}")
    training = {"attrs": {"imported_from": str(directory.resolve()), "import_format": "n2p2",
                          "length_unit": length_unit, "energy_unit": energy_unit}}
    return Potential(fs, arch, theta, {z: 0.0 for z in spec.elements}, training)


def _per_candidate(selected, n_candidates, *values):
    """Per-candidate arrays (NaN where an element does not use a candidate) of per-input values."""
    out = []
    for v in values:
        full = np.full(n_candidates, np.nan)
        full[selected] = v
        out.append(full)
    return out


def _scaling(spec: InputNN, gmin, gmax, gmean, gsigma, path, z):
    """(center, factor, offset) of x' = (x − center)·factor + offset for n2p2's scaling mode."""
    width = (spec.smax - spec.smin)
    if spec.scaling in ("scale", "scale+center") and np.any(gmax <= gmin):
        raise HdnnpError(f"{path}: {symbol(z)} has a function with Gmax <= Gmin; n2p2's scaling divides by "
                         "Gmax − Gmin")
    if spec.scaling == "sigma" and not np.all(gsigma > 0):
        raise HdnnpError(f"{path}: {symbol(z)} has a function with sigma <= 0 or none (a 5-column row); "
                         "scale_symmetry_functions_sigma divides by it")
    if spec.scaling == "scale":
        return gmin.copy(), width / (gmax - gmin), np.full_like(gmin, spec.smin)
    if spec.scaling == "scale+center":
        return gmean.copy(), width / (gmax - gmin), np.full_like(gmin, spec.smin)
    if spec.scaling == "sigma":
        return gmean.copy(), width / gsigma, np.full_like(gmin, spec.smin)
    if spec.scaling == "center":
        return gmean.copy(), np.ones_like(gmin), np.zeros_like(gmin)
    return np.zeros_like(gmin), np.ones_like(gmin), np.zeros_like(gmin)


# -- export ------------------------------------------------------------------------------------

def _fmt(x: float) -> str:
    """Shortest text that reads back as the same double."""
    return repr(float(x))


def write_potential(potential, directory, theta=None, source: str = "") -> dict:
    """Write ``potential`` (weights ``theta``, default its first member) as n2p2 files into the
    existing, empty ``directory``; returns {"cutoff": Å, "elements": symbols}.

    hdnnp's ranging becomes ``scale_symmetry_functions`` with Smin = −1, Smax = 1; an imported
    potential keeps its own scaling keywords and statistics. A feature constant in training
    (hdnnp feeds 0, n2p2 would divide by zero) is written with the range [G, G + 1] and zero
    weights out of it: the same energies. Refuses what the format cannot hold: a repulsive
    baseline."""
    fs = potential.feature_set
    if potential.baseline is not None:
        raise HdnnpError("this model has a repulsive (ZBL) baseline, which n2p2's format cannot hold; "
                         "export a model trained with --baseline none")
    imported = any(z in fs.scaling for z in fs.elements)
    if imported and not fs.scaling_keywords:
        raise HdnnpError("this model has a scaling of unknown origin, which n2p2's keywords cannot express")
    directory = Path(directory)
    arch = potential.architecture
    theta = potential.theta if theta is None else np.asarray(theta, float)
    views = nn.unflatten(arch, theta)
    index = {z: k for k, z in enumerate(fs.elements)}
    letters = [nn.ACTIVATIONS[a][0] for a in nn.layer_activations(arch.activation, len(arch.hidden))]
    lines = [f"# n2p2 potential written by hdnnp{' from ' + source if source else ''}",
             "# units: Å and eV (LAMMPS units metal: pair_style hdnnp ... cflength 1.0 cfenergy 1.0)",
             f"number_of_elements {len(fs.elements)}",
             "elements " + " ".join(symbol(z) for z in fs.elements)]
    lines += [f"atom_energy {symbol(z)} 0.0" for z in fs.elements]
    lines += [f"cutoff_type {int(fs.cutoff_type)} {_fmt(fs.cutoff_alpha)}",
              *(fs.scaling_keywords.splitlines() if imported else
                ["scale_symmetry_functions", "scale_min_short -1.0", "scale_max_short 1.0"]),
              f"global_hidden_layers_short {len(arch.hidden)}",
              "global_nodes_short " + " ".join(str(h) for h in arch.hidden),
              "global_activation_short " + " ".join(letters + ["l"]),
              "use_short_forces", ""]
    scaling_rows = ["# Symmetry function scaling data written by hdnnp (columns: element index, function "
                    "index, Gmin, Gmax, Gmean, Gsigma" + (", as imported)" if imported else
                    " over the training atoms the features were selected on; scale_symmetry_functions uses "
                    "Gmin and Gmax only)")]
    if any(z not in fs.candidate_mean for z in fs.elements):
        scaling_rows.append("# Gmean and Gsigma were not recorded by the hdnnp version that made this model: "
                            "written as (Gmin + Gmax)/2 and 0")
    for z in fs.elements:
        sel = fs.selected[z]
        fns = []
        for pos, c in enumerate(sel):
            t = KINDS.get(int(fs.kind[c]))
            nbs = (int(fs.neighbor_a[c]),) if t == 2 else (int(fs.neighbor_a[c]), int(fs.neighbor_b[c]))
            fns.append((SymmetryFunction(z, t, nbs, float(fs.eta[c]), float(fs.rs[c]), float(fs.zeta[c]),
                                         float(fs.lambda_[c]), float(fs.rc[c])), pos))
        fns.sort(key=lambda item: item[0].sort_key(int(fs.cutoff_type), float(fs.cutoff_alpha), index))
        order = np.array([pos for _, pos in fns])
        for f, _ in fns:
            nb = " ".join(symbol(e) for e in f.neighbors)
            if f.type == 2:
                lines.append(f"symfunction_short {symbol(z)} 2 {nb} {_fmt(f.eta)} {_fmt(f.rs)} {_fmt(f.rc)}")
            else:
                lines.append(f"symfunction_short {symbol(z)} {f.type} {nb} {_fmt(f.eta)} {_fmt(f.lam)} "
                             f"{_fmt(f.zeta)} {_fmt(f.rc)} {_fmt(f.rs)}")
        gmin, gmax = fs.min[z][order], fs.max[z][order].copy()
        constant = ~(gmax > gmin) & (not imported)  # an imported scaling is written as it came
        gmax[constant] = gmin[constant] + 1.0
        if z in fs.candidate_mean:
            gmean, gsigma = fs.candidate_mean[z][sel][order], fs.candidate_sigma[z][sel][order]
        else:
            gmean, gsigma = 0.5 * (gmin + gmax), np.zeros(len(order))
        for k in range(len(order)):
            sigma = f" {_fmt(gsigma[k])}" if np.isfinite(gsigma[k]) else ""  # older n2p2: no sigma
            scaling_rows.append(f"{index[z] + 1} {k + 1} {_fmt(gmin[k])} {_fmt(gmax[k])} {_fmt(gmean[k])}{sigma}")
        weights, biases = views[z]
        w0 = np.array(weights[0][order])
        w0[constant] = 0.0
        values = []
        for k, (w, b) in enumerate(zip([w0] + list(weights[1:]), biases)):
            values += [(v, "a") for v in np.asarray(w).ravel()] + [(v, "b") for v in np.asarray(b).ravel()]
        text = ["# n2p2 weights written by hdnnp: per layer the weights (previous-layer neuron outer, this "
                "layer's inner), then the biases"]
        text += [f"{_fmt(v)} {t} {i}" for i, (v, t) in enumerate(values, 1)]
        (directory / f"weights.{z:03d}.data").write_text("\n".join(text) + "\n")
    (directory / "input.nn").write_text("\n".join(lines) + "\n")
    (directory / "scaling.data").write_text("\n".join(scaling_rows) + "\n")
    return {"cutoff": float(max(fs.rc[fs.selected[z]].max() for z in fs.elements)),
            "elements": [symbol(z) for z in fs.elements]}


def lammps_input(info: dict, potential_dir: str = ".", structure: str = "structure.data",
                 temperature: float = 300.0) -> str:
    """A working LAMMPS input (units metal) running NVT MD with the exported potential."""
    elements = " ".join(info["elements"])
    return f"""# LAMMPS input for the exported hdnnp potential (n2p2's pair_style hdnnp; LAMMPS built with
# the ML-HDNNP package, or n2p2's plugin: see the README, "Use the potential in LAMMPS").
# The potential is in Å and eV: with units metal, cflength and cfenergy are 1.
# Atom types 1, 2, ... of {structure} are the elements of pair_coeff in that order ({elements}).
# Extrapolation warnings: showew yes prints each one, showewsum N a summary every N steps,
# maxew M stops the run after M of them (n2p2's default 0 stops at the first).
units           metal
boundary        p p p
atom_style      atomic
read_data       {structure}

pair_style      hdnnp {info['cutoff']!r} dir {potential_dir} showew no showewsum 100 maxew 1000 resetew yes cflength 1.0 cfenergy 1.0
pair_coeff      * * {elements}

neighbor        1.0 bin
timestep        0.002
velocity        all create {temperature} 4928459 mom yes rot yes dist gaussian
fix             1 all nvt temp {temperature} {temperature} 0.1
thermo          100
thermo_style    custom step temp pe etotal press vol
dump            1 all custom 100 dump.lammpstrj id type x y z fx fy fz
run             1000
"""


def export_potential(potential, directory, overwrite: bool = False, source: str = "", structure=None,
                     temperature: float = 300.0) -> list:
    """``hdnnp export --format n2p2``: the n2p2 files and ``lammps.in`` in ``directory``
    (a committee: ``member_1`` ... ``member_N`` subdirectories, one potential each). Written
    into a temporary directory renamed into place; an existing ``directory`` is refused
    unless ``overwrite``. ``structure``: ASE Atoms written as ``structure.data`` (LAMMPS
    data file) for the example input. Returns the written potential directories."""
    from hdnnp.h5io import atomic_directory

    members = list(potential.members)
    written = []
    with atomic_directory(directory, overwrite) as tmp:
        for k, theta in enumerate(members):
            sub = tmp if len(members) == 1 else tmp / f"member_{k + 1}"
            sub.mkdir(exist_ok=True)
            info = write_potential(potential, sub, theta, source)
            if structure is not None:
                _write_structure(structure, sub / "structure.data", info["elements"])
            (sub / "lammps.in").write_text(lammps_input(info, temperature=temperature))
            written.append(Path(directory) / sub.relative_to(tmp))
        if len(members) > 1:
            (tmp / "README").write_text(
                f"A committee of {len(members)} networks: n2p2 and LAMMPS run one potential at a time, so each "
                "member is its own directory. hdnnp's committee prediction is the members' mean; LAMMPS can "
                "run one member (or use n2p2's pair_style hdnnp once per member).\n")
    return written


def _write_structure(atoms, path, elements):
    from ase.io import write

    missing = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if missing:
        raise HdnnpError(f"the structure has elements {', '.join(missing)} that the potential lacks")
    write(path, atoms, format="lammps-data", specorder=list(elements), masses=True)

