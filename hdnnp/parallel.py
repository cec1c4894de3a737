"""Frames sharded across processes or machines with Dask; one writer keeps outputs identical.

The embarrassingly parallel stages (``symmetry``, ``predict``) compute per chunk of frames and
write in frame order. :func:`ordered_map` runs their chunk function here (serial) or on a Dask
cluster — ``--workers N`` starts a local one (N single-threaded worker processes), ``--scheduler
ADDRESS`` joins an existing one (e.g. started by dask-jobqueue on SLURM) — and hands the results
back in the order of the chunks, to the one process that writes. The workers compute exactly
what the serial loop computes (the same functions on the same arrays), so the output files are
identical bit for bit (``tests/test_parallel.py``).

At most ``window`` chunks are in flight (default 2 per worker), so memory stays bounded by the
window, not by the data. Ctrl-C or SIGTERM cancels what is in flight and closes a local cluster;
the stage's own atomic output leaves nothing under the final name.

Dask is an optional dependency: ``pip install 'hdnnp[dask]'``.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque

from hdnnp.errors import HdnnpError

#: How long to try reaching a --scheduler before giving up with one line.
CONNECT_TIMEOUT = "10s"


def check_parallel_options(workers: int | None, scheduler: str | None) -> None:
    """One line for options no run can use: both given, no worker, or more local worker
    processes than four per core of this machine (a cluster of more: ``--scheduler``)."""
    if workers is not None and scheduler:
        raise HdnnpError("--workers and --scheduler exclude each other: start a local cluster or join one")
    if workers is not None and workers < 1:
        raise HdnnpError(f"--workers: expected at least 1 worker, got {workers}")
    cores = os.cpu_count() or 1
    if workers is not None and workers > 4 * cores:
        raise HdnnpError(f"--workers: {workers} local processes on {cores} cores; for more, start a cluster "
                         "and pass --scheduler")


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None):
    """A ``distributed.Client`` on a new local cluster of ``workers`` processes or on the
    cluster at ``scheduler``; None (serial, in this process) when neither is given."""
    check_parallel_options(workers, scheduler)
    if workers is None and not scheduler:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise HdnnpError("--workers/--scheduler need Dask: pip install 'hdnnp[dask]'") from None
    cluster = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise HdnnpError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=50)
            client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def ordered_map(func, items, client=None, window: int | None = None):
    """Yield ``(item, func(item))`` in the order of ``items``: computed here when ``client`` is
    None, else on the Dask cluster with at most ``window`` items in flight (default: two per
    worker). An error of ``func`` is raised here, for its item; pending work is cancelled."""
    if client is None:
        for item in items:
            yield item, func(item)
        return
    if window is None:
        window = max(2, 2 * len(client.scheduler_info().get("workers", {})))
    pending = deque()
    try:
        for item in items:
            pending.append((item, client.submit(func, item, pure=False)))
            if len(pending) >= window:
                done_item, future = pending.popleft()
                yield done_item, future.result()
        while pending:
            done_item, future = pending.popleft()
            yield done_item, future.result()
    finally:  # an error, Ctrl-C or SIGTERM: nothing keeps running for this stage
        for _, future in pending:
            future.cancel()
