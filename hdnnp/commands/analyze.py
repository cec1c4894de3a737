"""``hdnnp analyze``: observables of MD trajectories and reference frame sets (thin CLI layer
over :func:`hdnnp.stages.analyze.analyze`)."""

from __future__ import annotations

import click

from hdnnp.analysis.adf import DEFAULT_BOND_CUTOFF


@click.command("analyze")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
@click.option("--reference", default=None, metavar="PATH[:GROUP][@T]",
              help="Reference frame set drawn in green and compared with each input, "
                   "e.g. prepared.h5:predict or prepared.h5:train@773.")
@click.option("--out-dir", type=click.Path(file_okay=False), default="data", show_default=True,
              help="Directory for RDF.png, ADF.png, MSD.png, TIME_SERIES.png (created if missing).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the summary (numbers and curves) to this JSON file.")
@click.option("--r-max", type=float, default=8.0, show_default=True,
              help="Largest distance of g(r), Å (may exceed half the box: all images count).")
@click.option("--bins", type=click.IntRange(min=1), default=160, show_default=True,
              help="Number of g(r) bins between 0 and --r-max.")
@click.option("--bond-cutoff", type=float, default=DEFAULT_BOND_CUTOFF, show_default=True,
              help="Bond length limit of the bond-angle distribution, Å.")
@click.option("--skip", type=click.IntRange(min=0), default=0, show_default=True,
              help="Drop the first N frames of each set (equilibration).")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Then keep every k-th frame (bounds the MSD's memory on long runs).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file (figures are derived output: always redrawn).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def analyze_command(inputs, reference, out_dir, json_path, r_max, bins, bond_cutoff, skip, stride,
                    overwrite, quiet):
    """Structure, dynamics and thermodynamics of frame sets: g(r) per element pair, bond
    angles, mean-square displacement and diffusion coefficient, and block-averaged density,
    pressure, energy per atom and temperature.

    INPUTS are frame sets PATH[:GROUP][@T]: md.h5 (group trajectory), prepared.h5:predict,
    prepared.h5:train@773 (only the frames at 773 K), symmetry.h5:train@773.

    \b
    hdnnp analyze md.h5 --reference prepared.h5:predict
    hdnnp analyze md.h5 --reference prepared.h5:train@773 --skip 200 --json analysis.json
    """
    from hdnnp.stages.analyze import analyze, format_table

    summary = analyze(inputs, reference=reference, out_dir=out_dir, json_path=json_path,
                      r_max=r_max, bins=bins, bond_cutoff=bond_cutoff, skip=skip, stride=stride,
                      overwrite=overwrite, quiet=quiet)
    click.echo("Means ± standard errors (block averaging); D from MSD = 6 D t + c:")
    click.echo(format_table(summary))
    written = list(summary["figures"].values()) + ([summary["json"]] if "json" in summary else [])
    click.echo(f"wrote {', '.join(written)}")
