"""ASE calculator over a trained :class:`hdnnp.model.Potential` (``ase`` imported lazily).

    from hdnnp.ase_calculator import HDNNPCalculator
    atoms.calc = HDNNPCalculator("model.h5")
    atoms.get_potential_energy(), atoms.get_forces()     # eV, eV/Å
"""

from __future__ import annotations


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

        implemented_properties = ["energy", "free_energy", "forces", "energies"]

        def __init__(self, model, device: str = "cpu", **kwargs):
            super().__init__(**kwargs)
            from hdnnp.model import Potential

            self.potential = model if isinstance(model, Potential) else Potential.load(model)
            self.device = device

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            a = self.atoms
            need_forces = "forces" in properties
            energy, forces, atomic = self.potential.predict(
                a.get_positions(), a.get_cell().array, a.get_pbc(), a.get_atomic_numbers(),
                forces=need_forces, device=self.device, atomic_energies=True)
            self.results = {"energy": energy, "free_energy": energy, "energies": atomic}
            if need_forces:
                self.results["forces"] = forces

    _CLASS = HDNNPCalculator
    return _CLASS
