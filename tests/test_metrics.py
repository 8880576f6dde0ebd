"""Tests for crystalflow_core.metrics: hand-computed cases, then a NumPy double-loop reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from ase.data import covalent_radii
from scipy.spatial.transform import Rotation

from crystalflow_core.metrics import (
    METRIC_KEYS,
    best_of_k,
    cluster_metrics,
    collision_rate,
    intermolecular_clash_rate,
    metrics_table,
    pm_atom,
    pm_atom_batched,
    pm_atom_samples,
    pm_center,
    separation_rate,
    summarize,
)

# --- independent reference: plain NumPy double loops ------------------------------------------------------


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return math.sqrt(sum((float(a[k]) - float(b[k])) ** 2 for k in range(3)))


def ref_pm_atom(x_pred: np.ndarray, x_true: np.ndarray) -> float:
    n = len(x_pred)
    total = 0.0
    for i in range(n):
        for j in range(n):
            total += (_dist(x_pred[i], x_pred[j]) - _dist(x_true[i], x_true[j])) ** 2
    return math.sqrt(total / (n * n))


def ref_centroids(x: np.ndarray, mol_index: np.ndarray) -> np.ndarray:
    n_mol = int(mol_index.max()) + 1
    out = np.zeros((n_mol, 3))
    for m in range(n_mol):
        members = [x[i] for i in range(len(x)) if mol_index[i] == m]
        out[m] = sum(members) / len(members)
    return out


def ref_metrics(x_pred, x_true, numbers, mol_index, threshold=0.5) -> dict[str, float]:
    n = len(x_pred)
    n_mol = int(mol_index.max()) + 1
    collide = clash = inter_pairs = 0
    closest = {}
    for i in range(n):
        for j in range(n):
            d = _dist(x_pred[i], x_pred[j])
            hit = d < covalent_radii[numbers[i]] + covalent_radii[numbers[j]]
            collide += hit
            if mol_index[i] != mol_index[j]:
                inter_pairs += 1
                clash += hit
                key = (min(mol_index[i], mol_index[j]), max(mol_index[i], mol_index[j]))
                closest[key] = min(closest.get(key, math.inf), d)
    separated = sum(closest[(a, b)] > threshold for a in range(n_mol) for b in range(a + 1, n_mol))
    return {
        "pm_atom": ref_pm_atom(x_pred, x_true),
        "pm_center": ref_pm_atom(ref_centroids(x_pred, mol_index), ref_centroids(x_true, mol_index)),
        "collision": 100.0 * collide / (n * n),
        "clash": 100.0 * clash / inter_pairs,
        "separation": 100.0 * separated / (n_mol * (n_mol - 1) / 2),
    }


def random_cluster(seed: int, n_mol: int, atoms_per_mol: int, spread: float = 4.0):
    """Molecules of ``atoms_per_mol`` C/H/N/O atoms around random centres; returns x_pred, x_true, Z, mol."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(n_mol, 1, 3))
    x_true = (centres + rng.normal(scale=0.8, size=(n_mol, atoms_per_mol, 3))).reshape(-1, 3)
    x_pred = x_true + rng.normal(scale=0.7, size=x_true.shape)
    numbers = rng.choice([1, 6, 7, 8], size=len(x_true))
    mol_index = np.repeat(np.arange(n_mol), atoms_per_mol)
    return x_pred, x_true, numbers, mol_index


# --- hand-computed tiny cases -----------------------------------------------------------------------------

# Two two-atom molecules far apart: molecule 0 at x=0,1; molecule 1 at x=10,11.
TINY_X = np.array([[0.0, 0, 0], [1.0, 0, 0], [10.0, 0, 0], [11.0, 0, 0]])
TINY_MOL = np.array([0, 0, 1, 1])
TINY_Z = np.array([1, 1, 1, 1])  # H: radius sum 0.62 Å < 1 Å, so only self-pairs collide


def test_identical_prediction_scores_zero():
    assert pm_atom(TINY_X, TINY_X) == 0.0
    assert pm_center(TINY_X, TINY_X, TINY_MOL) == 0.0


def test_one_shifted_atom_gives_hand_computed_pm():
    x_pred = TINY_X.copy()
    x_pred[3, 0] += 2.0  # atom 3 moves from x=11 to x=13: its 3 distances grow by 2 Å each
    # 6 of the 16 ordered pairs change by 2 Å -> sqrt(6 * 4 / 16)
    assert pm_atom(x_pred, TINY_X) == pytest.approx(math.sqrt(1.5))
    # centroid of molecule 1 moves by 1 Å: 2 of 4 centroid pairs change by 1 Å -> sqrt(2 / 4)
    assert pm_center(x_pred, TINY_X, TINY_MOL) == pytest.approx(math.sqrt(0.5))


