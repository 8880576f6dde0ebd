"""Run records and the benchmark tables built from them (the paper's Tables 1 and 2).

A run directory written by :func:`crystalflow_core.train.train` gets a ``record.json`` once its test split has
been sampled and scored: the configuration, the seed, the git revision, the probability path, the subset, whether
the data were curated with inversion noise, where the checkpoint and the per-cluster metrics are, and the mean
metrics of the model and of the identity baseline (``x_w`` returned unchanged). :func:`load_run_records` gathers
records into one DataFrame and :func:`benchmark_table` turns it into "mean ± std over seeds" tables.
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics
from .data.curate import SETTINGS

RECORD = "record.json"
PER_CLUSTER = "per_cluster.csv"
IDENTITY = "identity.csv"
PREDICTIONS = "predictions"
MISSING = "—"
METHOD_LABELS = {
    "gnn_md": "GNN-MD",
    "ve": "CrystalSDE-VE",
    "vp": "CrystalSDE-VP",
    "lerp": "CrystalFlow-LERP",
    "identity": "Identity (x_w)",
}
METRIC_LABELS = {
    "pm_atom": "PM (atom) ↓",
    "pm_center": "PM (center) ↓",
    "collision": "Collision (%) ↓",
    "clash": "Clash (%) ↓",
    "separation": "Separation (%)",
}
RECORD_COLUMNS = [
    "method",
    "seed",
    "subset",
    "inversion",
    "data",
    "split",
    "samples",
    "n_clusters",
    "git_revision",
    "checkpoint",
    "per_cluster_csv",
    "created",
    "run_dir",
]


def git_revision(directory: str | Path | None = None) -> str:
    """The commit checked out where this package lives (or in ``directory``), or ``"unknown"``."""
    directory = Path(directory) if directory is not None else Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def data_inversion(data_dir: str | Path) -> bool | None:
    """``noise.inversion`` of a curated directory's ``curation.json``; ``None`` when it was not curated here."""
    path = Path(data_dir) / SETTINGS
    if not path.is_file():
        return None
    return bool(json.loads(path.read_text()).get("noise", {}).get("inversion", False))


def subset_label(subset: int | None) -> str:
    """Column label of a subset size: 5000 → ``COD-5K``, 12 → ``COD-12``, ``None`` → ``all``."""
    if subset is None or (isinstance(subset, float) and np.isnan(subset)):
        return "all"
    subset = int(subset)
    return f"COD-{subset // 1000}K" if subset >= 1000 and subset % 1000 == 0 else f"COD-{subset}"


def run_name(method: str, subset: int | None, seed: int, inversion: bool) -> str:
    """Conventional run directory name, e.g. ``lerp_COD-5K_s0_inv``."""
    return f"{method}_{subset_label(subset)}_s{seed}" + ("_inv" if inversion else "")


def _means(per_cluster: pd.DataFrame) -> dict[str, float]:
    return {key: float(value) for key, value in metrics.summarize(per_cluster).items()}


def write_run_record(
    run_dir: str | Path,
    config: Mapping | object,
    per_cluster: pd.DataFrame,
    identity: pd.DataFrame | None = None,
    split: str = "test",
    samples: int = 1,
) -> Path:
    """Write ``per_cluster.csv`` (and ``identity.csv``) and ``record.json`` into ``run_dir``; returns the record.

    ``config`` is a :class:`~crystalflow_core.train.TrainConfig` or its ``to_dict()``; ``per_cluster`` is a
    :func:`~crystalflow_core.metrics.metrics_table` of the model's predictions, ``identity`` the same for ``x_w``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = dict(config) if isinstance(config, Mapping) else config.to_dict()
    per_cluster_path = run_dir / PER_CLUSTER
    per_cluster.to_csv(per_cluster_path, index=False)
    record = {
        "method": config["path"],
        "seed": int(config["seed"]),
        "subset": config.get("subset"),
        "inversion": data_inversion(config["data"]),
        "data": str(config["data"]),
        "split": split,
        "samples": int(samples),
        "n_clusters": len(per_cluster),
        "git_revision": git_revision(),
        "checkpoint": str(run_dir / "checkpoint.pt"),
        "per_cluster_csv": str(per_cluster_path),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metrics": _means(per_cluster),
        "identity": {},
        "config": config,
    }
    if identity is not None:
        identity.to_csv(run_dir / IDENTITY, index=False)
        record["identity"] = _means(identity)
    path = run_dir / RECORD
    path.write_text(json.dumps(record, indent=2))
    return path


def evaluate_run(
    run_dir: str | Path,
    samples: int = 1,
    steps: int | None = None,
    split: str = "test",
    device: str = "auto",
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Sample a trained run on its own ``split`` (same seed and subset as training), score it and the identity
    baseline, and write ``RUN/predictions/`` and the run record; returns the ``record.json`` path."""
    from .data.dataset import ClusterDataset
    from .inference import predict_dataset, score_identity, score_predictions, write_predictions
    from .paths import get_path
    from .train import load_model

    run_dir = Path(run_dir)
    model, config = load_model(run_dir, device)
    dataset = ClusterDataset(config.data, split=split, seed=config.seed, subset=config.subset, progress=False)
    if len(dataset) == 0:
        raise ValueError(f"{config.data}: the {split} split of this run is empty")
    predictions = predict_dataset(
        model,
        get_path(config.path, **config.path_kwargs),
        dataset,
        samples=samples,
        steps=steps,
        seed=seed,
        progress=progress,
    )
    shutil.rmtree(run_dir / PREDICTIONS, ignore_errors=True)
    pred_dir = write_predictions(run_dir / PREDICTIONS, dataset, predictions)
    per_cluster = score_predictions(config.data, pred_dir)
    identity = score_identity(config.data, list(per_cluster["cluster_id"]))
    return write_run_record(run_dir, config, per_cluster, identity, split=split, samples=samples)


