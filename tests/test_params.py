"""Notebook parameters and training settings: a bad value raises ParameterError naming it, before any expensive
work."""

import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import notebook_parameters

from crystalflow_core import params
from crystalflow_core.data.curate import data_inversion


def test_training_config_checks_every_setting_and_curates_nothing(tmp_path, curated):
    missing = tmp_path / "would_be_curated"
    bad = {"path": "sde", "hidden": -4, "lr": math.nan, "weight_decay": -1.0, "augment": 1, "subset": 2, "epochs": 0}
    for name, value in bad.items():
        _raises(rf"^{name}=", params.check_train_settings, {name: value})
        _raises(rf"^{name}=", params.training_config, missing, **{name: value})
    _raises(r"^hiden=4: not a training setting", params.training_config, curated, hiden=4)
    _raises(r"^data_dir=.*does not exist", params.training_config, missing)
    assert not missing.exists()  # training_config never curates
    _raises(r"^subset=9: larger than the 4 curated clusters", params.training_config, curated, subset=9)
    _raises(r"^inversion=True: .* curated with inversion=False", params.training_config, curated, inversion=True)


def test_training_config_names_a_bad_seed(curated):
    with pytest.raises(params.ParameterError, match=r"^seed=-2"):
        params.training_config(curated, seed=-2)


def test_training_config_keeps_package_defaults(tmp_path, curated):
    config = params.training_config(curated, tmp_path / "run", path="ve", subset=3, epochs=2, weight_decay=0)
    defaults = params.train_settings()
    assert (config.path, config.subset, config.epochs, config.weight_decay) == ("ve", 3, 2, 0)
    assert (config.hidden, config.n_rbf, config.cutoff) == (defaults["hidden"], defaults["n_rbf"], defaults["cutoff"])
    assert config.out == str(tmp_path / "run") and config.progress is False
    automatic = params.training_config(curated, subset=None, seed=2)
    assert automatic.out == "runs/lerp_all_s2"
    assert params.default_data_dir(True, "root").as_posix() == "root/default_inversion"
    assert config.noise == {"rotation_deg": 90.0, "translation_sigma": 1.0, "inversion": False}  # curation.json


def test_ensure_curated_curates_only_a_missing_directory_and_says_so(tmp_path, curated, small_cifs, capsys):
    assert params.ensure_curated(curated, False, source=str(tmp_path / "no_cifs")) == curated  # source unused
    assert capsys.readouterr().out == ""
    missing = tmp_path / "missing"
    _raises(r"^data_dir=.*does not exist", params.ensure_curated, missing, False, source="")
    _raises(r"^data_source=5", params.ensure_curated, missing, False, source=5)
    (tmp_path / "empty").mkdir()
    _raises(r"^data_source=.*no structures found", params.ensure_curated, missing, False, str(tmp_path / "empty"))
    assert not missing.exists()
    assert params.ensure_curated(missing, True, source=str(small_cifs), workers=1) == missing
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"{missing} does not exist: curating 8 structures of '{small_cifs}' into it (inversion=True)"
    assert printed[1].endswith("of 8 structures curated") and data_inversion(missing) is True


def test_the_train_settings_are_the_fields_of_trainconfig():
    """Every field but the few set otherwise is a setting, with its default, and has a check."""
    from dataclasses import fields

    from crystalflow_core.settings import NOT_TRAIN_SETTINGS
    from crystalflow_core.train import TrainConfig

    every = {f.name: f.default for f in fields(TrainConfig)}
    settings = params.train_settings()
    assert settings == {k: v for k, v in every.items() if k not in NOT_TRAIN_SETTINGS}
    assert set(NOT_TRAIN_SETTINGS) <= set(every)
    assert list(params.TRAIN_SETTING_CHECKS) == list(settings)
    assert params.check_train_settings(settings) == settings  # every default passes its own check


def test_the_training_notebook_has_every_setting_with_its_default():
    """Notebook 03's parameters are the training settings under their own names and defaults, plus its own."""
    parameters = notebook_parameters("03_train")
    settings = params.train_settings()
    assert {name: parameters.get(name) for name in settings} == settings
    own = set(parameters) - set(settings)
    assert own == {"data_dir", "data_source", "inversion", "output_dir", "samples", "steps"}


def _raises(pattern, check, *args, **kwargs):
    with pytest.raises(params.ParameterError, match=pattern):
        check(*args, **kwargs)


@pytest.fixture
def cif_dir(tmp_path):
    directory = tmp_path / "cifs"
    directory.mkdir()
    for name in ("a", "b", "c"):
        (directory / f"{name}.cif").write_text("data_x\n")  # listed, not read, by the checks
    return directory


