"""``hdnnp export`` and ``hdnnp import``: potentials to and from n2p2's files (the format of
LAMMPS's ``pair_style hdnnp``); thin CLI over :mod:`hdnnp.interop.n2p2`."""

from __future__ import annotations

from pathlib import Path

import click

from hdnnp.interop.n2p2 import ENERGY_UNITS, LENGTH_UNITS

_FORMAT = click.option("--format", "fmt", type=click.Choice(["n2p2"]), default="n2p2", show_default=True,
                       help="File format (n2p2: input.nn, scaling.data, weights.ZZZ.data).")


@click.command("export")
@click.argument("model", type=click.Path(dir_okay=False))
@_FORMAT
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory to create for the potential files and lammps.in (a committee: one "
                   "subdirectory member_K per network).")
@click.option("--structure", default=None, metavar="FILE[@INDEX]",
              help="Also write this structure as structure.data, the LAMMPS data file lammps.in reads: "
                   "prepared.h5/md.h5 (its predict set or trajectory), DL_POLY HISTORY, extxyz, ... "
                   "[frame 0; @INDEX another, negative from the end].")
@click.option("--temperature", type=click.FloatRange(min=0.0, min_open=True), default=300.0, show_default=True,
              help="Temperature (K) of the NVT example in lammps.in (use one the potential was trained at).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
def export_command(model, fmt, output, structure, temperature, overwrite):
    """Write MODEL (model.h5) as an n2p2 potential for n2p2 and LAMMPS (pair_style hdnnp).

    The files are in Å and eV (LAMMPS units metal: cflength 1.0, cfenergy 1.0); lammps.in is a
    working NVT example. A model with a repulsive baseline is refused (n2p2 cannot hold it)."""
    from hdnnp.h5io import check_not_an_input
    from hdnnp.interop.n2p2 import export_potential
    from hdnnp.model import Potential

    check_not_an_input(output, [model])
    potential = Potential.load(model)
    atoms = None
    if structure is not None:
        from hdnnp.errors import HdnnpError
        from hdnnp.md.driver import start_atoms
        from hdnnp.stages.md import load_start

        path, _, index = structure.rpartition("@") if "@" in structure else (structure, "", "0")
        try:
            frame = int(index)
        except ValueError:
            raise HdnnpError(f"--structure: expected FILE or FILE@INDEX, got '{structure}'") from None
        atoms = start_atoms(load_start(path, frame=frame))
    written = export_potential(potential, output, overwrite, source=str(Path(model).resolve()), structure=atoms,
                               temperature=temperature)
    for directory in written:
        click.echo(f"[export] {directory}: input.nn, scaling.data, "
                   f"{', '.join(sorted(p.name for p in Path(directory).glob('weights.*.data')))}, lammps.in"
                   + (", structure.data" if atoms is not None else ""))
    click.echo(f"[export] in LAMMPS: cd {written[0]} && lmp -in lammps.in"
               + ("" if atoms is not None else " (after writing structure.data, see lammps.in)"))


@click.command("import")
@click.argument("directory", type=click.Path(file_okay=False))
@_FORMAT
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="model.h5 to write.")
@click.option("--length-unit", type=click.Choice(list(LENGTH_UNITS), case_sensitive=False), default="angstrom",
              show_default=True,
              help="Length unit of the potential's training data (bohr: e.g. the mlearn and RuNNer potentials).")
@click.option("--energy-unit", type=click.Choice(list(ENERGY_UNITS), case_sensitive=False), default="eV",
              show_default=True,
              help="Energy unit of the potential's training data.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def import_command(directory, fmt, output, length_unit, energy_unit, overwrite):
    """Read an n2p2 potential DIRECTORY (input.nn, scaling.data, weights.ZZZ.data) into a
    model.h5 that predict, md and the ASE calculator use like a trained one (Å, eV).

    Supported: symmetry-function types 2, 3 and 9, cutoff types 1-8, activations t, p, s, l,
    every scaling keyword, normalisation (mean_energy, conv_energy, conv_length), atom_energy
    and normalize_nodes. n2p2's functions beyond hdnnp's own are computed on the CPU (with a
    warning on a GPU node)."""
    from hdnnp.elements import symbol
    from hdnnp.h5io import check_can_write
    from hdnnp.interop.n2p2 import read_potential

    check_can_write(output, overwrite, inputs=list(Path(directory).glob("*")) if Path(directory).is_dir() else ())
    potential = read_potential(directory, length_unit, energy_unit,
                               warn=lambda message: click.echo(f"Warning: {message}", err=True))
    potential.save(output, overwrite, stage="train")
    fs, arch = potential.feature_set, potential.architecture
    click.echo(f"[import] {output}: networks {'-'.join(map(str, arch.hidden))} ({arch.activation}); "
               + ", ".join(f"{symbol(z)} {fs.n_features(z)} symmetry functions" for z in fs.elements)
               + f"; cutoff {fs.cutoff:.6g} Å")
