"""Property-based fuzzing of the HISTORY and energy readers through ``prepare`` (issue #6).

Each example writes a small valid HISTORY + energy pair (random layout, keytrj, cell), applies
one mutation to one of the two files (truncation at a line or a byte, swapped, deleted,
duplicated or blank lines, garbage or extreme tokens, rewritten header) and runs
``prepare``. Allowed outcomes:

* an :class:`HdnnpError` naming the damaged file (or the HISTORY whose frames lost their
  energies) and a line or step;
* success with exactly the frames of the intact files;
* success with other values only where no reader could know better: two numeric lines
  swapped, a number replaced by another valid number, or a Classic-layout file (which has no
  frame count) cut at a frame boundary, giving a prefix of the frames.

Any other exception type, or any other silent difference, fails the test.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from _dlpoly_fixtures import CUBIC, TRICLINIC, make_frames, write_pair
from hdnnp.errors import HdnnpError
from hdnnp.inputs import resolve_inputs
from hdnnp.stages.prepare import prepare

GARBAGE = ["abc", "nan", "inf", "-inf", "1e999", "--1", "1,5", "0x1A", "1_0", "\x00", "é", "",
           "timestep", "Te", "#"]
EXTREME_INTS = ["-1", "0", "3", "7", "999999999", "-999999999999"]
VALID_NUMBERS = ["0.5", "-0.0", "12345.678"]


def _is_number(tok: str) -> bool:
    try:
        return "_" not in tok and math.isfinite(float(tok))
    except ValueError:
        return False


def _is_numeric_line(line: str) -> bool:
    toks = line.split()
    return len(toks) == 3 and all(_is_number(t) for t in toks)


mutation = st.one_of(
    st.tuples(st.just("truncate_lines"), st.integers(0, 10_000)),
    st.tuples(st.just("truncate_bytes"), st.integers(0, 100_000)),
    st.tuples(st.just("swap"), st.integers(0, 10_000), st.integers(0, 10_000)),
    st.tuples(st.just("delete"), st.integers(0, 10_000)),
    st.tuples(st.just("duplicate"), st.integers(0, 10_000)),
    st.tuples(st.just("blank"), st.integers(0, 10_000)),
    st.tuples(st.just("token"), st.integers(0, 10_000), st.integers(0, 9),
              st.sampled_from(GARBAGE + EXTREME_INTS + VALID_NUMBERS)),
    st.tuples(st.just("header"), st.sampled_from(["classic", "dlpoly4", "short", "long"])),
)


def _mutate(text: str, m) -> tuple[str, str]:
    """Apply mutation ``m``; returns the new text and a tag for the oracle."""
    lines = text.splitlines(keepends=True)
    n = len(lines)
    kind = m[0]
    if kind == "truncate_lines":
        k = m[1] % (n + 1)
        return "".join(lines[:k]), "truncate" if k < n else "same"
    if kind == "truncate_bytes":
        b = m[1] % (len(text) + 1)
        return text[:b], "truncate" if b < len(text) else "same"
    if kind == "swap":
        i, j = m[1] % n, m[2] % n
        tag = "swap_numeric" if _is_numeric_line(lines[i]) and _is_numeric_line(lines[j]) else "swap"
        lines[i], lines[j] = lines[j], lines[i]
        return "".join(lines), tag
    if kind == "delete":
        del lines[m[1] % n]
        return "".join(lines), "delete"
    if kind == "duplicate":
        i = m[1] % n
        lines.insert(i, lines[i])
        return "".join(lines), "duplicate"
    if kind == "blank":
        lines.insert(m[1] % (n + 1), "\n")
        return "".join(lines), "blank"
    if kind == "token":
        i = m[1] % n
        toks = lines[i].split()
        if not toks:
            return text, "same"
        t = m[2] % len(toks)
        valid = _is_number(toks[t]) and _is_number(m[3])
        toks[t] = m[3]
        lines[i] = " ".join(toks) + "\n"
        return "".join(lines), "new_number" if valid else "token"
    if kind == "header":
        toks = lines[1].split() if n > 1 else []
        if len(toks) < 3:
            return text, "same"
        new = {"classic": toks[:3], "dlpoly4": toks[:3] + ["2", "99"], "short": toks[:2],
               "long": toks + ["1", "2", "3"]}[m[1]]
        lines[1] = " ".join(new) + "\n"
        return "".join(lines), "header_" + m[1]
    raise AssertionError(kind)


def _frames_of(h5path):
    with h5py.File(h5path, "r") as h5:
        g = h5["train"]
        off = g["frames/atom_offset"][:]
        pos = g["atoms/positions"][:]
        forces = g["atoms/forces"][:] if "atoms/forces" in g else None
        return [dict(step=int(g["frames/step"][i]), energy=float(g["frames/energy"][i]),
                     cell=g["frames/cell"][i], positions=pos[off[i]:off[i + 1]],
                     forces=None if forces is None else forces[off[i]:off[i + 1]])
                for i in range(len(off) - 1)]


def _same(a, b) -> bool:
    return (a["step"] == b.step and abs(a["energy"] - b.energy) < 1e-9
            and np.allclose(a["cell"], b.cell, atol=1e-9)
            and a["positions"].shape == b.positions.shape
            and np.allclose(a["positions"], b.positions, atol=1e-9)
            and (a["forces"] is None or np.allclose(a["forces"], b.forces, atol=1e-9)))


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(layout=st.sampled_from(["dlpoly4", "classic"]), keytrj=st.integers(0, 2),
       triclinic=st.booleans(), target=st.sampled_from(["history", "energy"]), m=mutation)
def test_mutated_inputs_fail_clearly_or_read_correctly(tmp_path_factory, layout, keytrj,
                                                       triclinic, target, m):
    d = tmp_path_factory.mktemp("fuzz")
    frames = make_frames(3, species=(52, 52), cell=TRICLINIC if triclinic else CUBIC, step0=100)
    hist, energy = write_pair(d, "Te", 673, frames, layout=layout, keytrj=keytrj)
    victim = hist if target == "history" else energy
    text, tag = _mutate(victim.read_text(encoding="latin-1"), m)
    victim.write_text(text, encoding="latin-1")
    out = d / "prepared.h5"
    try:
        prepare(resolve_inputs(data_dir=d, system="Te", train="673K"), out, quiet=True)
    except HdnnpError as exc:
        msg = str(exc)
        assert victim.name in msg or "HISTORY.Te.673K" in msg, msg
        assert "line" in msg or "step" in msg, msg
        assert not out.exists()
        return
    got = _frames_of(out)
    if len(got) == len(frames) and all(_same(a, b) for a, b in zip(got, frames)):
        return
    if tag in ("swap_numeric", "new_number"):
        return  # a different but valid number where one was: undetectable by any reader
    if tag == "truncate" and layout == "classic" and target == "history":
        assert 0 < len(got) < len(frames) and all(_same(a, b) for a, b in zip(got, frames))
        return
    pytest.fail(f"silent wrong result: mutation {m} ({tag}) of {victim.name}, layout {layout}, "
                f"keytrj {keytrj}: read {len(got)} frames")
