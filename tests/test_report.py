"""HTML rendering without network access, and the per-scale notebook parameters."""

import nbformat
import plotly.graph_objects as go
from nbformat.v4 import new_code_cell, new_notebook, new_output

from crystalflow_core import report


def test_external_scripts_finds_cdn_sources_only():
    page = (
        '<script src="https://cdn.plot.ly/plotly-2.min.js"></script><script>var a = "https://x";</script>'
        "<script type='text/javascript' src='//cdnjs.example/require.js'></script><script src=\"local.js\">"
    )
    assert len(report.external_scripts(page)) == 2


def test_render_html_embeds_plotly_and_loads_nothing_remote(tmp_path):
    figure = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    page = figure.to_html(full_html=False, include_plotlyjs=True)
    output = new_output("display_data", data={"text/html": page, "text/plain": "figure"})
    notebook = new_notebook(cells=[new_code_cell("show_figure(figure)", outputs=[output])])
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(notebook, tmp_path / "n.ipynb")
    html = report.render_html(tmp_path / "n.ipynb", tmp_path / "n.html").read_text()
    assert report.external_scripts(html) == []
    assert "Plotly.newPlot" in html and "require.min.js" not in html and "html-manager" not in html


def test_scale_parameters_cover_every_notebook_and_share_the_run(tmp_path):
    smoke = report.scale_parameters("smoke", tmp_path)
    assert set(smoke) == set(report.NOTEBOOKS)
    assert smoke["03_train"]["output_dir"] == smoke["05_trajectories"]["run_dir"]
    assert smoke["03_train"]["hidden"] == 16 and smoke["04_benchmark"]["launch_missing"] is False
    default = report.scale_parameters("default", tmp_path)
    assert "hidden" not in default["03_train"] and default["04_benchmark"]["launch_missing"] is True
