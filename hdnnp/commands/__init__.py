"""Click commands of the stages that arrived after ``cli.py`` (registered there), and the option
definitions the commands share."""

import click

#: ``--device`` of every stage that computes (symmetry, train, predict, md, learn): one default.
device_option = click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
                             help="auto: the GPU when CuPy sees one, else the CPU.")
