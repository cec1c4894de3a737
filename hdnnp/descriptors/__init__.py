"""Symmetry-function descriptors: candidates (``FeatureSet``), values and derivatives, selection.

Public API (stable; the training and prediction stages use it)::

    FeatureSet.default(elements, cutoff=6.0, etas=..., rss=..., zetas=..., lambdas=...)
    compute_raw(positions, cell, pbc, species, feature_set, derivatives=False, device="cpu", candidates=None)
    compute_descriptors(positions, cell, pbc, species, feature_set, derivatives=False, device="cpu")
    descriptors_of_atoms(atoms, feature_set, derivatives=False, device="cpu", raw=False)
"""

from hdnnp.descriptors.compute import ElementDescriptors, compute_descriptors, compute_raw, descriptors_of_atoms
from hdnnp.descriptors.features import DEFAULT_N_FEATURES, FeatureSet

__all__ = ["FeatureSet", "ElementDescriptors", "compute_raw", "compute_descriptors",
           "descriptors_of_atoms", "DEFAULT_N_FEATURES"]
