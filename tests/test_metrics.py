"""Tests for crystalflow_core.metrics: hand-computed cases, then a NumPy double-loop reference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from ase.data import covalent_radii
from scipy.spatial.transform import Rotation

from crystalflow_core import packing
from crystalflow_core.forcefield import cluster_terms, interaction_energy
from crystalflow_core.metrics import (
    METRIC_KEYS,
    best_of_k,
    choose_without_truth,
    cluster_metrics,
    collision_rate,
    coverage,
    intermolecular_clash_rate,
    metrics_table,
    pm_atom,
    pm_atom_batched,
    pm_atom_samples,
    pm_center,
    separation_rate,
    summarize,
)

#: The metrics that match atoms by index (the published definitions); the rest are in crystalflow_core.packing.
INDEX_KEYS = ("pm_atom", "pm_center", "collision", "clash", "separation")

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


def ref_choice(samples, numbers, mol_index) -> int:
    """The sample with the fewest intermolecular clashes, then the widest closest approach, then lowest index."""

    def key(k):
        x = samples[k]
        clashes, pairs, closest = 0, 0, math.inf
        for i in range(len(x)):
            for j in range(i + 1, len(x)):
                if mol_index[i] != mol_index[j]:
                    d = _dist(x[i], x[j])
                    pairs += 1
                    clashes += d < covalent_radii[numbers[i]] + covalent_radii[numbers[j]]
                    closest = min(closest, d)
        return (clashes / pairs, -closest, k)

    return min(range(len(samples)), key=key)


def assert_same(got: float, want: float) -> None:
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want), (got, want)


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
    for key in INDEX_KEYS:
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
    assert from_numpy.keys() == from_torch.keys()
    for key, value in from_numpy.items():
        assert value == from_torch[key] or (math.isnan(value) and math.isnan(from_torch[key])), key
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
    assert list(df.columns) == ["cluster_id", "n_atoms", "n_samples", *METRIC_KEYS, "unscored"]
    assert df.shape == (3, 4 + len(METRIC_KEYS))
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
    chosen_cols = [f"{k}_chosen" for k in METRIC_KEYS]
    expected_columns = ["cluster_id", "n_atoms", "n_samples", *METRIC_KEYS, *best_cols, "best_k", *chosen_cols]
    assert list(df.columns) == [*expected_columns, "chosen_k", "unscored"]
    multi = df.set_index("cluster_id").loc["multi"]
    assert multi["n_samples"] == 3
    per_sample = [ref_metrics(s, x_true, numbers, mol_index) for s in samples]
    for key in INDEX_KEYS:
        assert multi[key] == pytest.approx(np.mean([m[key] for m in per_sample])), key
        assert multi[f"{key}_best"] == pytest.approx(per_sample[1][key]), key
    assert multi["best_k"] == 1
    chosen = ref_choice(samples, numbers, mol_index)
    assert multi["chosen_k"] == chosen
    full = [cluster_metrics(s, x_true, numbers, mol_index) for s in samples]
    for key in METRIC_KEYS:
        assert_same(multi[f"{key}_chosen"], full[chosen][key])
        assert_same(multi[f"{key}_best"], full[1][key])
    single = df.set_index("cluster_id").loc["single"]
    assert single["pm_atom_best"] == pytest.approx(single["pm_atom"])
    assert single["chosen_k"] == 0 and single["rmsd_chosen"] == pytest.approx(single["rmsd"])
    summary = summarize(df)
    assert set(summary.index) == set(METRIC_KEYS) | set(best_cols) | set(chosen_cols)
    assert summary["pm_atom_best"] == pytest.approx(df["pm_atom_best"].mean())
    assert isinstance(summary, pd.Series)


# --- label-free metrics: RMSD, integrity, OXtalign packing similarity ---------------------------------------


def _cluster(small_data, cluster_id):
    from crystalflow_core.data import codcluster17

    return codcluster17.read_cluster(small_data, cluster_id)


def _blocks(x: np.ndarray, mol_index: np.ndarray) -> list[np.ndarray]:
    return [x[mol_index == m] for m in range(int(mol_index.max()) + 1)]


def _kabsch_rmsd(mobile: np.ndarray, target: np.ndarray) -> float:
    """RMSD after the best proper rotation, with scipy's own solver (not the code under test)."""
    a, b = mobile - mobile.mean(axis=0), target - target.mean(axis=0)
    rotation, _ = Rotation.align_vectors(b, a)
    return math.sqrt(((rotation.apply(a) - b) ** 2).sum(axis=1).mean())


