"""Packing-matching and geometry metrics for predicted 17-molecule clusters.

Definitions follow the CrystalFlow paper / COD-Cluster17 so that numbers compare with the published tables:

- ``pm_atom``: RMS difference of the full ``N x N`` interatomic distance matrices of prediction and reference
  (diagonal and intramolecular pairs included, no alignment, atoms matched by index). In Å.
- ``pm_center``: the same on the ``n_mol x n_mol`` distance matrix of molecule centroids (unweighted mean of
  each molecule's atom positions). In Å.
- ``collision``: % of all ``N^2`` ordered atom pairs, diagonal included, closer than the sum of their
  covalent radii. Because every atom collides with itself, the floor is ``100 / N`` %; covalently bonded
  pairs shorter than the radius sum also count.
- ``clash``: % of atom pairs in *different* molecules closer than the sum of their covalent radii.
- ``separation``: % of the ``n_mol (n_mol - 1) / 2`` molecule pairs whose closest atoms are more than
  ``threshold`` Å apart.
- ``energy``: MMFF94 intermolecular interaction energy per molecule, kcal/mol
  (:mod:`~crystalflow_core.forcefield`; the crystal cluster's own is the ``crystal`` row of every table). NaN
  for a molecule MMFF94 cannot type.

A metric missing (NaN) for a cluster is skipped by the means of :func:`summarize`; the table's ``unscored``
column says why, and :func:`coverage` counts what each mean rests on.

Covalent radii are ``ase.data.covalent_radii`` (Cordero et al., 2008). Every function accepts NumPy arrays or
torch tensors and computes in float64 with vectorised distance matrices.

These match atoms by index and never superpose anything. :mod:`crystalflow_core.packing` adds metrics that do not
trust the prediction's labels (``matched``, ``rmsd15``, ``pass_rate``: OXtalign's packing similarity; ``rmsd``:
permutation- and symmetry-invariant RMSD; ``integrity``: the largest change of an intramolecular distance), so a
prediction cannot score well without the right structure: collapsing every molecule of ``x_w`` to its centroid
beats ``x_w`` itself on ``pm_atom`` and ``rmsd`` (and keeps its ``pm_center``) but is exposed by ``integrity`` and
``matched``. Best-of-k is reported twice: ``<metric>_best`` for
the sample closest to the truth (an oracle choice) and ``<metric>_chosen`` for the one chosen without the truth
(:func:`choose_without_truth`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from ase.data import covalent_radii
from torch_geometric.utils import to_dense_batch

from .data.noise import molecule_centroids
from .forcefield import ClusterEnergy, ForceFieldError, cluster_terms
from .packing import (
    PACKING_KEYS,
    SIMILARITY_KEYS,
    Reference,
    packing_metrics,
    prepare_reference,
    similarity_problem,
)

ArrayLike = np.ndarray | torch.Tensor

#: Per-cluster metric names, in table order.
METRIC_KEYS = ("pm_atom", "pm_center", "collision", "clash", "separation", "energy", *PACKING_KEYS)

#: Covalent radii (Å) by atomic number: a pair closer than the sum of theirs clashes.
COVALENT_RADII = torch.as_tensor(covalent_radii, dtype=torch.float64)


def _coords(x: ArrayLike) -> torch.Tensor:
    """Coordinates ``[..., N, 3]`` as a detached float64 tensor."""
    x = torch.as_tensor(x).detach().to(torch.float64)
    if x.ndim < 2 or x.shape[-1] != 3:
        raise ValueError(f"coordinates must have shape [..., N, 3], got {tuple(x.shape)}")
    return x


def _labels(v: ArrayLike, n_atoms: int, name: str) -> torch.Tensor:
    """Integer per-atom labels ``[N]`` (atomic numbers or molecule indices) as a long tensor."""
    v = torch.as_tensor(v).detach().to(torch.long)
    if v.shape != (n_atoms,):
        raise ValueError(f"{name} must have shape [{n_atoms}], got {tuple(v.shape)}")
    return v


def _mol_index(mol_index: ArrayLike, n_atoms: int) -> tuple[torch.Tensor, int]:
    """Molecule index ``[N]`` and ``n_mol``; every molecule ``0..n_mol-1`` must own at least one atom."""
    mol_index = _labels(mol_index, n_atoms, "mol_index")
    n_mol = int(mol_index.max()) + 1 if n_atoms else 0
    if n_atoms and (int(mol_index.min()) < 0 or torch.unique(mol_index).numel() != n_mol):
        raise ValueError("mol_index must use every integer 0..n_mol-1")
    return mol_index, n_mol


def _distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrices ``[..., N, N]`` of ``x [..., N, 3]``, exact on the diagonal."""
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")


