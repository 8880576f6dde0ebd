"""Static plotly figures of clusters, trajectories and prediction/truth overlays (no kernel needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from ase.data import chemical_symbols, covalent_radii

from crystalflow_core.data.symmetry import cluster_bonds
from crystalviz.colors import molecule_colors, molecule_opacities
from crystalviz.overlay import build_overlay, metrics_caption, resolve_metrics

TRUTH_COLOR = "#7f7f7f"
ARROW_COLOR = "#d62728"
ERROR_COLORSCALE = "Viridis"
#: Height (px) of a 3D figure: plotly's default of 450 leaves a small cube in a wide page.
HEIGHT_3D = 700
#: The camera of a 3D figure, nearer than plotly's default (eye 1.25, 1.25, 1.25), so the cluster fills the view.
CAMERA = {"eye": {"x": 1.0, "y": 1.0, "z": 0.75}}


def _bond_lines(positions: np.ndarray, bonds: np.ndarray) -> dict[str, list]:
    """Scatter3d x, y, z lists drawing every bond [B, 2] as a segment, segments separated by None."""
    coords: dict[str, list] = {"x": [], "y": [], "z": []}
    for i, j in bonds:
        for axis, label in enumerate("xyz"):
            coords[label].extend([positions[i, axis], positions[j, axis], None])
    return coords


def _marker_sizes(numbers: np.ndarray) -> np.ndarray:
    """Marker size per atom, growing with the covalent radius."""
    return 3.0 + 8.0 * covalent_radii[numbers]


def _molecule_traces(
    numbers: np.ndarray,
    mol_index: np.ndarray,
    positions: np.ndarray,
    bonds: np.ndarray,
    highlight_central: bool,
) -> list[go.Scatter3d]:
    """Two traces per molecule (atoms, bonds) in the molecule's colour; 2 M traces, molecule m at 2m, 2m+1."""
    n_molecules = int(mol_index.max()) + 1
    colors = molecule_colors(n_molecules)
    opacities = molecule_opacities(n_molecules, highlight_central)
    sizes = _marker_sizes(numbers)
    traces = []
    for molecule in range(n_molecules):
        atoms = np.flatnonzero(mol_index == molecule)
        in_molecule = np.isin(bonds[:, 0], atoms)
        name = "central molecule" if molecule == 0 else f"molecule {molecule}"
        width = 8 if highlight_central and molecule == 0 else 4
        traces.append(
            go.Scatter3d(
                x=positions[atoms, 0],
                y=positions[atoms, 1],
                z=positions[atoms, 2],
                mode="markers",
                name=name,
                legendgroup=str(molecule),
                marker={"size": sizes[atoms], "color": colors[molecule], "line": {"width": 0}},
                opacity=opacities[molecule],
                text=[f"{chemical_symbols[numbers[a]]}{a} (molecule {molecule})" for a in atoms],
                hoverinfo="text",
            )
        )
        traces.append(
            go.Scatter3d(
                **_bond_lines(positions, bonds[in_molecule]),
                mode="lines",
                name=f"{name} bonds",
                legendgroup=str(molecule),
                showlegend=False,
                line={"color": colors[molecule], "width": width},
                opacity=opacities[molecule],
                hoverinfo="skip",
            )
        )
    return traces


def _scene(positions: np.ndarray) -> dict:
    """Equal-aspect 3D scene whose cube encloses all positions [..., 3] (fixed across animation frames)."""
    flat = np.asarray(positions).reshape(-1, 3)
    center = (flat.max(axis=0) + flat.min(axis=0)) / 2.0
    half = (flat.max(axis=0) - flat.min(axis=0)).max() / 2.0 + 1.5
    axes = {}
    for axis, label in enumerate("xyz"):
        axes[f"{label}axis"] = {"range": [center[axis] - half, center[axis] + half], "title": f"{label} (Å)"}
    return {**axes, "aspectmode": "cube", "camera": CAMERA}


def cluster_figure(
    numbers: np.ndarray,
    mol_index: np.ndarray,
    positions: np.ndarray,
    highlight_central: bool = False,
    bonds: np.ndarray | None = None,
    title: str | None = None,
) -> go.Figure:
    """3D view of one cluster [N, 3]: atoms and bonds, one colour per molecule (2 traces per molecule)."""
    numbers = np.asarray(numbers, dtype=int)
    mol_index = np.asarray(mol_index, dtype=int)
    positions = np.asarray(positions, dtype=float)
    bonds = cluster_bonds(numbers, mol_index, positions) if bonds is None else np.asarray(bonds, dtype=int)
    figure = go.Figure(_molecule_traces(numbers, mol_index, positions, bonds, highlight_central))
    figure.update_layout(
        scene=_scene(positions), title=title, height=HEIGHT_3D, margin={"l": 0, "r": 0, "t": 40, "b": 0}
    )
    return figure


