"""``crystalflow solve``: the superposition of a crystal's cut on x_w, the space groups handedness allows, and the
command end to end (exact molecules, x_w's layout, resumed runs, the run record)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SMALL_MOLECULES
from scipy.spatial.transform import Rotation

from crystalflow_core import solve
from crystalflow_core.cli import main
from crystalflow_core.csp.cluster_fit import (
    BEYOND_CUT_COST,
    HANDEDNESS_COST,
    OUTLIER,
    POOL_SIZE,
    fit_cut,
    forbidden_pairs,
    place_cut,
)
from crystalflow_core.csp.cluster_lattice import SPACE_GROUPS, WeakClusterCues, read_weak_cluster
from crystalflow_core.csp.search import SearchResult
from crystalflow_core.data import codcluster17
from crystalflow_core.data.cluster import Cluster, crystal_cluster
from crystalflow_core.data.noise import NoiseConfig, rigid_noise
from crystalflow_core.data.sources import bundled_cod_directory
from crystalflow_core.metrics import pm_atom, pm_center
from crystalflow_core.molecule_input import read_crystal
from crystalflow_core.settings import DEFAULT_SPACE_GROUPS, SOLVE_CANDIDATE_ATOMS, SOLVE_CANDIDATES


def _cues(centroids: np.ndarray, handedness: np.ndarray, chiral: bool = True) -> WeakClusterCues:
    n = len(centroids)
    return WeakClusterCues(centroids, np.zeros(n), np.ones(n), handedness, False, not chiral, 100.0)


def _shell(seed: int) -> np.ndarray:
    """A central point and 16 neighbours 4-8 Å away."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(16, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return np.concatenate([np.zeros((1, 3)), directions * rng.uniform(4.0, 8.0, size=(16, 1))])


def test_fit_recovers_a_known_rotation_translation_and_pairing_from_a_larger_pool():
    pool = np.concatenate([_shell(0), _shell(5)[1:11] * 1.6])  # 27 molecules, ten of them further out
    taken = np.concatenate([[0], 1 + np.random.default_rng(1).permutation(20)[:15], [22]])  # one from further out
    rotation = Rotation.random(random_state=3).as_matrix()
    shift = np.array([0.7, -1.2, 0.4])
    noise = np.random.default_rng(2).normal(scale=0.2, size=(17, 3))
    weak = pool[taken] @ rotation.T + shift + noise
    fit = fit_cut(pool, weak, forbidden_pairs(_cues(weak, np.ones(17, dtype=int)), _cues(pool, np.ones(27, dtype=int))))
    np.testing.assert_array_equal(fit.order, taken)
    np.testing.assert_allclose(fit.rotation, rotation, atol=0.05)
    # the SSE is that of the best superposition of the paired points, recomputed independently
    moved = pool[taken] - pool[taken].mean(axis=0)
    target = weak - weak.mean(axis=0)
    u, _, vt = np.linalg.svd(moved.T @ target)
    best = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
    assert fit.sse == pytest.approx(((moved @ best - target) ** 2).sum(), rel=1e-6) and fit.penalty == 0


def test_a_molecule_placed_far_off_counts_only_up_to_the_cap():
    pool = _shell(6)
    weak = pool.copy()
    weak[7] += np.array([30.0, 0.0, 0.0])  # no pool molecule anywhere near
    fit = fit_cut(pool, weak, forbidden_pairs(_cues(weak, np.ones(17, dtype=int)), _cues(pool, np.ones(17, dtype=int))))
    np.testing.assert_array_equal(fit.order, np.arange(17))
    np.testing.assert_allclose(fit.rotation, np.eye(3), atol=1e-9)  # fitted on the 16 others alone
    assert fit.sse == pytest.approx(OUTLIER, rel=1e-9)


