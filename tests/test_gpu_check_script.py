"""``scripts/gpu_check.sh`` end to end without a GPU: a dry run on the fake CuPy
(``tests/fake_cupy``: NumPy arrays, the CUDA kernels emulated on the CPU), so the one command
that a GPU machine runs is known to work up to CUDA itself: its GPU tests (the ``cuda`` cases of
tests/test_gpu_kernels.py and tests/test_train_gpu.py, through CuPy's API), then
scripts/gpu_check.py's checks, float32 errors and throughput table on 256-atom boxes.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hdnnp.kernels import emulate

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(emulate.compiler() is None, reason="no C++ compiler to emulate the kernels")
def test_gpu_check_runs_on_the_emulated_gpu(tmp_path):
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'tests' / 'fake_cupy'}{os.pathsep}{ROOT}", OUT=str(tmp_path))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--boxes", "2", "--repeats", "1",
                          "--check-boxes", "1", "--md-supercells", "2", "--skip-training"], env=env, capture_output=True, text=True,
                         timeout=900)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "passed" in out and "skipped" not in out.split("== scripts/gpu_check.py")[0], out[-3000:]
    assert "FAIL" not in out and out.count(" pass") >= 11
    assert "energy + forces" in out and (tmp_path / "gpu_check.json").exists()
