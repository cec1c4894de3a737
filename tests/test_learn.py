"""``hdnnp learn`` (query by committee) end to end with a cheap analytic reference: a Lennard-Jones
potential. The first committee, trained on near-lattice boxes, leaves its training domain in
MD at 60 K; the loop labels frames where the committee disagrees or extrapolates and retrains
until the MD runs its whole length inside the domain."""

import json

import numpy as np
import pytest
from ase.io import read

from _learn_fixtures import LJ_ARGS, CountingLJ
from _nn_fixtures import lj_frames, write_prepared
from hdnnp.cli import main
from hdnnp.learning.selection import Candidate, select, trajectory_candidates

LJ = ["--reference", "ase:ase.calculators.lj.LennardJones", "--reference-args", json.dumps(LJ_ARGS)]
COMMON = ["--temperatures", "60", "--md-time", "0.5", "--committee", "2", "--preset", "fast", "--epochs", "40",
          "--hidden", "4", "--n-features", "8", "--max-frames", "5", "--iterations", "5", "-q"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    d = tmp_path_factory.mktemp("learn")
    frames = lj_frames(np.random.default_rng(0), 24, jitter_angstrom=0.15)
    return write_prepared(d / "prepared.h5", frames[:18], frames[18:])


def learn(prepared, work, *extra):
    try:
        main(["learn", str(prepared), "--work-dir", str(work), *COMMON, *extra])
        return 0
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def finished(prepared, tmp_path_factory):
    work = tmp_path_factory.mktemp("run") / "w"
    assert learn(prepared, work, *LJ) == 0
    return work


def test_a_poor_potential_becomes_stable(finished):
    state = json.loads((finished / "learn.json").read_text())
    its = state["iterations"]
    assert state["status"].startswith("converged")
    first, last = its[1]["md"][0], its[-1]["md"][0]
    assert not first["stable"] and first["time_ps"] < 0.5  # the first committee leaves its domain
    assert last["stable"] and last["time_ps"] == pytest.approx(0.5)
    assert 2 <= len(its) <= 5
    assert (finished / "model.h5").is_file() and (finished / "LEARNING_ITERATIONS.png").stat().st_size > 1000


def test_learned_frames_carry_provenance_and_reference_labels(finished):
    from ase.calculators.lj import LennardJones

    learned = read(finished / "learned.extxyz", index=":")
    state = json.loads((finished / "learn.json").read_text())
    assert len(learned) == sum(it.get("n_labelled", 0) for it in state["iterations"]) > 0
    calc = LennardJones(**LJ_ARGS)
    for atoms in learned:
        assert {"iteration", "condition", "md_file", "md_frame", "time_ps", "force_spread", "reference"} <= set(atoms.info)
        assert atoms.info["condition"] == "nvt-60K"
        ref = atoms.copy()
        ref.calc = calc
        assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), rel=1e-10)
        # extxyz stores 8 decimals (1e-8 Å, 1e-8 eV/Å)
        np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), rtol=0, atol=2e-8)
        # the boxes are periodic: the reference's stress is labelled too (eV/Å³, ASE's sign)
        np.testing.assert_allclose(atoms.get_stress(), ref.get_stress(), rtol=1e-6, atol=1e-10)


def test_frames_are_selected_only_where_the_committee_disagrees_or_extrapolates(finished):
    import h5py

    state = json.loads((finished / "learn.json").read_text())
    extrapolation = state["settings"]["extrapolation_threshold"]
    n_checked = 0
    for it in state["iterations"][1:]:
        if "select" not in it["done"]:
            continue
        selected = read(finished / f"iter{it['iteration']}" / "selected.extxyz", index=":")
        with h5py.File(finished / f"iter{it['iteration']}" / it["md"][0]["file"]) as h5:
            spread = h5["trajectory/guards/force_spread"][:]
            excess = h5["trajectory/guards/extrapolation_max_excess"][:]
        for atoms in selected:
            k = atoms.info["md_frame"]
            assert spread[k] == pytest.approx(atoms.info["force_spread"])
            assert spread[k] > it["spread_threshold"] or excess[k] > extrapolation
            n_checked += 1
        # and no frame that crossed neither threshold was left while fewer than K were taken
        quiet = (spread <= it["spread_threshold"]) & (excess <= extrapolation)
        assert len(selected) <= 5 and quiet.any()
    assert n_checked > 0