def test_curation_parameters(tmp_path, cif_dir):
    from crystalflow_core.data.curate import SETTINGS, CurationSettings

    root = tmp_path / "data_out"
    refs, subsets = params.check_curation_parameters(str(cif_dir), str(root), 2, 3, None, [1, 2])
    assert [ref.id for ref in refs] == ["a", "b"] and subsets == [1, 2] and not root.exists()
    good = {"source": str(cif_dir), "data_root": str(root), "limit": None, "seed": 0, "workers": 2, "subsets": [5]}
    bad = {
        "seed": (-1, 1.5, True, "0"),
        "limit": (0, 2.5, "10"),
        "workers": (0, -2, 1.5, "4", True),
        "subsets": ("[25]", [0], None),
        "data_root": (5, None, str(cif_dir / "a.cif")),
        "source": (5, str(tmp_path / "nowhere")),
    }
    for name, values in bad.items():
        for value in values:
            _raises(rf"^{name}=", params.check_curation_parameters, **{**good, name: value})
    # cheap checks come first: a bad seed is named even with a source that does not exist
    _raises(r"^seed=-1", params.check_curation_parameters, **{**good, "source": "/nowhere", "seed": -1})
    # a variant already curated with another seed (curation would refuse to resume it)
    variant = params.default_data_dir(True, root)
    variant.mkdir(parents=True)
    (variant / SETTINGS).write_text(json.dumps(CurationSettings(seed=0).to_dict()))
    _raises(
        r"^seed=1: .*default_inversion was curated with seed=0", params.check_curation_parameters, **{**good, "seed": 1}
    )
    _raises(r"^data_root=.*curated with other settings", params.check_curation_parameters, **good)  # no inversion
    (root / "default").write_text("")
    _raises(r"^data_root=.*default.*exists and is not a directory", params.check_curation_parameters, **good)


def test_statistics_parameters(tmp_path, curated):
    assert params.check_statistics_parameters(str(curated), None, 80, 0) == curated
    assert params.check_statistics_parameters(curated, 50, 1, 7) == curated
    good = {"data_dir": str(curated), "max_clusters": 5000, "bins": 80, "seed": 0}
    for name, value in {"max_clusters": 0, "bins": "80", "seed": -1, "data_dir": str(tmp_path / "no")}.items():
        _raises(rf"^{name}=", params.check_statistics_parameters, **{**good, name: value})
    _raises(r"^seed=0.5", params.check_statistics_parameters, **{**good, "seed": 0.5})


def test_benchmark_parameters(tmp_path):
    from crystalflow_core.paths import PATHS
    from crystalflow_core.records import model_order

    runs = tmp_path / "runs"
    runs.mkdir()
    good = {
        "runs_dir": str(runs),
        "methods": None,
        "subsets": [None],
        "seeds": [0],
        "launch_missing": False,
        "data_root": str(tmp_path / "data_out"),
        "train_parameters": {},
    }
    assert params.check_benchmark_parameters(**good) == (model_order(PATHS), [None], [0])
    chosen = {"methods": ("lerp",), "subsets": (12,), "seeds": (0, 1)}
    assert params.check_benchmark_parameters(**{**good, **chosen}) == (["lerp"], [12], [0, 1])
    extra = {"epochs": 5, "lr": 1e-3, "cutoff": 4, "steps": None, "samples": 2, "device": "cpu", "data_source": ""}
    params.check_benchmark_parameters(**{**good, "train_parameters": extra})
    missing = {**good, "runs_dir": str(tmp_path / "new_runs")}
    assert params.check_benchmark_parameters(**{**missing, "launch_missing": True})
    assert not (tmp_path / "new_runs").exists()
    _raises(r"^runs_dir=.*new_runs.*does not exist", params.check_benchmark_parameters, **missing)
    (tmp_path / "file").write_text("")
    bad = {
        "runs_dir": (5, str(tmp_path / "file")),
        "methods": ("lerp", ["sde"]),
        "subsets": ("[None]", [0]),
        "seeds": ([-1], 0),
        "launch_missing": ("yes", 1, None),
        "data_root": (3, str(tmp_path / "file")),
        "train_parameters": ('{"epochs": 5}', None),
    }
    for name, values in bad.items():
        for value in values:
            _raises(rf"^{name}=", params.check_benchmark_parameters, **{**good, name: value})
    for extra, pattern in [
        ({"epoch": 5}, r"^train_parameters=\{'epoch': 5\}: unknown \['epoch'\]"),
        ({"seed": 1}, r"^train_parameters=\{'seed': 1\}: \['seed'\] are set per run"),
        ({"epochs": 0}, r"^train_parameters\['epochs'\]=0: must be a positive int"),
        ({"lr": "fast"}, r"^train_parameters\['lr'\]='fast': must be a positive float"),
        ({"samples": None}, r"^train_parameters\['samples'\]=None"),
        ({"device": "gpu7"}, r"^train_parameters\['device'\]='gpu7'"),
        ({"data_source": 3}, r"^train_parameters\['data_source'\]=3"),
    ]:
        _raises(pattern, params.check_benchmark_parameters, **{**good, "train_parameters": extra})


def test_train_parameters_cover_the_training_notebook():
    """Notebook 04 may pass every parameter of notebook 03 except those it sets per run."""
    names = set(notebook_parameters("03_train"))
    assert names == set(params.TRAIN_PARAMETER_CHECKS) | set(params.LAUNCH_SET_PARAMETERS)
    assert not set(params.TRAIN_PARAMETER_CHECKS) & set(params.LAUNCH_SET_PARAMETERS)


