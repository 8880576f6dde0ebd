"""Plotly figures that also show in a notebook's static HTML, with no network access."""

from __future__ import annotations

#: Whether this kernel has put plotly.js on the page yet. The state is per kernel on purpose: one executed
#: notebook is one HTML page, and plotly.js (several MB) belongs on it exactly once.
_plotlyjs_embedded = False


def show_figure(figure) -> None:
    """Display a plotly figure in a notebook so that it also shows in nbconvert's HTML without network access.

    The output carries the plotly mime bundle (live Jupyter) and HTML with plotly.js inline on the first call
    of a kernel (nbconvert picks the HTML).
    """
    from IPython.display import display

    global _plotlyjs_embedded
    page = figure.to_html(full_html=False, include_plotlyjs=not _plotlyjs_embedded, include_mathjax=False)
    _plotlyjs_embedded = True
    display({"application/vnd.plotly.v1+json": figure.to_plotly_json(), "text/html": page}, raw=True)
