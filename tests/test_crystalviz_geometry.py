"""Colours, overlay geometry (the core's Kabsch fit and centroids) and the ClusterView container of crystalviz."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crystalviz.colors import hex_to_rgb, molecule_colors, molecule_opacities
from crystalviz.demo import demo_cluster_view
from crystalviz.overlay import build_overlay, metrics_caption, resolve_metrics
from crystalviz.views import ClusterView


@pytest.fixture
def cluster() -> ClusterView:
    """A 17-molecule cluster with samples and trajectories (swap for a curated cluster when available)."""
    return demo_cluster_view(n_samples=2, n_frames=6, seed=3)


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
    by_hand = [cluster.x_s[cluster.mol_index == m].mean(axis=0) for m in range(cluster.n_molecules)]
    np.testing.assert_allclose(overlay.center_true, by_hand)
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
