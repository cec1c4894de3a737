"""Reference calculators for the tests of ``hdnnp learn`` (imported by path: ase:_learn_fixtures.X)."""

from ase.calculators.lj import LennardJones

#: The Lennard-Jones of the fixtures (tests/_nn_fixtures.lj_frames): sigma 3 Å, epsilon 10 meV.
LJ_ARGS = {"sigma": 3.0, "epsilon": 0.01, "rc": 6.0, "smooth": True}


class CountingLJ(LennardJones):
    """The fixtures' Lennard-Jones that counts its calls and raises on call number ``fail_at``."""

    calls = 0
    fail_at = -1

    def calculate(self, *args, **kwargs):
        CountingLJ.calls += 1
        if CountingLJ.calls == CountingLJ.fail_at:
            raise RuntimeError("SCF did not converge")
        super().calculate(*args, **kwargs)
