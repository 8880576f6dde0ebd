"""Training on a handful of real clusters: the loss falls, the model beats the identity baseline, runs resume."""

import json
import math
import random
import re
import shutil
from dataclasses import replace

import pandas as pd
import pytest
import torch
from torch_geometric.loader import DataLoader

from crystalflow_core import metrics
from crystalflow_core.data.dataset import ClusterDataset
from crystalflow_core.data.noise import NoiseConfig
from crystalflow_core.errors import CheckpointError, ParameterError
from crystalflow_core.inference import collapse_positions, predict_dataset
from crystalflow_core.paths import get_path
from crystalflow_core.train import (
    CHECKPOINT,
    TrainConfig,
    _Run,
    build_model,
    load_model,
    redraw_weak,
    resolve_device,
    train,
    validation_loss,
    with_data_noise,
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
        pair_layout="edges",  # runs are compared bit for bit: timed, two runs could keep different layouts
    )


@pytest.mark.parametrize(("path", "beats_collapse"), [("gnn_md", True), ("lerp", False), ("ve", False), ("vp", False)])
def test_training_lowers_loss_and_direct_regression_beats_the_collapse_baseline(
    small_data, tmp_path, path, beats_collapse
):
    """Every objective lowers its loss on fixed draws. Collapsing each molecule of ``x_w`` onto its centroid beats
    ``x_w`` on PM(atom) with no structure at all, so a prediction is held to that baseline, not to ``x_w``: the
    direct regression, trained on these clusters, beats it. The one-step prediction of the noise-driven objectives
    is their conditional mean, a blur at this budget, so no PM claim is made for them."""
    config = _tiny(small_data, tmp_path / path, path, epochs=80)
    history = train(config)
    assert len(history) == 80
    assert history["train_loss"].tail(5).mean() < history["train_loss"].head(3).mean()
    model, config = load_model(tmp_path / path, "cpu")
    train_set = ClusterDataset(small_data, split="train", seed=config.seed, progress=False)
    torch.manual_seed(config.seed)
    untrained = build_model(config)
    fixed = {"path": get_path(path), "dataset": train_set, "device": torch.device("cpu"), "seed": 123}
    assert validation_loss(model, **fixed)[0] < 0.8 * validation_loss(untrained, **fixed)[0]
    if beats_collapse:
        predictions = predict_dataset(model, get_path(path), train_set, steps=1, progress=False)
        model_pm, collapse_pm = [], []
        for item in train_set:
            x_s, collapsed = item.x_s.double(), collapse_positions(item.x_w.double().numpy(), item.mol_index.numpy())
            model_pm.append(metrics.pm_atom(predictions[item.cluster_id].samples[0], x_s))
            collapse_pm.append(metrics.pm_atom(collapsed, x_s))
        assert sum(model_pm) < sum(collapse_pm), (model_pm, collapse_pm)


@pytest.mark.parametrize("path", ["lerp", "rigid"])
def test_validation_loss_is_per_cluster_whatever_the_batches_or_processes(small_data, path):
    """Scored in parts of 1, 2 or 3 clusters (batches, or the shares of processes) and in any order, the clusters
    give the same figure: each is drawn from its own seed."""
    config = TrainConfig(
        data=str(small_data), out="unused", path=path, hidden=8, layers=1, progress=False, pair_layout="edges"
    )
    torch.manual_seed(0)
    model, clusters = build_model(config), ClusterDataset(small_data, progress=False)
    fixed = {"path": get_path(path), "device": torch.device("cpu"), "draws": 4}
    whole, spread = validation_loss(model, dataset=clusters, **fixed)
    assert whole > 0 and 0 < spread < math.inf
    for size in (1, 2, 3):
        parts = [clusters.select(clusters.ids[start : start + size]) for start in range(0, len(clusters), size)]
        combined = sum(len(part) * validation_loss(model, dataset=part, **fixed)[0] for part in parts) / len(clusters)
        assert combined == pytest.approx(whole, rel=1e-9, abs=1e-12), size
    backwards = validation_loss(model, dataset=clusters.select(clusters.ids[::-1]), **fixed)
    assert backwards == pytest.approx((whole, spread), rel=1e-9)
    # Other noise moves the figure a little, not by the factors that random times did: times are fixed quantiles.
    others = [validation_loss(model, dataset=clusters, seed=seed, **fixed)[0] for seed in (1, 2)]
    assert all(other != pytest.approx(whole, rel=1e-6) and other == pytest.approx(whole, rel=0.1) for other in others)