def test_kabsch_recovers_a_rigid_motion_and_never_returns_a_reflection():
    rng = np.random.default_rng(3)
    mobile = rng.normal(size=(40, 3)) * 4.0
    rotation = Rotation.from_euler("zyx", [40.0, -25.0, 110.0], degrees=True).as_matrix()
    found, shift = packing.kabsch(mobile, mobile @ rotation.T + np.array([3.0, -7.5, 0.25]))
    np.testing.assert_allclose(found, rotation, atol=1e-10)
    np.testing.assert_allclose(shift, [3.0, -7.5, 0.25], atol=1e-9)
    mirrored = mobile * np.array([-1.0, 1.0, 1.0])
    proper, shift = packing.kabsch(mobile, mirrored)
    assert np.linalg.det(proper) == pytest.approx(1.0)
    best = math.sqrt(((mobile @ proper.T + shift - mirrored) ** 2).sum(axis=1).mean())
    assert best == pytest.approx(_kabsch_rmsd(mobile, mirrored)) and best > 0.1


def test_rmsd_ignores_rigid_motion_molecule_order_and_symmetric_labels(small_data):
    cluster = _cluster(small_data, "1504385")  # acetonitrile: the methyl hydrogens can be relabelled
    first = cluster.mol_index == 0
    perms = [tuple(p) for p in graph_automorphisms_of(cluster.numbers[first], cluster.x_s[first])]
    assert len(perms) == 6
    rng = np.random.default_rng(0)
    blocks = _blocks(cluster.x_s, cluster.mol_index)
    relabelled = [block[list(perms[rng.integers(len(perms))])] for block in blocks]
    order = rng.permutation(len(blocks))
    moved = np.vstack([relabelled[k] for k in order])
    moved = moved @ Rotation.random(random_state=5).as_matrix().T + np.array([4.0, -2.0, 7.0])
    metrics = cluster_metrics(moved, cluster.x_s, cluster.numbers, cluster.mol_index)
    assert metrics["rmsd"] < 1e-6
    assert metrics["integrity"] < 1e-6
    assert metrics["pm_atom"] > 0.5  # the index-matched metric does see the relabelling


def graph_automorphisms_of(numbers, coords):
    """Element-preserving automorphisms of the bond graph (networkx; bonds by covalent radii + tolerance)."""
    import networkx as nx
    from networkx.algorithms.isomorphism import GraphMatcher

    graph = nx.Graph()
    graph.add_nodes_from((i, {"z": int(z)}) for i, z in enumerate(numbers))
    for i in range(len(numbers)):
        for j in range(i + 1, len(numbers)):
            tolerance = 0.2 if 1 in (numbers[i], numbers[j]) else 0.4
            if _dist(coords[i], coords[j]) < covalent_radii[numbers[i]] + covalent_radii[numbers[j]] + tolerance:
                graph.add_edge(i, j)
    matcher = GraphMatcher(graph, graph, node_match=lambda a, b: a["z"] == b["z"])
    return [[m[i] for i in range(len(numbers))] for m in matcher.isomorphisms_iter()]


def test_rmsd_of_a_scaled_rotated_cluster_is_closed_form(small_data):
    cluster = _cluster(small_data, "2105702")
    centre = cluster.x_s.mean(axis=0)
    scale = 1.04
    pred = (cluster.x_s - centre) * scale
    pred = pred @ Rotation.random(random_state=1).as_matrix().T
    # the best superposition of a uniformly scaled copy is the unrotated one, so the RMSD is (s - 1) R_g
    radius_of_gyration = math.sqrt(((cluster.x_s - centre) ** 2).sum(axis=1).mean())
    got = cluster_metrics(pred, cluster.x_s, cluster.numbers, cluster.mol_index)["rmsd"]
    assert got == pytest.approx((scale - 1.0) * radius_of_gyration, rel=1e-8)


