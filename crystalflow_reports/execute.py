"""Running the notebook series with papermill: where the notebooks are, one notebook, and the runs that notebook
04 finds missing.

The notebooks ship inside this package (``crystalflow_reports/notebooks/``), so an installed package runs them
without a checkout. In a checkout that directory is a link to the repository's ``notebooks/``, the one copy
that is edited; ``crystalflow report --notebooks DIR`` runs copies kept elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import pandas as pd

from crystalflow_core.checks import check_path
from crystalflow_core.errors import ParameterError
from crystalflow_core.params import default_data_dir

NOTEBOOKS = (
    "01_curate",
    "02_dataset_statistics",
    "03_train",
    "04_benchmark",
    "05_trajectories",
    "06_crystal_prediction",
)


def packaged_notebooks() -> Path:
    """The directory of the notebooks shipped with this package (package data, found wherever it is installed)."""
    return Path(str(resources.files("crystalflow_reports").joinpath("notebooks")))


def check_notebook_dir(name: str, value: str | Path | None) -> Path:
    """``value``, a directory holding every notebook of :data:`NOTEBOOKS`; ``None``: :func:`packaged_notebooks`."""
    if value is None:
        return packaged_notebooks()
    directory = check_path(name, value)
    missing = [f"{notebook}.ipynb" for notebook in NOTEBOOKS if not (directory / f"{notebook}.ipynb").is_file()]
    if missing:
        raise ParameterError(name, str(value), f"no {', '.join(missing)} there")
    return directory


def execute_notebook(
    name: str,
    output_path: str | Path,
    parameters: Mapping[str, object],
    cwd: str | Path | None = None,
    kernel_name: str = "python3",
    notebook_dir: str | Path | None = None,
) -> Path:
    """Run ``<notebook_dir>/<name>.ipynb`` (default: the packaged notebooks) with papermill in ``cwd`` (default:
    the current directory); raises ``PapermillExecutionError`` on a cell error (the executed notebook, error
    included, is still written to ``output_path``)."""
    import papermill

    notebook_dir = Path(notebook_dir) if notebook_dir is not None else packaged_notebooks()
    output_path = Path(output_path).resolve()  # papermill saves it while running in ``cwd``
    output_path.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(notebook_dir / f"{name}.ipynb"),
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