def test_validation_times_are_evenly_spaced_quantiles_of_the_training_times():
    u = torch.tensor([0.125, 0.375, 0.625, 0.875])
    torch.testing.assert_close(get_path("lerp").time_quantile(u), u)
    torch.testing.assert_close(get_path("gnn_md").time_quantile(u), torch.zeros(4))
    torch.testing.assert_close(get_path("rigid").time_quantile(u), torch.tensor([0.0, 0.0, 0.25, 0.75]))  # half at 0


def test_the_history_holds_the_validation_loss_and_its_spread(small_data, tmp_path):
    history = train(replace(_tiny(small_data, tmp_path, "lerp", epochs=1), hidden=8, layers=1))
    assert list(history.columns) == ["epoch", "step", "train_loss", "val_loss", "val_loss_std"]
    model, config = load_model(tmp_path, "cpu")
    validation = ClusterDataset(small_data, split="val", seed=config.seed, progress=False)
    expected = validation_loss(model, get_path("lerp"), validation, torch.device("cpu"))
    assert tuple(history.iloc[-1][["val_loss", "val_loss_std"]]) == pytest.approx(expected, nan_ok=True)


def test_runs_resume_and_checkpoints_load_weights_only(small_data, tmp_path):
    first = train(_tiny(small_data, tmp_path, "lerp", epochs=2))
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["progress"]["epoch"] == 2 and state["progress"]["step"] == first["step"].iloc[-1]
    assert state["progress"]["order"] is None and state["progress"]["position"] == 0  # at an epoch's end
    resumed = train(_tiny(small_data, tmp_path, "lerp", epochs=3))
    assert len(resumed) == 3
    pd.testing.assert_frame_equal(resumed.head(2), first)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["progress"]["epoch"] == 3
    assert train(_tiny(small_data, tmp_path, "lerp", epochs=3)).equals(resumed)  # finished: nothing redone
    with pytest.raises(
        CheckpointError, match=r"checkpoint.pt: cannot resume, settings differ \(path: 'lerp' → 'gnn_md'"
    ):
        train(_tiny(small_data, tmp_path, "gnn_md", epochs=3))


class Interrupted(Exception):
    """Stands for a kill: raised inside training, before a chosen optimiser step."""