def test_selection_rules():
    c = trajectory_candidates("a", [0.0, 0.1, 0.2, 0.3], [0.1, 0.5, 0.6, 2.0], [0, 0, 0.2, 0], 0.4, 0.1,
                              spread_max=1.5)
    assert [x.frame for x in c] == [1, 2]  # 0: below both thresholds; 3: beyond --spread-max
    assert c[1].score == pytest.approx(max(0.6 / 0.4, 0.2 / 0.1))
    assert trajectory_candidates("a", [0, 0.1], [0.1, 0.1], [0, 0], 0.4, 0.1) == []
    assert [x.frame for x in trajectory_candidates("a", [0, 0.1], [0.1, 0.1], [0, 0], 0.4, 0.1, stopped=True)] == [1]
    cands = [Candidate("a", k, 0.01 * k, 0.0, 0.0, float(k)) for k in range(30)]
    cands += [Candidate("b", k, 0.1 * k, 0.0, 0.0, 1.5) for k in range(2)]
    # earliest first per trajectory, trajectories in turn, separated by >= 0.045 ps
    chosen = select(cands, max_frames=4, min_separation_ps=0.045)
    assert [(c.condition, c.frame) for c in chosen] == [("a", 0), ("a", 5), ("b", 0), ("b", 1)]
    chosen = select(cands, max_frames=10, min_separation_ps=0.045)
    assert [(c.condition, c.frame) for c in chosen] == [("a", k) for k in range(0, 30, 5)] + [("b", 0), ("b", 1)]
    assert len(select(cands, max_frames=3, min_separation_ps=0.0)) == 3


def test_external_reference_round_trip(prepared, finished, tmp_path, capsys):
    from ase.calculators.lj import LennardJones
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    work = tmp_path / "w"
    assert learn(prepared, work, "--reference", "external") == 4
    err = capsys.readouterr().err
    assert "selected.extxyz" in err and "--add-labels" in err
    d = work / "iter1"
    selected = read(d / "selected.extxyz", index=":")
    assert len(list((d / "selected_POSCAR").iterdir())) == len(selected) == len(list((d / "selected_CONFIG").iterdir()))
    # another code labels them (here: the same Lennard-Jones), written as extxyz
    labelled = []
    for atoms in selected:
        a = atoms.copy()
        a.calc = LennardJones(**LJ_ARGS)
        e, f, stress = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=stress)  # a DFT code gives the stress too
        labelled.append(a)
    write(tmp_path / "labels.extxyz", labelled)
    # a wrong file: one frame missing; then one atom moved: refused, nothing learned is lost
    write(tmp_path / "short.extxyz", labelled[:-1])
    assert learn(prepared, work, "--reference", "external", "--resume", "--add-labels", str(tmp_path / "short.extxyz")) == 2
    assert "labelled frames" in capsys.readouterr().err
    moved = [a.copy() for a in labelled]
    moved[0].positions[0] += 0.3
    write(tmp_path / "moved.extxyz", moved)
    assert learn(prepared, work, "--reference", "external", "--resume", "--add-labels", str(tmp_path / "moved.extxyz")) == 2
    assert "positions differ from selected frame 0" in capsys.readouterr().err
    assert json.loads((work / "learn.json").read_text())["iterations"][1]["done"] == ["explore", "select"]
    # the right labels: the loop continues, then (external again) waits for iteration 2's labels
    code = learn(prepared, work, "--reference", "external", "--resume", "--add-labels", str(tmp_path / "labels.extxyz"))
    assert code in (0, 4)
    # continuing with the calculator itself gives the run with the calculator from the start
    assert learn(prepared, work, *LJ, "--resume") == 0
    ours, theirs = read(work / "learned.extxyz", index=":"), read(finished / "learned.extxyz", index=":")
    assert len(ours) == len(theirs)
    # the same frames to the precision of the exchange: ASE's extxyz writes 8 decimals, so the
    # external labels' forces (and through the retrained committee, the next MD) differ by ~1e-8
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=5e-8)
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), rel=1e-7)
        np.testing.assert_allclose(a.get_stress(), b.get_stress(), rtol=1e-6, atol=1e-10)  # kept from --add-labels


def test_a_failing_reference_loses_nothing_and_resume_goes_on(prepared, finished, tmp_path, capsys):
    counting = ["--reference", "ase:_learn_fixtures.CountingLJ", "--reference-args", json.dumps(LJ_ARGS)]
    CountingLJ.calls, CountingLJ.fail_at = 0, 2
    work = tmp_path / "w"
    assert learn(prepared, work, *counting) == 2
    err = capsys.readouterr().err
    assert "reference ase:_learn_fixtures.CountingLJ failed on frame 1 of" in err and "SCF did not converge" in err
    assert len(read(work / "iter1" / "labels.extxyz", index=":")) == 1  # the first label is kept
    CountingLJ.calls, CountingLJ.fail_at = 0, -1
    assert learn(prepared, work, *counting, "--resume") == 0
    theirs = read(finished / "learned.extxyz", index=":")
    assert CountingLJ.calls == len(theirs) - 1  # only the frames not yet labelled were computed
    ours = read(work / "learned.extxyz", index=":")
    # the kept label went through labels.extxyz (8 decimals), so the retrained committee and the
    # next iteration's frames agree to ~1e-8, not to the last bit
    assert [a.get_potential_energy() for a in ours] == pytest.approx([a.get_potential_energy() for a in theirs],
                                                                     rel=1e-7)


