"""The report series: every notebook executed at one scale, rendered to ``<out>/<name>.html``, and
``<out>/index.html`` linking them with the run date and parameters (``crystalflow report``).

The notebooks run in the work directory and their parameters name data and runs relative to it, so the pages show
``data/default`` and ``runs/lerp_COD-12_s0`` rather than where one machine keeps them.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from crystalflow_core.data.sources import NAMED_SOURCES
from crystalflow_core.params import default_data_dir
from crystalflow_core.records import run_name

from .execute import NOTEBOOKS, execute_notebook
from .render import render_html
from .scales import SCALES

#: Notebook 03 parameters of the smoke scale: a tiny model, few solver steps. Only what differs from notebook 03's
#: defaults (TrainConfig's, for the training settings), which a test checks.
SMOKE_TRAINING = {"epochs": 2, "hidden": 16, "layers": 1, "samples": 2, "steps": 5}
SMOKE_SUBSET = 12
#: Subset of the default scale's runs (notebook 03 itself trains on all clusters).
DEFAULT_SUBSET = 100
SMOKE_LIMIT = 30
#: Notebook 06 parameters of the smoke scale: a search of a few candidates in two space groups (about half a minute
#: on two cores). Only what differs from notebook 06's defaults, which a test checks.
SMOKE_PREDICTION = {"candidates": 8, "space_groups": [61, 14]}
#: Where the curated data and the runs go, relative to the directory the notebooks run in.
DATA_ROOT, RUNS_DIR = Path("data"), Path("runs")


def scale_parameters(scale: str, source: str = "default") -> dict[str, dict[str, object]]:
    """Papermill parameters of every notebook for a scale, with paths relative to where the notebooks run.

    ``smoke``: a few structures, a tiny model, one method (the benchmark shows the others as missing), a crystal
    search of a few candidates.
    ``default``: the notebooks' own defaults (03: ``subset=100`` here) and the benchmark trains every missing
    method and data variant through 03.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    smoke = scale == "smoke"
    subset = SMOKE_SUBSET if smoke else DEFAULT_SUBSET
    training = dict(SMOKE_TRAINING) if smoke else {}
    run_dir = RUNS_DIR / run_name("lerp", subset, 0, False)
    return {
        "01_curate": {
            "source": source,
            "data_root": str(DATA_ROOT),
            "limit": SMOKE_LIMIT if smoke else None,
            "subsets": [SMOKE_SUBSET] if smoke else [25, 50, DEFAULT_SUBSET, 200],
        },
        "02_dataset_statistics": {
            "data_dir": str(default_data_dir(False, DATA_ROOT)),
            "max_clusters": 50 if smoke else 5000,
        },
        "03_train": {
            "path": "lerp",
            "data_dir": str(default_data_dir(False, DATA_ROOT)),
            "subset": subset,
            "output_dir": str(run_dir),
            **training,
        },
        "04_benchmark": {
            "runs_dir": str(RUNS_DIR),
            "data_root": str(DATA_ROOT),
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
        "06_crystal_prediction": dict(SMOKE_PREDICTION) if smoke else {},
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
    notebook_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Execute ``notebooks`` in order, render ``<out_dir>/<name>.html`` and ``<out_dir>/index.html``.

    ``work_dir`` (default ``<out_dir>/work``) holds curated data, runs and the executed ``.ipynb``, and the
    notebooks run there; ``overrides`` replaces parameters per notebook (relative paths are taken from
    ``work_dir``); ``notebook_dir`` holds the notebooks (default: the packaged ones). A failing notebook is
    rendered with its error and the others still run.
    Returns ``notebook, status, seconds, html, error, parameters`` per notebook.
    """
    from papermill.exceptions import PapermillExecutionError

    out_dir = Path(out_dir)
    work_dir = (Path(work_dir) if work_dir is not None else out_dir / "work").resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    # A CIF directory is the caller's path, so it is resolved before the notebooks run elsewhere.
    parameters = scale_parameters(scale, source if source in NAMED_SOURCES else str(Path(source).resolve()))
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    rows = []
    for name in notebooks:
        chosen = {**parameters[name], **dict((overrides or {}).get(name, {}))}
        executed = work_dir / "executed" / f"{name}.ipynb"
        start = time.perf_counter()
        status, error = "ok", ""
        try:
            execute_notebook(name, executed, chosen, cwd=work_dir, notebook_dir=notebook_dir)
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