def _record_paths(item: str | Path) -> list[Path]:
    path = Path(item)
    if path.is_file():
        return [path]
    if path.is_dir():
        direct = path / RECORD
        return [direct] if direct.is_file() else sorted(path.rglob(RECORD))
    matches = [Path(p) for p in glob.glob(str(item), recursive=True)]
    return sorted(found for match in matches if match.exists() for found in _record_paths(match))


def load_run_records(dirs_or_glob: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One row per ``record.json`` found: run directories, record files, folders searched recursively, or globs.

    Columns: RECORD_COLUMNS, the model's mean metrics (``pm_atom``, …) and the identity baseline's
    (``identity_pm_atom``, …). Nothing found gives an empty frame with the record columns.
    """
    items = [dirs_or_glob] if isinstance(dirs_or_glob, (str, Path)) else list(dirs_or_glob)
    paths = sorted({p.resolve() for item in items for p in _record_paths(item)})
    rows = []
    for path in paths:
        record = json.loads(path.read_text())
        row = {key: record.get(key) for key in RECORD_COLUMNS}
        row["run_dir"] = str(path.parent)
        row.update(record.get("metrics", {}))
        row.update({f"identity_{key}": value for key, value in record.get("identity", {}).items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.reindex(columns=list(dict.fromkeys(RECORD_COLUMNS + list(frame.columns))))


def _long_records(records: pd.DataFrame, metric_cols: Sequence[str]) -> pd.DataFrame:
    """Model rows plus one ``identity`` row per (subset, inversion, seed); the latest record wins a repeat."""
    if records.empty:
        return pd.DataFrame(columns=["method", "subset", "inversion", "seed", *metric_cols])
    records = records.sort_values("created", kind="stable")
    keys = ["subset_label", "inversion", "seed"]
    records = records.assign(subset_label=records["subset"].map(subset_label))
    models = records.drop_duplicates(["method", *keys], keep="last")
    identity_cols = {f"identity_{m}": m for m in metric_cols if f"identity_{m}" in records.columns}
    identity = records.drop_duplicates(keys, keep="last")[[*keys, *identity_cols]].rename(columns=identity_cols)
    identity = identity.assign(method="identity")
    models = models[["method", *keys, *[m for m in metric_cols if m in models.columns]]]
    return pd.concat([models, identity], ignore_index=True).reindex(columns=["method", *keys, *metric_cols])


def benchmark_stats(
    records: pd.DataFrame,
    metric_cols: Sequence[str] = ("pm_atom", "pm_center"),
    methods: Sequence[str] = ("gnn_md", "ve", "vp", "lerp"),
    subsets: Sequence[int | None] | None = None,
    inversion: bool | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(mean, std, n)`` over seeds, each indexed by method and with columns ``(subset label, metric)``.

    ``std`` is the sample standard deviation (``ddof=1``), NaN for a single seed; ``n`` counts seeds (0 where
    no run exists). ``inversion`` keeps only records of that data variant (``None``: all). ``subsets`` defaults
    to the subsets present, in increasing size with ``all`` last. ``"identity"`` in ``methods`` adds the
    identity baseline.
    """
    long = _long_records(records, metric_cols)
    if inversion is not None:
        long = long[long["inversion"].astype(object) == bool(inversion)]
    if subsets is None:
        present = records["subset"].tolist() if not records.empty else []
        sizes = sorted({int(s) for s in present if s is not None and not pd.isna(s)})
        labels = [subset_label(s) for s in sizes]
        if any(s is None or pd.isna(s) for s in present):
            labels.append(subset_label(None))
    else:
        labels = list(dict.fromkeys(subset_label(s) for s in subsets))
    columns = pd.MultiIndex.from_product([labels, list(metric_cols)], names=["subset", "metric"])
    index = pd.Index(list(methods), name="method")
    mean = pd.DataFrame(np.nan, index=index, columns=columns)
    std = mean.copy()
    count = pd.DataFrame(0, index=index, columns=columns)
    for (method, label), group in long.groupby(["method", "subset_label"]):
        if method not in index or label not in labels:
            continue
        for metric in metric_cols:
            values = group[metric].dropna().astype(float)
            count.loc[method, (label, metric)] = len(values)
            if len(values):
                mean.loc[method, (label, metric)] = values.mean()
                std.loc[method, (label, metric)] = values.std(ddof=1) if len(values) > 1 else np.nan
    return mean, std, count


def format_cell(mean: float, std: float, digits: int = 3) -> str:
    """``"13.589 ± 0.087"``; a single seed (NaN std) gives ``"13.589"``; a missing run gives ``"—"``."""
    if pd.isna(mean):
        return MISSING
    if pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def best_mask(mean: pd.DataFrame, exclude: Sequence[str] = ("identity",)) -> pd.DataFrame:
    """Boolean frame: the lowest mean of each column among the methods not in ``exclude`` (ties all true)."""
    candidates = mean.drop(index=[m for m in exclude if m in mean.index])
    lowest = candidates.min(axis=0)
    mask = (mean == lowest) & mean.notna()
    mask.loc[[m for m in exclude if m in mask.index]] = False
    return mask


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.rename(index=lambda m: METHOD_LABELS.get(m, m))
    frame.columns = frame.columns.set_levels([METRIC_LABELS.get(m, m) for m in frame.columns.levels[1]], level=1)
    frame.index.name = None
    return frame


def benchmark_table(
    records: pd.DataFrame,
    metric_cols: Sequence[str] = ("pm_atom", "pm_center"),
    methods: Sequence[str] = ("gnn_md", "ve", "vp", "lerp"),
    subsets: Sequence[int | None] | None = None,
    inversion: bool | None = None,
    digits: int = 3,
) -> pd.DataFrame:
    """The paper's Tables 1–2 layout: rows GNN-MD … CrystalFlow-LERP, column groups per subset, string cells.

    Cells are "mean ± std" over seeds (see :func:`benchmark_stats`) and "—" where no run exists.
    """
    mean, std, _ = benchmark_stats(records, metric_cols, methods, subsets, inversion)
    return _cell_table(mean, std, digits)


def _cell_table(mean: pd.DataFrame, std: pd.DataFrame, digits: int) -> pd.DataFrame:
    """Labelled "mean ± std" / "—" string cells from the statistics of :func:`benchmark_stats`."""
    cells = pd.DataFrame(
        [
            [format_cell(m, s, digits) for m, s in zip(mean_row, std_row, strict=True)]
            for mean_row, std_row in zip(mean.to_numpy(), std.to_numpy(), strict=True)
        ],
        index=mean.index,
        columns=mean.columns,
    )
    return _labelled(cells)


def benchmark_styler(
    records: pd.DataFrame,
    metric_cols: Sequence[str] = ("pm_atom", "pm_center"),
    methods: Sequence[str] = ("gnn_md", "ve", "vp", "lerp"),
    subsets: Sequence[int | None] | None = None,
    inversion: bool | None = None,
    digits: int = 3,
    bold_best: bool = True,
    caption: str | None = None,
):
    """:func:`benchmark_table` as a pandas ``Styler`` with the lowest mean of each column in bold."""
    mean, std, _ = benchmark_stats(records, metric_cols, methods, subsets, inversion)
    table = _cell_table(mean, std, digits)
    mask = best_mask(mean) if bold_best else pd.DataFrame(False, index=mean.index, columns=mean.columns)
    css = pd.DataFrame(np.where(mask.to_numpy(), "font-weight: bold", ""), index=table.index, columns=table.columns)
    styler = table.style.apply(lambda _: css, axis=None)
    return styler.set_caption(caption) if caption else styler


def benchmark_html(records: pd.DataFrame, **kwargs) -> str:
    """HTML of :func:`benchmark_styler` (same keyword arguments)."""
    return benchmark_styler(records, **kwargs).to_html()


def missing_runs(
    records: pd.DataFrame,
    methods: Sequence[str],
    subsets: Sequence[int | None],
    seeds: Sequence[int],
    inversions: Sequence[bool] = (False, True),
) -> pd.DataFrame:
    """Every (method, subset, seed, inversion) combination without a record; columns of those names + ``name``."""
    have = set()
    if not records.empty:
        have = {
            (m, subset_label(s), int(seed), bool(inv))
            for m, s, seed, inv in records[["method", "subset", "seed", "inversion"]].itertuples(index=False)
            if inv is not None and not pd.isna(inv)
        }
    rows = [
        {"method": m, "subset": s, "seed": seed, "inversion": inv, "name": run_name(m, s, seed, inv)}
        for inv in inversions
        for s in subsets
        for m in methods
        for seed in seeds
        if (m, subset_label(s), int(seed), bool(inv)) not in have
    ]
    return pd.DataFrame(rows, columns=["method", "subset", "seed", "inversion", "name"])
