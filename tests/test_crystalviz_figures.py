"""Static plotly figures and self-contained HTML of crystalviz."""

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy.spatial.transform import Rotation

from crystalflow_core.data.symmetry import cluster_bonds
from crystalviz.colors import molecule_colors
from crystalviz.demo import demo_cluster_view
from crystalviz.figures import (
    HEIGHT_3D,
    cluster_figure,
    loss_curves,
    metric_boxes,
    overlay_figure,
    trajectory_figure,
)
from crystalviz.html import embed_widget_html, write_html

METRICS = {"pm_atom": 0.5, "pm_center": 0.25, "collision": 1.5, "clash": 0.0, "separation": 0.0}


@pytest.fixture
def cluster():
    """A 17-molecule cluster (swap for a curated cluster when available)."""
    return demo_cluster_view(n_samples=1, n_frames=7, seed=2)


@pytest.fixture
def trajectory(cluster):
    """(times [T], frames [T, N, 3]) of one sample."""
    return cluster.trajectory(0)


def _points(trace) -> np.ndarray:
    return np.column_stack([trace.x, trace.y, trace.z]).astype(float)


def test_cluster_figure_has_atoms_and_bonds_per_molecule(cluster):
    figure = cluster_figure(cluster.numbers, cluster.mol_index, cluster.x_s)
    assert len(figure.data) == 2 * 17
    colors = molecule_colors(17)
    bonds = cluster_bonds(cluster.numbers, cluster.mol_index, cluster.x_s)
    for molecule in range(17):
        atoms, bond_lines = figure.data[2 * molecule], figure.data[2 * molecule + 1]
        np.testing.assert_allclose(_points(atoms), cluster.x_s[cluster.mol_index == molecule])
        assert atoms.marker.color == colors[molecule] == bond_lines.line.color
        n_bonds = np.sum(cluster.mol_index[bonds[:, 0]] == molecule)
        assert len(bond_lines.x) == 3 * n_bonds
    assert len({trace.marker.color for trace in figure.data[::2]}) == 17


def test_trajectory_figure_frames_follow_the_trajectory(cluster, trajectory):
    times, frames = trajectory
    figure = trajectory_figure(cluster.numbers, cluster.mol_index, frames, times, highlight_central=True)
    assert len(figure.frames) == len(frames)
    assert len(figure.data) == 2 * 17
    assert [step.label for step in figure.layout.sliders[0].steps] == [f"{t:.2f}" for t in times]
    assert [button.label for button in figure.layout.updatemenus[0].buttons] == ["▶ play", "❚❚ pause"]
    for index, frame in enumerate(figure.frames):
        assert list(frame.traces) == list(range(34))
        central = _points(frame.data[0])
        np.testing.assert_allclose(central, frames[index][cluster.mol_index == 0])
    assert figure.data[0].opacity == 1.0 and all(trace.opacity < 1.0 for trace in figure.data[2:])
    plain = trajectory_figure(cluster.numbers, cluster.mol_index, frames)
    assert all(trace.opacity == 1.0 for trace in plain.data)


def test_trajectory_figure_keeps_bonds_of_first_frame(cluster, trajectory):
    _, frames = trajectory
    stretched = frames.copy()
    stretched[-1] = frames[-1] * 1.6
    figure = trajectory_figure(cluster.numbers, cluster.mol_index, stretched)
    first, last = figure.frames[0].data[1], figure.frames[-1].data[1]
    assert len(first.x) == len(last.x) > 0
    with pytest.raises(ValueError, match="times"):
        trajectory_figure(cluster.numbers, cluster.mol_index, frames, times=[0.0, 1.0])


def test_overlay_figure_aligns_and_captions(cluster):
    rotation = Rotation.from_euler("xyz", [30.0, 0.0, 75.0], degrees=True).as_matrix()
    x_pred = cluster.samples[0] @ rotation.T + 4.0
    figure = overlay_figure(cluster.numbers, cluster.mol_index, x_pred, cluster.x_s, metrics=METRICS)
    names = [trace.name for trace in figure.data]
    assert names == [
        "ground truth",
        "ground truth bonds",
        "prediction",
        "prediction bonds",
        "centre displacement",
        "centre displacement",
    ]
    prediction = _points(figure.data[2])
    errors = np.linalg.norm(prediction - cluster.x_s, axis=1)
    unrotated_rmsd = np.sqrt(np.mean(np.sum((cluster.samples[0] - cluster.x_s) ** 2, axis=1)))
    assert np.sqrt(np.mean(errors**2)) <= unrotated_rmsd + 1e-9
    np.testing.assert_allclose(figure.data[2].marker.color, errors, atol=1e-9)
    assert "PM(atom) 0.500 Å" in figure.layout.title.text and "separation 0.00 %" in figure.layout.title.text
    assert isinstance(figure.data[5], go.Cone) and len(figure.data[5].x) == 17
    by_molecule = overlay_figure(
        cluster.numbers, cluster.mol_index, x_pred, cluster.x_s, metrics=METRICS, color_by="molecule", arrows=False
    )
    assert len(by_molecule.data) == 4
    assert len(set(by_molecule.data[2].marker.color)) == 17


