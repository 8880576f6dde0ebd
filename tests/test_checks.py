"""Checks of single values: a bad value raises ParameterError naming it, before any expensive work."""

from pathlib import Path

import pytest

from crystalflow_core import checks
from crystalflow_core.errors import ParameterError


def _raises(pattern, check, *args, **kwargs):
    with pytest.raises(ParameterError, match=pattern):
        check(*args, **kwargs)


def test_messages_name_the_parameter(tmp_path, curated):
    with pytest.raises(ParameterError, match=r"^path='sde': must be one of a, b"):
        checks.check_choice("path", "sde", ["a", "b"])
    with pytest.raises(ParameterError, match=r"^epochs=0"):
        checks.check_positive("epochs", 0)
    with pytest.raises(ParameterError, match=r"^epochs=True"):
        checks.check_positive("epochs", True)
    assert checks.check_positive("cutoff", 4.5, float) == 4.5
    with pytest.raises(ParameterError, match=r"^data_dir=.*does not exist"):
        checks.check_data_dir("data_dir", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match=r"^data_dir=.*no curated clusters"):
        checks.check_data_dir("data_dir", tmp_path / "empty")
    with pytest.raises(ParameterError, match=r"^subset=5: larger than the 4 curated clusters"):
        checks.check_subset("subset", 5, curated)
    assert checks.check_subset("subset", 4, curated) == 4
    with pytest.raises(ParameterError, match=r"^methods=\['lerp', 'x'\]: unknown \['x'\]"):
        checks.check_choices("methods", ["lerp", "x"], ["lerp", "ve"])
    with pytest.raises(ParameterError, match=r"^subsets="):
        checks.check_subsets("subsets", [10, 0])
    with pytest.raises(ParameterError, match=r"^seeds="):
        checks.check_seeds("seeds", [-1])
    with pytest.raises(ParameterError, match=r"^run_dir="):
        checks.check_run_dir("run_dir", tmp_path)


def test_checks_of_devices_seeds_and_outputs(curated):
    assert checks.check_device("device", "cpu") == "cpu" and checks.check_device("device", "auto") == "auto"
    with pytest.raises(ParameterError, match=r"^device='gpu7': not a device"):
        checks.check_device("device", "gpu7")
    with pytest.raises(ParameterError, match=r"^seed=-1: must be a non-negative integer"):
        checks.check_seed("seed", -1)
    with pytest.raises(ParameterError, match=r"^seed=1.5"):
        checks.check_seed("seed", 1.5)
    with pytest.raises(ParameterError, match=r"^pred_dir=.*no PredictedPositions/"):
        checks.check_predictions_dir("pred_dir", curated)
    with pytest.raises(ParameterError, match=r"^out=.*exists and is not a directory"):
        checks.check_out_dir("out", curated / "curation.json")


def test_papermill_types_are_refused_with_the_name(tmp_path, curated):
    """``papermill -p`` passes text, ints, floats and bools: a wrong type is a ParameterError, never a TypeError."""
    assert checks.check_subsets("subsets", (25, None)) == [25, None]
    _raises(r"^subsets='\[25\]': must be a list", checks.check_subsets, "subsets", "[25]")
    _raises(r"^methods='lerp': must be a list", checks.check_choices, "methods", "lerp", ["lerp"])
    _raises(r"^seeds=None: must be a list", checks.check_seeds, "seeds", None)
    assert checks.check_bool("launch_missing", False) is False
    for value in ("yes", 1, 0.0, None):
        _raises(r"^launch_missing=.*: must be True or False", checks.check_bool, "launch_missing", value)
    assert checks.check_optional_positive("steps", None) is None and checks.check_optional_positive("lr", 0.1, float)
    _raises(r"^steps='abc': must be a positive int", checks.check_optional_positive, "steps", "abc")
    assert checks.check_path("data_root", "x") == Path("x") and checks.check_path("out", tmp_path) == tmp_path
    _raises(r"^data_dir=5: must be a path", checks.check_data_dir, "data_dir", 5)
    _raises(r"^run_dir=None: must be a path", checks.check_run_dir, "run_dir", None)
    _raises(r"^out=1.5: must be a path", checks.check_out_dir, "out", 1.5)
    _raises(r"^device=0: must be a device name", checks.check_device, "device", 0)
    _raises(r"^source=5: must be 'default', 'pyxtal' or a directory", checks.check_source, "source", 5)
