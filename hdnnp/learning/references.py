"""Reference methods that label the frames ``hdnnp learn`` selects (energies eV, forces eV/Å,
stress eV/Å³ in ASE's sign for boxes periodic in all three directions), and that ``hdnnp md
--reference`` runs directly.

``--reference`` takes one of

- ``tblite:METHOD`` — tblite's ASE calculator (``pip install 'hdnnp[xtb]'``), METHOD one of
  GFN1-xTB (the method of the bundled Te data), GFN2-xTB, IPEA1-xTB; electronic temperature
  and other keywords through ``--reference-args`` (JSON, passed to ``tblite.ase.TBLite``);
- ``ase:MODULE.CLASS`` — any ASE calculator by import path, e.g. ``ase:ase.calculators.emt.EMT``
  or ``ase:ase.calculators.vasp.Vasp`` with ``--reference-args '{"xc": "PBE", ...}'``;
- ``external`` — nothing is computed here: the selected frames are written for another code
  (extxyz, VASP POSCAR, DL_POLY CONFIG) and the loop stops until ``--add-labels FILES``.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field

from hdnnp.errors import HdnnpError

TBLITE_METHODS = ("GFN1-xTB", "GFN2-xTB", "IPEA1-xTB")


@dataclass
class Reference:
    """A parsed ``--reference`` (``kind``: tblite, ase or external)."""

    spec: str
    kind: str
    target: str = ""
    args: dict = field(default_factory=dict)

    @property
    def external(self) -> bool:
        return self.kind == "external"

    def calculator(self):
        """A fresh ASE calculator of this reference (ImportError -> one clear line)."""
        if self.kind == "tblite":
            try:
                from tblite.ase import TBLite
            except ImportError:
                raise HdnnpError(f"--reference {self.spec}: tblite is not installed; pip install 'hdnnp[xtb]' "
                                 "(or pip install tblite)") from None
            calc = TBLite(method=self.target, **{"verbosity": 0, **self.args})
            # tblite stores the free energy (= its energy) with every result but does not declare
            # it, and ASE's Nosé–Hoover/MTK integrators ask for it (their conserved energy)
            if "free_energy" not in calc.implemented_properties:
                calc.implemented_properties = [*calc.implemented_properties, "free_energy"]
            return calc
        module_name, _, class_name = self.target.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise HdnnpError(f"--reference {self.spec}: cannot import {self.target} ({exc})") from None
        try:
            return cls(**self.args)
        except Exception as exc:  # a calculator that refuses its arguments
            raise HdnnpError(f"--reference {self.spec}: {class_name}(**--reference-args) failed: "
                             f"{type(exc).__name__}: {exc}") from None

    def label(self, atoms, calc, where: str):
        """(energy eV, forces (n, 3) eV/Å, stress (3, 3) eV/Å³ or None) of ASE ``atoms`` from
        ``calc``. The stress (ASE's sign, positive = tensile) is asked for when the box is
        periodic in all three directions and the calculator implements it. A calculator that
        raises or returns non-finite numbers gives one line naming ``where``."""
        import numpy as np

        atoms = atoms.copy()
        atoms.calc = calc
        with_stress = bool(np.all(atoms.pbc)) and "stress" in getattr(calc, "implemented_properties", ())
        stress = None
        try:
            energy = float(atoms.get_potential_energy())
            forces = np.array(atoms.get_forces(), float)
            if with_stress:
                stress = np.array(atoms.get_stress(voigt=False), float)
        except Exception as exc:
            raise HdnnpError(f"reference {self.spec} failed on {where}: {type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
        if not (np.isfinite(energy) and np.all(np.isfinite(forces))
                and (stress is None or np.all(np.isfinite(stress)))):
            raise HdnnpError(f"reference {self.spec} returned non-finite numbers for {where}")
        return energy, forces, stress


def parse_reference(spec: str, args_json: str | None = None) -> Reference:
    """:class:`Reference` of ``--reference SPEC`` and ``--reference-args JSON``."""
    args = {}
    if args_json:
        try:
            args = json.loads(args_json)
        except json.JSONDecodeError as exc:
            raise HdnnpError(f"--reference-args: not JSON ({exc})") from None
        if not isinstance(args, dict):
            raise HdnnpError("--reference-args: expected a JSON object of keyword arguments, e.g. "
                             "'{\"sigma\": 3.4}'")
    spec = (spec or "").strip()
    kind, _, target = spec.partition(":")
    if spec == "external":
        return Reference(spec, "external")
    if kind == "tblite":
        if target not in TBLITE_METHODS:
            raise HdnnpError(f"--reference {spec}: expected tblite:METHOD with METHOD one of "
                             f"{', '.join(TBLITE_METHODS)}")
        return Reference(spec, "tblite", target, args)
    if kind == "ase" and "." in target:
        return Reference(spec, "ase", target, args)
    raise HdnnpError(f"--reference: expected tblite:METHOD, ase:MODULE.CLASS or external, got '{spec}'")
