"""Dataset statistics of a curated directory (the paper's Appendix D, Figures 3–5, plus a summary table).

* Figure 3 — atoms per molecule: :func:`cluster_table` (column ``atoms_per_molecule``).
* Figure 4 — pairwise atom distance distributions of ``x_w`` and ``x_s``: :func:`distance_histogram`.
* Figure 5 — atom-level correlation: :func:`distance_correlation`. The paper does not define it; we take, per
  cluster, the Pearson correlation between the upper triangles (``i < j``) of the interatomic distance matrices of
  ``x_w`` and ``x_s``. It is 1 when ``x_w`` is a rigid motion of the whole crystal cluster and falls as the
  molecules of ``x_w`` move independently. Intramolecular pairs are identical in both (the noise is rigid per
  molecule) and are included by default; ``intermolecular=True`` keeps only pairs of atoms in different
  molecules, which isolates the packing.
* Summary — elements, space groups (from ``manifest.csv`` when the directory was curated here) and cluster
  radii (largest distance of a molecule centroid of ``x_s`` from the central molecule's centroid):
  :func:`summary_table`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from ase.data import chemical_symbols

from . import metrics
from .data.dataset import hash_order, load_cluster_tensors
from .data.manifest import MANIFEST


def pairwise_distances(x: np.ndarray) -> np.ndarray:
    """Distances of all atom pairs ``i < j`` of ``x`` ``[N, 3]``; returns ``[N (N - 1) / 2]``."""
    x = np.asarray(x, dtype=np.float64)
    i, j = np.triu_indices(len(x), k=1)
    return np.linalg.norm(x[i] - x[j], axis=1)


def distance_correlation(
    x_w: np.ndarray, x_s: np.ndarray, mol_index: np.ndarray | None = None, intermolecular: bool = False
) -> float:
    """Pearson correlation of the pairwise distances of ``x_w`` and ``x_s`` (both ``[N, 3]``, atoms matched).

    With ``intermolecular`` only pairs of atoms in different molecules count (``mol_index`` ``[N]`` needed).
    """
    d_w, d_s = pairwise_distances(x_w), pairwise_distances(x_s)
    if intermolecular:
        if mol_index is None:
            raise ValueError("intermolecular=True needs mol_index")
        i, j = np.triu_indices(len(mol_index), k=1)
        keep = np.asarray(mol_index)[i] != np.asarray(mol_index)[j]
        d_w, d_s = d_w[keep], d_s[keep]
    return float(np.corrcoef(d_w, d_s)[0, 1])


def cluster_radius(x_s: np.ndarray, mol_index: np.ndarray) -> float:
    """Largest distance (Å) of a molecule centroid from the central molecule's (molecule 0) centroid."""
    centroids = metrics.centroids(x_s, mol_index).numpy()
    return float(np.linalg.norm(centroids - centroids[0], axis=1).max())


def select_ids(ids: Sequence[str], max_clusters: int | None = None, seed: int = 0) -> list[str]:
    """All ``ids``, or a seeded sample of ``max_clusters`` of them (the paper sampled 5K molecules)."""
    ids = sorted(ids)
    if max_clusters is None or max_clusters >= len(ids):
        return ids
    return sorted(hash_order(ids, seed)[:max_clusters])


def read_manifest(data_dir: str | Path) -> pd.DataFrame | None:
    """``manifest.csv`` of a directory curated by this package, or ``None``."""
    path = Path(data_dir) / MANIFEST
    return pd.read_csv(path, dtype={"id": str}, keep_default_na=False) if path.is_file() else None


def cluster_table(data_dir: str | Path, max_clusters: int | None = None, seed: int = 0) -> pd.DataFrame:
    """One row per cluster: ``cluster_id, n_atoms, n_molecules, atoms_per_molecule, elements, radius,
    correlation, correlation_inter, space_group`` (space group empty when there is no manifest)."""
    tensors = load_cluster_tensors(data_dir, progress=False)
    manifest = read_manifest(data_dir)
    space_groups = dict(zip(manifest["id"], manifest["space_group"], strict=True)) if manifest is not None else {}
    rows = []
    for cid in select_ids(list(tensors), max_clusters, seed):
        item = tensors[cid]
        numbers, mol_index = item["z"].numpy(), item["mol_index"].numpy()
        x_w, x_s = item["x_w"].double().numpy(), item["x_s"].double().numpy()
        n_mol = int(mol_index.max()) + 1
        rows.append(
            {
                "cluster_id": cid,
                "n_atoms": len(numbers),
                "n_molecules": n_mol,
                "atoms_per_molecule": len(numbers) // n_mol,
                "elements": " ".join(chemical_symbols[z] for z in sorted(set(numbers.tolist()))),
                "radius": cluster_radius(x_s, mol_index),
                "correlation": distance_correlation(x_w, x_s),
                "correlation_inter": distance_correlation(x_w, x_s, mol_index, intermolecular=True),
                "space_group": space_groups.get(cid, ""),
            }
        )
    return pd.DataFrame(rows)


