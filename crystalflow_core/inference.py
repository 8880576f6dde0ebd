"""Sampling a trained model over a split, writing predictions in the COD-Cluster17 layout, and scoring them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from . import metrics
from .checks import check_predictions_dir
from .data import codcluster17
from .data.dataset import ClusterData, ClusterDataset, to_device
from .data.noise import NoiseConfig, rigid_noise
from .forcefield import ForceFieldError, PairTerms, cluster_terms
from .paths import ProbabilityPath
from .relax import DEFAULT_ITERATIONS as RELAX_ITERATIONS
from .relax import relax_cluster
from .sampling import sample

if TYPE_CHECKING:
    from .data.cluster import Cluster


@dataclass
class Prediction:
    """``samples`` ``[K, N, 3]``; ``trajectories`` ``[K, T, N, 3]`` and ``times`` ``[T]`` when kept."""

    samples: np.ndarray
    trajectories: np.ndarray | None = None
    times: np.ndarray | None = None


def predict_dataset(
    model: torch.nn.Module,
    path: ProbabilityPath,
    dataset: ClusterDataset,
    samples: int = 1,
    steps: int | None = None,
    method: str = "auto",
    batch_size: int = 8,
    seed: int = 0,
    keep_trajectories: bool = False,
    progress: bool = True,
    relax: bool = False,
) -> dict[str, Prediction]:
    """Draw ``samples`` predictions per cluster, batching clusters; sample ``k`` uses generator seed ``seed + k``.

    With ``relax`` every prediction is polished by rigid-body MMFF94 relaxation (`relax.relax_cluster`, the
    molecule typed on ``x_w``; the steric wall alone for a molecule MMFF94 cannot type), which removes
    intermolecular clashes and keeps molecules exact; the relaxed pose is the trajectory's last frame, at t = 1
    like the sampler's own.
    """
    device = next(model.parameters()).device
    model.eval()
    collected: dict[str, list[np.ndarray]] = {cid: [] for cid in dataset.ids}
    trajectories: dict[str, list[np.ndarray]] = {cid: [] for cid in dataset.ids}
    n_frames = 0
    bar = tqdm(total=samples * len(dataset), desc=f"sample {path.name}", unit="cluster", disable=not progress)
    items = {item.cluster_id: item for item in dataset}
    terms = {cid: relax_terms(item) for cid, item in items.items()} if relax else {}
    for k in range(samples):
        generator = torch.Generator(device=device).manual_seed(seed + k)
        for batch in DataLoader(dataset, batch_size=batch_size):
            batch = to_device(batch, device)
            molecule = batch.molecule
            trajectory = sample(
                model,
                path,
                batch.z,
                batch.x_w,
                batch.batch,
                steps=steps,
                method=method,
                generator=generator,
                molecule=molecule,
            )  # [T, N, 3]
            n_frames = trajectory.shape[0] + int(relax)
            ptr = batch.ptr.tolist()
            for i, cid in enumerate(batch.cluster_id):
                part = trajectory[:, ptr[i] : ptr[i + 1]].double().cpu().numpy()
                if relax:
                    polished = relax_start(items[cid], part[-1], terms[cid])
                    part = np.concatenate([part, polished[None]])
                collected[cid].append(part[-1])
                if keep_trajectories:
                    trajectories[cid].append(part)
            bar.update(batch.num_graphs)
    bar.close()
    times = np.linspace(0.0, 1.0, n_frames - int(relax))
    times = np.append(times, 1.0) if relax else times
    return {
        cid: Prediction(
            samples=np.stack(collected[cid]),
            trajectories=np.stack(trajectories[cid]) if keep_trajectories else None,
            times=times if keep_trajectories else None,
        )
        for cid in dataset.ids
    }


def relax_terms(item: ClusterData) -> PairTerms | None:
    """The MMFF94 terms of a cluster's molecule, typed on ``item.x_w``; ``None`` when MMFF94 cannot type it."""
    try:
        return cluster_terms(item.z.numpy(), item.mol_index.numpy(), item.x_w.double().numpy())
    except ForceFieldError:
        return None


def relax_start(
    item: ClusterData, x: np.ndarray, terms: PairTerms | None, iterations: int = RELAX_ITERATIONS
) -> np.ndarray:
    """``x [N, 3]``, a pose of the cluster ``item``, after :func:`~crystalflow_core.relax.relax_cluster` with its
    molecule's ``terms`` (:func:`relax_terms`; ``None``: the steric wall alone)."""
    relaxed = relax_cluster(torch.as_tensor(x, dtype=torch.float64), item.z, item.mol_index, terms, iterations)
    return relaxed.numpy()


