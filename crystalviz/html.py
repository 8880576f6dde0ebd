"""Self-contained HTML pages: plotly figures with plotly.js inline, and nglview widget snapshots."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go


def write_html(figures: go.Figure | Sequence[go.Figure], path, title: str = "crystalviz") -> Path:
    """Write one page holding every figure; plotly.js is embedded once, inline (the page needs no network)."""
    figures = [figures] if isinstance(figures, go.Figure) else list(figures)
    parts = [
        figure.to_html(
            full_html=False,
            include_plotlyjs=index == 0,
            include_mathjax=False,
            auto_play=False,
            config={"displaylogo": False},
        )
        for index, figure in enumerate(figures)
    ]
    page = (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n"
    )
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


def embed_widget_html(widget, path, title: str = "crystalviz") -> Path:
    """Snapshot an ipywidgets/nglview widget (its state, including loaded structures) to an HTML file.

    The page loads the Jupyter widget manager and the nglview front end from a public CDN when opened, so it
    works only with network access; offline, use the plotly figures written by `write_html` instead.
    """
    from ipywidgets.embed import embed_minimal_html

    path = Path(path)
    embed_minimal_html(str(path), views=[widget], title=title)
    return path