def _contact_matrix(x: torch.Tensor, numbers: ArrayLike) -> torch.Tensor:
    """Boolean ``[N, N]``: pair closer than the sum of covalent radii."""
    numbers = _labels(numbers, x.shape[0], "numbers")
    radii = COVALENT_RADII.to(x.device)[numbers]
    return _distances(x) < radii[:, None] + radii[None, :]


def _check_pair(x_pred: ArrayLike, x_true: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    x_pred, x_true = _coords(x_pred), _coords(x_true)
    if x_pred.shape != x_true.shape:
        raise ValueError(f"x_pred {tuple(x_pred.shape)} and x_true {tuple(x_true.shape)} differ in shape")
    return x_pred, x_true.to(x_pred.device)


def pm_atom(x_pred: ArrayLike, x_true: ArrayLike) -> float:
    """Atom-level packing matching (Å) between prediction and reference, both ``[N, 3]``."""
    x_pred, x_true = _check_pair(x_pred, x_true)
    return float(torch.sqrt(((_distances(x_pred) - _distances(x_true)) ** 2).mean()))


def centroids(x: ArrayLike, mol_index: ArrayLike) -> torch.Tensor:
    """Unweighted molecule centroids ``[n_mol, 3]`` of ``x [N, 3]`` (NumPy or torch, any float type), in float64:
    :func:`~crystalflow_core.data.noise.molecule_centroids` on checked input."""
    x = _coords(x)
    mol_index, n_mol = _mol_index(mol_index, x.shape[0])
    return molecule_centroids(x, mol_index.to(x.device), n_mol)


def pm_center(x_pred: ArrayLike, x_true: ArrayLike, mol_index: ArrayLike) -> float:
    """Centroid-level packing matching (Å); ``x_pred``, ``x_true`` ``[N, 3]``, ``mol_index [N]``."""
    x_pred, x_true = _check_pair(x_pred, x_true)
    return pm_atom(centroids(x_pred, mol_index), centroids(x_true, mol_index))


def collision_rate(x: ArrayLike, numbers: ArrayLike) -> float:
    """% of all ``N^2`` ordered atom pairs (diagonal included) closer than their covalent-radius sum.

    ``x [N, 3]``, ``numbers [N]`` atomic numbers. The published definition: the floor is ``100 / N`` %.
    """
    return float(_contact_matrix(_coords(x), numbers).to(torch.float64).mean() * 100.0)


def intermolecular_clash_rate(x: ArrayLike, numbers: ArrayLike, mol_index: ArrayLike) -> float:
    """% of atom pairs in different molecules closer than their covalent-radius sum.

    ``x [N, 3]``, ``numbers [N]``, ``mol_index [N]``. NaN for a single molecule (no such pairs).
    """
    x = _coords(x)
    mol_index, _ = _mol_index(mol_index, x.shape[0])
    mol_index = mol_index.to(x.device)
    inter = mol_index[:, None] != mol_index[None, :]
    n_pairs = int(inter.sum())
    if n_pairs == 0:
        return float("nan")
    return float((_contact_matrix(x, numbers) & inter).sum()) / n_pairs * 100.0


def closest_approach(x: ArrayLike, mol_index: ArrayLike) -> torch.Tensor:
    """Shortest atom-atom distance between every two molecules, ``[n_mol, n_mol]`` (diagonal 0)."""
    x = _coords(x)
    mol_index, n_mol = _mol_index(mol_index, x.shape[0])
    mol_index = mol_index.to(x.device)
    pair_id = (mol_index[:, None] * n_mol + mol_index[None, :]).reshape(-1)
    closest = torch.full((n_mol * n_mol,), float("inf"), dtype=x.dtype, device=x.device)
    closest = closest.scatter_reduce(0, pair_id, _distances(x).reshape(-1), reduce="amin")
    return closest.reshape(n_mol, n_mol)


def separation_rate(x: ArrayLike, mol_index: ArrayLike, threshold: float = 0.5) -> float:
    """% of molecule pairs whose closest atoms are more than ``threshold`` Å apart.

    ``x [N, 3]``, ``mol_index [N]``. NaN for a single molecule (no pairs).
    """
    closest = closest_approach(x, mol_index)
    n_mol = closest.shape[0]
    i, j = torch.triu_indices(n_mol, n_mol, offset=1, device=closest.device)
    if i.numel() == 0:
        return float("nan")
    return float((closest[i, j] > threshold).to(torch.float64).mean() * 100.0)


def energy_model(x_true: ArrayLike, numbers: ArrayLike, mol_index: ArrayLike) -> ClusterEnergy | None:
    """The MMFF94 :class:`~crystalflow_core.forcefield.ClusterEnergy` of a cluster's layout, its molecule typed
    on the crystal's geometry; ``None`` when MMFF94 cannot type it."""
    try:
        terms = cluster_terms(np.asarray(numbers), np.asarray(mol_index), _coords(x_true).cpu().numpy())
    except ForceFieldError:
        return None
    return ClusterEnergy(terms, torch.as_tensor(np.asarray(mol_index)))


def energy_per_molecule(x: ArrayLike, energy: ClusterEnergy | None, n_molecules: int) -> float:
    """MMFF94 interaction energy of ``x [N, 3]`` per molecule (kcal/mol); NaN without an energy model."""
    if energy is None:
        return math.nan
    return float(energy(_coords(x).cpu())) / n_molecules


def cluster_metrics(
    x_pred: ArrayLike,
    x_true: ArrayLike,
    numbers: ArrayLike,
    mol_index: ArrayLike,
    reference: Reference | None = None,
    energy: ClusterEnergy | None | bool = True,
) -> dict[str, float]:
    """All metrics (keys: METRIC_KEYS) of a predicted cluster ``x_pred [N, 3]`` against ``x_true [N, 3]``.

    ``reference``: :func:`~crystalflow_core.packing.prepare_reference` of the truth, and ``energy``:
    :func:`energy_model` of it (``True``: made here), to reuse across samples.
    """
    if reference is None:
        reference = prepare_reference(x_true, numbers, mol_index)
    if energy is True:
        energy = energy_model(x_true, numbers, mol_index)
    return {
        "pm_atom": pm_atom(x_pred, x_true),
        "pm_center": pm_center(x_pred, x_true, mol_index),
        "collision": collision_rate(x_pred, numbers),
        "clash": intermolecular_clash_rate(x_pred, numbers, mol_index),
        "separation": separation_rate(x_pred, mol_index),
        "energy": energy_per_molecule(x_pred, energy, len(reference.members)),
        **packing_metrics(x_pred, reference),
    }


def pm_atom_samples(samples: ArrayLike, x_true: ArrayLike) -> torch.Tensor:
    """``pm_atom`` of each sample ``[K, N, 3]`` of one cluster against ``x_true [N, 3]``; returns ``[K]``."""
    samples, x_true = _coords(samples), _coords(x_true)
    if samples.ndim != 3 or samples.shape[1:] != x_true.shape:
        raise ValueError(f"samples {tuple(samples.shape)} must be [K, *x_true.shape={tuple(x_true.shape)}]")
    x_true = x_true.to(samples.device)
    return torch.sqrt(((_distances(samples) - _distances(x_true)) ** 2).mean(dim=(1, 2)))


def best_of_k(
    samples: ArrayLike, x_true: ArrayLike, numbers: ArrayLike, mol_index: ArrayLike
) -> dict[str, float | int]:
    """Metrics of the lowest-``pm_atom`` sample of ``samples [K, N, 3]``, plus its index ``best_k``."""
    samples = _coords(samples)
    best_k = int(torch.argmin(pm_atom_samples(samples, x_true)))
    return {**cluster_metrics(samples[best_k], x_true, numbers, mol_index), "best_k": best_k}


def choose_without_truth(
    samples: ArrayLike, numbers: ArrayLike, mol_index: ArrayLike, energies: Sequence[float] | None = None
) -> int:
    """Index of the sample of ``samples [K, N, 3]`` that looks most physical, chosen without the truth.

    Fewest intermolecular clashes (:func:`intermolecular_clash_rate`), ties broken by the lowest of
    ``energies [K]`` (interaction energies, when known and finite), then by the largest smallest distance between
    two molecules (:func:`closest_approach`), then by the lowest index. Samples with non-finite coordinates come
    last (they would otherwise look clash-free).
    """
    samples = _coords(samples)
    if samples.ndim != 3:
        raise ValueError(f"samples must have shape [K, N, 3], got {tuple(samples.shape)}")

    def badness(k: int) -> tuple[bool, float, float, float, int]:
        if not bool(torch.isfinite(samples[k]).all()):
            return (True, math.inf, math.inf, math.inf, k)
        energy = math.inf if energies is None or not math.isfinite(energies[k]) else float(energies[k])
        clash = intermolecular_clash_rate(samples[k], numbers, mol_index)
        closest = closest_approach(samples[k], mol_index)
        off_diagonal = ~torch.eye(closest.shape[0], dtype=torch.bool, device=closest.device)
        nearest = float(closest[off_diagonal].min()) if bool(off_diagonal.any()) else math.inf
        return (False, math.inf if math.isnan(clash) else clash, energy, -nearest, k)

    return min(range(samples.shape[0]), key=badness)


def _sample_mean(key: str, values: list[float]) -> float:
    """Mean of one metric over the samples of a cluster; NaN if any sample's value is NaN.

    ``rmsd15`` is the exception: it is undefined (NaN) for a sample with no molecule matched, so its mean runs
    over the samples that matched something (NaN if none did).
    """
    if key == "rmsd15":
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return math.nan
    return float(np.mean(values))


def unscored(per_sample: Sequence[dict[str, float]], reference: Reference, energy: ClusterEnergy | None) -> str:
    """Why metrics of one cluster failed (are NaN) for its samples ``per_sample`` (:func:`cluster_metrics`):
    ``"metric: cause"`` entries joined by ``"; "``, ``""`` when none failed."""
    causes = {"energy": "MMFF94 cannot type the molecule"} if energy is None else {}
    similarity = similarity_problem(reference)
    if similarity is None and any(math.isnan(m["matched"]) for m in per_sample):
        similarity = "OXtalign could not compare a prediction"
    if similarity is not None:
        causes.update(dict.fromkeys(SIMILARITY_KEYS, similarity))
    return "; ".join(f"{key}: {cause}" for key, cause in causes.items())


def metrics_table(
    records: Iterable[tuple[str, ArrayLike, ArrayLike, ArrayLike, ArrayLike]],
) -> pd.DataFrame:
    """One row of metrics per cluster.

    Each record is ``(cluster_id, x_pred, x_true, numbers, mol_index)`` with ``x_pred`` ``[N, 3]`` or ``K``
    samples ``[K, N, 3]``. Columns: ``cluster_id, n_atoms, n_samples`` and METRIC_KEYS; with ``K > 1`` the
    plain metric columns are means over the samples (see :func:`_sample_mean` for NaN). If any record has
    ``K > 1`` the table also holds the best-of-k columns ``<metric>_best`` and ``best_k`` (the lowest-``pm_atom``
    sample: an oracle, it needs the truth) and ``<metric>_chosen`` and ``chosen_k`` (the sample picked by
    :func:`choose_without_truth`); for ``K = 1`` rows, the single sample. Every sample is scored once. The last
    column, ``unscored``, says why metrics failed for a cluster (:func:`unscored`).
    """
    rows = []
    for cluster_id, x_pred, x_true, numbers, mol_index in records:
        samples = _coords(x_pred)
        if samples.ndim == 2:
            samples = samples[None]
        reference = prepare_reference(x_true, numbers, mol_index)
        energy = energy_model(x_true, numbers, mol_index)
        per_sample = [cluster_metrics(s, x_true, numbers, mol_index, reference, energy) for s in samples]
        row: dict[str, object] = {
            "cluster_id": cluster_id,
            "n_atoms": samples.shape[1],
            "n_samples": samples.shape[0],
        }
        row.update({key: _sample_mean(key, [m[key] for m in per_sample]) for key in METRIC_KEYS})
        best_k = int(np.argmin(np.nan_to_num([m["pm_atom"] for m in per_sample], nan=np.inf)))
        energies = [m["energy"] for m in per_sample]
        chosen_k = choose_without_truth(samples, numbers, mol_index, energies) if len(samples) > 1 else 0
        for suffix, k in (("best", best_k), ("chosen", chosen_k)):
            row.update({f"{key}_{suffix}": per_sample[k][key] for key in METRIC_KEYS})
            row[f"{suffix}_k"] = k
        row["unscored"] = unscored(per_sample, reference, energy)
        rows.append(row)
    columns = ["cluster_id", "n_atoms", "n_samples", *METRIC_KEYS]
    choice_columns = [
        *(f"{key}_best" for key in METRIC_KEYS),
        "best_k",
        *(f"{key}_chosen" for key in METRIC_KEYS),
        "chosen_k",
    ]
    df = pd.DataFrame(rows, columns=[*columns, *choice_columns, "unscored"])
    if not (df["n_samples"] > 1).any():
        df = df[[*columns, "unscored"]]
    return df


def _metric_key(column: str) -> str:
    """The metric of a metrics-table column: ``energy_best`` → ``energy``."""
    return column.removesuffix("_best").removesuffix("_chosen")


def _metric_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if _metric_key(c) in METRIC_KEYS]