@pytest.mark.parametrize("phase", ["_explore", "_select", "_label", "_train"])
def test_resume_after_a_kill_in_any_phase(prepared, finished, tmp_path, monkeypatch, phase):
    import hdnnp.learning.loop as loop

    real = getattr(loop, phase)
    calls = {"n": 0}

    def killed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second call: iteration 0 or 1 done, a later one killed
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, phase, killed)
    work = tmp_path / "w"
    assert learn(prepared, work, *LJ) == 130  # Ctrl-C
    monkeypatch.setattr(loop, phase, real)
    assert learn(prepared, work, *LJ) == 2  # a run is there: --resume or --overwrite
    assert learn(prepared, work, *LJ, "--resume") == 0
    ours, theirs = read(work / "learned.extxyz", index=":"), read(finished / "learned.extxyz", index=":")
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-8)


@pytest.mark.parametrize("args,message", [
    (["--reference", "dft"], "expected tblite:METHOD, ase:MODULE.CLASS or external"),
    (["--reference", "tblite:GFN9"], "expected tblite:METHOD with METHOD one of"),
    (["--reference", "ase:nowhere.Calc"], "cannot import nowhere.Calc"),
    (["--reference", "external", "--reference-args", "{bad"], "--reference-args: not JSON"),
    (["--reference", "external", "--add-labels", "x.extxyz"], "--add-labels continues a run"),
])
def test_bad_input_is_one_line(prepared, tmp_path, capsys, args, message):
    assert learn(prepared, tmp_path / "w", *args) == 2
    assert message in capsys.readouterr().err


def test_the_example_picks_up_its_learned_frames(tmp_path):
    from hdnnp.stages.run import learned_example_files

    assert learned_example_files(tmp_path) == ()
    (tmp_path / "learned").mkdir()
    for name in ("learned.Te.973K.extxyz", "learned.Te.673K.extxyz", "README.md", "other.extxyz"):
        (tmp_path / "learned" / name).write_text("")
    assert learned_example_files(tmp_path) == (f"{tmp_path}/learned/learned.Te.673K.extxyz@673K",
                                               f"{tmp_path}/learned/learned.Te.973K.extxyz@973K")


def test_overwrite_removes_only_what_learn_made(prepared, tmp_path):
    """--work-dir . --overwrite must not empty the user's directory."""
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    (work / "data.h5").write_text("keep me too")
    assert learn(prepared, work, *LJ, "--iterations", "1") == 0
    assert learn(prepared, work, *LJ, "--iterations", "1", "--overwrite") == 0
    assert (work / "notes.txt").read_text() == "keep me" and (work / "data.h5").exists()
    assert (work / "learn.json").exists() and (work / "iter0").is_dir()


def test_run_learned_needs_the_example_and_its_frames(tmp_path, capsys, monkeypatch):
    from hdnnp.errors import HdnnpError
    from hdnnp.stages.run import example_inputs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "example").mkdir(parents=True)
    assert example_inputs()["train_files"] == ()
    with pytest.raises(HdnnpError, match="--learned: no learned frames"):
        example_inputs(learned=True)
    (tmp_path / "data" / "example" / "learned").mkdir()
    (tmp_path / "data" / "example" / "learned" / "learned.Te.673K.extxyz").write_text("")
    assert example_inputs()["train_files"] == ()  # not by default
    assert example_inputs(learned=True)["train_files"] == ("data/example/learned/learned.Te.673K.extxyz@673K",)
    with pytest.raises(SystemExit):
        main(["run", "--learned", "--train-file", "x.extxyz@300"])
    assert "--learned: adds the learned frames of the bundled example" in capsys.readouterr().err


def test_explores_at_scaled_volumes_and_labels_stress(prepared, tmp_path):
    """--densities adds one NVT run per temperature from the start frame scaled to each density;
    the labelled frames carry the reference's stress, and the retrained set holds it."""
    import h5py

    from hdnnp.analysis.observables import mass_density

    work = tmp_path / "w"
    args = list(COMMON)
    args[args.index("--iterations") + 1] = "1"
    args[args.index("--max-frames") + 1] = "3"
    main(["learn", str(prepared), "--work-dir", str(work), *args, *LJ, "--densities", "1.7"])
    state = json.loads((work / "learn.json").read_text())
    runs = state["iterations"][1]["md"]
    assert [r["condition"] for r in runs] == ["nvt-60K", "nvt-60K-1.7gcm3"]
    with h5py.File(work / "iter1" / runs[1]["file"]) as h5:
        species = h5["trajectory/atoms/species"][:8]
        assert mass_density(species, h5["trajectory/frames/cell"][0]) == pytest.approx(1.7, rel=1e-12)
    labels = read(work / "iter1" / "labels.extxyz", index=":")
    assert labels and all(a.calc.results.get("stress") is not None for a in labels)
    with h5py.File(work / "iter1" / "prepared.h5") as h5:
        stress = h5["train/frames/stress"][:]
    assert np.isfinite(stress).all(axis=(1, 2)).sum() == len(labels)  # the learned frames, not the original