def relax_dataset(
    dataset: ClusterDataset,
    iterations: int = RELAX_ITERATIONS,
    starts: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Prediction]:
    """The classical baseline ``relax``: every cluster's ``x_w`` relaxed as rigid molecules in MMFF94
    (:func:`relax_start`), no model involved; trajectory ``[start, relaxed]`` per sample.

    With ``starts > 1`` there are that many samples: the first starts from ``x_w``, each other from ``x_w`` with
    every molecule turned to a uniformly random orientation about its centroid (generator seed ``seed + k``), so
    scoring them shows what many relaxed starts, chosen by energy, add.
    """
    turn = NoiseConfig(rotation_deg=180.0, translation_sigma=0.0)
    predictions = {}
    bar = tqdm(total=starts * len(dataset), desc="relax x_w", unit="start", disable=not progress)
    for item in dataset:
        x_w = item.x_w.double()
        terms = relax_terms(item)
        poses, frames = [], []
        for k in range(starts):
            generator = torch.Generator().manual_seed(seed + k)
            start = x_w if k == 0 else rigid_noise(x_w, item.mol_index, turn, generator)
            relaxed = relax_start(item, start.numpy(), terms, iterations)
            poses.append(relaxed)
            frames.append(np.stack([start.numpy(), relaxed]))
            bar.update(1)
        predictions[item.cluster_id] = Prediction(
            samples=np.stack(poses), trajectories=np.stack(frames), times=np.array([0.0, 1.0])
        )
    bar.close()
    return predictions


def write_predictions(out_dir: str | Path, dataset: ClusterDataset, predictions: dict[str, Prediction]) -> Path:
    """``OUT/PredictedPositions/{id}_cluster16_pred{k}.csv`` (and ``OUT/Trajectories`` when kept)."""
    out_dir = Path(out_dir)
    for item in dataset:
        prediction = predictions[item.cluster_id]
        numbers, mol_index = item.z.numpy(), item.mol_index.numpy()
        for k, positions in enumerate(prediction.samples):
            codcluster17.write_positions_csv(
                codcluster17.prediction_path(out_dir, item.cluster_id, k), numbers, mol_index, positions
            )
            if prediction.trajectories is not None:
                codcluster17.write_trajectory(out_dir, item.cluster_id, k, prediction.times, prediction.trajectories[k])
    return out_dir


def score_predictions(truth_dir: str | Path, pred_dir: str | Path) -> pd.DataFrame:
    """Per-cluster metrics of every prediction found under ``pred_dir`` against the clusters in ``truth_dir``.

    Works for any model's output in the COD-Cluster17 layout. No predictions raise a
    :class:`~crystalflow_core.errors.ParameterError`; a prediction whose atoms differ from the truth raises an
    error naming both files.
    """
    check_predictions_dir("pred_dir", pred_dir)
    predictions = codcluster17.list_predictions(pred_dir)
    records = []
    for cid, paths in predictions.items():
        truth = codcluster17.read_cluster(truth_dir, cid)
        stack = []
        for path in paths:
            numbers, mol_index, x = codcluster17.read_positions_csv(path)
            if not (np.array_equal(numbers, truth.numbers) and np.array_equal(mol_index, truth.mol_index)):
                raise codcluster17.ClusterFileError(
                    f"{path}: atoms differ from {codcluster17.final_path(truth_dir, cid)}"
                )
            stack.append(x)
        records.append((cid, np.stack(stack), truth.x_s, truth.numbers, truth.mol_index))
    return metrics.metrics_table(records)


def collapse_positions(x_w: np.ndarray, mol_index: np.ndarray) -> np.ndarray:
    """Every atom of ``x_w [N, 3]`` moved to its molecule's centroid (``mol_index [N]``): no structure at all.

    The "collapse" baseline: molecule centroids are those of ``x_w``, so ``pm_center`` equals the identity
    baseline's while every intramolecular distance is 0.
    """
    return metrics.centroids(x_w, mol_index).numpy()[np.asarray(mol_index)]


def _score_baseline(
    truth_dir: str | Path, cluster_ids: list[str] | None, predict: Callable[[Cluster], np.ndarray]
) -> pd.DataFrame:
    """Score ``predict(cluster) -> [N, 3]`` on the clusters of ``truth_dir`` (all of them by default)."""
    ids = cluster_ids if cluster_ids is not None else codcluster17.list_cluster_ids(truth_dir)
    records = []
    for cid in ids:
        cluster = codcluster17.read_cluster(truth_dir, cid)
        records.append((cid, predict(cluster), cluster.x_s, cluster.numbers, cluster.mol_index))
    return metrics.metrics_table(records)


def score_identity(truth_dir: str | Path, cluster_ids: list[str] | None = None) -> pd.DataFrame:
    """The trivial baseline "return ``x_w`` unchanged", scored like any prediction."""
    return _score_baseline(truth_dir, cluster_ids, lambda cluster: cluster.x_w)


def score_crystal(truth_dir: str | Path, cluster_ids: list[str] | None = None) -> pd.DataFrame:
    """The crystal cluster ``x_s`` itself scored as a prediction: the reference row of every table (PM 0, all
    15 shell molecules matched, no clash) and the crystal's own interaction energy."""
    return _score_baseline(truth_dir, cluster_ids, lambda cluster: cluster.x_s)


def score_collapse(truth_dir: str | Path, cluster_ids: list[str] | None = None) -> pd.DataFrame:
    """The "collapse" baseline (:func:`collapse_positions` of ``x_w``), scored like any prediction.

    It has the identity baseline's ``pm_center`` and no molecular structure, so any metric that rewards it
    (``pm_atom`` does, on small molecules) can be satisfied without predicting molecules at all.
    """
    return _score_baseline(truth_dir, cluster_ids, lambda cluster: collapse_positions(cluster.x_w, cluster.mol_index))