def test_trajectory_parameters(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"")
    good = {
        "run_dir": str(run),
        "data_dir": "",
        "n_clusters": 3,
        "samples": 2,
        "steps": 20,
        "frames": 21,
        "split": "test",
        "device": "cpu",
        "seed": 0,
    }
    assert params.check_trajectory_parameters(**good) == run
    assert params.check_trajectory_parameters(**{**good, "steps": None, "device": "auto", "split": "val"}) == run
    bad = {
        "n_clusters": (0, 1.5),
        "samples": (-1, "2"),
        "steps": ("abc", 0, 2.5, True),
        "frames": (0, None),
        "split": ("dev", 1),
        "device": ("gpu7", 0),
        "seed": (-1, 1.5, "0", False),
        "run_dir": (str(tmp_path), 5),
        "data_dir": (None, 3),
    }
    for name, values in bad.items():
        for value in values:
            _raises(rf"^{name}=", params.check_trajectory_parameters, **{**good, name: value})
    # cheap checks come first: a bad steps is named even with a run directory that does not exist
    _raises(r"^steps='abc'", params.check_trajectory_parameters, **{**good, "run_dir": "nowhere", "steps": "abc"})


def test_trajectories_default_to_the_shipped_model(tmp_path):
    from crystalflow_core.shipped import SHIPPED_MODEL

    good = {"n_clusters": 3, "samples": 2, "steps": 20, "frames": 21, "split": "test", "device": "cpu", "seed": 0}
    assert params.check_trajectory_parameters(run_dir="", data_dir="", **good) == SHIPPED_MODEL


def _run_trained_on(tmp_path, data: Path) -> Path:
    """A run directory whose config.json names ``data`` as its training data."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text(json.dumps({"data": str(data), "out": str(run), "path": "lerp"}))
    return run


def test_run_data_is_the_given_data_else_the_run_s_own(tmp_path, curated, monkeypatch):
    run = _run_trained_on(tmp_path, curated)
    assert params.run_data(run) == curated
    other = tmp_path / "other"
    shutil.copytree(curated, other)
    assert params.run_data(run, other) == other
    _raises(r"^data_dir=.*nowhere.*does not exist", params.run_data, run, tmp_path / "nowhere")
    _raises(r"^data_dir=.*gone.*does not exist", params.run_data, _run_trained_on(tmp_path, tmp_path / "gone"))
    assert not (tmp_path / "gone").exists()  # only the default location of the bundled data is curated
    monkeypatch.chdir(tmp_path)
    shutil.copytree(curated, params.default_data_dir(False))
    assert params.run_data(_run_trained_on(tmp_path, params.default_data_dir(False))) == params.default_data_dir(False)


def test_prediction_parameters(tmp_path):
    pattern = tmp_path / "measured.xy"
    pattern.write_text("5.0 1.0\n")  # what a pattern file holds is read, and refused, later
    good = {
        "smiles": "c1cnccn1",
        "candidates": 8,
        "space_groups": [14, "P-1", "P 1 21/c 1"],
        "seed": 0,
        "reference_cif": None,
        "pxrd_file": str(pattern),
        "out_dir": str(tmp_path / "out"),
        "keep": 5,
    }
    settings, reference, measured = params.check_prediction_parameters(**good)
    assert (settings.candidates, settings.space_groups, settings.seed) == (8, (14, 2), 0)
    assert reference is None and measured == pattern
    assert not (tmp_path / "out").exists()  # nothing is written by the checks
    bad = {
        "smiles": ("", 5, None),
        "candidates": (0, 2.5, "8"),
        "space_groups": ([], "14", [14, "P99"], [231], [True]),
        "seed": (-1, 1.5),
        "reference_cif": (str(tmp_path / "nowhere.cif"), "1234567", "../4516576", 4516576),
        "pxrd_file": (str(tmp_path), str(tmp_path / "nowhere.xy"), 3),
        "out_dir": (str(pattern), 3),
        "keep": (0, None),
    }
    for name, values in bad.items():
        for value in values:
            _raises(rf"^{name}=", params.check_prediction_parameters, **{**good, name: value})


def test_prediction_defaults_search_the_common_groups_against_a_bundled_crystal():
    from crystalflow_core.csp.candidates import DEFAULT_SPACE_GROUPS
    from crystalflow_core.data.sources import bundled_cod_directory

    defaults = notebook_parameters("06_crystal_prediction")
    settings, reference, measured = params.check_prediction_parameters(**defaults)
    assert settings.space_groups == DEFAULT_SPACE_GROUPS and measured is None
    assert reference == bundled_cod_directory() / f"{defaults['reference_cif']}.cif.gz"


def test_prediction_dir_is_one_per_molecule_unless_given():
    assert params.prediction_dir("", "KYQCOXFCLRTKLS") == Path("data_out/predict/KYQCOXFCLRTKLS")
    assert params.prediction_dir("mine", "KYQCOXFCLRTKLS") == Path("mine")
