"""Executed notebooks as self-contained HTML reports, and the small helpers the notebooks share.

:func:`build_reports` runs ``notebooks/01_curate`` … ``05_trajectories`` with papermill (parameters per scale),
renders each to ``<out>/<name>.html`` with nbconvert and writes ``<out>/index.html`` linking them with the run
date and parameters. The pages load nothing from the network: plotly.js is embedded inline by
:func:`show_figure`, and the nbconvert template drops require.js, MathJax and the widget manager (all served
from CDNs). Interactive widgets therefore do not render in the HTML; the notebooks show static plotly
figures beside them.

Command line: ``python -m crystalflow_core.report [--scale smoke|default] [--out reports] [--work DIR]``
(the same as :func:`main_report`).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .params import default_data_dir
from .records import run_name

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ("01_curate", "02_dataset_statistics", "03_train", "04_benchmark", "05_trajectories")
SCALES = ("smoke", "default")
#: Tiny model and data for the smoke scale (minutes on a 2-core CPU).
SMOKE_TRAINING = {"epochs": 2, "batch_size": 4, "hidden": 16, "layers": 1, "cutoff": 4.0, "samples": 2, "steps": 5}
SMOKE_SUBSET = 12
#: Subset of the default scale (notebook 03's default).
DEFAULT_SUBSET = 100
SMOKE_LIMIT = 30

_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
"""
_EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^\"'\s>]+", re.IGNORECASE)
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


def execute_notebook(
    name: str,
    output_path: str | Path,
    parameters: Mapping[str, object],
    cwd: str | Path | None = None,
    kernel_name: str = "python3",
) -> Path:
    """Run ``notebooks/<name>.ipynb`` with papermill; raises ``PapermillExecutionError`` on a cell error (the
    executed notebook, error included, is still written to ``output_path``)."""
    import papermill

    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(NOTEBOOK_DIR / f"{name}.ipynb"),
        str(output_path),
        parameters=dict(parameters),
        cwd=str(cwd) if cwd is not None else None,
        kernel_name=kernel_name,
        progress_bar=False,
        # The kernel's start-up warnings (e.g. about its local TCP transport) would land in the cells of a notebook
        # that launches other notebooks (04 launching 03), so only errors are logged.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    return output_path


