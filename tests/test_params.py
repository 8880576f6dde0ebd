"""Parameter checks: a bad value raises ParameterError naming the parameter, before any expensive work."""

import json

import numpy as np
import pytest

from crystalflow_core import params
from crystalflow_core.data import codcluster17


@pytest.fixture
def curated(tmp_path):
    root = tmp_path / "data"
    numbers, mol_index = np.array([6, 1]), np.array([0, 0])
    for k in range(4):
        x = np.array([[0.0, 0.0, float(k)], [1.0, 0.0, float(k)]])
        codcluster17.write_cluster(root, codcluster17.Cluster(f"c{k}", numbers, mol_index, x, x))
    (root / "curation.json").write_text(json.dumps({"noise": {"rotation_deg": 90.0, "inversion": False}}))
    return root


def test_messages_name_the_parameter(tmp_path, curated):
    with pytest.raises(params.ParameterError, match=r"^path='sde': must be one of a, b"):
        params.check_choice("path", "sde", ["a", "b"])
    with pytest.raises(params.ParameterError, match=r"^epochs=0"):
        params.check_positive("epochs", 0)
    with pytest.raises(params.ParameterError, match=r"^epochs=True"):
        params.check_positive("epochs", True)
    assert params.check_positive("cutoff", 4.5, float) == 4.5
    with pytest.raises(params.ParameterError, match=r"^data_dir=.*does not exist"):
        params.check_data_dir("data_dir", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(params.ParameterError, match=r"^data_dir=.*no curated clusters"):
        params.check_data_dir("data_dir", tmp_path / "empty")
    with pytest.raises(params.ParameterError, match=r"^subset=5: larger than the 4 curated clusters"):
        params.check_subset("subset", 5, curated)
    assert params.check_subset("subset", 4, curated) == 4
    with pytest.raises(params.ParameterError, match=r"^methods=\['lerp', 'x'\]: unknown \['x'\]"):
        params.check_choices("methods", ["lerp", "x"], ["lerp", "ve"])
    with pytest.raises(params.ParameterError, match=r"^subsets="):
        params.check_subsets("subsets", [10, 0])
    with pytest.raises(params.ParameterError, match=r"^seeds="):
        params.check_seeds("seeds", [-1])
    with pytest.raises(params.ParameterError, match=r"^run_dir="):
        params.check_run_dir("run_dir", tmp_path)


def test_training_config_checks_before_curating(tmp_path, curated):
    missing = tmp_path / "would_be_curated"
    with pytest.raises(params.ParameterError, match=r"^path='sde'"):
        params.training_config("sde", missing)
    assert not missing.exists()
    with pytest.raises(params.ParameterError, match=r"^data_dir="):
        params.training_config("lerp", missing, data_source="")
    with pytest.raises(params.ParameterError, match=r"^subset=9"):
        params.training_config("lerp", curated, subset=9)
    with pytest.raises(params.ParameterError, match=r"^inversion=True: .* curated with inversion=False"):
        params.training_config("lerp", curated, inversion=True)
    with pytest.raises(params.ParameterError, match=r"^hidden=-4"):
        params.training_config("lerp", curated, hidden=-4)


def test_training_config_keeps_package_defaults(tmp_path, curated):
    from crystalflow_core.train import TrainConfig

    config = params.training_config("ve", curated, tmp_path / "run", subset=3, epochs=2, hidden=None)
    defaults = TrainConfig(data="", out="")
    assert (config.path, config.subset, config.epochs) == ("ve", 3, 2)
    assert (config.hidden, config.layers, config.cutoff) == (defaults.hidden, defaults.layers, defaults.cutoff)
    automatic = params.training_config("lerp", curated, subset=None, seed=2)
    assert automatic.out == "runs/lerp_all_s2"
    assert params.default_data_dir(True, "root").as_posix() == "root/default_inversion"
    assert config.noise == {"rotation_deg": 90.0, "translation_sigma": 1.0, "inversion": False}  # curation.json


def test_checks_of_devices_seeds_samplers_and_outputs(tmp_path, curated):
    from crystalflow_core.paths import get_path

    assert params.check_device("device", "cpu") == "cpu" and params.check_device("device", "auto") == "auto"
    with pytest.raises(params.ParameterError, match=r"^device='gpu7': not a device"):
        params.check_device("device", "gpu7")
    with pytest.raises(params.ParameterError, match=r"^seed=-1: must be a non-negative integer"):
        params.check_seed("seed", -1)
    with pytest.raises(params.ParameterError, match=r"^seed=1.5"):
        params.check_seed("seed", 1.5)
    assert params.check_sampler("method", "rigid", get_path("rigid")) == "rigid"
    with pytest.raises(params.ParameterError, match=r"^method='rigid': does not fit path 'lerp'"):
        params.check_sampler("method", "rigid", get_path("lerp"))
    with pytest.raises(params.ParameterError, match=r"^method='euler': does not fit path 'rigid'"):
        params.check_sampler("method", "euler", get_path("rigid"))
    with pytest.raises(params.ParameterError, match=r"^method='ddim': path 'gnn_md' is deterministic"):
        params.check_sampler("method", "ddim", get_path("gnn_md"))
    with pytest.raises(params.ParameterError, match=r"^pred_dir=.*no PredictedPositions/"):
        params.check_predictions_dir("pred_dir", curated)
    with pytest.raises(params.ParameterError, match=r"^out=.*exists and is not a directory"):
        params.check_out_dir("out", curated / "curation.json")
    with pytest.raises(params.ParameterError, match=r"^seed=-2"):
        params.training_config("lerp", curated, seed=-2)
