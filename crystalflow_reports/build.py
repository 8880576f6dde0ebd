"""The report series: every notebook executed at one scale, rendered to ``<out>/<name>.html``, and
``<out>/index.html`` linking them with the run date and parameters (``crystalflow report``)."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from crystalflow_core.params import default_data_dir
from crystalflow_core.records import run_name

from .execute import NOTEBOOKS, execute_notebook
from .render import render_html

SCALES = ("smoke", "default")
#: Tiny model and data for the smoke scale (minutes on a 2-core CPU).
SMOKE_TRAINING = {"epochs": 2, "batch_size": 4, "hidden": 16, "layers": 1, "cutoff": 4.0, "samples": 2, "steps": 5}
SMOKE_SUBSET = 12
#: Subset of the default scale (notebook 03's default).
DEFAULT_SUBSET = 100
SMOKE_LIMIT = 30


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
    notebook_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Execute ``notebooks`` in order, render ``<out_dir>/<name>.html`` and ``<out_dir>/index.html``.

    ``work_dir`` (default ``<out_dir>/work``) holds curated data, runs and the executed ``.ipynb``; ``overrides``
    replaces parameters per notebook; ``notebook_dir`` holds the notebooks (default: the packaged ones). A failing
    notebook is rendered with its error and the others still run.
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
            execute_notebook(name, executed, chosen, notebook_dir=notebook_dir)
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