def test_uncapped_a_misplaced_molecule_counts_in_full_and_in_the_fit():
    pool = _shell(6)
    weak = pool.copy()
    weak[7] += np.array([4.0, 0.0, 0.0])  # beyond the cap (3 sigma)
    forbidden = forbidden_pairs(_cues(weak, np.ones(17, dtype=int)), _cues(pool, np.ones(17, dtype=int)))
    fit = fit_cut(pool, weak, forbidden, outlier=None)
    np.testing.assert_array_equal(fit.order, np.arange(17))
    # the least-squares superposition of all 17 pairs, recomputed independently
    moved, target = pool - pool.mean(axis=0), weak - weak.mean(axis=0)
    u, _, vt = np.linalg.svd(moved.T @ target)
    best = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
    assert fit.sse == pytest.approx(((moved @ best - target) ** 2).sum(), rel=1e-6)
    assert fit_cut(pool, weak, forbidden).sse == pytest.approx(OUTLIER) and fit.sse > OUTLIER  # capped: 9 Å² at most


@pytest.mark.parametrize("cod_id", SMALL_MOLECULES)
def test_the_true_crystal_is_placed_with_every_molecule_in_its_own_place(cod_id):
    """Given a crystal's pool in another frame, ``place_cut`` rebuilds the crystal cluster from ``x_w``'s
    centroids and handedness alone (small noise here, so that only exact symmetry is ambiguous): every centroid in
    its place and, where the molecule sits in a general position (Z' = 1), every atom; on a special position the
    site symmetry maps the cut onto itself with the atoms of each molecule permuted, which ``x_w``'s random
    orientations cannot tell apart."""
    mc = read_crystal(bundled_cod_directory() / f"{cod_id}.cif.gz")
    pool = crystal_cluster(mc, POOL_SIZE)
    molecules = pool[:17]
    n_mol, n_atoms = molecules.shape[:2]
    numbers, mol_index = np.tile(mc.numbers, n_mol), np.repeat(np.arange(n_mol), n_atoms)
    x_s = molecules.reshape(-1, 3)
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        x_w = rigid_noise(
            torch.from_numpy(x_s), torch.from_numpy(mol_index), NoiseConfig(translation_sigma=0.05), generator
        )
        weak = read_weak_cluster(numbers, mol_index, x_w.numpy())
        turned = pool @ Rotation.random(random_state=seed).as_matrix().T + np.array([3.0, -2.0, 1.0])
        cues = read_weak_cluster(np.tile(mc.numbers, POOL_SIZE), np.repeat(np.arange(POOL_SIZE), n_atoms), turned)
        placed = place_cut(turned, cues, weak, weak.chirality_informative, seed=seed).reshape(-1, 3)
        assert pm_center(placed, x_s, mol_index) < 1e-6
        if mc.z_prime == 1:
            assert pm_atom(placed, x_s) < 1e-6
        # superposed on x_w: the centroids lie within the noise of x_w's
        assert np.abs(placed.reshape(n_mol, n_atoms, 3).mean(axis=1) - weak.centroids).max() < 1.5


def test_placement_takes_a_molecule_beyond_the_cut_only_where_it_pays():
    """A minimised crystal can hold, beyond its own 17-molecule cut, a molecule that ``x_w`` holds in its place:
    the placement takes it when the cut's own molecule would lie further than the cost allows, and otherwise
    keeps the cut."""
    pool = np.concatenate([_shell(0), _shell(5)[1:11] * 1.6])  # 27 one-atom molecules, the last ten further out
    rotation, shift = Rotation.random(random_state=3).as_matrix(), np.array([0.7, -1.2, 0.4])
    cues = _cues(pool, np.ones(27, dtype=int))
    # x_w holds molecule 20 where the cut's molecule 16 would be: its place lies far beyond the cost from 16's
    taken = np.concatenate([np.arange(16), [20]])
    assert ((pool[16] - pool[20]) ** 2).sum() > 4 * BEYOND_CUT_COST
    weak = pool[taken] @ rotation.T + shift
    placed = place_cut(pool[:, None, :], cues, _cues(weak, np.ones(17, dtype=int)), True)
    np.testing.assert_allclose(placed[:, 0], weak, atol=1e-6)
    # where x_w's molecule 5 lies exactly on a molecule beyond the cut and 0.5 Å from the cut's molecule 5, the
    # cut's molecule keeps the place
    near = pool.copy()
    near[20] = pool[5] + np.array([0.5, 0.0, 0.0])
    weak = near[:17] @ rotation.T + shift
    weak[5] = near[20] @ rotation.T + shift
    placed = place_cut(near[:, None, :], _cues(near, np.ones(27, dtype=int)), _cues(weak, np.ones(17, dtype=int)), True)
    assert np.linalg.norm(placed[5, 0] - (near[5] @ rotation.T + shift)) < 0.1
    np.testing.assert_allclose(np.delete(placed[:, 0], 5, axis=0), np.delete(weak, 5, axis=0), atol=0.1)