def launch_runs(
    missing: pd.DataFrame,
    runs_dir: str | Path,
    data_root: str | Path,
    train_parameters: Mapping[str, object] | None = None,
    executed_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Train and record every run of ``missing`` (rows of :func:`~crystalflow_core.records.missing_runs`) by
    executing ``03_train`` with papermill; one failure does not stop the others.

    Returns ``name, status, seconds, error`` per run; executed notebooks go to ``executed_dir`` (default
    ``<runs_dir>/notebooks``).
    """
    from papermill.exceptions import PapermillExecutionError

    runs_dir = Path(runs_dir)
    executed_dir = Path(executed_dir) if executed_dir is not None else runs_dir / "notebooks"
    rows = []
    for run in missing.itertuples(index=False):
        parameters = {
            **dict(train_parameters or {}),
            "path": run.method,
            "subset": None if pd.isna(run.subset) else int(run.subset),
            "seed": int(run.seed),
            "inversion": bool(run.inversion),
            "data_dir": str(default_data_dir(bool(run.inversion), data_root)),
            "output_dir": str(runs_dir / run.name),
        }
        start = time.perf_counter()
        try:
            execute_notebook("03_train", executed_dir / f"03_train_{run.name}.ipynb", parameters)
            status, error = "done", ""
        except PapermillExecutionError as failure:
            status, error = "failed", f"{failure.ename}: {failure.evalue}"
        rows.append(
            {"name": run.name, "status": status, "seconds": round(time.perf_counter() - start, 1), "error": error}
        )
    return pd.DataFrame(rows, columns=["name", "status", "seconds", "error"])


def cluster_views(
    run_dir: str | Path,
    n_clusters: int = 3,
    samples: int = 2,
    steps: int | None = None,
    split: str = "test",
    device: str = "auto",
    seed: int = 0,
    frames: int = 21,
) -> dict:
    """Sample the first ``n_clusters`` clusters of a run's ``split`` with trajectories: ``{cluster_id:
    ClusterView}`` (``samples`` ``[K, N, 3]``, metrics per sample, ``trajectories`` ``[K, T, N, 3]`` thinned to
    at most ``frames`` evenly spaced frames, first and last kept, with their solver times)."""
    from crystalviz.views import ClusterView

    from .data.dataset import ClusterDataset
    from .inference import predict_dataset
    from .metrics import cluster_metrics
    from .paths import get_path
    from .train import load_model

    model, config = load_model(run_dir, device)
    path = get_path(config.path, **config.path_kwargs)
    dataset = ClusterDataset(config.data, split=split, seed=config.seed, subset=config.subset, progress=False)
    dataset = dataset.select(dataset.ids[:n_clusters])
    predictions = predict_dataset(
        model, path, dataset, samples=samples, steps=steps, seed=seed, keep_trajectories=True, progress=False
    )
    views = {}
    for item in dataset:
        prediction = predictions[item.cluster_id]
        n_frames = prediction.trajectories.shape[1]
        keep = np.unique(np.linspace(0, n_frames - 1, min(frames, n_frames)).round()).astype(int)
        trajectories, times = prediction.trajectories[:, keep], prediction.times[keep]  # [K, T, N, 3], [T]
        numbers, mol_index = item.z.numpy(), item.mol_index.numpy()
        x_s = item.x_s.double().numpy()
        views[item.cluster_id] = ClusterView(
            numbers,
            mol_index,
            item.x_w.double().numpy(),
            x_s,
            trajectories[:, -1],
            trajectories,
            times,
            [cluster_metrics(x, x_s, numbers, mol_index) for x in trajectories[:, -1]],
        )
    return views


def scale_parameters(scale: str, work_dir: str | Path, source: str = "default") -> dict[str, dict[str, object]]:
    """Papermill parameters of every notebook for a scale; all data and runs live under ``work_dir``.

    ``smoke``: a few structures, a tiny model, one method (the benchmark shows the others as missing).
    ``default``: the notebooks' own defaults (03: ``subset=100`` here, 30 epochs) and the benchmark trains every
    missing method and data variant through 03 — about ten minutes per run on a 2-core CPU.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    work_dir = Path(work_dir).resolve()
    data_root, runs_dir = work_dir / "data", work_dir / "runs"
    smoke = scale == "smoke"
    subset = SMOKE_SUBSET if smoke else DEFAULT_SUBSET
    training = dict(SMOKE_TRAINING) if smoke else {}
    run_dir = runs_dir / run_name("lerp", subset, 0, False)
    return {
        "01_curate": {
            "source": source,
            "data_root": str(data_root),
            "limit": SMOKE_LIMIT if smoke else None,
            "subsets": [SMOKE_SUBSET] if smoke else [25, 50, DEFAULT_SUBSET, 200],
        },
        "02_dataset_statistics": {
            "data_dir": str(default_data_dir(False, data_root)),
            "max_clusters": 50 if smoke else 5000,
        },
        "03_train": {
            "path": "lerp",
            "data_dir": str(default_data_dir(False, data_root)),
            "subset": subset,
            "output_dir": str(run_dir),
            **training,
        },
        "04_benchmark": {
            "runs_dir": str(runs_dir),
            "data_root": str(data_root),
            "subsets": [subset],
            "seeds": [0],
            "launch_missing": not smoke,
            "train_parameters": training,
        },
        "05_trajectories": {
            "run_dir": str(run_dir),
            "n_clusters": 2,
            **{key: training[key] for key in ("samples", "steps") if key in training},
        },
    }