def test_rmsd_equals_brute_force_minimum():
    # three water molecules 3 Å apart, noised and listed in another order
    water = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    rng = np.random.default_rng(4)
    rotations = Rotation.random(3, random_state=2).as_matrix()
    x_true = np.vstack(
        [water @ r.T + shift for r, shift in zip(rotations, [[0, 0, 0], [3.2, 0, 0], [0, 3.1, 1]], strict=True)]
    )
    numbers = np.tile([8, 1, 1], 3)
    mol_index = np.repeat(np.arange(3), 3)
    blocks = _blocks(x_true + rng.normal(scale=0.15, size=x_true.shape), mol_index)
    x_pred = np.vstack([blocks[2], blocks[0], blocks[1][[0, 2, 1]]]) + np.array([1.0, 2.0, 3.0])
    pred_blocks = _blocks(x_pred, mol_index)
    true_blocks = _blocks(x_true, mol_index)
    best = math.inf
    for order in itertools.permutations(range(3)):
        for swaps in itertools.product([False, True], repeat=3):
            target = np.vstack([b[[0, 2, 1]] if swap else b for b, swap in zip(true_blocks, swaps, strict=True)])
            best = min(best, _kabsch_rmsd(np.vstack([pred_blocks[k] for k in order]), target))
    got = cluster_metrics(x_pred, x_true, numbers, mol_index)["rmsd"]
    assert got == pytest.approx(best, rel=1e-9)
    assert 0.05 < got < 0.5


def test_integrity_is_zero_for_rigid_molecules_and_sees_distortion(small_data):
    cluster = _cluster(small_data, "4507991")
    rng = np.random.default_rng(2)
    blocks = _blocks(cluster.x_s, cluster.mol_index)
    moved = []
    for k, block in enumerate(blocks):
        rotation = Rotation.random(random_state=k).as_matrix() * (-1.0 if k % 2 else 1.0)  # odd ones inverted
        moved.append((block - block.mean(axis=0)) @ rotation.T + rng.normal(scale=3.0, size=3))
    rigid = cluster_metrics(np.vstack(moved), cluster.x_s, cluster.numbers, cluster.mol_index)
    assert rigid["integrity"] < 1e-9
    assert rigid["rmsd"] > 1.0
    # scaling one molecule by s changes its distances d by (s - 1) d: the largest change is (s - 1) max d
    scale, victim = 1.1, 5
    moved[victim] = (moved[victim] - moved[victim].mean(axis=0)) * scale
    block = blocks[victim]
    largest = max(_dist(a, b) for a in block for b in block)
    distorted = cluster_metrics(np.vstack(moved), cluster.x_s, cluster.numbers, cluster.mol_index)
    assert distorted["integrity"] == pytest.approx((scale - 1.0) * largest, rel=1e-9)


def test_oxtalign_matches_the_crystal_and_not_the_start(small_data):
    cluster = _cluster(small_data, "2105702")
    rng = np.random.default_rng(0)
    noisy = cluster.x_s + rng.normal(scale=0.05, size=cluster.x_s.shape)
    near = cluster_metrics(noisy, cluster.x_s, cluster.numbers, cluster.mol_index)
    assert near["matched"] >= 14 and near["pass_rate"] == 100.0
    assert near["rmsd15"] == pytest.approx(0.05 * math.sqrt(3), rel=0.3)  # heavy-atom RMSD of the noise
    start = cluster_metrics(cluster.x_w, cluster.x_s, cluster.numbers, cluster.mol_index)
    assert start["matched"] <= 3 and start["pass_rate"] == 0.0
    assert start["integrity"] < 1e-9  # x_w moves molecules rigidly


def _nearest_shell(cluster) -> np.ndarray:
    """The molecules of a crystal cluster ordered by centroid distance from the central one (0), itself left out."""
    centroids = ref_centroids(cluster.x_s, cluster.mol_index)
    return np.argsort(np.linalg.norm(centroids - centroids[0], axis=1), kind="stable")[1:]


def _turn_nearest(cluster, count: int) -> np.ndarray:
    """``x_s`` with the ``count`` shell molecules nearest the central one each turned by 90° about its centroid."""
    x = cluster.x_s.copy()
    turn = Rotation.from_euler("z", 90, degrees=True)
    for m in _nearest_shell(cluster)[:count]:
        atoms = cluster.mol_index == m
        centre = x[atoms].mean(axis=0)
        x[atoms] = turn.apply(x[atoms] - centre) + centre
    return x


