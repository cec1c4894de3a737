"""GPU kernels (CUDA source compiled by CuPy) and the choice of backend."""
