"""Kabsch alignment, bonds, colours, overlay geometry and the ClusterView container of crystalviz."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crystalviz.align import kabsch, rmsd, superimpose
from crystalviz.bonds import detect_bonds
from crystalviz.colors import hex_to_rgb, molecule_colors, molecule_opacities
from crystalviz.demo import ETHANOL_NUMBERS, ETHANOL_POSITIONS, demo_cluster_view
from crystalviz.overlay import build_overlay, metrics_caption, molecule_centroids, resolve_metrics
from crystalviz.views import ClusterView


@pytest.fixture
def cluster() -> ClusterView:
    """A 17-molecule cluster with samples and trajectories (swap for a curated cluster when available)."""
    return demo_cluster_view(n_samples=2, n_frames=6, seed=3)


def test_kabsch_recovers_known_rotation_and_translation(cluster):
    rotation = Rotation.from_euler("zyx", [40.0, -25.0, 110.0], degrees=True).as_matrix()
    translation = np.array([3.0, -7.5, 0.25])
    moved = cluster.x_s @ rotation.T + translation
    found_rotation, found_translation = kabsch(cluster.x_s, moved)
    np.testing.assert_allclose(found_rotation, rotation, atol=1e-10)
    np.testing.assert_allclose(found_translation, translation, atol=1e-9)
    aligned = superimpose(moved, cluster.x_s)
    assert rmsd(aligned, cluster.x_s) < 1e-9
    assert np.abs(aligned - cluster.x_s).max() < 1e-9


def test_kabsch_never_returns_a_reflection(cluster):
    mirrored = cluster.x_s * np.array([-1.0, 1.0, 1.0])
    rotation, translation = kabsch(cluster.x_s, mirrored)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    best = rmsd(cluster.x_s @ rotation.T + translation, mirrored)
    assert best > 0.1
    rng = np.random.default_rng(0)
    centered_target = mirrored - mirrored.mean(axis=0)
    centered_mobile = cluster.x_s - cluster.x_s.mean(axis=0)
    for candidate in Rotation.random(300, random_state=rng).as_matrix():
        assert best <= rmsd(centered_mobile @ candidate.T, centered_target) + 1e-9


def test_kabsch_weights_ignore_zero_weight_atoms(cluster):
    rotation = Rotation.from_rotvec([0.3, -0.2, 0.9]).as_matrix()
    target = cluster.x_s @ rotation.T + 1.0
    target[:9] += 5.0
    weights = np.ones(len(target))
    weights[:9] = 0.0
    found, _ = kabsch(cluster.x_s, target, weights)
    np.testing.assert_allclose(found, rotation, atol=1e-10)


def test_bonds_of_ethanol_by_hand():
    bonds = detect_bonds(ETHANOL_NUMBERS, np.zeros(9, dtype=int), ETHANOL_POSITIONS)
    expected = {(0, 1), (1, 2), (0, 3), (0, 4), (0, 5), (1, 6), (1, 7), (2, 8)}
    assert {tuple(b) for b in bonds.tolist()} == expected


def test_bonds_never_cross_molecules_even_when_overlapping():
    numbers = np.concatenate([ETHANOL_NUMBERS, ETHANOL_NUMBERS])
    mol_index = np.repeat([0, 1], 9)
    positions = np.concatenate([ETHANOL_POSITIONS, ETHANOL_POSITIONS + 0.3])
    bonds = detect_bonds(numbers, mol_index, positions)
    assert len(bonds) == 16
    assert np.all(mol_index[bonds[:, 0]] == mol_index[bonds[:, 1]])
    assert np.all(bonds[:, 0] < bonds[:, 1])


def test_bond_tolerance_controls_cutoff():
    numbers = np.array([6, 6])
    positions = np.array([[0.0, 0.0, 0.0], [1.9, 0.0, 0.0]])
    mol_index = np.zeros(2, dtype=int)
    assert len(detect_bonds(numbers, mol_index, positions, tolerance=0.45)) == 1
    assert len(detect_bonds(numbers, mol_index, positions, tolerance=0.2)) == 0


def test_molecule_colors_are_distinct_hex():
    colors = molecule_colors(17)
    assert len(set(colors)) == 17
    for color in colors:
        assert len(color) == 7 and color.startswith("#")
        assert all(0.0 <= channel <= 1.0 for channel in hex_to_rgb(color))
    assert hex_to_rgb("#ff8000") == pytest.approx((1.0, 128 / 255, 0.0))


def test_molecule_opacities_highlight_only_central():
    assert molecule_opacities(17, highlight_central=False) == [1.0] * 17
    highlighted = molecule_opacities(17, highlight_central=True)
    assert highlighted[0] == 1.0 and all(opacity < 1.0 for opacity in highlighted[1:])


def test_overlay_of_rigidly_moved_prediction_has_zero_error(cluster):
    rotation = Rotation.from_euler("xyz", [10.0, 200.0, -35.0], degrees=True).as_matrix()
    x_pred = cluster.x_s @ rotation.T + np.array([1.0, 2.0, 3.0])
    overlay = build_overlay(cluster.mol_index, x_pred, cluster.x_s)
    assert overlay.atom_error.max() < 1e-9
    assert overlay.center_error.max() < 1e-9
    np.testing.assert_allclose(overlay.center_true, molecule_centroids(cluster.mol_index, cluster.x_s))
    from crystalflow_core.metrics import cluster_metrics

    metrics = cluster_metrics(overlay.x_aligned, cluster.x_s, cluster.numbers, cluster.mol_index)
    assert metrics["pm_atom"] < 1e-9 and metrics["pm_center"] < 1e-9


def test_overlay_measures_displacement_of_one_molecule():
    mol_index = np.repeat(np.arange(3), 2)
    x_true = np.array([[0, 0, 0], [1, 0, 0], [10, 0, 0], [11, 0, 0], [0, 10, 0], [0, 11, 0]], dtype=float)
    x_pred = x_true.copy()
    x_pred[mol_index == 2] += np.array([0.0, 0.0, 3.0])
    overlay = build_overlay(mol_index, x_pred, x_true)
    assert np.argmax(overlay.center_error) == 2
    assert overlay.atom_error.shape == (6,)
    np.testing.assert_allclose(overlay.center_true[1], [10.5, 0.0, 0.0])


def test_molecule_centroids_by_hand():
    positions = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    np.testing.assert_allclose(molecule_centroids(np.array([0, 0, 1]), positions), [[1, 0, 0], [5, 5, 5]])


def test_metrics_caption_and_resolution(cluster):
    caption = metrics_caption({"pm_atom": 0.41234, "pm_center": 0.2, "collision": 0.65, "separation": 0.0})
    assert caption == "PM(atom) 0.412 Å · PM(center) 0.200 Å · collision 0.65 % · separation 0.00 %"
    given = {"pm_atom": 1.0}
    assert resolve_metrics(cluster.numbers, cluster.mol_index, cluster.samples[0], cluster.x_s, given) is given
    computed = resolve_metrics(cluster.numbers, cluster.mol_index, cluster.x_s, cluster.x_s, None)
    assert computed["pm_atom"] == pytest.approx(0.0, abs=1e-12)
    assert {"pm_atom", "pm_center", "collision", "separation"} <= set(computed)


def test_cluster_view_shapes_and_trajectory_fallback(cluster):
    assert cluster.n_samples == 2 and cluster.n_molecules == 17
    times, frames = cluster.trajectory(1)
    assert frames.shape == (6, len(cluster.numbers), 3)
    np.testing.assert_allclose(frames[0], cluster.x_w)
    np.testing.assert_allclose(frames[-1], cluster.samples[1])
    without = ClusterView(cluster.numbers, cluster.mol_index, cluster.x_w, cluster.x_s, cluster.samples[0])
    assert without.n_samples == 1
    times, frames = without.trajectory(0)
    np.testing.assert_allclose(times, [0.0, 1.0])
    np.testing.assert_allclose(frames[1], cluster.samples[0])
    assert without.sample_metrics(0) is None


def test_cluster_view_rejects_bad_shapes(cluster):
    with pytest.raises(ValueError, match="x_s"):
        ClusterView(cluster.numbers, cluster.mol_index, cluster.x_w, cluster.x_s[:-1], cluster.samples)
    with pytest.raises(ValueError, match="trajectories"):
        ClusterView(
            cluster.numbers, cluster.mol_index, cluster.x_w, cluster.x_s, cluster.samples, cluster.trajectories[:1]
        )
    with pytest.raises(ValueError, match="metric"):
        ClusterView(cluster.numbers, cluster.mol_index, cluster.x_w, cluster.x_s, cluster.samples, metrics=[{}])
