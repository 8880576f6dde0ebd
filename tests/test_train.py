"""Training on a handful of real clusters: the loss falls, the model beats the identity baseline, runs resume."""

import pandas as pd
import pytest
import torch
from torch_geometric.loader import DataLoader

from crystalflow_core import metrics
from crystalflow_core.data.dataset import ClusterDataset
from crystalflow_core.data.noise import NoiseConfig
from crystalflow_core.inference import predict_dataset
from crystalflow_core.paths import get_path
from crystalflow_core.train import (
    CHECKPOINT,
    TrainConfig,
    build_model,
    load_model,
    redraw_weak,
    resolve_device,
    train,
    validation_loss,
)


def _tiny(small_data, out, path, epochs):
    return TrainConfig(
        data=str(small_data),
        out=str(out),
        path=path,
        epochs=epochs,
        batch_size=2,
        lr=3e-3,
        hidden=32,
        layers=2,
        cutoff=4.0,
        progress=False,
        checkpoint_every=1000,
    )


@pytest.mark.parametrize("path", ["gnn_md", "lerp", "ve", "vp"])
def test_training_lowers_loss_and_beats_identity(small_data, tmp_path, path):
    config = _tiny(small_data, tmp_path / path, path, epochs=80)
    history = train(config)
    assert len(history) == 80
    assert history["train_loss"].tail(5).mean() < history["train_loss"].head(3).mean()
    model, config = load_model(tmp_path / path, "cpu")
    train_set = ClusterDataset(small_data, split="train", seed=config.seed, progress=False)
    loader = DataLoader(train_set, batch_size=2)
    torch.manual_seed(config.seed)
    untrained = build_model(config)
    fixed = {"path": get_path(path), "loader": loader, "device": torch.device("cpu"), "seed": 123}
    assert validation_loss(model, **fixed) < 0.8 * validation_loss(untrained, **fixed)
    predictions = predict_dataset(model, get_path(path), train_set, steps=1, progress=False)
    model_pm, identity_pm = [], []
    for item in train_set:
        x_s = item.x_s.double()
        model_pm.append(metrics.pm_atom(predictions[item.cluster_id].samples[0], x_s))
        identity_pm.append(metrics.pm_atom(item.x_w.double(), x_s))
    assert sum(model_pm) < sum(identity_pm), (model_pm, identity_pm)


def test_runs_resume_and_checkpoints_load_weights_only(small_data, tmp_path):
    first = train(_tiny(small_data, tmp_path, "lerp", epochs=2))
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["epoch"] == 2 and state["step"] == first["step"].iloc[-1]
    resumed = train(_tiny(small_data, tmp_path, "lerp", epochs=3))
    assert len(resumed) == 3
    pd.testing.assert_frame_equal(resumed.head(2), first)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["epoch"] == 3
    assert train(_tiny(small_data, tmp_path, "lerp", epochs=3)).equals(resumed)  # finished: nothing redone
    with pytest.raises(ValueError, match="cannot resume"):
        train(_tiny(small_data, tmp_path, "gnn_md", epochs=3))


def test_config_rejects_unknown_path_and_device_auto_picks_cpu_here():
    with pytest.raises(ValueError, match="path must be one of"):
        TrainConfig(data="d", out="o", path="rectified")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_augmentation_redraws_rigid_centred_noise(small_data):
    batch = next(iter(DataLoader(ClusterDataset(small_data, progress=False), batch_size=3)))
    x_w = redraw_weak(batch, NoiseConfig(), torch.Generator().manual_seed(0))
    assert not torch.allclose(x_w, batch.x_w, atol=0.1)
    molecule = batch.molecule
    for m in range(int(molecule.max()) + 1):
        atoms = molecule == m
        torch.testing.assert_close(
            torch.cdist(x_w[atoms], x_w[atoms]), torch.cdist(batch.x_s[atoms], batch.x_s[atoms]), atol=1e-4, rtol=0
        )
    for g in range(batch.num_graphs):
        torch.testing.assert_close(x_w[batch.batch == g].mean(0), torch.zeros(3), atol=1e-4, rtol=0)


def test_rigid_training_lowers_loss_and_keeps_molecules_exact(small_data, tmp_path):
    config = _tiny(small_data, tmp_path / "rigid", "rigid", epochs=40)
    assert config.molecule_cutoff == 20.0  # the objective's own default
    history = train(config)
    assert history["train_loss"].tail(5).mean() < 0.8 * history["train_loss"].head(3).mean()
    model, config = load_model(tmp_path / "rigid", "cpu")
    train_set = ClusterDataset(small_data, split="train", seed=config.seed, progress=False)
    loader = DataLoader(train_set, batch_size=2)
    torch.manual_seed(config.seed)
    fixed = {"path": get_path("rigid"), "loader": loader, "device": torch.device("cpu"), "seed": 123}
    assert validation_loss(model, **fixed) < 0.9 * validation_loss(build_model(config), **fixed)
    predictions = predict_dataset(
        model, get_path("rigid"), train_set, samples=2, keep_trajectories=True, progress=False
    )
    for item in train_set:
        x_s = item.x_s.double()
        for trajectory in predictions[item.cluster_id].trajectories:
            assert len(trajectory) == get_path("rigid").default_steps + 1
            for frame in trajectory[[0, len(trajectory) // 2, -1]]:
                for m in range(int(item.mol_index.max()) + 1):
                    x = torch.as_tensor(frame)[item.mol_index == m]
                    y = x_s[item.mol_index == m]
                    assert (torch.cdist(x, x) - torch.cdist(y, y)).abs().max() < 1e-3
