"""Static plotly figures of a crystal structure prediction (``crystalflow predict``): the energy–density landscape
of its ``ranking.csv`` and powder patterns, a predicted one beside a reference one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from crystalflow_core.csp import pxrd
from crystalflow_core.molecule_input import read_crystal
from crystalflow_core.packing import PASS_MATCHED, SHELL_SIZE

FOUND_COLOR = "#000000"


def _hover_text(row: pd.Series) -> str:
    """One crystal of the ranking, as its point's hover label."""
    text = (
        f"rank {row['rank']}: {row['space_group']} ({row['wyckoff']}), Z = {row['z']}<br>"
        f"{row['energy']:.2f} kcal/mol per molecule, {row['density']:.3f} g/cm³<br>"
        f"reached from {row['copies']} start(s)"
    )
    if "matched" in row:
        text += f"<br>matches {row['matched']:.0f} of the reference's {SHELL_SIZE} molecules"
        text += f", rmsd {row['rmsd15']:.2f} Å"
    return text


def energy_density_figure(ranking: pd.DataFrame, title: str = "") -> go.Figure:
    """Lattice energy (kcal/mol per molecule) against density (g/cm³) of every crystal of a ``ranking.csv``, one
    trace per space group, in order of its number: the landscape a search is judged by, whose low-lying dense
    crystals are the likely polymorphs.

    With a reference (the ``matched`` and ``found`` columns of ``--reference``) each point is labelled with how
    many of the reference's 15 molecules it matches, and a last trace rings those that find it.
    """
    with_reference = "found" in ranking
    figure = go.Figure()
    for (number, symbol), crystals in ranking.groupby(["space_group_number", "space_group"], sort=True):
        figure.add_trace(
            go.Scatter(
                x=crystals["density"],
                y=crystals["energy"],
                mode="markers+text" if with_reference else "markers",
                name=f"{symbol} ({number})",
                text=crystals["matched"].map("{:.0f}".format) if with_reference else None,
                textposition="top center",
                hovertext=crystals.apply(_hover_text, axis=1),
                hoverinfo="text",
                marker={"size": 10},
            )
        )
    if with_reference:
        found = ranking[ranking["found"] > 0]
        figure.add_trace(
            go.Scatter(
                x=found["density"],
                y=found["energy"],
                mode="markers",
                name=f"finds the reference (≥ {PASS_MATCHED} of {SHELL_SIZE} molecules)",
                marker={"size": 20, "symbol": "circle-open", "color": FOUND_COLOR, "line": {"width": 2}},
                hoverinfo="skip",
            )
        )
    figure.update_layout(
        title=title,
        xaxis={"title": "density (g/cm³)"},
        yaxis={"title": "lattice energy (kcal/mol per molecule)"},
        legend={"title": {"text": "space group"}},
    )
    return figure


def simulated_pattern(cif: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The powder profile of a CIF's crystal on :func:`~crystalflow_core.csp.pxrd.grid`: 2θ [G] (degrees) and
    intensity [G], broadened as the patterns ``crystalflow predict`` writes beside its CIFs."""
    two_theta, intensity = pxrd.powder_pattern(read_crystal(cif))
    points = pxrd.grid()
    return points, pxrd.profile(two_theta, intensity, points)


def _scaled(intensity: np.ndarray) -> np.ndarray:
    """``intensity`` scaled to a maximum of 100."""
    intensity = np.asarray(intensity, dtype=float)
    return 100.0 * intensity / intensity.max()


def powder_pattern_figure(
    predicted: tuple[np.ndarray, np.ndarray],
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    names: tuple[str, str] = ("predicted", "reference"),
    title: str = "",
) -> go.Figure:
    """A powder pattern (2θ [G], intensity [G]) scaled to a maximum of 100, and a ``reference`` one mirrored
    below it (scaled to −100), so that peaks at the same 2θ face each other; ``names`` label the two."""
    figure = go.Figure(go.Scatter(x=predicted[0], y=_scaled(predicted[1]), mode="lines", name=names[0]))
    if reference is not None:
        figure.add_trace(go.Scatter(x=reference[0], y=-_scaled(reference[1]), mode="lines", name=names[1]))
    figure.update_layout(
        title=title,
        xaxis={"title": "2θ (degrees)"},
        yaxis={"title": "relative intensity" + (f" ({names[1]} mirrored)" if reference is not None else "")},
    )
    return figure
