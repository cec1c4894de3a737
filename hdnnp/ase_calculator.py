"""ASE calculator over a trained :class:`hdnnp.model.Potential` (``ase`` imported lazily).

    from hdnnp.ase_calculator import HDNNPCalculator
    atoms.calc = HDNNPCalculator("model.h5")
    atoms.get_potential_energy(), atoms.get_forces()     # eV, eV/Å
    atoms.get_stress()                                   # eV/Å³, Voigt xx yy zz yz xz xy
    atoms.get_potential_energies()                       # eV per atom

The stress follows ASE's convention (positive = tensile, pressure P = −(σ_xx + σ_yy + σ_zz)/3;
see :meth:`hdnnp.model.Potential.evaluate`); it needs a cell periodic in all three directions.
Besides the standard properties, ``calc.results`` holds ``extrapolation_count`` (scaled
features of the box outside the training range [-1, 1]) and ``extrapolation_max_excess``
(the largest |x'| − 1), which ``hdnnp md`` watches. For a committee model (``hdnnp train
--committee N``) energy, forces and stress are the members' means, and ``results`` adds
``energy_spread`` (eV/atom), ``forces_spread`` (n, 3) and ``force_spread`` (the largest, eV/Å):
the population standard deviations over the members.
"""

from __future__ import annotations

import numpy as np


def _calculator_base():
    try:
        from ase.calculators.calculator import Calculator, all_changes
    except ImportError:
        from hdnnp.errors import HdnnpError

        raise HdnnpError("the ASE calculator needs ASE: pip install hdnnp[ase]") from None
    return Calculator, all_changes


def __getattr__(name):
    if name == "HDNNPCalculator":
        return _make_class()
    raise AttributeError(name)


_CLASS = None


def _make_class():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    Calculator, all_changes = _calculator_base()

    class HDNNPCalculator(Calculator):
        """Energy (eV), forces (eV/Å) and atomic energies from an hdnnp model file or Potential."""

        implemented_properties = ["energy", "free_energy", "forces", "energies", "stress"]

        def __init__(self, model, device: str = "cpu", stress_with_forces: bool = False, **kwargs):
            """``model``: a model.h5 path or a :class:`~hdnnp.model.Potential`.
            ``stress_with_forces``: compute the stress whenever the forces are asked for (one
            descriptor pass gives both; constant-pressure MD asks for both at every step)."""
            super().__init__(**kwargs)
            from hdnnp.model import Potential

            self.potential = model if isinstance(model, Potential) else Potential.load(model)
            self.device = device
            self.stress_with_forces = stress_with_forces

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            a = self.atoms
            if not (np.isfinite(a.get_positions()).all() and np.isfinite(a.get_cell().array).all()):
                from hdnnp.errors import HdnnpError

                raise HdnnpError("non-finite positions or cell: the integration diverged (typically after atoms "
                                 "collapsed onto each other outside the potential's domain; keep hdnnp md's "
                                 "distance and temperature guards on, or use a smaller time step)")
            need_forces = "forces" in properties or "stress" in properties
            need_stress = "stress" in properties or (need_forces and self.stress_with_forces)
            p = self.potential.evaluate(a.get_positions(), a.get_cell().array, a.get_pbc(),
                                        a.get_atomic_numbers(), forces=need_forces,
                                        stress=need_stress, device=self.device)
            self.results = {"energy": p.energy, "free_energy": p.energy, "energies": p.atomic_energies,
                            "extrapolation_count": p.extrapolation_count,
                            "extrapolation_max_excess": p.extrapolation_max_excess}
            if p.forces is not None:
                self.results["forces"] = p.forces
            if self.potential.n_members > 1:  # committee: the members' spread
                self.results["energy_spread"] = p.energy_spread
                if p.forces_spread is not None:
                    self.results["forces_spread"] = p.forces_spread
                    self.results["force_spread"] = p.force_spread
            if need_stress:
                s = p.stress
                self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])

    _CLASS = HDNNPCalculator
    return _CLASS