def test_the_central_molecules_pair_and_opposite_handedness_costs():
    cut = _shell(4)
    weak = cut.copy()
    flipped = np.ones(17, dtype=int)
    flipped[5] = -1
    forbidden = forbidden_pairs(_cues(weak, np.ones(17, dtype=int)), _cues(cut, flipped))
    assert (forbidden[0, 1:] > 1e5).all() and (forbidden[1:, 0] > 1e5).all()
    assert (forbidden[1:, 5] == HANDEDNESS_COST).all()
    assert np.delete(forbidden[1:, 1:], 4, axis=1).sum() == 0
    fit = fit_cut(cut, weak, forbidden)
    assert fit.order[0] == 0
    assert fit.sse == pytest.approx(0, abs=1e-9) and fit.penalty == HANDEDNESS_COST  # the one unavoidable mismatch
    # handedness of an achiral molecule says nothing
    achiral = forbidden_pairs(_cues(weak, np.ones(17, dtype=int), chiral=False), _cues(cut, flipped))
    assert achiral[1:, 1:].sum() == 0


def test_space_groups_follow_the_handedness_of_the_neighbours():
    proper = np.ones(17, dtype=int)
    mixed = proper.copy()
    mixed[3] = -1
    chiral_groups = solve.space_groups_for(proper, informative=True)
    assert chiral_groups and all(not SPACE_GROUPS[g].improper for g in chiral_groups)
    assert 19 in chiral_groups and 14 not in chiral_groups
    improper_groups = solve.space_groups_for(mixed, informative=True)
    assert 14 in improper_groups and all(SPACE_GROUPS[g].improper for g in improper_groups)
    assert set(chiral_groups) | set(improper_groups) == set(DEFAULT_SPACE_GROUPS)
    assert solve.space_groups_for(mixed, informative=False) == DEFAULT_SPACE_GROUPS


def test_a_molecule_the_search_cannot_take_keeps_x_w_with_its_reason(small_data):
    cluster_id = codcluster17.list_cluster_ids(small_data)[0]
    cluster = codcluster17.read_cluster(small_data, cluster_id)
    numbers = cluster.numbers.copy()
    numbers[cluster.mol_index == 0] = np.where(numbers[cluster.mol_index == 0] == 1, 1, 30)  # heavy atoms → Zn
    broken = Cluster(cluster_id, numbers, cluster.mol_index, cluster.x_w, cluster.x_s)
    solution = solve.solve_cluster(broken, solve.SolveSettings(candidates=2, workers=1))
    assert solution.crystal is None and "Zn" in solution.reason
    np.testing.assert_array_equal(solution.x, cluster.x_w)


