"""Every notebook runs at smoke scale (papermill, kernel ``python3``), renders to offline HTML, and stops early
on bad parameters with a message naming the parameter."""

import json
import re

import pandas as pd
import pytest

pytest.importorskip("papermill")
from conftest import notebook_parameters  # noqa: E402
from jupyter_client.kernelspec import NoSuchKernel, find_kernel_specs  # noqa: E402
from papermill.exceptions import PapermillExecutionError  # noqa: E402

from crystalflow_core import records  # noqa: E402
from crystalflow_core.metrics import METRIC_KEYS  # noqa: E402
from crystalflow_core.paths import PATHS  # noqa: E402
from crystalflow_reports.build import SMOKE_SUBSET, build_reports  # noqa: E402
from crystalflow_reports.execute import NOTEBOOKS, execute_notebook  # noqa: E402
from crystalflow_reports.render import external_scripts  # noqa: E402
from crystalflow_reports.tables import metric_label  # noqa: E402

pytestmark = pytest.mark.slow
if "python3" not in find_kernel_specs():
    raise NoSuchKernel("python3 (register it: python -m ipykernel install --user --name python3)")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    results = build_reports("smoke", out_dir=root / "reports", work_dir=root / "work")
    return root, results.set_index("notebook")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_renders_offline(smoke, name):
    root, results = smoke
    assert results.loc[name, "status"] == "ok", results.loc[name, "error"]
    page = (root / "reports" / f"{name}.html").read_text()
    assert external_scripts(page) == []
    assert "Plotly.newPlot" in page


def test_index_links_every_report(smoke):
    root, _ = smoke
    index = (root / "reports" / "index.html").read_text()
    assert all(f'href="{name}.html"' in index for name in NOTEBOOKS)
    assert "smoke" in index and "launch_missing" in index


def test_training_wrote_a_record_that_the_benchmark_reads(smoke):
    root, _ = smoke
    run_records = records.load_run_records(root / "work" / "runs")
    assert run_records[["method", "subset", "inversion"]].values.tolist() == [["lerp", SMOKE_SUBSET, False]]
    record = json.loads(
        (root / "work" / "runs" / run_records["run_dir"].iloc[0].split("/")[-1] / "record.json").read_text()
    )
    assert record["metrics"]["pm_atom"] > 0 and record["identity"]["pm_atom"] > 0
    assert record["collapse"]["pm_atom"] > 0 and set(METRIC_KEYS) <= set(record["collapse"])
    benchmark = (root / "reports" / "04_benchmark.html").read_text()
    assert "CrystalFlow-LERP" in benchmark and "—" in benchmark


@pytest.mark.parametrize("name", ["03_train", "04_benchmark"])
def test_results_show_every_metric_and_both_baselines(smoke, name):
    root, _ = smoke
    page = (root / "reports" / f"{name}.html").read_text()
    assert "Identity (x_w)" in page and "Collapse (x_w centroids)" in page
    assert all(metric_label(key) in page for key in METRIC_KEYS)


def test_benchmark_never_bolds_a_baseline(smoke):
    root, _ = smoke
    page = (root / "reports" / "04_benchmark.html").read_text()
    bold = re.findall(r"([^{}>]+)\{\s*font-weight: bold;\s*\}", page)
    rows = {int(row) for rule in bold for row in re.findall(r"#T_\w+_row(\d+)_col\d+", rule)}
    assert rows, "the smoke run's method should be best somewhere"
    baseline_rows = {len(records.model_order(PATHS)) + k for k in range(len(records.BASELINES))}
    assert not rows & baseline_rows


def _fails_early(tmp_path, name, parameters, expected):
    with pytest.raises(PapermillExecutionError) as failure:
        execute_notebook(name, tmp_path / f"{name}.ipynb", parameters)
    assert failure.value.ename == "ParameterError"
    assert failure.value.evalue.startswith(expected)
    # the failing cell is the first one after the parameters (markdown title, parameters, injected, checks)
    assert failure.value.cell_index <= 3


