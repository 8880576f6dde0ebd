"""Curated clusters as torch-geometric ``Data``: parsed once, cached as tensors, split by crystal id.

Every item has ``z`` ``[N]`` (atomic numbers), ``x_w`` / ``x_s`` ``[N, 3]`` (float32, Å), ``mol_index`` ``[N]``
(0 = central molecule), ``molecule`` ``[N]`` (the same ids, made unique across the graphs of a batch when the
batch is assembled) and ``cluster_id``. The CSV files are read once and cached in ``ROOT/processed``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch_geometric.data import Data
from tqdm.auto import tqdm

from . import codcluster17
from .symmetry import cluster_automorphisms, proper_symmetries

if TYPE_CHECKING:
    from .cluster import Cluster

CACHE_NAME = "clusters.pt"
SPLITS = ("train", "val", "test")


def hash_order(ids: list[str], seed: int) -> list[str]:
    """Ids in a seeded pseudo-random order that depends only on each id (stable when ids are added)."""
    return sorted(ids, key=lambda cid: hashlib.sha256(f"{seed}:{cid}".encode()).hexdigest())


def split_ids(
    ids: list[str],
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    subset: int | None = None,
) -> dict[str, list[str]]:
    """Seeded train/val/test split of crystal ids (no id in two splits).

    Ids are ordered by a hash of ``(seed, id)``, so the split of an id does not depend on which other ids exist
    beyond the subset; ``subset`` keeps the first ``subset`` ids of that order (nested subsets, like the paper's
    5K ⊂ 10K ⊂ 100K). Val and test get at least one id each when there are three or more ids.
    """
    if subset is not None:
        if subset > len(ids):
            raise ValueError(f"subset={subset} is larger than the {len(ids)} curated clusters")
        if subset < 1:
            raise ValueError(f"subset must be positive, got {subset}")
    order = hash_order(ids, seed)
    order = order[:subset] if subset is not None else order
    n = len(order)
    n_val = round(fractions[1] * n)
    n_test = round(fractions[2] * n)
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_train = n - n_val - n_test
    return {
        "train": sorted(order[:n_train]),
        "val": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }


def _cluster_tensors(cluster: Cluster) -> dict[str, torch.Tensor]:
    return {
        "z": torch.tensor(cluster.numbers, dtype=torch.long),
        "mol_index": torch.tensor(cluster.mol_index, dtype=torch.long),
        "x_w": torch.tensor(cluster.x_w, dtype=torch.float32),
        "x_s": torch.tensor(cluster.x_s, dtype=torch.float32),
    }


def load_cluster_tensors(root: str | Path, progress: bool = True) -> dict[str, dict[str, torch.Tensor]]:
    """``{cluster_id: {z, mol_index, x_w, x_s}}`` for every cluster under ``root``, cached after the first read."""
    root = Path(root)
    ids = codcluster17.list_cluster_ids(root)
    if not ids:
        raise FileNotFoundError(f"{root}: no clusters (expected {codcluster17.FINAL_DIR}/*_cluster16.csv)")
    cache = root / "processed" / CACHE_NAME
    if cache.exists():
        cached = torch.load(cache, weights_only=True)
        if sorted(cached) == ids:
            return cached
    tensors = {
        cid: _cluster_tensors(codcluster17.read_cluster(root, cid))
        for cid in tqdm(ids, desc="read clusters", unit="cluster", disable=not progress)
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    torch.save(tensors, tmp)
    tmp.replace(cache)
    return tensors


def to_device(batch: Data, device: torch.device) -> Data:
    """``batch`` on ``device``. To CUDA it goes through page-locked (pinned) host memory with an asynchronous
    copy, which is faster than from pageable memory and lets the copy overlap the GPU work already queued."""
    if device.type != "cuda":
        return batch.to(device)
    return batch.pin_memory().to(device, non_blocking=True)


class ClusterData(Data):
    """A cluster whose ``molecule`` ids are offset by the molecules of the graphs before it when batched, so a
    batch's ``molecule`` ``[N]`` numbers its molecules 0..M-1 once, as PyG does for edge indices."""

    def __inc__(self, key: str, value, *args, **kwargs):
        if key == "molecule":
            return int(self.mol_index.max()) + 1
        return super().__inc__(key, value, *args, **kwargs)


class ClusterDataset(torch.utils.data.Dataset):
    """Clusters of one curated directory, optionally restricted to a split (and subset) of crystal ids."""

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        seed: int = 0,
        subset: int | None = None,
        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        progress: bool = True,
    ) -> None:
        self.root = Path(root)
        tensors = load_cluster_tensors(self.root, progress=progress)
        ids = sorted(tensors)
        if split is not None:
            if split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
            ids = split_ids(ids, seed=seed, fractions=fractions, subset=subset)[split]
        elif subset is not None:
            ids = sorted(hash_order(ids, seed)[:subset])
        self.ids = ids
        self._automorphisms: dict[str, Tensor] = {}
        self._items = [
            ClusterData(
                cluster_id=cid, num_nodes=len(tensors[cid]["z"]), molecule=tensors[cid]["mol_index"], **tensors[cid]
            )
            for cid in ids
        ]

    def automorphisms(self, cluster_id: str) -> Tensor:
        """Atom permutations ``[P, n]`` of one molecule of the cluster that a rotation of the rigid molecule
        realises (identity first): its graph automorphisms (RDKit) filtered by `proper_symmetries`.

        The molecules of a cluster are symmetry images with one atom order, so one set serves all of them; a
        cluster whose molecules differ gets the identity only. Computed once per cluster.
        """
        cached = self._automorphisms.get(cluster_id)
        if cached is None:
            item = self._items[self.ids.index(cluster_id)]
            per_molecule = cluster_automorphisms(item.z.numpy(), item.mol_index.numpy(), item.x_s.double().numpy())
            first = per_molecule[0]
            same = all(p.shape == first.shape and (p == first).all() for p in per_molecule)
            perms = torch.as_tensor(first if same else first[:1], dtype=torch.long)
            cached = proper_symmetries(item.x_s[item.mol_index == 0], perms)
            self._automorphisms[cluster_id] = cached
        return cached

    def select(self, ids: list[str]) -> ClusterDataset:
        """The same dataset restricted to ``ids`` (in that order); items are shared, nothing is re-read."""
        by_id = dict(zip(self.ids, self._items, strict=True))
        missing = [cid for cid in ids if cid not in by_id]
        if missing:
            raise KeyError(f"{self.root}: clusters {missing} are not in this dataset")
        chosen = ClusterDataset.__new__(ClusterDataset)
        chosen.root, chosen.ids, chosen._items = self.root, list(ids), [by_id[cid] for cid in ids]
        chosen._automorphisms = self._automorphisms
        return chosen

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Data:
        return self._items[index]