def test_overlay_figure_computes_metrics_when_missing(cluster):
    from crystalflow_core.metrics import cluster_metrics

    figure = overlay_figure(cluster.numbers, cluster.mol_index, cluster.samples[0], cluster.x_s)
    expected = cluster_metrics(cluster.samples[0], cluster.x_s, cluster.numbers, cluster.mol_index)
    assert f"PM(atom) {expected['pm_atom']:.3f} Å" in figure.layout.title.text
    with pytest.raises(ValueError, match="color_by"):
        overlay_figure(cluster.numbers, cluster.mol_index, cluster.samples[0], cluster.x_s, METRICS, "bfactor")


def test_write_html_embeds_plotly_once_and_inline(tmp_path, cluster, trajectory):
    times, frames = trajectory
    figures = [
        trajectory_figure(cluster.numbers, cluster.mol_index, frames, times),
        overlay_figure(cluster.numbers, cluster.mol_index, cluster.samples[0], cluster.x_s, metrics=METRICS),
    ]
    path = write_html(figures, tmp_path / "report.html", title="cluster <1>")
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", text)
    assert not re.search(r"<link[^>]*\bhref=", text)
    assert text.count("Plotly.newPlot(") == 2
    assert len(text) > 1_000_000
    assert "<title>cluster &lt;1&gt;</title>" in text


def test_embed_widget_html_writes_widget_state(tmp_path):
    import ipywidgets

    slider = ipywidgets.IntSlider(value=7, max=9)
    text = embed_widget_html(slider, tmp_path / "widget.html").read_text()
    assert "application/vnd.jupyter.widget-state+json" in text
    assert '"value": 7' in text


def test_3d_figures_are_tall_and_the_time_label_has_room(cluster, trajectory):
    times, frames = trajectory
    figures = [
        cluster_figure(cluster.numbers, cluster.mol_index, cluster.x_s),
        trajectory_figure(cluster.numbers, cluster.mol_index, frames, times),
        overlay_figure(cluster.numbers, cluster.mol_index, cluster.samples[0], cluster.x_s, metrics=METRICS),
    ]
    for figure in figures:
        assert figure.layout.height == HEIGHT_3D >= 650 and figure.layout.scene.camera.eye.x < 1.25
    slider = figures[1].layout.sliders[0]
    assert slider.x > 0 and slider.currentvalue.xanchor == "center" and slider.currentvalue.prefix == "t = "


def test_metric_boxes_show_each_metric_in_its_own_box_with_a_legend():
    per_cluster = pd.DataFrame(
        {
            "method": ["model", "model", "identity", "identity"],
            "cluster_id": ["a", "b", "a", "b"],
            "pm_atom": [1.0, 2.0, 3.0, 4.0],
            "pm_center": [0.5, 0.6, 0.7, 0.8],
        }
    )
    figure = metric_boxes(per_cluster, ["pm_atom", "pm_center"], {"pm_atom": "PM (atom) ↓"})
    assert [trace.name for trace in figure.data] == ["PM (atom) ↓", "pm_center"]
    assert list(figure.data[1].y) == [0.5, 0.6, 0.7, 0.8] and list(figure.data[1].x) == list(per_cluster["method"])
    assert figure.layout.boxmode == "group" and figure.layout.showlegend


def test_loss_curves_show_the_spread_of_the_validation_loss():
    history = pd.DataFrame(
        {"epoch": [1, 2], "step": [3, 6], "train_loss": [2.0, 1.0], "val_loss": [1.5, 1.2], "val_loss_std": [0.2, 0.1]}
    )
    training, validation = loss_curves(history).data
    assert list(training.y) == [2.0, 1.0] and training.error_y.array is None
    assert list(validation.y) == [1.5, 1.2] and list(validation.error_y.array) == [0.2, 0.1]
    assert len(loss_curves(history.drop(columns=["val_loss", "val_loss_std"])).data) == 1  # trained on every crystal
