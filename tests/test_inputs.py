"""Stage 1: temperatures, file resolution, study files and command-line overrides."""

from __future__ import annotations

import math

import pytest

from _dlpoly_fixtures import make_frames, write_pair
from hdnnp.errors import HdnnpError
from hdnnp.inputs import (load_config, merge_options, parse_temperature, parse_temperature_list,
                          resolve_inputs, resolve_inputs_from_options)


def test_parse_temperature():
    assert parse_temperature("673K") == 673.0
    assert parse_temperature("673") == 673.0
    assert parse_temperature(" 673.5 k ") == 673.5
    assert parse_temperature(723) == 723.0
    assert parse_temperature_list(["673K,723K", "773"]) == [673.0, 723.0, 773.0]
    assert parse_temperature_list("673K") == [673.0]
    for bad in ("abc", "-5K", "0", "K"):
        with pytest.raises(HdnnpError, match="not a temperature"):
            parse_temperature(bad)


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    frames = make_frames(2)
    write_pair(d, "Te", 673, frames)
    write_pair(d, "Te", 723, frames, gz=True)
    write_pair(d, "Te", 773, frames)
    return d


def test_resolve_by_temperature(data_dir):
    sel = resolve_inputs(data_dir=data_dir, system="Te", train="673K,723", predict=["773K"])
    assert [f.path.name for f in sel.train] == ["HISTORY.Te.673K", "HISTORY.Te.723K.gz"]
    assert [f.energy_path.name for f in sel.train] == ["E.Te.673K", "E.Te.723K"]
    assert [f.temperature for f in sel.train] == [673.0, 723.0]
    assert sel.predict[0].path.name == "HISTORY.Te.773K" and sel.predict[0].format == "dlpoly"
    assert len(sel.all_paths()) == 6


def test_every_missing_file_named_at_once(data_dir):
    (data_dir / "E.Te.673K").unlink()
    with pytest.raises(HdnnpError) as err:
        resolve_inputs(data_dir=data_dir, system="Te", train="673K,800K", predict="900K")
    msg = str(err.value)
    for name in ("E.Te.673K", "HISTORY.Te.800K", "E.Te.800K", "HISTORY.Te.900K", "E.Te.900K"):
        assert name in msg
    assert "HISTORY.Te.673K" not in msg.replace("E.Te.673K", "")


def test_directory_instead_of_file(data_dir):
    (data_dir / "HISTORY.Te.900K").mkdir()
    (data_dir / "E.Te.900K").write_text("0 1.0\n")
    with pytest.raises(HdnnpError, match=r"HISTORY.Te.900K: is a directory"):
        resolve_inputs(data_dir=data_dir, system="Te", train="900K")


def test_no_training_data_and_no_system(data_dir):
    assert not resolve_inputs(data_dir=data_dir, system="Te", predict="773K").train  # prediction-only
    with pytest.raises(HdnnpError, match="no input data"):
        resolve_inputs(data_dir=data_dir, system="Te")
    with pytest.raises(HdnnpError, match="without --system"):
        resolve_inputs(data_dir=data_dir, train="673K")
    with pytest.raises(HdnnpError, match="listed twice"):
        resolve_inputs(data_dir=data_dir, system="Te", train="673K,673K")


def test_train_files_with_temperature_and_format(data_dir, tmp_path):
    xyz = tmp_path / "run.xyz"
    xyz.write_text("")
    sel = resolve_inputs(train_files=[f"{data_dir}/HISTORY.Te.723K.gz", f"{xyz}@650K"],
                         predict_files=[str(xyz)])
    hist, ext = sel.train
    assert hist.format == "dlpoly" and hist.temperature == 723.0 and hist.energy_path.name == "E.Te.723K"
    assert ext.format == "extxyz" and ext.temperature == 650.0
    assert math.isnan(sel.predict[0].temperature)
    odd = tmp_path / "frames.dat2"
    odd.write_text("")
    with pytest.raises(HdnnpError, match="--format"):
        resolve_inputs(train_files=[str(odd)])
    assert resolve_inputs(train_files=[str(odd)], format="vasp-xml").train[0].format == "vasp-xml"


def test_config_file_and_cli_override(data_dir, tmp_path):
    study = tmp_path / "study.toml"
    study.write_text('epochs = 5\n[prepare]\ndata_dir = "data"\nsystem = "Te"\ntrain = ["673K", "723K"]\n'
                     'predict = "773K"\nskip = 1\nenergy-unit = "eV"\n\n[train]\nepochs = 3\n')
    config = load_config(study)
    assert config["data_dir"] == str(data_dir.resolve())  # relative to the study file
    assert config["skip"] == 1 and config["energy_unit"] == "eV"
    sel, reading = resolve_inputs_from_options({"train": ("723K",), "predict": (), "skip": None,
                                                "stride": 2}, study)
    assert [f.temperature for f in sel.train] == [723.0]  # the command line wins
    assert [f.temperature for f in sel.predict] == [773.0]  # not given: from the file
    assert reading == {"skip": 1, "stride": 2, "energy_unit": "eV"}
    assert merge_options({"a": 1}, {"a": None, "b": ()}) == {"a": 1}


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[prepare]\nsytem = 'Te'\n")
    with pytest.raises(HdnnpError, match="unknown key.*sytem"):
        load_config(bad)
    bad.write_text("system = \n")
    with pytest.raises(HdnnpError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(HdnnpError, match="no such file"):
        load_config(tmp_path / "none.toml")
