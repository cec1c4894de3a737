#!/usr/bin/env bash
# The GPU path on a GPU machine, one command, from the source tree (issue #19):
#   1. the GPU tests of tests/ (GPU = CPU to 1e-10, training on the device), where pytest is installed;
#   2. scripts/gpu_check.py: the same checks on 256-atom Te boxes, the float32 error, the
#      throughput table (boxes/s) and the training epoch time on each device.
# Usage: bash scripts/gpu_check.sh [gpu_check.py options, e.g. --skip-training]
# Needs numpy, scipy, h5py, click and CuPy (no install: PYTHONPATH is set to the source tree).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
if python -c "import pytest" 2>/dev/null; then
    echo "== pytest: the GPU tests"
    python -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_kernels.py tests/test_train_gpu.py || status=1
else
    echo "== pytest is not installed: tests/ skipped (scripts/gpu_check.py checks the same quantities)"
fi
echo "== scripts/gpu_check.py"
python scripts/gpu_check.py "$@" || status=1
exit "$status"
