"""Views of a trained run: a few clusters of one split sampled with their trajectories, ready for the viewers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crystalflow_core.data.dataset import ClusterDataset
from crystalflow_core.inference import predict_dataset
from crystalflow_core.metrics import cluster_metrics
from crystalflow_core.paths import get_path
from crystalflow_core.train import load_model
from crystalviz.views import ClusterView


def cluster_views(
    run_dir: str | Path,
    n_clusters: int = 3,
    samples: int = 2,
    steps: int | None = None,
    split: str = "test",
    device: str = "auto",
    seed: int = 0,
    frames: int = 21,
    data_dir: str | Path | None = None,
) -> dict[str, ClusterView]:
    """Sample the first ``n_clusters`` clusters of a run's ``split`` with trajectories: ``{cluster_id:
    ClusterView}`` (``samples`` ``[K, N, 3]``, metrics per sample, ``trajectories`` ``[K, T, N, 3]`` thinned to
    at most ``frames`` evenly spaced frames, first and last kept, with their solver times). The clusters come
    from ``data_dir`` (default: the data the run was trained on), split as the run split them."""
    model, config = load_model(run_dir, device)
    path = get_path(config.path, **config.path_kwargs)
    data = config.data if data_dir is None else data_dir
    dataset = ClusterDataset(data, split=split, seed=config.seed, subset=config.subset, progress=False)
    dataset = dataset.select(dataset.ids[:n_clusters])
    predictions = predict_dataset(
        model, path, dataset, samples=samples, steps=steps, seed=seed, keep_trajectories=True, progress=False
    )
    views = {}
    for item in dataset:
        prediction = predictions[item.cluster_id]
        n_frames = prediction.trajectories.shape[1]
        keep = np.unique(np.linspace(0, n_frames - 1, min(frames, n_frames)).round()).astype(int)
        trajectories, times = prediction.trajectories[:, keep], prediction.times[keep]  # [K, T, N, 3], [T]
        numbers, mol_index = item.z.numpy(), item.mol_index.numpy()
        x_s = item.x_s.double().numpy()
        views[item.cluster_id] = ClusterView(
            numbers,
            mol_index,
            item.x_w.double().numpy(),
            x_s,
            trajectories[:, -1],
            trajectories,
            times,
            [cluster_metrics(x, x_s, numbers, mol_index) for x in trajectories[:, -1]],
        )
    return views