def summarize(df: pd.DataFrame) -> pd.Series:
    """Mean over clusters of every metric column of a :func:`metrics_table` (NaNs skipped: :func:`coverage`
    counts what each mean rests on)."""
    return df[_metric_columns(df)].astype(float).mean()


def _causes(unscored_text: object) -> dict[str, str]:
    """The ``unscored`` entry of one cluster as ``{metric: cause}`` (a CSV reads an empty one back as NaN)."""
    entries = unscored_text.split("; ") if isinstance(unscored_text, str) and unscored_text else []
    return dict(entry.split(": ", 1) for entry in entries)


def _missing_cause(df: pd.DataFrame, row: object, column: str) -> str:
    """Why ``column`` is NaN in ``row`` of a metrics table: the failure the ``unscored`` column names, else the
    metric's own definition (``rmsd15`` needs a matched molecule), else a prediction with no value there."""
    key = _metric_key(column)
    cause = _causes(df.at[row, "unscored"] if "unscored" in df.columns else "").get(key)
    if cause is not None:
        return cause
    if key == "rmsd15" and df.at[row, column.replace("rmsd15", "matched")] == 0:
        return "no shell molecule matched"
    return "no value for the prediction"


def coverage(df: pd.DataFrame) -> pd.DataFrame:
    """The metric columns of a :func:`metrics_table` that are missing (NaN) for some clusters: how many clusters
    the mean of :func:`summarize` rests on (``clusters``, of ``of``) and why the others have no value (``why``:
    each cause with its count of clusters). Empty when every mean rests on every cluster."""
    rows = {}
    for column in _metric_columns(df):
        missing = df.index[df[column].isna()]
        if len(missing):
            why = Counter(_missing_cause(df, row, column) for row in missing)
            rows[column] = {
                "clusters": len(df) - len(missing),
                "of": len(df),
                "why": ", ".join(f"{cause} ({count})" for cause, count in why.most_common()),
            }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["clusters", "of", "why"])


def pm_atom_batched(x_pred: torch.Tensor, x_true: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """``pm_atom`` of every cluster in a PyG batch at once, ``[B]`` float64 (detached).

    ``x_pred``, ``x_true`` ``[N, 3]`` are the concatenated clusters and ``batch [N]`` (sorted) assigns atoms
    to clusters; each cluster's mean runs over its own ``n_i^2`` pairs.
    """
    x_pred, x_true = _check_pair(x_pred, x_true)
    batch = torch.as_tensor(batch, device=x_pred.device)
    dense_pred, mask = to_dense_batch(x_pred, batch)
    dense_true, _ = to_dense_batch(x_true, batch)
    pair_mask = mask[:, :, None] & mask[:, None, :]
    sq = (_distances(dense_pred) - _distances(dense_true)) ** 2
    n_atoms = mask.sum(dim=1).to(torch.float64)
    return torch.sqrt((sq * pair_mask).sum(dim=(1, 2)) / n_atoms**2)
