"""Per-molecule colours and opacities shared by the nglview widgets and the plotly figures."""

from __future__ import annotations

import colorsys

GOLDEN_RATIO_CONJUGATE = 0.618033988749895
DIMMED_OPACITY = 0.3


def molecule_colors(n_molecules: int) -> list[str]:
    """Return `n_molecules` distinct hex colours, one per molecule (index = `mol_index`).

    Hues advance by the golden ratio so neighbouring indices are far apart on the colour wheel, and the
    lightness alternates so that hues that end up close still differ.
    """
    colors = []
    for index in range(n_molecules):
        hue = (index * GOLDEN_RATIO_CONJUGATE) % 1.0
        lightness = 0.42 if index % 2 == 0 else 0.58
        red, green, blue = colorsys.hls_to_rgb(hue, lightness, 0.8)
        colors.append(f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}")
    return colors


def molecule_opacities(n_molecules: int, highlight_central: bool) -> list[float]:
    """Opacity per molecule: all opaque, or only the central molecule (index 0) opaque when highlighting."""
    if not highlight_central:
        return [1.0] * n_molecules
    return [1.0] + [DIMMED_OPACITY] * (n_molecules - 1)


def hex_to_rgb(color: str) -> tuple[float, float, float]:
    """Convert '#rrggbb' to an RGB triple in [0, 1] (the form nglview shapes expect)."""
    value = color.lstrip("#")
    return tuple(int(value[i : i + 2], 16) / 255.0 for i in (0, 2, 4))
