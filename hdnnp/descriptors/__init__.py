"""Symmetry-function descriptors: candidates (``FeatureSet``), values and derivatives, selection.

Public API (stable; the training and prediction stages use it)::

    FeatureSet.default(elements, cutoff=6.0, etas=..., rss=..., zetas=..., lambdas=...)
    compute_raw(positions, cell, pbc, species, feature_set, derivatives=False, device="cpu", candidates=None)
    compute_descriptors(positions, cell, pbc, species, feature_set, derivatives=False, device="cpu")
    descriptors_of_atoms(atoms, feature_set, derivatives=False, device="cpu", raw=False)

Many frames at once (``frames``: (positions, cell, pbc, species) each; on a GPU, many frames
per launch, ``precision="float64"|"float32"``)::

    compute_raw_batch(frames, feature_set, device="cpu", precision="float64")
    compute_descriptors_batch(frames, feature_set, derivatives=False, device="cpu", stress=False, precision=...)
"""

from hdnnp.descriptors.compute import (ElementDescriptors, compute_descriptors, compute_descriptors_batch,
                                       compute_raw, compute_raw_batch, descriptors_of_atoms)
from hdnnp.descriptors.features import DEFAULT_N_FEATURES, FeatureSet

__all__ = ["FeatureSet", "ElementDescriptors", "compute_raw", "compute_raw_batch", "compute_descriptors",
           "compute_descriptors_batch", "descriptors_of_atoms", "DEFAULT_N_FEATURES"]
