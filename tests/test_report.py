"""The notebook layer: HTML rendering without network access, per-scale parameters, notebooks that ship with the
package, and a core that imports none of it."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import plotly.graph_objects as go
import pytest
from conftest import notebook_parameters
from nbformat.v4 import new_code_cell, new_notebook, new_output

from crystalflow_core import params
from crystalflow_core.cli import build_parser
from crystalflow_core.errors import ParameterError
from crystalflow_reports import build, render
from crystalflow_reports.execute import NOTEBOOKS, check_notebook_dir, packaged_notebooks

ROOT = Path(__file__).parents[1]


def test_external_scripts_finds_cdn_sources_only():
    page = (
        '<script src="https://cdn.plot.ly/plotly-2.min.js"></script><script>var a = "https://x";</script>'
        "<script type='text/javascript' src='//cdnjs.example/require.js'></script><script src=\"local.js\">"
    )
    assert len(render.external_scripts(page)) == 2


def test_render_html_embeds_plotly_and_loads_nothing_remote(tmp_path):
    figure = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    page = figure.to_html(full_html=False, include_plotlyjs=True)
    output = new_output("display_data", data={"text/html": page, "text/plain": "figure"})
    notebook = new_notebook(cells=[new_code_cell("show_figure(figure)", outputs=[output])])
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(notebook, tmp_path / "n.ipynb")
    html = render.render_html(tmp_path / "n.ipynb", tmp_path / "n.html").read_text()
    assert render.external_scripts(html) == []
    assert "Plotly.newPlot" in html and "require.min.js" not in html and "html-manager" not in html


def test_a_viewer_without_a_kernel_shows_its_note_not_its_repr(tmp_path):
    """nbconvert skips a widget view whose state the notebook does not keep and shows the viewer's note."""
    from crystalviz.demo import demo_cluster_view
    from crystalviz.widgets import TrajectoryViewer

    view = demo_cluster_view(n_samples=1, n_frames=4, seed=0)
    times, frames = view.trajectory(0)
    bundle = TrajectoryViewer(view.numbers, view.mol_index, frames, times)._repr_mimebundle_()
    output = new_output("display_data", data=bundle)
    nbformat.write(new_notebook(cells=[new_code_cell("viewer", outputs=[output])]), tmp_path / "n.ipynb")
    page = render.render_html(tmp_path / "n.ipynb", tmp_path / "n.html").read_text()
    assert "Trajectory viewer: 4 frames of 17 molecules" in page and "children=" not in page


def test_scale_parameters_cover_every_notebook_and_share_the_run():
    smoke = build.scale_parameters("smoke")
    assert set(smoke) == set(NOTEBOOKS)
    assert smoke["03_train"]["output_dir"] == smoke["05_trajectories"]["run_dir"] == "runs/lerp_COD-12_s0"
    assert smoke["03_train"]["hidden"] == 16 and smoke["04_benchmark"]["launch_missing"] is False
    default = build.scale_parameters("default")
    assert "hidden" not in default["03_train"] and default["04_benchmark"]["launch_missing"] is True
    paths = [value for notebook in (smoke, default) for values in notebook.values() for value in values.values()]
    assert not any(isinstance(value, str) and Path(value).is_absolute() for value in paths)  # no machine paths


def test_the_smoke_preset_names_notebook_03_parameters_and_changes_each():
    """Only parameters that notebook 03 has and notebook 04 may pass on, each with a value of its own."""
    defaults = notebook_parameters("03_train")
    assert params.check_train_parameters("SMOKE_TRAINING", build.SMOKE_TRAINING) == build.SMOKE_TRAINING
    assert all(defaults[name] != value for name, value in build.SMOKE_TRAINING.items())


def test_the_smoke_preset_shortens_the_crystal_search_and_the_default_scale_keeps_it():
    defaults = notebook_parameters("06_crystal_prediction")
    assert all(defaults[name] != value for name, value in build.SMOKE_PREDICTION.items())
    assert build.scale_parameters("smoke")["06_crystal_prediction"] == build.SMOKE_PREDICTION
    assert build.scale_parameters("default")["06_crystal_prediction"] == {}


def test_the_core_imports_no_report_machinery():
    forbidden = re.compile(r"^\s*(from|import)\s+(papermill|nbconvert|nbformat|crystalviz|crystalflow_reports)\b", re.M)
    offenders = [str(p) for p in (ROOT / "crystalflow_core").rglob("*.py") if forbidden.search(p.read_text())]
    assert offenders == []


def test_report_is_a_subcommand_through_the_entry_point():
    subparsers = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert "--notebooks" in subparsers["report"].format_help()


def test_notebooks_are_package_data_and_another_directory_is_checked(tmp_path):
    packaged = packaged_notebooks()
    assert packaged.parent == Path(build.__file__).parent  # inside the package, not beside it
    assert all((packaged / f"{name}.ipynb").is_file() for name in NOTEBOOKS)
    assert check_notebook_dir("--notebooks", None) == packaged
    shutil.copytree(packaged, tmp_path / "mine")
    assert check_notebook_dir("--notebooks", tmp_path / "mine") == tmp_path / "mine"
    (tmp_path / "mine" / "04_benchmark.ipynb").unlink()
    with pytest.raises(ParameterError, match=r"--notebooks='.*mine': no 04_benchmark.ipynb there"):
        check_notebook_dir("--notebooks", tmp_path / "mine")


#: What a wheel is built from: the metadata and every package, with the notebooks the layer links to.
_SOURCE_FILES = ("pyproject.toml", "README.md")
_SOURCE_DIRS = ("crystalflow_core", "crystalviz", "crystalflow_reports", "notebooks")
_FIND_NOTEBOOKS = (
    "from crystalflow_reports.execute import packaged_notebooks as p; print(p(), len(list(p().glob('*'))))"
)


@pytest.mark.slow
def test_a_built_wheel_ships_the_notebooks_and_finds_them_without_the_checkout(tmp_path):
    source, installed = tmp_path / "source", tmp_path / "installed"
    for name in _SOURCE_DIRS:
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in _SOURCE_FILES:
        shutil.copy(ROOT / name, source / name)
    wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path, source]
    subprocess.run(wheel, check=True, capture_output=True)
    with zipfile.ZipFile(next(tmp_path.glob("crystalflow-*.whl"))) as archive:
        names = set(archive.namelist())
        assert {f"crystalflow_reports/notebooks/{name}.ipynb" for name in NOTEBOOKS} <= names
        assert any(name.startswith("crystalflow_core/data/bundled/cod/") for name in names)  # report's default data
        archive.extractall(installed)
    shutil.rmtree(source)  # no checkout left to fall back on
    found = subprocess.run(
        [sys.executable, "-c", _FIND_NOTEBOOKS], cwd=tmp_path, env={"PYTHONPATH": str(installed)}, capture_output=True
    )
    expected = f"{installed / 'crystalflow_reports' / 'notebooks'} {len(NOTEBOOKS)}"
    assert found.stdout.decode().strip() == expected, found.stderr.decode()
