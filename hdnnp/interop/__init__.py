"""Potentials in other codes' formats: :mod:`hdnnp.interop.n2p2` (n2p2 and LAMMPS's pair_style hdnnp)."""
