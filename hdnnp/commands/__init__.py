"""Click commands of the stages that arrived after ``cli.py`` (registered there), and the option
definitions the commands share."""

import click

#: ``--device`` of every stage that computes (symmetry, train, predict, md, learn): one default.
device_option = click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
                             help="auto: the GPU when CuPy sees one, else the CPU.")


def parallel_options(func):
    """--workers N / --scheduler ADDRESS: shard the frames over Dask workers (hdnnp.parallel)."""
    func = click.option("--scheduler", default=None, metavar="ADDRESS",
                        help="Compute on the Dask cluster at ADDRESS (e.g. tcp://node:8786, started by "
                             "dask-jobqueue); one writer, output identical to a serial run.")(func)
    return click.option("--workers", type=int, default=None,
                        help="Compute on a local Dask cluster of N worker processes (pip install "
                             "'hdnnp[dask]'); output identical to a serial run [serial].")(func)