def trajectory_figure(
    numbers: np.ndarray,
    mol_index: np.ndarray,
    trajectory: np.ndarray,
    times: Sequence[float] | None = None,
    highlight_central: bool = False,
    bonds: np.ndarray | None = None,
    title: str | None = None,
    frame_duration_ms: int = 150,
) -> go.Figure:
    """Animated 3D trajectory [T, N, 3]: one plotly frame per time step, a time slider and play/pause.

    Bonds [B, 2] default to the curation's bond rule on frame 0 and stay fixed along the trajectory.
    """
    numbers = np.asarray(numbers, dtype=int)
    mol_index = np.asarray(mol_index, dtype=int)
    trajectory = np.asarray(trajectory, dtype=float)
    times = np.linspace(0.0, 1.0, len(trajectory)) if times is None else np.asarray(times, dtype=float)
    if len(times) != len(trajectory):
        raise ValueError(f"{len(times)} times for {len(trajectory)} frames")
    if bonds is None:
        bonds = cluster_bonds(numbers, mol_index, trajectory[0])
    traces_per_frame = [_molecule_traces(numbers, mol_index, frame, bonds, highlight_central) for frame in trajectory]
    trace_ids = list(range(len(traces_per_frame[0])))
    frames = [
        go.Frame(
            data=[go.Scatter3d(x=trace.x, y=trace.y, z=trace.z) for trace in traces],
            traces=trace_ids,
            name=str(index),
        )
        for index, traces in enumerate(traces_per_frame)
    ]
    step_args = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    slider = {  # right of the play buttons, the current time centred above it (at the left edge it was cut off)
        "active": 0,
        "x": 0.2,
        "len": 0.8,
        "currentvalue": {"prefix": "t = ", "xanchor": "center"},
        "pad": {"t": 10},
        "steps": [
            {"method": "animate", "label": f"{t:.2f}", "args": [[str(index)], step_args]}
            for index, t in enumerate(times)
        ],
    }
    play = {
        "label": "▶ play",
        "method": "animate",
        "args": [None, {**step_args, "frame": {"duration": frame_duration_ms, "redraw": True}, "fromcurrent": True}],
    }
    pause = {"label": "❚❚ pause", "method": "animate", "args": [[None], step_args]}
    figure = go.Figure(data=traces_per_frame[0], frames=frames)
    figure.update_layout(
        scene=_scene(trajectory),
        title=title,
        sliders=[slider],
        updatemenus=[
            {
                "type": "buttons",
                "showactive": False,
                "direction": "left",
                "x": 0.0,
                "y": 0.0,
                "xanchor": "left",
                "yanchor": "top",
                "pad": {"t": 10},
                "buttons": [play, pause],
            }
        ],
        height=HEIGHT_3D,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return figure


def overlay_figure(
    numbers: np.ndarray,
    mol_index: np.ndarray,
    x_pred: np.ndarray,
    x_true: np.ndarray,
    metrics: Mapping[str, float] | None = None,
    color_by: str = "error",
    arrows: bool = True,
    title: str | None = None,
) -> go.Figure:
    """Prediction x_pred [N, 3] Kabsch-aligned onto the truth x_true [N, 3].

    Traces: truth atoms and bonds (grey, translucent), prediction atoms (coloured by per-atom error in Å, or
    by molecule with color_by='molecule') and bonds, and with `arrows` the centroid displacement of every
    molecule (line + cone). The title carries PM(atom), PM(center), collision and separation; `metrics` default
    to `crystalflow_core.metrics.cluster_metrics` on the unaligned prediction.
    """
    if color_by not in ("error", "molecule"):
        raise ValueError(f"color_by must be 'error' or 'molecule', got {color_by!r}")
    numbers = np.asarray(numbers, dtype=int)
    mol_index = np.asarray(mol_index, dtype=int)
    metrics = resolve_metrics(numbers, mol_index, x_pred, x_true, metrics)
    overlay = build_overlay(mol_index, x_pred, x_true)
    bonds = cluster_bonds(numbers, mol_index, overlay.x_true)
    sizes = _marker_sizes(numbers)
    symbols = [chemical_symbols[n] for n in numbers]
    traces = [
        go.Scatter3d(
            x=overlay.x_true[:, 0],
            y=overlay.x_true[:, 1],
            z=overlay.x_true[:, 2],
            mode="markers",
            name="ground truth",
            marker={"size": sizes, "color": TRUTH_COLOR},
            opacity=0.35,
            hoverinfo="skip",
        ),
        go.Scatter3d(
            **_bond_lines(overlay.x_true, bonds),
            mode="lines",
            name="ground truth bonds",
            line={"color": TRUTH_COLOR, "width": 6},
            opacity=0.35,
            hoverinfo="skip",
        ),
    ]
    if color_by == "error":
        prediction_marker = {
            "size": sizes,
            "color": overlay.atom_error,
            "colorscale": ERROR_COLORSCALE,
            "cmin": 0.0,
            "colorbar": {"title": {"text": "|Δr| (Å)"}},
        }
    else:
        colors = molecule_colors(int(mol_index.max()) + 1)
        prediction_marker = {"size": sizes, "color": [colors[m] for m in mol_index]}
    traces.append(
        go.Scatter3d(
            x=overlay.x_aligned[:, 0],
            y=overlay.x_aligned[:, 1],
            z=overlay.x_aligned[:, 2],
            mode="markers",
            name="prediction",
            marker=prediction_marker,
            text=[
                f"{s}{a} (molecule {m}) |Δr| = {e:.2f} Å"
                for a, (s, m, e) in enumerate(zip(symbols, mol_index, overlay.atom_error, strict=True))
            ],
            hoverinfo="text",
        )
    )
    traces.append(
        go.Scatter3d(
            **_bond_lines(overlay.x_aligned, bonds),
            mode="lines",
            name="prediction bonds",
            line={"color": "#1f1f1f", "width": 3},
            hoverinfo="skip",
        )
    )
    if arrows:
        segments = np.stack([overlay.center_true, overlay.center_pred], axis=1)
        displacement = overlay.center_pred - overlay.center_true
        direction = displacement / np.maximum(overlay.center_error, 1e-9)[:, None]
        traces.append(
            go.Scatter3d(
                **_bond_lines(segments.reshape(-1, 3), np.arange(2 * len(segments)).reshape(-1, 2)),
                mode="lines",
                name="centre displacement",
                line={"color": ARROW_COLOR, "width": 5},
                hoverinfo="skip",
            )
        )
        traces.append(
            go.Cone(
                x=overlay.center_pred[:, 0],
                y=overlay.center_pred[:, 1],
                z=overlay.center_pred[:, 2],
                u=direction[:, 0],
                v=direction[:, 1],
                w=direction[:, 2],
                sizemode="raw",
                sizeref=0.5,
                anchor="tip",
                colorscale=[[0.0, ARROW_COLOR], [1.0, ARROW_COLOR]],
                showscale=False,
                name="centre displacement",
                text=[f"molecule {m}: {e:.2f} Å" for m, e in enumerate(overlay.center_error)],
                hoverinfo="text",
            )
        )
    caption = metrics_caption(metrics)
    heading = title or "prediction vs ground truth"
    figure = go.Figure(traces)
    figure.update_layout(
        scene=_scene(np.concatenate([overlay.x_true, overlay.x_aligned])),
        title={"text": f"{heading}<br><sub>{caption}</sub>" if caption else heading},
        legend={"orientation": "h"},
        height=HEIGHT_3D,
        margin={"l": 0, "r": 0, "t": 60, "b": 0},
    )
    return figure


def metric_boxes(
    per_cluster: pd.DataFrame, metrics: Sequence[str], labels: Mapping[str, str] | None = None, title: str = ""
) -> go.Figure:
    """Per-cluster values of each of ``metrics`` (columns of ``per_cluster``) for each ``method``: one box per
    metric and method, the metrics side by side in their own colour with a legend (named by ``labels``)."""
    labels = labels or {}
    figure = go.Figure(
        [
            go.Box(
                x=per_cluster["method"],
                y=per_cluster[metric],
                name=labels.get(metric, metric),
                boxpoints="all",
                text=per_cluster["cluster_id"],
                hoverinfo="y+text",
            )
            for metric in metrics
        ]
    )
    figure.update_layout(boxmode="group", title=title, showlegend=True, legend={"title": {"text": "metric"}})
    return figure


def loss_curves(history: pd.DataFrame, title: str = "") -> go.Figure:
    """The loss per epoch of a training history (``crystalflow_core.train.train``'s, ``history.csv``): the
    training loss, and where there is one the validation loss with the spread of its clusters' losses
    (``val_loss_std``) as error bars; log scale."""
    figure = go.Figure(go.Scatter(x=history["epoch"], y=history["train_loss"], mode="lines+markers", name="training"))
    if "val_loss" in history:
        figure.add_trace(
            go.Scatter(
                x=history["epoch"],
                y=history["val_loss"],
                error_y={"type": "data", "array": history["val_loss_std"]},
                mode="lines+markers",
                name="validation (± spread over its clusters)",
            )
        )
    figure.update_layout(title=title, xaxis={"title": "epoch"}, yaxis={"title": "loss", "type": "log"})
    return figure