def test_unknown_path_stops_training_notebook(tmp_path):
    _fails_early(tmp_path, "03_train", {"path": "sde", "data_dir": str(tmp_path / "nowhere")}, "path='sde'")
    assert not (tmp_path / "nowhere").exists()


def test_unknown_method_stops_benchmark_notebook(tmp_path):
    _fails_early(tmp_path, "04_benchmark", {"methods": ["sde"], "runs_dir": str(tmp_path)}, "methods=['sde']")


def test_missing_data_dir_stops_notebooks(tmp_path):
    missing = str(tmp_path / "nowhere")
    _fails_early(tmp_path, "02_dataset_statistics", {"data_dir": missing}, "data_dir=")
    _fails_early(tmp_path, "03_train", {"data_dir": missing, "data_source": ""}, "data_dir=")


def test_subset_larger_than_data_stops_training_notebook(smoke, tmp_path):
    root, results = smoke
    data_dir = root / "work" / results.loc["03_train", "parameters"]["data_dir"]  # relative to the work directory
    _fails_early(tmp_path, "03_train", {"data_dir": str(data_dir), "subset": 100_000}, "subset=100000")


def test_bad_numbers_stop_curation_and_trajectory_notebooks(tmp_path):
    _fails_early(tmp_path, "01_curate", {"seed": -1, "data_root": str(tmp_path / "data")}, "seed=-1")
    assert not (tmp_path / "data").exists()
    _fails_early(tmp_path, "05_trajectories", {"steps": "abc", "run_dir": str(tmp_path / "nowhere")}, "steps='abc'")


def test_bad_search_parameters_stop_the_prediction_notebook(tmp_path):
    out = str(tmp_path / "out")
    _fails_early(tmp_path, "06_crystal_prediction", {"space_groups": ["P99"], "out_dir": out}, "space_groups=['P99']")
    _fails_early(tmp_path, "06_crystal_prediction", {"reference_cif": "nowhere.cif", "out_dir": out}, "reference_cif=")
    assert not (tmp_path / "out").exists()


def test_crystal_prediction_report_shows_the_ranking_its_reference_and_the_best_crystal(smoke):
    root, results = smoke
    page = (root / "reports" / "06_crystal_prediction.html").read_text()
    reference = notebook_parameters("06_crystal_prediction")["reference_cif"]
    assert f"reference ({reference}.cif.gz, simulated)" in page  # the powder pattern compared
    assert "finds the reference (≥ 8 of 15 molecules)" in page  # the landscape marks it
    assert "Crystal viewer: " in page and "with its unit cell" in page and "CrystalViewer(" not in page
    (written,) = (root / "work" / "data_out" / "predict").glob("*/ranking.csv")  # one directory per molecule
    ranking = pd.read_csv(written)
    assert ranking["rank"].tolist() == list(range(1, len(ranking) + 1)) and len(ranking) >= 1
    assert set(ranking["space_group_number"]) <= set(results.loc["06_crystal_prediction", "parameters"]["space_groups"])
    assert {"matched", "rmsd15", "found"} <= set(ranking.columns)


def test_trajectories_notebook_runs_with_its_defaults_in_a_fresh_directory(tmp_path):
    """``papermill notebooks/05_trajectories.ipynb out.ipynb`` on a fresh checkout: the shipped model, on the
    bundled data, which it curates first."""
    executed = execute_notebook("05_trajectories", tmp_path / "05.ipynb", {}, cwd=tmp_path)
    assert (tmp_path / "data_out" / "default" / "manifest.csv").is_file()
    cells = json.loads(executed.read_text())["cells"]
    printed = "".join(text for cell in cells for output in cell.get("outputs", []) for text in output.get("text", []))
    assert "data_out/default does not exist: curating" in printed
