"""Streaming readers for DL_POLY HISTORY trajectories and their energy files (SPEC §2).

HISTORY layout (DL_POLY 4 and DL_POLY Classic; records are parsed whitespace-separated, so
DL_POLY 4's fixed-length padding does not matter)::

    line 1        title
    line 2        keytrj imcon natms [nframes nrecords]      (the bracket: DL_POLY 4 only)
    per frame     timestep nstep natms keytrj imcon [tstep [time]]
                  a_x a_y a_z  /  b_x b_y b_z  /  c_x c_y c_z       cell rows, Å
                  per atom: name index [mass charge [rsd]]
                            x y z                 position, Å
                            vx vy vz              velocity, Å/ps       (keytrj >= 1)
                            fx fy fz              force, 10 J/mol/Å    (keytrj == 2)

imcon 0 (no box) frames may omit the three cell lines (DL_POLY Classic does). Forces are
converted from DL_POLY internal units, 1 Da·Å/ps² = 10 J/mol/Å
(:data:`hdnnp.units.DLPOLY_FORCE_IN_EV_PER_ANGSTROM` = 1.036427e-4 eV/Å), to eV/Å unless the
file already holds eV/Å (``forces_unit="eV/A"``).

Energy file: ``#`` starts a comment; each data line ``timestep energy [more columns]``.

Both readers stream (one frame in memory at a time), count lines (also through gzip), and
raise :class:`hdnnp.errors.InputFileError` naming the file, the line and what was expected.
Each frame block is parsed with NumPy first; only when that fails is the block re-parsed line by
line to locate the bad line exactly.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from hdnnp.elements import element_from_atom_name
from hdnnp.errors import HdnnpError, InputFileError
from hdnnp.frames import Frame
from hdnnp.units import DLPOLY_FORCE_IN_EV_PER_ANGSTROM, ENERGY_UNITS_IN_EV

GZIP_MAGIC = b"\x1f\x8b"

#: Force units accepted in HISTORY files, as eV/Å per unit.
FORCE_UNITS_IN_EV_PER_ANGSTROM = {"dlpoly": DLPOLY_FORCE_IN_EV_PER_ANGSTROM, "eV/A": 1.0}

#: imcon values understood: 0 no box, 1 cubic, 2 orthorhombic, 3 parallelepiped.
KNOWN_IMCON = (0, 1, 2, 3)

#: Atoms parsed per NumPy block; bounds memory when a corrupt header claims a huge count.
_ATOMS_PER_BLOCK = 8192

_RECORD_KIND = {1: "position", 2: "velocity", 3: "force"}


def check_readable_file(path) -> Path:
    """Raise :class:`HdnnpError` unless ``path`` is an existing, readable regular file."""
    path = Path(path)
    if not path.exists():
        raise HdnnpError(f"{path}: no such file")
    if path.is_dir():
        raise HdnnpError(f"{path}: is a directory, expected a file")
    if not path.is_file():  # opening a FIFO for reading would wait forever for a writer
        raise HdnnpError(f"{path}: is not a regular file (a pipe, device or socket); give a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise HdnnpError(f"{path}: cannot be read ({exc.strerror})") from None
    return path


def open_text(path) -> io.TextIOBase:
    """Open a text file for reading, transparently gunzipping it (detected by its magic bytes).

    Decoded as Latin-1, so that stray bytes never raise a decoding error: they show up as
    garbage tokens that the parsers report with their line.
    """
    path = check_readable_file(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == GZIP_MAGIC:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="latin-1", newline=None)
    return open(path, encoding="latin-1", newline=None)


#: Longest line the text readers accept: the longest DL_POLY line is ~80 characters (an energy
#: file with many columns a few hundred); a file without newlines is refused, not read whole.
MAX_LINE_CHARS = 1 << 16


class LineReader:
    """Lines of a (possibly gzipped) text file with an exact count of the lines consumed.

    ``line_no`` is the 1-based number of the last line returned; ``push_back`` returns one
    line to the stream.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._fh = open_text(path)
        self.line_no = 0
        self.last_line = ""
        self._pushed: list[str] = []

    def read(self, n: int) -> list[str]:
        """Up to ``n`` further lines (fewer only at end of file)."""
        out = self._pushed[:n]
        del self._pushed[:n]
        if len(out) < n:
            try:
                while len(out) < n:
                    line = self._fh.readline(MAX_LINE_CHARS + 1)
                    if not line:
                        break
                    if len(line) > MAX_LINE_CHARS:
                        raise InputFileError(self.path, f"a line longer than {MAX_LINE_CHARS} characters: not a "
                                             "DL_POLY text file (binary data, or newlines lost?)",
                                             line=self.line_no + len(out) + 1)
                    out.append(line)
            except (OSError, EOFError, zlib.error) as exc:
                raise InputFileError(self.path, f"unreadable or corrupt compressed data ({exc})",
                                     line=self.line_no + len(out) + 1) from None
        self.line_no += len(out)
        if out:
            self.last_line = out[-1]
        return out

    def check_final_newline(self) -> None:
        """At end of file: a last line without newline means the file was cut mid-line."""
        if self.last_line and not self.last_line.endswith("\n") and self.last_line.split("#", 1)[0].strip():
            raise InputFileError(self.path, "the last line has no newline: the file was cut in the "
                                 "middle of a line (truncated file?)", line=self.line_no)

    def readline(self) -> str | None:
        lines = self.read(1)
        return lines[0] if lines else None

    def push_back(self, line: str) -> None:
        self._pushed.insert(0, line)
        self.line_no -= 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def quote_line(line: str, limit: int = 60) -> str:
    text = line.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def strict_float(tok: str) -> float:
    """``float(tok)``, but refusing Python-only spellings such as ``1_000`` (ValueError)."""
    if "_" in tok:
        raise ValueError(tok)
    return float(tok)


