"""The published COD-Cluster17 file layout, so the authors' data and ours are interchangeable.

```
ROOT/FinalPositions/{id}_cluster16.csv            crystal cluster x_s
ROOT/InitialPositions/{id}_cluster16_noised.csv   weakly-correlated start x_w
ROOT/PredictedPositions/{id}_cluster16_pred{k}.csv  k-th sampled prediction (written by ``crystalflow sample``)
ROOT/Trajectories/{id}_cluster16_pred{k}.npz      optional sampled trajectory: times [T], positions [T, N, 3]
```
Each CSV has the header ``mol_idx,atom_type,x,y,z`` (element symbols, Å), molecules in order, every molecule with
the same atom order. Floats are written with the shortest round-trip representation, so a write/read cycle is
exact.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from ase.data import atomic_numbers, chemical_symbols

from ..errors import ClusterFileError
from .cluster import Cluster

COLUMNS = ["mol_idx", "atom_type", "x", "y", "z"]
FINAL_DIR = "FinalPositions"
INITIAL_DIR = "InitialPositions"
PREDICTED_DIR = "PredictedPositions"
TRAJECTORY_DIR = "Trajectories"
_PRED_PATTERN = re.compile(r"^(?P<id>.+)_cluster16_pred(?P<k>\d+)\.csv$")


def final_path(root: Path, cluster_id: str) -> Path:
    return Path(root) / FINAL_DIR / f"{cluster_id}_cluster16.csv"


def initial_path(root: Path, cluster_id: str) -> Path:
    return Path(root) / INITIAL_DIR / f"{cluster_id}_cluster16_noised.csv"


def prediction_path(root: Path, cluster_id: str, k: int) -> Path:
    return Path(root) / PREDICTED_DIR / f"{cluster_id}_cluster16_pred{k}.csv"


def trajectory_path(root: Path, cluster_id: str, k: int) -> Path:
    return Path(root) / TRAJECTORY_DIR / f"{cluster_id}_cluster16_pred{k}.npz"


def write_positions_csv(path: Path, numbers: np.ndarray, mol_index: np.ndarray, x: np.ndarray) -> None:
    """Write one cluster's positions ``x`` ``[N, 3]`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "mol_idx": np.asarray(mol_index, dtype=np.int64),
            "atom_type": [chemical_symbols[int(z)] for z in numbers],
            "x": np.asarray(x, dtype=np.float64)[:, 0],
            "y": np.asarray(x, dtype=np.float64)[:, 1],
            "z": np.asarray(x, dtype=np.float64)[:, 2],
        }
    )
    tmp = temporary_path(path)
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def temporary_path(path: Path) -> Path:
    """Where to write ``path`` before renaming it into place: unique to this process, and never matched by the
    patterns that list finished files."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def remove_partial_writes(root: Path) -> None:
    """Delete the temporary cluster files that a killed writer left behind."""
    for directory in (FINAL_DIR, INITIAL_DIR):
        for path in (Path(root) / directory).glob("*.tmp"):
            path.unlink(missing_ok=True)


def read_positions_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``(numbers [N], mol_index [N], x [N, 3])`` from a COD-Cluster17 CSV, checking the layout."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ClusterFileError(f"{path}: cannot read CSV ({error})") from error
    if list(frame.columns) != COLUMNS:
        raise ClusterFileError(f"{path}: header must be {','.join(COLUMNS)}, got {','.join(map(str, frame.columns))}")
    if frame.empty:
        raise ClusterFileError(f"{path}: no atoms")
    unknown = sorted(set(frame["atom_type"]) - set(atomic_numbers))
    if unknown:
        raise ClusterFileError(f"{path}: unknown element symbol(s) {unknown}")
    try:
        x = frame[["x", "y", "z"]].to_numpy(dtype=np.float64, copy=True)
        mol_index = frame["mol_idx"].to_numpy(dtype=np.int64, copy=True)
    except ValueError as error:
        raise ClusterFileError(f"{path}: non-numeric coordinates or mol_idx ({error})") from error
    if not np.isfinite(x).all():
        raise ClusterFileError(f"{path}: non-finite coordinates")
    numbers = np.array([atomic_numbers[s] for s in frame["atom_type"]], dtype=np.int64)
    _check_molecules(path, numbers, mol_index)
    return numbers, mol_index, x


def _check_molecules(path: Path, numbers: np.ndarray, mol_index: np.ndarray) -> None:
    """All molecules contiguous, numbered 0..M-1, with identical element order (the layout requires it)."""
    n_mol = int(mol_index.max()) + 1
    if mol_index.min() != 0 or np.any(np.diff(mol_index) < 0) or len(np.unique(mol_index)) != n_mol:
        raise ClusterFileError(f"{path}: mol_idx must run 0..M-1 in contiguous blocks")
    if len(numbers) % n_mol:
        raise ClusterFileError(f"{path}: {len(numbers)} atoms do not split into {n_mol} equal molecules")
    per_molecule = numbers.reshape(n_mol, -1)
    if not (per_molecule == per_molecule[0]).all():
        raise ClusterFileError(f"{path}: molecules do not share one atom order")


def write_cluster(root: Path, cluster: Cluster) -> None:
    """Write ``x_s`` to FinalPositions and ``x_w`` to InitialPositions (x_w last: its presence marks completion)."""
    write_positions_csv(final_path(root, cluster.cluster_id), cluster.numbers, cluster.mol_index, cluster.x_s)
    write_positions_csv(initial_path(root, cluster.cluster_id), cluster.numbers, cluster.mol_index, cluster.x_w)


def read_cluster(root: Path, cluster_id: str) -> Cluster:
    """Read one cluster (both files), checking that the two files describe the same atoms."""
    numbers, mol_index, x_s = read_positions_csv(final_path(root, cluster_id))
    numbers_w, mol_index_w, x_w = read_positions_csv(initial_path(root, cluster_id))
    if not (np.array_equal(numbers, numbers_w) and np.array_equal(mol_index, mol_index_w)):
        raise ClusterFileError(f"{initial_path(root, cluster_id)}: atoms differ from {final_path(root, cluster_id)}")
    return Cluster(cluster_id, numbers, mol_index, x_w, x_s)


def has_cluster(root: Path, cluster_id: str) -> bool:
    """Whether both files of a cluster are in place (the one written last marks a finished write)."""
    return final_path(root, cluster_id).exists() and initial_path(root, cluster_id).exists()


def list_cluster_ids(root: Path) -> list[str]:
    """Ids that have both a FinalPositions and an InitialPositions file, sorted."""
    root = Path(root)
    final = {p.name[: -len("_cluster16.csv")] for p in (root / FINAL_DIR).glob("*_cluster16.csv")}
    initial = {p.name[: -len("_cluster16_noised.csv")] for p in (root / INITIAL_DIR).glob("*_cluster16_noised.csv")}
    return sorted(final & initial)


def list_predictions(root: Path) -> dict[str, list[Path]]:
    """``{cluster_id: [pred0.csv, pred1.csv, ...]}`` found under ``ROOT/PredictedPositions``, sorted by k."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for path in (Path(root) / PREDICTED_DIR).glob("*_cluster16_pred*.csv"):
        match = _PRED_PATTERN.match(path.name)
        if match:
            found.setdefault(match["id"], []).append((int(match["k"]), path))
    return {cid: [p for _, p in sorted(items)] for cid, items in sorted(found.items())}


def write_trajectory(root: Path, cluster_id: str, k: int, times: np.ndarray, positions: np.ndarray) -> Path:
    """Store a sampled trajectory (``times`` ``[T]``, ``positions`` ``[T, N, 3]``) beside the predictions."""
    path = trajectory_path(root, cluster_id, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    with open(tmp, "wb") as handle:
        np.savez_compressed(handle, times=np.asarray(times), positions=np.asarray(positions))
    tmp.replace(path)
    return path


def read_trajectory(root: Path, cluster_id: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(trajectory_path(root, cluster_id, k)) as data:
        return data["times"], data["positions"]