def test_collision_floor_is_self_pairs_only():
    assert collision_rate(TINY_X, TINY_Z) == pytest.approx(100.0 / 4)
    assert intermolecular_clash_rate(TINY_X, TINY_Z, TINY_MOL) == 0.0


def test_collision_and_clash_count_close_pairs():
    x = TINY_X.copy()
    x[2, 0] = 1.5  # atom 2 (molecule 1) 0.5 Å from atom 1 (molecule 0): one unordered clash
    # collision: 4 self pairs + 2 ordered pairs of (1, 2) out of 16
    assert collision_rate(x, TINY_Z) == pytest.approx(100.0 * 6 / 16)
    # intermolecular ordered pairs: 2 * 2 * 2 = 8, of which 2 clash
    assert intermolecular_clash_rate(x, TINY_Z, TINY_MOL) == pytest.approx(25.0)
    # carbon radii (0.76 Å) make the 1 Å intramolecular bonds collide too
    carbon = np.full(4, 6)
    assert collision_rate(TINY_X, carbon) == pytest.approx(100.0 * 8 / 16)
    assert intermolecular_clash_rate(TINY_X, carbon, TINY_MOL) == 0.0


@pytest.mark.parametrize(("gap", "expected"), [(0.4, 0.0), (0.6, 100.0)])
def test_separation_of_two_molecules(gap, expected):
    x = np.array([[0.0, 0, 0], [1.0, 0, 0], [1.0 + gap, 0, 0], [2.0 + gap, 0, 0]])
    assert separation_rate(x, TINY_MOL) == expected
    assert separation_rate(x, TINY_MOL, threshold=gap + 0.1) == 0.0


def test_separation_counts_molecule_pairs():
    # three molecules on a line: 0-1 touching (0.3 Å), 1-2 and 0-2 apart -> 2 of 3 pairs separated
    x = np.array([[0.0, 0, 0], [0.3, 0, 0], [5.0, 0, 0]])
    assert separation_rate(x, np.array([0, 1, 2])) == pytest.approx(200.0 / 3)


def test_single_molecule_rates_are_nan():
    x = TINY_X[:2]
    assert math.isnan(separation_rate(x, np.array([0, 0])))
    assert math.isnan(intermolecular_clash_rate(x, TINY_Z[:2], np.array([0, 0])))


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        pm_atom(TINY_X, TINY_X[:3])
    with pytest.raises(ValueError):
        pm_center(TINY_X, TINY_X, np.array([0, 0, 2, 2]))  # molecule 1 missing
    with pytest.raises(ValueError):
        collision_rate(TINY_X, TINY_Z[:3])


# --- against the NumPy reference --------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "n_mol", "atoms_per_mol"), [(0, 2, 3), (1, 3, 5), (2, 5, 4), (3, 4, 9)])
def test_cluster_metrics_match_numpy_reference(seed, n_mol, atoms_per_mol):
    x_pred, x_true, numbers, mol_index = random_cluster(seed, n_mol, atoms_per_mol, spread=1.5)
    got = cluster_metrics(x_pred, x_true, numbers, mol_index)
    want = ref_metrics(x_pred, x_true, numbers, mol_index)
    assert set(got) == set(METRIC_KEYS)
    for key in METRIC_KEYS:
        assert got[key] == pytest.approx(want[key], rel=1e-10, abs=1e-10), key


def test_reference_cases_exercise_nontrivial_rates():
    """Guard: the random clusters above must produce rates strictly between the extremes."""
    x_pred, _, numbers, mol_index = random_cluster(3, 4, 9, spread=1.5)
    want = ref_metrics(x_pred, x_pred, numbers, mol_index, threshold=1.0)
    assert 100.0 / len(x_pred) < want["collision"] < 100.0
    assert 0.0 < want["clash"] < 100.0
    assert separation_rate(x_pred, mol_index, threshold=1.0) == pytest.approx(want["separation"])


def test_accepts_torch_float32_and_numpy_alike():
    x_pred, x_true, numbers, mol_index = random_cluster(4, 3, 4)
    from_numpy = cluster_metrics(x_pred, x_true, numbers, mol_index)
    from_torch = cluster_metrics(
        torch.tensor(x_pred), torch.tensor(x_true), torch.tensor(numbers), torch.tensor(mol_index)
    )
    assert from_numpy == from_torch
    float32 = pm_atom(torch.tensor(x_pred, dtype=torch.float32), torch.tensor(x_true, dtype=torch.float32))
    assert float32 == pytest.approx(from_numpy["pm_atom"], rel=1e-5)