def strict_int(tok: str) -> int:
    """``int(tok)``, but refusing ``1_000`` (ValueError)."""
    if "_" in tok:
        raise ValueError(tok)
    return int(tok)


def _int_token(tok: str, reader_path, line: int, what: str, context: str) -> int:
    try:
        return strict_int(tok)
    except ValueError:
        raise InputFileError(reader_path, f"expected an integer {what} ({context}), got {tok!r}",
                             line=line) from None


# ------------------------------------------------------------------------------------------
# HISTORY


@dataclass
class HistoryHeader:
    """The two header lines of a HISTORY file."""

    title: str
    keytrj: int
    imcon: int
    natms: int
    layout: str  # "dlpoly4" or "classic"
    n_frames: int | None  # DL_POLY 4 only (may be stale in a file still being written)


@dataclass
class HistoryRecord:
    """One frame of a HISTORY file: its header values, and the parsed frame when asked for."""

    index: int  # 0-based frame index in the file
    step: int  # nstep
    line: int  # line number of the 'timestep' record
    frame: Frame | None  # None when the frame was only skipped over


class HistoryReader:
    """Stream the frames of a DL_POLY 4 or Classic HISTORY file (plain or gzipped).

    >>> with HistoryReader("HISTORY.Te.673K") as hist:          # doctest: +SKIP
    ...     for rec in hist.records():
    ...         rec.frame.positions                             # (natms, 3) Å

    ``forces_unit``: ``"dlpoly"`` (10 J/mol/Å, DL_POLY's internal unit; converted to eV/Å)
    or ``"eV/A"``. Frames carry positions (Å), cell rows (Å), pbc (all true for imcon 1-3),
    species (atomic numbers from the atom names), forces (eV/Å, keytrj = 2 only), ``step``
    (nstep) and ``source`` (the path). Steps must increase strictly from frame to frame.
    """

    def __init__(self, path, forces_unit: str = "dlpoly"):
        if forces_unit not in FORCE_UNITS_IN_EV_PER_ANGSTROM:
            raise HdnnpError(f"unknown forces unit {forces_unit!r}; expected one of "
                             f"{', '.join(FORCE_UNITS_IN_EV_PER_ANGSTROM)}")
        self.path = Path(path)
        self.force_scale = FORCE_UNITS_IN_EV_PER_ANGSTROM[forces_unit]
        self._lines = LineReader(path)
        self._species_of_name: dict[str, int] = {}
        try:
            self.header = self._read_header()
        except BaseException:
            self._lines.close()
            raise

    def close(self) -> None:
        self._lines.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def has_forces(self) -> bool:
        return self.header.keytrj == 2

    def _error(self, message: str, line: int | None = None) -> InputFileError:
        return InputFileError(self.path, message, line=self._lines.line_no if line is None else line)

    def _read_header(self) -> HistoryHeader:
        title = self._lines.readline()
        if title is None:
            raise InputFileError(self.path, "empty file, expected a DL_POLY HISTORY file "
                                 "(title line, then 'keytrj imcon natms ...')")
        line = self._lines.readline()
        if line is None:
            raise self._error("file ends after the title line; expected the header "
                              "'keytrj imcon natms [nframes nrecords]'", line=2)
        toks = line.split()
        if len(toks) < 3:
            raise self._error(f"expected the header 'keytrj imcon natms [nframes nrecords]', got {quote_line(line)}")
        ctx = "HISTORY header 'keytrj imcon natms'"
        keytrj = _int_token(toks[0], self.path, 2, "keytrj", ctx)
        imcon = _int_token(toks[1], self.path, 2, "imcon", ctx)
        natms = _int_token(toks[2], self.path, 2, "natms", ctx)
        self._check_keys(keytrj, imcon, natms, "file header")
        n_frames = None
        if len(toks) >= 5:
            layout = "dlpoly4"
            try:
                n_frames = strict_int(toks[3])
            except ValueError:
                pass
        else:
            layout = "classic"
        return HistoryHeader(title.strip(), keytrj, imcon, natms, layout, n_frames)

    def _check_keys(self, keytrj: int, imcon: int, natms: int, where: str) -> None:
        if keytrj not in (0, 1, 2):
            raise self._error(f"unknown keytrj {keytrj} in {where} (expected 0, 1 or 2)")
        if imcon not in KNOWN_IMCON:
            raise self._error(f"unknown imcon {imcon} in {where} (expected 0 no box, 1 cubic, "
                              f"2 orthorhombic or 3 parallelepiped)")
        if natms <= 0:
            raise self._error(f"expected a positive number of atoms in {where}, got {natms}")

    def records(self, keep=lambda index: True) -> Iterator[HistoryRecord]:
        """Yield every frame's :class:`HistoryRecord`; parse the frame only where ``keep(index)``.

        Frames not kept are still checked for structure (header, line count), so a corrupt
        file is reported wherever the damage is.
        """
        index = 0
        previous: tuple[int, int] | None = None  # (step, line) of the previous frame
        while True:
            line = self._lines.readline()
            while line is not None and not line.strip():
                line = self._lines.readline()  # tolerate blank lines between frames / at the end
            if line is None:
                self._check_end(index)
                return
            rec = self._read_frame(line, index, parse=keep(index))
            if previous is not None and rec.step <= previous[0]:
                kind = "duplicate" if rec.step == previous[0] else "decreasing"
                raise self._error(f"{kind} timestep {rec.step} (previous frame: step {previous[0]} "
                                  f"at line {previous[1]}); steps must increase", line=rec.line)
            previous = (rec.step, rec.line)
            yield rec
            index += 1

    def _check_end(self, n_frames: int) -> None:
        self._lines.check_final_newline()
        if n_frames == 0:
            raise self._error("no frames after the header (expected a 'timestep' record)",
                              line=self._lines.line_no + 1)
        declared = self.header.n_frames
        if self.header.layout == "dlpoly4" and declared is not None and declared != n_frames:
            raise self._error(f"the file header (line 2) declares {declared} frames, the file holds "
                              f"{n_frames} (truncated or concatenated file?)", line=2)

    def _read_frame(self, line: str, index: int, parse: bool) -> HistoryRecord:
        line_no = self._lines.line_no
        toks = line.split()
        if toks[0] != "timestep":
            raise self._error(f"expected a 'timestep' record starting frame {index + 1}, got {quote_line(line)}")
        if len(toks) < 5:
            raise self._error("expected 'timestep nstep natms keytrj imcon [tstep time]', "
                              f"got {quote_line(line)}")
        ctx = f"'timestep' record of frame {index + 1}"
        step = _int_token(toks[1], self.path, line_no, "nstep", ctx)
        where = f"frame at step {step}"
        natms = _int_token(toks[2], self.path, line_no, "natms", ctx)
        keytrj = _int_token(toks[3], self.path, line_no, "keytrj", ctx)
        imcon = _int_token(toks[4], self.path, line_no, "imcon", ctx)
        self._check_keys(keytrj, imcon, natms, where)
        if natms != self.header.natms:
            raise self._error(f"{where} declares {natms} atoms, the file header (line 2) "
                              f"{self.header.natms}")
        if keytrj != self.header.keytrj:
            raise self._error(f"{where} declares keytrj {keytrj}, the file header (line 2) "
                              f"{self.header.keytrj}")
        cell = self._read_cell(imcon, where)
        positions, forces, species = self._read_atoms(natms, keytrj, where, parse)
        frame = None
        if parse:
            frame = Frame(positions=positions, species=species, cell=cell,
                          pbc=np.full(3, imcon > 0), forces=forces, step=step,
                          source=str(self.path))
        return HistoryRecord(index=index, step=step, line=line_no, frame=frame)

    def _read_cell(self, imcon: int, where: str) -> np.ndarray:
        if imcon == 0:
            # DL_POLY Classic writes no cell lines for imcon 0; DL_POLY 4 writes zeros.
            first = self._lines.readline()
            if first is None:
                raise self._error(f"file ends inside {where}: expected cell vectors or atoms")
            looks_like_cell = len(first.split()) == 3 and _all_floats(first.split())
            self._lines.push_back(first)
            if not looks_like_cell:
                return np.zeros((3, 3))
        start = self._lines.line_no + 1
        lines = self._lines.read(3)
        if len(lines) < 3:
            raise self._error(f"file ends inside {where}: expected 3 lines of cell vectors, "
                              f"found {len(lines)}", line=self._lines.line_no + 1)
        cell = self._parse_numbers(lines, lambda j: start + j, where,
                                   lambda j: f"cell vector {'abc'[j]}")
        if imcon > 0 and abs(np.linalg.det(cell)) < 1e-9:
            raise self._error(f"{where}: the cell vectors are linearly dependent "
                              f"(imcon {imcon} needs a 3-D box)", line=start)
        return cell

    def _read_atoms(self, natms: int, keytrj: int, where: str, parse: bool):
        per_atom = 2 + keytrj
        per_atom_numeric = per_atom - 1  # position [, velocity [, force]]
        blocks, species = [], []
        done = 0
        while done < natms:
            n = min(_ATOMS_PER_BLOCK, natms - done)
            start = self._lines.line_no + 1
            lines = self._lines.read(n * per_atom)
            self._check_names(lines[0::per_atom], start, per_atom, done, natms, where,
                              species if parse else None)
            if len(lines) < n * per_atom:
                complete = done + len(lines) // per_atom
                raise self._error(f"file ends inside {where}: expected {natms} atoms of "
                                  f"{per_atom} lines each, found {complete} complete atoms",
                                  line=self._lines.line_no + 1)
            if parse:
                numeric = lines[:]
                del numeric[0::per_atom]  # all position/velocity/force lines, in file order

                def line_of(j, start=start):
                    return start + (j // per_atom_numeric) * per_atom + 1 + j % per_atom_numeric

                def what(j, first=done):
                    kind = _RECORD_KIND[1 + j % per_atom_numeric]
                    return f"{kind} of atom {first + j // per_atom_numeric + 1}"

                values = self._parse_numbers(numeric, line_of, where, what)
                blocks.append(values.reshape(n, per_atom_numeric, 3))
            done += n
        if not parse:
            return None, None, None
        values = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        positions = np.ascontiguousarray(values[:, 0])
        forces = values[:, 2] * self.force_scale if keytrj == 2 else None
        return positions, forces, np.array(species, np.int32)

    def _check_names(self, name_lines, start, stride, first_atom, natms, where, species) -> None:
        """Atom records ``name index ...``: the name must give an element."""
        cache = self._species_of_name
        try:
            names = [line.split(None, 1)[0] for line in name_lines]
            zs = [cache[name] for name in names]  # KeyError: a name not seen yet
        except (IndexError, KeyError):
            zs = []
            for j, line in enumerate(name_lines):
                toks = line.split()
                name = toks[0] if toks else ""
                z = cache.get(name)
                if z is None:
                    z = self._element_of(name, line, start + j * stride, first_atom + j, natms, where)
                    cache[name] = z
                zs.append(z)
        if species is not None:
            species.extend(zs)

    def _element_of(self, name, line, line_no, atom, natms, where) -> int:
        expected = f"expected the record 'name index ...' of atom {atom + 1} of {where}"
        if name == "timestep":
            raise self._error(f"{expected}, found the next frame's 'timestep' record: "
                              f"the frame holds {atom} atoms, not the {natms} declared", line=line_no)
        z = element_from_atom_name(name) if name else None
        if z is None:
            raise self._error(f"{expected} (an atom name starting with an element symbol), "
                              f"got {quote_line(line)}", line=line_no)
        return z

    def _parse_numbers(self, lines, line_of, where, what) -> np.ndarray:
        """Parse lines of 3 numbers into an (n, 3) array; fast path first, then locate errors.

        ``line_of(j)`` is the file line of ``lines[j]``; ``what(j)`` names its content.
        """
        try:
            values = np.loadtxt(lines, dtype=np.float64, comments=None, ndmin=2)
            if values.shape == (len(lines), 3) and np.isfinite(values).all():
                return values
        except ValueError:
            pass
        for j, line in enumerate(lines):
            toks = line.split()
            context = f"{what(j)} of {where}"
            if len(toks) != 3 or not _all_floats(toks):
                raise self._error(f"expected 3 numbers ({context}), got {quote_line(line)}",
                                  line=line_of(j))
            if not all(math.isfinite(float(t)) for t in toks):
                raise self._error(f"expected 3 finite numbers ({context}), got {quote_line(line)}",
                                  line=line_of(j))
        # Every line is valid Python floats that NumPy's fast path declined (rare spellings).
        return np.array([[strict_float(t) for t in line.split()] for line in lines], np.float64)


def _all_floats(tokens) -> bool:
    try:
        for tok in tokens:
            strict_float(tok)
    except ValueError:
        return False
    return True


def read_history(path, forces_unit: str = "dlpoly") -> list[Frame]:
    """All frames of a HISTORY file (convenience for small files; use :class:`HistoryReader`)."""
    with HistoryReader(path, forces_unit) as hist:
        return [rec.frame for rec in hist.records()]


# ------------------------------------------------------------------------------------------
# energy files


@dataclass
class EnergyLine:
    step: int
    energy_ev: float
    line: int


@dataclass
class StressLine:
    step: int
    stress: np.ndarray  # (3, 3) eV/Å³, ASE's sign (positive = tensile)
    line: int


#: The first line of a stress file as :func:`hdnnp.io.dlpoly_write.write_stresses` writes it.
STRESS_FILE_HEADER = ("step  s_xx s_yy s_zz s_yz s_xz s_xy  (stress, eV/A^3, ASE sign: positive = tensile, "
                      "P = -(s_xx + s_yy + s_zz)/3)")


def _iter_step_lines(path, first_column: int, n_values: int, what: str) -> Iterator[tuple[int, list, int]]:
    """``(step, values, line)`` of each data line ``step ... v_1 .. v_n`` of a step-keyed file:
    ``n_values`` finite numbers from the 1-based ``first_column``; ``#`` starts a comment;
    steps must increase strictly. ``what`` names the values in error messages."""
    previous_step, previous_line = None, 0
    last = first_column - 1 + n_values
    with LineReader(path) as lines:
        while True:
            chunk = lines.read(4096)
            if not chunk:
                lines.check_final_newline()
                return
            first = lines.line_no - len(chunk) + 1
            for j, raw in enumerate(chunk):
                toks = raw.split("#", 1)[0].split()
                if not toks:
                    continue
                line_no = first + j
                if len(toks) < last:
                    raise InputFileError(path, f"expected 'timestep {what}' with {what} in column"
                                         f"{'s' if n_values > 1 else ''} {first_column}"
                                         f"{f'-{last}' if n_values > 1 else ''}, got {quote_line(raw)}",
                                         line=line_no)
                step = _parse_step(toks[0], path, line_no)
                values = []
                for col in range(first_column, last + 1):
                    try:
                        value = strict_float(toks[col - 1])
                    except ValueError:
                        raise InputFileError(path, f"expected a number ({what}, column {col}), got "
                                             f"{toks[col - 1]!r}", line=line_no) from None
                    if not math.isfinite(value):
                        raise InputFileError(path, f"{what} is not finite ({toks[col - 1]}) at "
                                             f"timestep {step}", line=line_no)
                    values.append(value)
                if previous_step is not None and step <= previous_step:
                    kind = "duplicate" if step == previous_step else "decreasing"
                    raise InputFileError(path, f"{kind} timestep {step} (previous: step "
                                         f"{previous_step} at line {previous_line}); steps must "
                                         f"increase", line=line_no)
                previous_step, previous_line = step, line_no
                yield step, values, line_no


def iter_energies(path, column: int = 2, unit: str = "eV") -> Iterator[EnergyLine]:
    """Stream ``timestep energy`` lines of an energy file, energies converted to eV.

    ``column``: 1-based column of the energy (column 1 is the timestep). ``unit``: a key of
    :data:`hdnnp.units.ENERGY_UNITS_IN_EV` (eV, kJ/mol, kcal/mol, Hartree, dlpoly = 10 J/mol).
    ``#`` starts a comment. Steps must increase strictly (duplicates are an error).
    """
    if unit not in ENERGY_UNITS_IN_EV:
        raise HdnnpError(f"unknown energy unit {unit!r}; expected one of {', '.join(ENERGY_UNITS_IN_EV)}")
    if column < 2:
        raise HdnnpError(f"energy column must be 2 or more (column 1 is the timestep), got {column}")
    scale = ENERGY_UNITS_IN_EV[unit]
    for step, (energy,), line in _iter_step_lines(path, column, 1, "energy"):
        yield EnergyLine(step, energy * scale, line)


def iter_stresses(path) -> Iterator[StressLine]:
    """Stream the lines of a stress file (the companion ``STRESS<suffix>`` of ``HISTORY<suffix>``):
    ``timestep s_xx s_yy s_zz s_yz s_xz s_xy``, the stress tensor in eV/Å³ with ASE's sign
    (positive = tensile, P = −tr σ/3) and Voigt order, as the HDF5 intermediates store it
    (SPEC §9). ``#`` starts a comment; steps must increase strictly."""
    for step, v, line in _iter_step_lines(path, 2, 6, "stress"):
        xx, yy, zz, yz, xz, xy = v
        yield StressLine(step, np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]), line)


