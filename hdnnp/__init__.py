"""hdnnp: Behler-Parrinello high-dimensional neural network potentials.

Stages (each a ``hdnnp`` subcommand reading and writing HDF5 intermediates):
prepare -> symmetry -> train -> predict -> report; ``hdnnp run`` chains them.
"""

__version__ = "0.1.0"