def test_the_default_search_takes_candidates_by_the_molecules_size(small_data, monkeypatch):
    sizes = [solve.candidates_for(n) for n in (4, 10, 20, 40, 80, 200)]
    low, high = SOLVE_CANDIDATES
    assert sizes[0] == high and sizes[-1] == low and sizes == sorted(sizes, reverse=True)
    assert solve.candidates_for(40) == round(SOLVE_CANDIDATE_ATOMS / 40)
    cluster = codcluster17.read_cluster(small_data, codcluster17.list_cluster_ids(small_data)[0])
    asked = []

    def search(molecule, settings, progress=False):
        asked.append((molecule.GetNumAtoms(), settings.candidates))
        return SearchResult([], 0, 0, 0, {})

    monkeypatch.setattr(solve, "search_crystals", search)
    n_atoms = int((cluster.mol_index == 0).sum())
    for candidates, searched in ((None, solve.candidates_for(n_atoms)), (7, 7)):
        solution = solve.solve_cluster(cluster, solve.SolveSettings(candidates=candidates, workers=1))
        assert solution.crystal is None and "no bound crystal" in solution.reason
        assert solution.candidates == searched  # recorded even when nothing bound was found
    assert asked == [(n_atoms, solve.candidates_for(n_atoms)), (n_atoms, 7)]


def _inner_distances(x: np.ndarray, mol_index: np.ndarray) -> list[np.ndarray]:
    return [np.linalg.norm(x[mol_index == m][:, None] - x[mol_index == m][None], axis=-1) for m in np.unique(mol_index)]


def test_solve_writes_exact_molecules_in_x_w_layout_resumes_and_is_recorded(small_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "solved"
    command = ["solve", "--data", str(small_data), "--split", "test", "--out", str(out)]
    assert main([*command, "--candidates", "6", "--workers", "1"]) == 0
    predictions = codcluster17.list_predictions(out)
    assert predictions and all(len(paths) == 1 for paths in predictions.values())
    for cluster_id, paths in predictions.items():
        cluster = codcluster17.read_cluster(small_data, cluster_id)
        numbers, mol_index, x = codcluster17.read_positions_csv(paths[0])
        np.testing.assert_array_equal(numbers, cluster.numbers)
        np.testing.assert_array_equal(mol_index, cluster.mol_index)
        for predicted, weak in zip(
            _inner_distances(x, mol_index), _inner_distances(cluster.x_w, mol_index), strict=True
        ):
            np.testing.assert_allclose(predicted, weak, atol=1e-3)
        summary = json.loads((out / solve.CANDIDATES_DIR / f"{cluster_id}.json").read_text())
        assert summary["reason"] == "" and (out / summary["cif"]).is_file()
        assert len(list((out / solve.CANDIDATES_DIR / cluster_id).glob("rank*.cif"))) == summary["distinct"]
        # the prediction is the cut of the crystal written as its CIF: the same centroid distances about the centre
        written = crystal_cluster(read_crystal(out / summary["cif"]))
        predicted = x.reshape(cluster.n_molecules, -1, 3).mean(axis=1)
        np.testing.assert_allclose(
            np.sort(np.linalg.norm(predicted - predicted[0], axis=1)),
            np.sort(np.linalg.norm(written.mean(axis=1) - written[0].mean(axis=0), axis=1)),
            atol=1e-3,
        )
        # every crystal found is placed again from its CIF for the ranking benchmarks; the chosen one gives x
        cuts = solve.found_cuts(out, cluster)
        chosen = pd.read_csv(out / solve.CANDIDATES_DIR / f"{cluster_id}.csv")["chosen"].to_numpy()
        assert cuts.shape == (summary["distinct"], cluster.n_molecules, x.shape[0] // cluster.n_molecules, 3)
        np.testing.assert_allclose(cuts[chosen.argmax()].reshape(-1, 3), x, atol=1e-3)

    def refuse(*_args, **_kwargs):
        raise AssertionError("a finished cluster was solved again")

    monkeypatch.setattr(solve, "solve_cluster", refuse)
    assert main([*command, "--candidates", "6", "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--truth", str(small_data), "--pred", str(out)]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["method"] == "solve" and record["config"]["candidates"] == 6
    assert record["metrics"]["integrity"] < 1e-3
