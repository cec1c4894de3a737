"""Every numeric option of the commands that compute, driven with values no run can use (NaN,
±inf, words, empty, and negatives where only positives make sense): one line, exit status 2,
no traceback and nothing written (issue #15). Hypothesis draws the (command, option, value)
cases; the commands get valid small inputs so that only the option is wrong."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _nn_fixtures import lj_frames, lj_symmetry_files
from hdnnp.cli import main

NOT_A_NUMBER = ["nan", "inf", "-inf", "abc", ""]
NEGATIVE = ["-1", "-1e308"]

#: command -> {option: hostile values}; options whose negative values mean something (e.g.
#: --force-weight < 0 = automatic, --pressure) get only NOT_A_NUMBER.
OPTIONS = {
    "train": {"--epochs": NEGATIVE, "--batch-boxes": NEGATIVE + ["0"], "--learning-rate": NEGATIVE + ["0"],
              "--force-weight": NOT_A_NUMBER, "--force-fraction": NEGATIVE + ["0", "2"],
              "--val-fraction": NEGATIVE + ["1"], "--patience": ["-2"], "--checkpoint-every": NEGATIVE,
              "--seed": NEGATIVE, "--max-evals": NEGATIVE, "--weight-bound": NEGATIVE, "--time-limit": NEGATIVE,
              "--max-memory": NEGATIVE + ["0"], "--committee": NEGATIVE + ["0"]},
    "symmetry": {"--n-features": NEGATIVE + ["0"], "--cutoff": NEGATIVE + ["0"], "--chunk-frames": NEGATIVE + ["0"],
                 "--fit-atoms": NEGATIVE + ["0"], "--workers": NEGATIVE + ["0", "100000"]},
    "md": {"--temperature": NEGATIVE + ["0"], "--pressure": NOT_A_NUMBER, "--timestep": NEGATIVE + ["0"],
           "--time": NEGATIVE + ["0"], "--steps": NEGATIVE + ["0"], "--tdamp": NEGATIVE + ["0"],
           "--pdamp": NEGATIVE + ["0"], "--write-every": NEGATIVE + ["0"], "--guard-every": NEGATIVE + ["0"],
           "--max-extrapolation": NEGATIVE, "--min-distance": NEGATIVE, "--max-temperature": NEGATIVE + ["0"],
           "--max-force-spread": NEGATIVE + ["0"], "--seed": NEGATIVE},
    "learn": {"--md-time": NEGATIVE + ["0"], "--timestep": NEGATIVE + ["0"], "--max-frames": NEGATIVE + ["0"],
              "--spread-threshold": NEGATIVE + ["0"], "--spread-max": NEGATIVE + ["0"],
              "--extrapolation-threshold": NEGATIVE, "--min-separation": NEGATIVE, "--committee": ["1", "0"],
              "--n-features": NEGATIVE + ["0"], "--write-every": NEGATIVE + ["0"], "--iterations": ["0"],
              "--pressure": NOT_A_NUMBER, "--seed": NEGATIVE},
}
CASES = [(cmd, opt, v) for cmd, opts in OPTIONS.items() for opt, values in opts.items()
         for v in sorted(set(values) | ({"nan", "abc"} if values is not NOT_A_NUMBER else set()))]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = lj_symmetry_files(tmp_path_factory.mktemp("hostile"), lj_frames(np.random.default_rng(4), 10), 8, 6)
    main(["train", str(d / "symmetry.h5"), "-o", str(d / "model.h5"), "--preset", "fast", "--epochs", "1",
          "--hidden", "3", "--committee", "2", "-q"])
    return d


def _argv(cmd, d, out):
    return {"train": ["train", d / "symmetry.h5", "-o", out / "m.h5", "--preset", "fast", "--epochs", "1",
                      "--hidden", "3"],
            "symmetry": ["symmetry", d / "prepared.h5", "-o", out / "s.h5"],
            "md": ["md", "--start", d / "prepared.h5", "--model", d / "model.h5", "--temperature", "50", "--steps",
                   "2", "-o", out / "md.h5"],
            "learn": ["learn", d / "prepared.h5", "--model", d / "model.h5", "--temperatures", "50", "--reference",
                      "external", "--md-time", "0.004", "--work-dir", out / "w"]}[cmd]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(CASES))
def test_hostile_option_values_are_one_line_and_write_nothing(inputs, tmp_path_factory, capsys, case):
    cmd, option, value = case
    out = tmp_path_factory.mktemp("out")
    argv = [str(a) for a in _argv(cmd, inputs, out)]
    if option in argv:  # replace the valid value the base command gives
        i = argv.index(option)
        argv[i + 1] = value
    else:
        argv += [option, value]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv + ["-q"])
    err = capsys.readouterr().err
    assert exc.value.code == 2, (case, err)
    assert "Traceback" not in err and err.strip().count("\n") <= 4, (case, err)
    assert not list(out.iterdir()), (case, list(out.iterdir()))