class _StepMatcher:
    """Values for increasing HISTORY steps by a merge-join with a step-keyed file: O(1) memory.

    ``_value(step)`` returns that step's line record, or None if the file has none; steps must be asked
    for in increasing order. ``finish()`` reads the rest of the file and returns the number of
    lines that matched no asked-for step.
    """

    def __init__(self, path, lines: Iterator, expected: str):
        self.path = Path(path)
        self._lines = lines
        self._pending = next(self._lines, None)
        if self._pending is None:
            raise InputFileError(path, f"no data lines; expected '{expected}' on each line")
        self.n_unmatched = 0
        self.n_matched = 0

    def _value(self, step: int):
        while self._pending is not None and self._pending.step < step:
            self.n_unmatched += 1
            self._pending = next(self._lines, None)
        if self._pending is not None and self._pending.step == step:
            found = self._pending
            self.n_matched += 1
            self._pending = next(self._lines, None)
            return found
        return None

    def finish(self) -> int:
        while self._pending is not None:
            self.n_unmatched += 1
            self._pending = next(self._lines, None)
        return self.n_unmatched


class EnergyMatcher(_StepMatcher):
    """Energies (eV) of increasing HISTORY steps from an energy file (see :class:`_StepMatcher`)."""

    def __init__(self, path, column: int = 2, unit: str = "eV"):
        super().__init__(path, iter_energies(path, column, unit), "timestep energy")

    def energy(self, step: int) -> float | None:
        found = self._value(step)
        return None if found is None else found.energy_ev


class StressMatcher(_StepMatcher):
    """Stresses ((3, 3) eV/Å³, ASE's sign) of increasing HISTORY steps from a stress file."""

    def __init__(self, path):
        super().__init__(path, iter_stresses(path), "timestep s_xx s_yy s_zz s_yz s_xz s_xy")

    def stress(self, step: int) -> np.ndarray | None:
        found = self._value(step)
        return None if found is None else found.stress


def _parse_step(tok: str, path, line_no: int) -> int:
    try:
        return strict_int(tok)
    except ValueError:
        pass
    try:
        value = strict_float(tok)  # e.g. "5.0E+02" from some post-processing tools
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value):
        raise InputFileError(path, f"expected an integer timestep in column 1, got {tok!r}", line=line_no)
    return int(value)