@pytest.mark.parametrize(("turned", "matched", "pass_rate"), [(0, 15, 100), (1, 14, 100), (7, 8, 100), (8, 7, 0)])
def test_matched_counts_the_shell_molecules_left_in_place_and_passes_from_eight(small_data, turned, matched, pass_rate):
    """A molecule turned by 90° in place is 1.5 Å and more off; the others sit exactly where the crystal has them."""
    cluster = _cluster(small_data, "4507991")
    reference = packing.prepare_reference(cluster.x_s, cluster.numbers, cluster.mol_index)
    result = packing.packing_similarity(_turn_nearest(cluster, turned), reference)
    assert (result["matched"], result["pass_rate"]) == (matched, pass_rate)
    assert result["rmsd15"] < 1e-9  # the matched molecules are exact
    assert packing.PASS_MATCHED == 8 and packing.SHELL_SIZE == 15


@pytest.mark.parametrize(("cluster_id", "heavy_atoms", "with_hydrogens"), [("2105702", 4, False), ("1504385", 3, True)])
def test_hydrogens_count_only_for_molecules_of_fewer_than_four_heavy_atoms(
    small_data, cluster_id, heavy_atoms, with_hydrogens
):
    cluster = _cluster(small_data, cluster_id)
    reference = packing.prepare_reference(cluster.x_s, cluster.numbers, cluster.mol_index)
    assert int((cluster.numbers[cluster.mol_index == 0] != 1).sum()) == heavy_atoms
    assert reference.include_hydrogens is with_hydrogens
    moved = cluster.x_s.copy()
    for m in _nearest_shell(cluster)[:3]:
        moved[(cluster.mol_index == m) & (cluster.numbers == 1)] += [3.0, 0.0, 0.0]  # hydrogens only
    assert packing.packing_similarity(moved, reference)["matched"] == (12 if with_hydrogens else 15)


def test_unscored_and_coverage_say_what_each_mean_rests_on(small_data):
    from crystalflow_core.inference import collapse_positions

    cluster = _cluster(small_data, "4507991")
    boron = np.where(cluster.numbers == 6, 5, cluster.numbers)  # a molecule MMFF94 cannot type
    collapsed = collapse_positions(cluster.x_w, cluster.mol_index)  # matches nothing: rmsd15 has no value
    df = metrics_table(
        [
            ("typed", collapsed, cluster.x_s, cluster.numbers, cluster.mol_index),
            ("untyped", collapsed, cluster.x_s, boron, cluster.mol_index),
        ]
    )
    assert list(df["unscored"]) == ["", "energy: MMFF94 cannot type the molecule"]
    table = coverage(df)
    assert list(table.index) == ["energy", "rmsd15"]
    assert table.loc["energy"].tolist() == [1, 2, "MMFF94 cannot type the molecule (1)"]
    assert table.loc["rmsd15"].tolist() == [0, 2, "no shell molecule matched (2)"]
    assert summarize(df)["energy"] == df.loc[0, "energy"]  # the mean of the one cluster that has an energy
    assert coverage(df.iloc[:1].assign(energy=math.nan)).loc["energy"].tolist() == [
        0,
        1,
        "no value for the prediction (1)",
    ]


def test_a_cluster_oxtalign_cannot_match_to_itself_is_named(small_data):
    from crystalflow_core.metrics import unscored

    cluster = _cluster(small_data, "4507991")
    reference = packing.prepare_reference(cluster.x_s, cluster.numbers, cluster.mol_index)
    reference._oxtal_checked = True  # as if OXtalign had not matched the crystal cluster fully to itself
    scores = cluster_metrics(cluster.x_w, cluster.x_s, cluster.numbers, cluster.mol_index, reference)
    assert math.isnan(scores["matched"])
    cause = "OXtalign cannot match the crystal cluster to itself"
    assert unscored([scores], reference, energy=None) == (
        f"energy: MMFF94 cannot type the molecule; matched: {cause}; rmsd15: {cause}; pass_rate: {cause}"
    )