def test_pm_invariant_to_rigid_motion_of_prediction():
    x_pred, x_true, _, mol_index = random_cluster(5, 4, 6)
    rotation = Rotation.random(random_state=7).as_matrix()
    moved = x_pred @ rotation.T + np.array([3.0, -7.0, 11.0])
    assert pm_atom(moved, x_true) == pytest.approx(pm_atom(x_pred, x_true), rel=1e-12)
    assert pm_center(moved, x_true, mol_index) == pytest.approx(pm_center(x_pred, x_true, mol_index), rel=1e-12)
    assert pm_atom(x_pred, x_true) > 0.1


# --- best-of-k, batched helper, tables --------------------------------------------------------------------


def _samples(x_true: np.ndarray, scales: list[float], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([x_true + rng.normal(scale=s, size=x_true.shape) for s in scales])


def test_best_of_k_picks_lowest_pm_sample():
    _, x_true, numbers, mol_index = random_cluster(6, 3, 4)
    samples = _samples(x_true, [1.0, 0.8, 0.05, 1.2], seed=0)
    best = best_of_k(samples, x_true, numbers, mol_index)
    pms = [ref_pm_atom(s, x_true) for s in samples]
    torch.testing.assert_close(pm_atom_samples(samples, x_true), torch.tensor(pms, dtype=torch.float64))
    assert best["best_k"] == int(np.argmin(pms)) == 2
    assert best["pm_atom"] == pytest.approx(min(pms))
    assert best["clash"] == pytest.approx(intermolecular_clash_rate(samples[2], numbers, mol_index))


def test_pm_atom_batched_equals_per_cluster():
    clusters = [random_cluster(seed, n_mol, k) for seed, n_mol, k in [(10, 2, 3), (11, 4, 5), (12, 3, 2)]]
    x_pred = torch.tensor(np.concatenate([c[0] for c in clusters]))
    x_true = torch.tensor(np.concatenate([c[1] for c in clusters]))
    batch = torch.cat([torch.full((len(c[0]),), b) for b, c in enumerate(clusters)])
    got = pm_atom_batched(x_pred, x_true, batch)
    assert got.shape == (3,)
    want = torch.tensor([ref_pm_atom(c[0], c[1]) for c in clusters], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_metrics_table_single_sample():
    records = [(f"c{s}", *random_cluster(s, 3, 4)) for s in range(3)]
    df = metrics_table(records)
    assert list(df.columns) == ["cluster_id", "n_atoms", "n_samples", *METRIC_KEYS]
    assert df.shape == (3, 8)
    assert list(df["cluster_id"]) == ["c0", "c1", "c2"]
    assert (df["n_atoms"] == 12).all() and (df["n_samples"] == 1).all()
    for row, (_, x_pred, x_true, _, _) in zip(df.itertuples(), records, strict=True):
        assert row.pm_atom == pytest.approx(ref_pm_atom(x_pred, x_true))
    summary = summarize(df)
    assert list(summary.index) == list(METRIC_KEYS)
    assert summary["pm_atom"] == pytest.approx(df["pm_atom"].mean())


def test_metrics_table_multiple_samples_averages_and_adds_best():
    _, x_true, numbers, mol_index = random_cluster(20, 3, 4)
    samples = _samples(x_true, [0.9, 0.1, 0.5], seed=1)
    x_pred_single, x_true2, numbers2, mol_index2 = random_cluster(21, 2, 5)
    df = metrics_table(
        [
            ("multi", samples, x_true, numbers, mol_index),
            ("single", x_pred_single, x_true2, numbers2, mol_index2),
        ]
    )
    best_cols = [f"{k}_best" for k in METRIC_KEYS]
    assert list(df.columns) == ["cluster_id", "n_atoms", "n_samples", *METRIC_KEYS, *best_cols, "best_k"]
    multi = df.set_index("cluster_id").loc["multi"]
    assert multi["n_samples"] == 3
    per_sample = [ref_metrics(s, x_true, numbers, mol_index) for s in samples]
    for key in METRIC_KEYS:
        assert multi[key] == pytest.approx(np.mean([m[key] for m in per_sample])), key
        assert multi[f"{key}_best"] == pytest.approx(per_sample[1][key]), key
    assert multi["best_k"] == 1
    single = df.set_index("cluster_id").loc["single"]
    assert single["pm_atom_best"] == pytest.approx(single["pm_atom"])
    summary = summarize(df)
    assert set(summary.index) == set(METRIC_KEYS) | set(best_cols)
    assert summary["pm_atom_best"] == pytest.approx(df["pm_atom_best"].mean())
    assert isinstance(summary, pd.Series)
