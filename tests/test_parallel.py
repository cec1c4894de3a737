"""Frames sharded over Dask workers (``--workers``, ``--scheduler``): outputs identical to the
serial run bit for bit, errors named as in the serial run, and an interrupted run that leaves
nothing under the final name."""

import signal
from pathlib import Path

import h5py
import numpy as np
import pytest

from hdnnp.cli import main
from hdnnp.errors import HdnnpError
from hdnnp.parallel import check_parallel_options, ordered_map

distributed = pytest.importorskip("distributed")

MLEARN = Path(__file__).parent / "data" / "mlearn" / "Ge.3frames.extxyz"


def assert_bitwise_equal(a_path, b_path):
    """Every dataset of two HDF5 files equal byte for byte (attributes: all but command/created)."""
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        def walk(x, y, where):
            assert set(x) == set(y), where
            for key in x:
                if isinstance(x[key], h5py.Group):
                    walk(x[key], y[key], f"{where}/{key}")
                else:
                    u, v = np.asarray(x[key][()]), np.asarray(y[key][()])
                    assert u.dtype == v.dtype and u.shape == v.shape, f"{where}/{key}"
                    if u.dtype.kind == "O":  # strings: by value
                        assert u.tolist() == v.tolist(), f"{where}/{key}"
                    else:
                        assert u.tobytes() == v.tobytes(), f"{where}/{key}"
        walk(a, b, "")
        for key in a.attrs:
            if key not in ("command", "created"):
                assert np.array_equal(a.attrs[key], b.attrs[key]), key


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    d = tmp_path_factory.mktemp("parallel")
    main(["prepare", "--train-file", str(MLEARN), "--predict-file", str(MLEARN), "-o", str(d / "p.h5"), "-q"])
    return d


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as c:
        yield c


def test_symmetry_and_predict_on_workers_equal_the_serial_run(prepared, cluster):
    d = prepared
    common = ["--grid", "auto", "--grid-points", "4", "--n-features", "8", "--chunk-frames", "1", "-q"]
    main(["symmetry", str(d / "p.h5"), "-o", str(d / "s_serial.h5"), *common])
    main(["symmetry", str(d / "p.h5"), "-o", str(d / "s_local.h5"), *common, "--workers", "2"])
    main(["symmetry", str(d / "p.h5"), "-o", str(d / "s_remote.h5"), *common, "--scheduler",
          cluster.scheduler_address])
    assert_bitwise_equal(d / "s_serial.h5", d / "s_local.h5")
    assert_bitwise_equal(d / "s_serial.h5", d / "s_remote.h5")
    main(["train", str(d / "s_serial.h5"), "-o", str(d / "m.h5"), "--hidden", "4", "--epochs", "2", "-q"])
    for source in ("p.h5", "s_serial.h5", str(MLEARN)):  # computed descriptors, stored ones, a structure file
        main(["predict", str(d / source), "--model", str(d / "m.h5"), "-o", str(d / "pr_serial.h5"), "-q",
              "--overwrite"])
        main(["predict", str(d / source), "--model", str(d / "m.h5"), "-o", str(d / "pr_dask.h5"), "-q",
              "--overwrite", "--scheduler", cluster.scheduler_address])
        assert_bitwise_equal(d / "pr_serial.h5", d / "pr_dask.h5")


def test_ordered_map_keeps_order_bounds_work_and_raises_for_the_item(cluster):
    from distributed import Client

    with Client(cluster) as client:
        out = list(ordered_map(_slow_square, range(12), client, window=3))
        assert out == [(k, k * k) for k in range(12)]
        with pytest.raises(HdnnpError, match="frame 5"):
            list(ordered_map(_fails_at_5, range(12), client))
    assert list(ordered_map(_slow_square, range(4))) == [(k, k * k) for k in range(4)]  # serial


def _slow_square(k):
    import random
    import time

    time.sleep(random.uniform(0, 0.02))  # finish out of order
    return k * k


def _fails_at_5(k):
    if k == 5:
        raise HdnnpError("frame 5: broken")
    return k


def test_bad_parallel_options_are_one_line(prepared, capsys, monkeypatch):
    import hdnnp.parallel

    monkeypatch.setattr(hdnnp.parallel, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(HdnnpError, match="exclude each other"):
        check_parallel_options(2, "tcp://x:1")
    with pytest.raises(SystemExit):
        main(["symmetry", str(prepared / "p.h5"), "-o", str(prepared / "x.h5"), "--workers", "0"])
    assert "--workers" in capsys.readouterr().err and not (prepared / "x.h5").exists()
    with pytest.raises(SystemExit):
        main(["symmetry", str(prepared / "p.h5"), "-o", str(prepared / "x.h5"), "--scheduler", "tcp://127.0.0.1:9"])
    assert "cannot connect" in capsys.readouterr().err and not (prepared / "x.h5").exists()


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_on_workers_leaves_nothing(prepared, sig, code):
    """Ctrl-C / SIGTERM while a Dask run writes: its exit status, no output, no temporary, and
    the local cluster's worker processes gone."""
    import psutil

    from test_interrupts import run_and_signal, temporaries

    out = prepared / f"s_{int(sig)}.h5"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    status, err = run_and_signal(["symmetry", prepared / "p.h5", "-o", out, "--chunk-frames", "1", "--workers", "2",
                                  "-q"], prepared, "write", sig, out, timeout=120)
    assert status == code, err
    assert not out.exists() and temporaries(out) == []
    assert "Traceback" not in err
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [p.cmdline() for p in left]