def _index_page(results: pd.DataFrame, scale: str, started: str) -> str:
    rows = []
    for row in results.itertuples(index=False):
        link = f'<a href="{html.escape(row.html)}">{html.escape(row.notebook)}</a>' if row.html else row.notebook
        parameters = html.escape(json.dumps(row.parameters, indent=1, default=str))
        error = f"<br><small>{html.escape(row.error)}</small>" if row.error else ""
        rows.append(
            f"<tr><td>{link}</td><td>{html.escape(row.status)}{error}</td><td>{row.seconds:.1f}</td>"
            f"<td><pre>{parameters}</pre></td></tr>"
        )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>crystalflow reports</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:.4em;"
        "vertical-align:top}table{border-collapse:collapse}pre{margin:0}</style></head><body>"
        f"<h1>crystalflow reports</h1><p>Run {html.escape(started)} (UTC), scale <b>{html.escape(scale)}</b>.</p>"
        "<table><tr><th>notebook</th><th>status</th><th>seconds</th><th>parameters</th></tr>"
        + "\n".join(rows)
        + "</table></body></html>\n"
    )


def build_reports(
    scale: str = "smoke",
    out_dir: str | Path = "reports",
    work_dir: str | Path | None = None,
    notebooks: Sequence[str] = NOTEBOOKS,
    source: str = "default",
    overrides: Mapping[str, Mapping[str, object]] | None = None,
) -> pd.DataFrame:
    """Execute ``notebooks`` in order, render ``<out_dir>/<name>.html`` and ``<out_dir>/index.html``.

    ``work_dir`` (default ``<out_dir>/work``) holds curated data, runs and the executed ``.ipynb``; ``overrides``
    replaces parameters per notebook. A failing notebook is rendered with its error and the others still run.
    Returns ``notebook, status, seconds, html, error, parameters`` per notebook.
    """
    from papermill.exceptions import PapermillExecutionError

    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "work"
    parameters = scale_parameters(scale, work_dir, source)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    rows = []
    for name in notebooks:
        chosen = {**parameters[name], **dict((overrides or {}).get(name, {}))}
        executed = work_dir / "executed" / f"{name}.ipynb"
        start = time.perf_counter()
        status, error = "ok", ""
        try:
            execute_notebook(name, executed, chosen)
        except PapermillExecutionError as failure:
            status, error = "failed", f"{failure.ename}: {failure.evalue}"
        seconds = time.perf_counter() - start
        page = ""
        if executed.exists():
            render_html(executed, out_dir / f"{name}.html")
            page = f"{name}.html"
        rows.append(
            {"notebook": name, "status": status, "seconds": seconds, "html": page, "error": error, "parameters": chosen}
        )
    results = pd.DataFrame(rows)
    (out_dir / "index.html").write_text(_index_page(results, scale, started), encoding="utf-8")
    return results


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``crystalflow report`` (shared by the console command and ``python -m``)."""
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="smoke",
        help="smoke: tiny data and model, minutes on a CPU; default: the notebooks' full "
        "defaults, every objective (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="HTML output (default: %(default)s)")
    parser.add_argument(
        "--work", type=Path, default=None, help="curated data, runs and executed notebooks (default: OUT/work)"
    )
    parser.add_argument(
        "--source",
        default="default",
        help="structures to curate: 'default', 'pyxtal' or a CIF directory (default: %(default)s)",
    )


def run_report(args: argparse.Namespace) -> int:
    """Build the reports for parsed arguments; exit status 1 when a notebook failed."""
    results = build_reports(args.scale, args.out, args.work, source=args.source)
    for row in results.itertuples(index=False):
        print(f"{row.notebook:24s} {row.status:7s} {row.seconds:7.1f} s  {row.error}")
    print(f"wrote {args.out}/index.html")
    return 0 if (results["status"] == "ok").all() else 1


def main_report(argv: Sequence[str] | None = None) -> int:
    """``python -m crystalflow_core.report``: same as ``crystalflow report``."""
    parser = argparse.ArgumentParser(prog="crystalflow report", description=__doc__.split("\n\n")[0])
    add_report_arguments(parser)
    return run_report(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main_report())
