"""Command-line interface: parses options and calls one library function per stage.

No science here: every command is a thin layer over ``hdnnp.stages``.
"""

from __future__ import annotations

import sys

import click

from hdnnp import __version__
from hdnnp.errors import HdnnpError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="hdnnp")
def cli():
    """hdnnp: Behler-Parrinello neural network potentials from ab initio trajectories.

    Stages: prepare -> symmetry -> train -> predict -> report (``hdnnp run`` chains them).
    Each reads and writes HDF5 intermediates, so each can run alone.
    """


# --- stage 1-2: prepare, inspect -------------------------------------------------------------

# --- stage 3: symmetry ------------------------------------------------------------------------

# --- stages 4-5: train, predict ---------------------------------------------------------------

# --- stage 6: report; run; study --------------------------------------------------------------


def main(argv=None):
    """Entry point of the ``hdnnp`` console script: user errors exit 2 with one clear line."""
    try:
        status = cli.main(args=argv, prog_name="hdnnp", standalone_mode=False)
        if isinstance(status, int) and status:
            sys.exit(status)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except HdnnpError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Interrupted; no partial output was left under a final name.", err=True)
        sys.exit(130)