def test_oxtalign_failure_gives_nan_not_a_crash(small_data, monkeypatch):
    import oxtalign

    cluster = _cluster(small_data, "4507991")

    def broken(*args, **kwargs):
        raise RuntimeError("cannot match")

    monkeypatch.setattr(oxtalign, "compare", broken)
    df = metrics_table([("a", cluster.x_w, cluster.x_s, cluster.numbers, cluster.mol_index)])
    assert df[["matched", "rmsd15", "pass_rate"]].isna().all().all()
    assert df["pm_atom"].notna().all() and df["rmsd"].notna().all()


def test_chosen_k_picks_the_clash_free_sample(small_data):
    cluster = _cluster(small_data, "4507991")
    centroids = ref_centroids(cluster.x_s, cluster.mol_index)[cluster.mol_index]
    squeezed = cluster.x_s - 0.4 * centroids  # rigid molecules pushed into each other
    expanded = cluster.x_s + 0.05 * centroids  # rigid molecules moved apart: clash-free, further apart
    samples = np.stack([squeezed, cluster.x_s, squeezed + 0.01, expanded])
    clashes = [intermolecular_clash_rate(s, cluster.numbers, cluster.mol_index) for s in samples]
    assert clashes[0] > 0 and clashes[1] == 0 and clashes[3] == 0
    want = ref_choice(samples, cluster.numbers, cluster.mol_index)
    assert choose_without_truth(samples, cluster.numbers, cluster.mol_index) == want == 3
    # among clash-free samples a known energy decides before the closest approach
    assert choose_without_truth(samples, cluster.numbers, cluster.mol_index, [0.0, -1.0, 0.0, 1.0]) == 1
    assert choose_without_truth(samples, cluster.numbers, cluster.mol_index, [-9.0, 5.0, -9.0, 1.0]) == 3
    assert choose_without_truth(samples, cluster.numbers, cluster.mol_index, [math.nan] * 4) == 3
    df = metrics_table([("c", samples, cluster.x_s, cluster.numbers, cluster.mol_index)])
    terms = cluster_terms(cluster.numbers, cluster.mol_index, cluster.x_s)  # the crystal binds more tightly
    crystal, apart = (
        float(interaction_energy(torch.as_tensor(x), terms, torch.as_tensor(cluster.mol_index)))
        for x in (cluster.x_s, expanded)
    )
    assert crystal < apart
    assert df.loc[0, "chosen_k"] == 1 and df.loc[0, "best_k"] == 1
    assert df.loc[0, "clash_chosen"] == 0.0
    assert df.loc[0, "energy_chosen"] == pytest.approx(crystal / cluster.n_molecules)
    assert choose_without_truth(samples[:3], cluster.numbers, cluster.mol_index) == 1
    diverged = squeezed.copy()
    diverged[0] = np.nan  # no distances, so no clashes: it must still not be chosen
    assert choose_without_truth(np.stack([diverged, squeezed]), cluster.numbers, cluster.mol_index) == 1
    df = metrics_table([("nan", np.stack([diverged, cluster.x_s]), cluster.x_s, cluster.numbers, cluster.mol_index)])
    assert df.loc[0, "best_k"] == 1 and df.loc[0, "chosen_k"] == 1
    assert math.isnan(df.loc[0, "rmsd"]) and math.isnan(df.loc[0, "matched"])  # a NaN sample spoils the mean


def test_collapse_baseline(small_data):
    from crystalflow_core.inference import collapse_positions, score_collapse, score_identity

    ids = ["2105702", "4507991"]
    collapse, identity = score_collapse(small_data, ids), score_identity(small_data, ids)
    np.testing.assert_allclose(collapse["pm_center"], identity["pm_center"], rtol=1e-12)
    assert (collapse["matched"] == 0).all() and (collapse["pass_rate"] == 0).all()
    for row, cid in zip(collapse.itertuples(), ids, strict=True):
        cluster = _cluster(small_data, cid)
        block = cluster.x_s[cluster.mol_index == 0]
        # every predicted distance is 0, so the largest change is the largest distance in the molecule
        assert row.integrity == pytest.approx(max(_dist(a, b) for a in block for b in block), rel=1e-9)
        positions = collapse_positions(cluster.x_w, cluster.mol_index)
        want = ref_centroids(cluster.x_w, cluster.mol_index)[cluster.mol_index]
        np.testing.assert_allclose(positions, want, rtol=0, atol=1e-12)
