"""Executed notebooks as self-contained HTML pages (nbconvert), which load nothing from the network.

plotly.js is embedded inline by :func:`~crystalflow_reports.display.show_figure`, and the template here drops
require.js, MathJax and the widget manager (all served from CDNs). Interactive widgets therefore do not render
in the HTML: a crystalviz viewer shows the one-line note of what it holds that it displays beside the widget
(nbconvert skips a widget view without saved state), and the notebooks show static plotly figures beside them.
"""

from __future__ import annotations

import re
from pathlib import Path

_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
"""
_EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^\"'\s>]+", re.IGNORECASE)


def external_scripts(page: str) -> list[str]:
    """``<script src=...>`` tags of an HTML page that point at another host (a CDN), e.g. ``cdn.plot.ly``."""
    return _EXTERNAL_SCRIPT.findall(page)


def render_html(notebook_path: str | Path, html_path: str | Path) -> Path:
    """Render an executed notebook to a self-contained HTML page; refuses a page that would load a CDN script."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="offline.html.j2",
    )
    notebook = nbformat.read(str(notebook_path), as_version=4)
    notebook.metadata.pop("widgets", None)
    page, _ = exporter.from_notebook_node(notebook)
    external = external_scripts(page)
    if external:
        raise RuntimeError(f"{notebook_path}: the HTML would load external scripts: {external}")
    html_path = Path(html_path)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(page, encoding="utf-8")
    return html_path