@pytest.fixture
def one_thread():
    """Bitwise-reproducible CPU arithmetic: with several threads, parallel scatter sums differ in the last bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_interrupted_mid_epoch_resumes_exactly(small_data, tmp_path, monkeypatch, one_thread):
    config = replace(_tiny(small_data, tmp_path / "whole", "vp", epochs=3), batch_size=1, checkpoint_every=3)
    config.augment = True
    whole = train(config)
    expected = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)
    stops = [7, 11]  # 4 steps per epoch: the last checkpoints before them are mid-epoch (steps 6 and 9)
    original = _Run.step

    def step(self, *args):
        if self.progress.step + 1 in stops:
            stops.remove(self.progress.step + 1)
            raise Interrupted
        return original(self, *args)

    monkeypatch.setattr(_Run, "step", step)
    config = replace(config, out=str(tmp_path / "pieces"))
    for last_checkpoint in (6, 9):
        with pytest.raises(Interrupted):
            train(config)
        progress = torch.load(tmp_path / "pieces" / CHECKPOINT, weights_only=True)["progress"]
        assert progress["step"] == last_checkpoint and 0 < progress["position"] < 4
    pd.testing.assert_frame_equal(train(config), whole, check_exact=True)
    final = torch.load(tmp_path / "pieces" / CHECKPOINT, weights_only=True)
    assert final["progress"] == expected["progress"]
    for name, tensor in expected["model"].items():
        assert torch.equal(final["model"][name], tensor), name


def test_config_rejects_bad_values_naming_them_and_device_auto_picks_cpu_here():
    with pytest.raises(ParameterError, match=r"^path='rectified': must be one of"):
        TrainConfig(data="d", out="o", path="rectified")
    with pytest.raises(ParameterError, match=r"^checkpoint_every=0"):
        TrainConfig(data="d", out="o", checkpoint_every=0)
    with pytest.raises(ParameterError, match=r"^device='gpu7'"):
        resolve_device("gpu7")
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
    train(config)  # its per-epoch loss mixes t = 0 (large) and later times, so compare fixed draws instead
    model, config = load_model(tmp_path / "rigid", "cpu")
    train_set = ClusterDataset(small_data, split="train", seed=config.seed, progress=False)
    torch.manual_seed(config.seed)
    fixed = {"path": get_path("rigid"), "dataset": train_set, "device": torch.device("cpu"), "seed": 123}
    assert validation_loss(model, **fixed)[0] < 0.7 * validation_loss(build_model(config), **fixed)[0]
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


def _curated_copy(small_data, tmp_path, noise: dict):
    """``small_data`` as if curated with ``noise``: same clusters, its ``curation.json`` saying so."""
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    settings = json.loads((data / "curation.json").read_text())
    (data / "curation.json").write_text(json.dumps({**settings, "noise": noise}))
    return data


def test_augmentation_redraws_noise_as_the_data_were_curated(small_data, tmp_path):
    curated = {"rotation_deg": 30.0, "translation_sigma": 0.5, "inversion": True}
    data = _curated_copy(small_data, tmp_path, curated)
    config = replace(_tiny(data, tmp_path / "run", "lerp", epochs=1), augment=True)
    assert config.noise is None  # not given: taken from the data when training starts
    train(config)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["noise"] == curated
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["config"]["noise"] == curated
    explicit = NoiseConfig(rotation_deg=90.0).to_dict()
    assert with_data_noise(replace(config, noise=explicit)).noise == explicit
    assert with_data_noise(replace(config, data=str(tmp_path / "elsewhere"))).noise == NoiseConfig().to_dict()


def _flip_bytes(data: bytes, rng: random.Random) -> bytes:
    corrupted = bytearray(data)
    start = rng.randrange(len(data) - 8)
    corrupted[start : start + 8] = bytes(255 - b for b in corrupted[start : start + 8])
    return bytes(corrupted)


def test_damaged_or_foreign_checkpoints_give_a_clear_error(small_data, tmp_path):
    run = tmp_path / "run"
    train(_tiny(small_data, run, "lerp", epochs=1))
    checkpoint = run / CHECKPOINT
    good = checkpoint.read_bytes()
    weights = torch.load(checkpoint, weights_only=True)["model"]
    error = rf"^{re.escape(str(checkpoint))}: (unreadable|corrupted)"
    for data in (good[: len(good) // 2], good[:10], b"", b"not a checkpoint\n"):
        checkpoint.write_bytes(data)
        with pytest.raises(CheckpointError, match=error):
            load_model(run, "cpu")
    rng, refused = random.Random(0), 0
    for _ in range(20):  # flipped bytes: refused, or (in zip padding) harmless; never wrong weights
        checkpoint.write_bytes(_flip_bytes(good, rng))
        try:
            model, _ = load_model(run, "cpu")
        except CheckpointError as caught:
            assert re.match(error, str(caught)), caught
            refused += 1
            continue
        assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in weights.items())
    assert refused >= 15
    torch.save({"weights": weights}, checkpoint)
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: not a checkpoint this version can use \(missing model"):
        load_model(run, "cpu")
    rigid = build_model(TrainConfig(data="", out="", path="rigid", hidden=32, layers=2))
    torch.save({"model": rigid.state_dict(), "config": _tiny(small_data, run, "lerp", epochs=1).to_dict()}, checkpoint)
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: weights do not fit the 'lerp' network"):
        load_model(run, "cpu")
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: no checkpoint"):
        load_model(tmp_path / "nowhere", "cpu")


def test_a_checkpoint_half_written_by_a_killed_run_is_ignored(small_data, tmp_path):
    config = _tiny(small_data, tmp_path, "lerp", epochs=2)
    history = train(replace(config, epochs=1))
    (tmp_path / (CHECKPOINT + ".tmp")).write_bytes(b"PK\x03\x04 killed while writing")
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["progress"]["epoch"] == 1
    pd.testing.assert_frame_equal(train(config).head(1), history)