def distance_histogram(
    data_dir: str | Path,
    bins: int | np.ndarray = 60,
    max_distance: float | None = None,
    max_clusters: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Pooled pairwise-distance densities of ``x_w`` and ``x_s`` over clusters (Figure 4).

    Columns ``bin_left, bin_right, bin_center, x_w, x_s``; each density integrates to 1 over the bins (pairs
    beyond the last bin edge are dropped). ``max_distance`` defaults to the largest distance seen.
    """
    tensors = load_cluster_tensors(data_dir, progress=False)
    ids = select_ids(list(tensors), max_clusters, seed)
    d_w = np.concatenate([pairwise_distances(tensors[c]["x_w"].double().numpy()) for c in ids])
    d_s = np.concatenate([pairwise_distances(tensors[c]["x_s"].double().numpy()) for c in ids])
    if np.ndim(bins) == 0:
        top = max_distance if max_distance is not None else float(max(d_w.max(), d_s.max()))
        bins = np.linspace(0.0, top, int(bins) + 1)
    edges = np.asarray(bins, dtype=np.float64)
    density_w, _ = np.histogram(d_w, bins=edges, density=True)
    density_s, _ = np.histogram(d_s, bins=edges, density=True)
    return pd.DataFrame(
        {
            "bin_left": edges[:-1],
            "bin_right": edges[1:],
            "bin_center": (edges[:-1] + edges[1:]) / 2,
            "x_w": density_w,
            "x_s": density_s,
        }
    )


def element_counts(table: pd.DataFrame) -> pd.Series:
    """Number of clusters containing each element, most common first."""
    counts = Counter(symbol for elements in table["elements"] for symbol in elements.split())
    return pd.Series(dict(counts.most_common()), name="clusters", dtype=int)


def summary_table(table: pd.DataFrame, top: int = 8) -> pd.DataFrame:
    """Summary of a :func:`cluster_table`: counts, ranges of size / radius / correlation, elements, space groups.

    Returns a frame with columns ``statistic, value`` (strings, for display).
    """

    def spread(column: str, digits: int = 2) -> str:
        values = table[column].astype(float)
        return f"{values.min():.{digits}f} / {values.median():.{digits}f} / {values.max():.{digits}f}"

    elements = element_counts(table)
    groups = table.loc[table["space_group"] != "", "space_group"].value_counts()
    rows = [
        ("clusters", str(len(table))),
        ("molecules per cluster", ", ".join(map(str, sorted(table["n_molecules"].unique())))),
        ("atoms per molecule (min / median / max)", spread("atoms_per_molecule", 0)),
        ("cluster radius Å (min / median / max)", spread("radius")),
        ("correlation x_w vs x_s, all pairs (min / median / max)", spread("correlation", 3)),
        ("correlation x_w vs x_s, intermolecular pairs (min / median / max)", spread("correlation_inter", 3)),
        ("elements (clusters containing)", ", ".join(f"{e} {n}" for e, n in elements.items())),
        (
            f"space groups ({len(groups)} distinct; top {top})",
            ", ".join(f"{g} {n}" for g, n in groups.head(top).items()) or "unknown (no manifest.csv)",
        ),
    ]
    return pd.DataFrame(rows, columns=["statistic", "value"])


def status_table(manifests: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Structures per curation status (rows) for each named manifest (columns), zeros filled in."""
    counts = {name: manifest["status"].value_counts() for name, manifest in manifests.items()}
    return pd.DataFrame(counts).fillna(0).astype(int).rename_axis("status")


def rejection_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Structures not curated, by status and reason (``duplicate_of:<id>`` counts as ``duplicate``).

    Columns ``status, reason, structures, examples`` (up to three ids), most frequent first.
    """
    dropped = manifest[manifest["status"] != "curated"].copy()
    dropped["reason"] = dropped["reason"].astype(str).str.replace(r"^duplicate_of:.*$", "duplicate", regex=True)
    grouped = dropped.groupby(["status", "reason"])["id"]
    table = pd.DataFrame({"structures": grouped.size(), "examples": grouped.agg(lambda ids: ", ".join(ids[:3]))})
    return table.reset_index().sort_values("structures", ascending=False, kind="stable").reset_index(drop=True)


def subset_table(data_dir: str | Path, subsets: Sequence[int | None], seed: int = 0) -> pd.DataFrame:
    """Train / val / test sizes of each nested subset (``None`` = all clusters); too large a subset shows 0s
    with ``available=False``."""
    from .data.codcluster17 import list_cluster_ids
    from .data.dataset import split_ids

    ids = list_cluster_ids(Path(data_dir))
    rows = []
    for subset in subsets:
        available = subset is None or subset <= len(ids)
        splits = split_ids(ids, seed=seed, subset=subset) if available else {"train": [], "val": [], "test": []}
        rows.append(
            {
                "subset": "all" if subset is None else subset,
                "available": available,
                **{name: len(members) for name, members in splits.items()},
            }
        )
    return pd.DataFrame(rows, columns=["subset", "available", "train", "val", "test"])
