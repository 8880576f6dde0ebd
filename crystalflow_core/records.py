"""Run records and the benchmark tables built from them (the paper's Tables 1 and 2).

A run directory written by :func:`crystalflow_core.train.train` gets a ``record.json`` once its test split has
been sampled and scored: the configuration, the seed, the git revision, the probability path, the subset, whether
the data were curated with inversion noise, where the checkpoint and the per-cluster metrics are, and the mean
metrics of the model and of the two baselines: identity (``x_w`` returned unchanged) and collapse (every atom of a
molecule put at its ``x_w`` centroid). :func:`load_run_records` gathers records into one DataFrame and
:func:`benchmark_table` turns it into "mean ± std over seeds" tables whose rows are the methods and the baselines.
:func:`score_evaluation` is the one route that scores predictions and both baselines (``crystalflow evaluate``
and :func:`evaluate_run`).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from . import metrics
from .data.curate import SETTINGS
from .data.noise import NoiseConfig
from .errors import InputError

RECORD = "record.json"
PER_CLUSTER = "per_cluster.csv"
IDENTITY = "identity.csv"
COLLAPSE = "collapse.csv"
PREDICTIONS = "predictions"
MISSING = "—"
#: Trained methods in table order; the baselines, scored like any prediction, follow them in every table.
MODELS = ("gnn_md", "ve", "vp", "lerp", "rigid")
BASELINES = ("identity", "collapse")
TABLE_ROWS = (*MODELS, *BASELINES)
#: Per-cluster metrics of each baseline in a run directory.
BASELINE_FILES = {"identity": IDENTITY, "collapse": COLLAPSE}
METHOD_LABELS = {
    "gnn_md": "GNN-MD",
    "ve": "CrystalSDE-VE",
    "vp": "CrystalSDE-VP",
    "lerp": "CrystalFlow-LERP",
    "rigid": "CrystalFlow-Rigid",
    "identity": "Identity (x_w)",
    "collapse": "Collapse (x_w centroids)",
}
LOWER, HIGHER = "↓", "↑"
#: Every metric's name and direction: lower (↓) or higher (↑) is better, or neither (``None``: never bold).
_METRICS: dict[str, tuple[str, str | None]] = {
    "pm_atom": ("PM (atom)", LOWER),
    "pm_center": ("PM (center)", LOWER),
    "collision": ("Collision (%)", LOWER),
    "clash": ("Clash (%)", LOWER),
    "separation": ("Separation (%)", None),
    "matched": ("Matched (of 15)", HIGHER),
    "rmsd15": ("RMSD₁₅ (Å)", LOWER),
    "pass_rate": ("Pass rate (%)", HIGHER),
    "rmsd": ("RMSD (Å)", LOWER),
    "integrity": ("Integrity (Å)", LOWER),
}
METRIC_LABELS = {key: f"{name} {arrow}" if arrow else name for key, (name, arrow) in _METRICS.items()}
METRIC_DIRECTIONS = {key: arrow for key, (_, arrow) in _METRICS.items()}
#: Column suffixes of :func:`~crystalflow_core.metrics.metrics_table` with K > 1 samples: the mean over samples
#: (no suffix), the oracle best of k (chosen with the truth) and the best of k chosen without it (fewest clashes).
SELECTIONS = {"": "mean of k", "_best": "best of k (oracle)", "_chosen": "chosen of k (fewest clashes)"}
#: OXtalign packing-similarity metrics (15-molecule shell); Tables 1–2 show them in a table of their own.
PACKING_SIMILARITY = ("matched", "rmsd15", "pass_rate")
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


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Write ``path`` through a temporary file that replaces it only once complete and on disk, so a run killed
    while writing leaves the previous version (or nothing), never a truncated file under the final name."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode, newline=None if "b" in mode else "") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


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


def curated_noise(data_dir: str | Path) -> NoiseConfig | None:
    """The rigid noise a directory was curated with (its ``curation.json``); ``None`` when it was not curated here
    (e.g. the authors' COD-Cluster17 files)."""
    path = Path(data_dir) / SETTINGS
    if not path.is_file():
        return None
    try:
        return NoiseConfig(**json.loads(path.read_text()).get("noise", {}))
    except (AttributeError, TypeError, ValueError) as error:
        raise InputError(f"{path}: unreadable noise settings ({error})") from error


def data_inversion(data_dir: str | Path) -> bool | None:
    """``noise.inversion`` of a curated directory's ``curation.json``; ``None`` when it was not curated here."""
    noise = curated_noise(data_dir)
    return None if noise is None else noise.inversion


def read_per_cluster(path: str | Path) -> pd.DataFrame:
    """A per-cluster metrics CSV (``per_cluster.csv``, ``identity.csv``, ``collapse.csv``) as written, cluster
    ids kept as strings (``0000102`` stays ``0000102``)."""
    return pd.read_csv(path, dtype={"cluster_id": str}, keep_default_na=False, na_values=[""])


def subset_label(subset: int | None) -> str:
    """Column label of a subset size: 5000 → ``COD-5K``, 12 → ``COD-12``, ``None`` → ``all``."""
    if subset is None or (isinstance(subset, float) and np.isnan(subset)):
        return "all"
    subset = int(subset)
    return f"COD-{subset // 1000}K" if subset >= 1000 and subset % 1000 == 0 else f"COD-{subset}"


def run_name(method: str, subset: int | None, seed: int, inversion: bool) -> str:
    """Conventional run directory name, e.g. ``lerp_COD-5K_s0_inv``."""
    return f"{method}_{subset_label(subset)}_s{seed}" + ("_inv" if inversion else "")


def _split_metric(column: str) -> tuple[str, str]:
    """``"pm_atom_best"`` → ``("pm_atom", "_best")``; a plain metric has the suffix ``""``."""
    for suffix in SELECTIONS:
        if suffix and column.endswith(suffix):
            return column.removesuffix(suffix), suffix
    return column, ""


def metric_label(column: str) -> str:
    """Table label of a metric column, its direction included: ``"pm_atom_best"`` → ``"PM (atom), best of k … ↓"``."""
    metric, suffix = _split_metric(column)
    if metric not in _METRICS:
        return column
    name, arrow = _METRICS[metric]
    name = f"{name}, {SELECTIONS[suffix]}" if suffix else name
    return f"{name} {arrow}" if arrow else name


def metric_direction(column: str) -> str | None:
    """``LOWER`` (↓) or ``HIGHER`` (↑) when that is better for this metric column; ``None`` when neither."""
    return METRIC_DIRECTIONS.get(_split_metric(column)[0])


def metric_groups(keys: Sequence[str] | None = None) -> dict[str, tuple[str, ...]]:
    """``keys`` (default ``metrics.METRIC_KEYS``) in their order, split into ``"PM and geometry"`` and
    ``"packing similarity"`` (:data:`PACKING_SIMILARITY`); a group without keys is left out."""
    keys = tuple(metrics.METRIC_KEYS if keys is None else keys)
    groups = {
        "PM and geometry": tuple(k for k in keys if k not in PACKING_SIMILARITY),
        "packing similarity": tuple(k for k in keys if k in PACKING_SIMILARITY),
    }
    return {name: group for name, group in groups.items() if group}


def metric_means(per_cluster: pd.DataFrame) -> dict[str, float]:
    """Mean over clusters (NaNs skipped) of every metric column of a metrics table: each of
    ``metrics.METRIC_KEYS`` and its ``_best`` / ``_chosen`` columns where present."""
    columns = [f"{key}{suffix}" for suffix in SELECTIONS for key in metrics.METRIC_KEYS]
    present = [c for c in columns if c in per_cluster.columns]
    return {key: float(value) for key, value in per_cluster[present].astype(float).mean().items()}


def summary_rows(means: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """One row per named set of mean metrics, columns ``metrics.METRIC_KEYS`` (NaN where a set lacks one).

    A set with ``_best`` / ``_chosen`` means (K > 1 samples) gets a row for each beside its mean over samples,
    e.g. ``"CrystalFlow-LERP, best of k (oracle)"``.
    """
    keys = list(metrics.METRIC_KEYS)
    rows: dict[str, dict[str, float]] = {}
    for name, values in means.items():
        for suffix, selection in SELECTIONS.items():
            row = {key: values.get(f"{key}{suffix}", np.nan) for key in keys}
            if suffix and all(pd.isna(v) for v in row.values()):
                continue
            rows[f"{name}, {selection}" if suffix else name] = row
    return pd.DataFrame.from_dict(rows, orient="index", columns=keys)


def _baseline_scorers() -> dict[str, Callable[..., pd.DataFrame]]:
    """``{baseline: inference.score_<baseline>}`` for the baselines that :mod:`~crystalflow_core.inference`
    provides (``score_collapse`` is looked up when called, so it is used as soon as it exists)."""
    from . import inference

    scorers = {name: getattr(inference, f"score_{name}", None) for name in BASELINES}
    return {name: scorer for name, scorer in scorers.items() if scorer is not None}


def score_baselines(truth_dir: str | Path, cluster_ids: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Per-cluster metrics of every baseline (identity, collapse) on ``cluster_ids`` of ``truth_dir``."""
    return {name: scorer(truth_dir, list(cluster_ids)) for name, scorer in _baseline_scorers().items()}


def _check_evaluation_input(truth_dir: Path, pred_dir: Path) -> None:
    """Predictions exist under ``pred_dir`` and every predicted cluster is curated in ``truth_dir``."""
    from .data import codcluster17
    from .params import check_predictions_dir

    check_predictions_dir("pred_dir", pred_dir)
    predictions = codcluster17.list_predictions(pred_dir)
    curated = set(codcluster17.list_cluster_ids(truth_dir))
    unknown = [cid for cid in predictions if cid not in curated]
    if unknown:
        first = unknown[0]
        raise InputError(
            f"{predictions[first][0]}: {len(unknown)} predicted cluster(s) not curated in {truth_dir} "
            f"(no {codcluster17.final_path(truth_dir, first)} with {codcluster17.initial_path(truth_dir, first)})"
        )


def score_evaluation(truth_dir: str | Path, pred_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Per-cluster metrics of the predictions under ``pred_dir`` (COD-Cluster17 layout, any model) and of the
    baselines on the same clusters: ``{"prediction": …, "identity": …, "collapse": …}``.

    Missing predictions, or a predicted cluster that ``truth_dir`` lacks, raise an
    :class:`~crystalflow_core.errors.InputError` naming the files; a prediction file that does not match its truth
    raises ``ClusterFileError``.
    """
    from .inference import score_predictions

    truth_dir, pred_dir = Path(truth_dir), Path(pred_dir)
    _check_evaluation_input(truth_dir, pred_dir)
    per_cluster = score_predictions(truth_dir, pred_dir)
    return {"prediction": per_cluster, **score_baselines(truth_dir, list(per_cluster["cluster_id"]))}


def write_run_record(
    run_dir: str | Path,
    config: Mapping | object,
    per_cluster: pd.DataFrame,
    identity: pd.DataFrame | None = None,
    collapse: pd.DataFrame | None = None,
    split: str = "test",
    samples: int = 1,
) -> Path:
    """Write ``per_cluster.csv`` (and ``identity.csv``, ``collapse.csv``) and ``record.json`` into ``run_dir``;
    returns the record.

    ``config`` is a :class:`~crystalflow_core.train.TrainConfig` or its ``to_dict()``; ``per_cluster`` is a
    :func:`~crystalflow_core.metrics.metrics_table` of the model's predictions, ``identity`` the same for ``x_w``
    and ``collapse`` for ``x_w`` with every molecule collapsed to its centroid. A baseline not given is stored as
    ``{}``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = dict(config) if isinstance(config, Mapping) else config.to_dict()
    per_cluster_path = run_dir / PER_CLUSTER
    with atomic_open(per_cluster_path) as handle:
        per_cluster.to_csv(handle, index=False)
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
        "metrics": metric_means(per_cluster),
        "config": config,
    }
    for name, frame in {"identity": identity, "collapse": collapse}.items():
        record[name] = {}
        if frame is not None:
            with atomic_open(run_dir / BASELINE_FILES[name]) as handle:
                frame.to_csv(handle, index=False)
            record[name] = metric_means(frame)
    path = run_dir / RECORD
    with atomic_open(path) as handle:
        json.dump(record, handle, indent=2)
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
    """Sample a trained run on its own ``split`` (same seed and subset as training), score it and the baselines
    (:func:`score_evaluation`), and write ``RUN/predictions/`` and the run record; returns the ``record.json``
    path."""
    from .data.dataset import ClusterDataset
    from .inference import predict_dataset, write_predictions
    from .paths import get_path
    from .train import load_model

    run_dir = Path(run_dir)
    model, config = load_model(run_dir, device)
    dataset = ClusterDataset(config.data, split=split, seed=config.seed, subset=config.subset, progress=False)
    if len(dataset) == 0:
        raise InputError(f"{config.data}: the {split} split of this run is empty")
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
    scored = score_evaluation(config.data, pred_dir)
    return write_run_record(
        run_dir,
        config,
        scored["prediction"],
        identity=scored.get("identity"),
        collapse=scored.get("collapse"),
        split=split,
        samples=samples,
    )


def load_run_per_cluster(run_dir: str | Path) -> pd.DataFrame:
    """Per-cluster metrics of a recorded run and of its baselines, one frame with a ``method`` label column
    (:data:`METHOD_LABELS`); a baseline whose CSV is absent is left out."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / RECORD).read_text())
    method = record["method"]
    frames = [read_per_cluster(run_dir / PER_CLUSTER).assign(method=method)]
    for name in BASELINES:
        path = run_dir / BASELINE_FILES[name]
        if path.is_file():
            frames.append(read_per_cluster(path).assign(method=name))
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(method=frame["method"].map(lambda m: METHOD_LABELS.get(m, m)))


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

    Columns: RECORD_COLUMNS, the model's mean metrics (``pm_atom``, …) and each baseline's (``identity_pm_atom``,
    ``collapse_pm_atom``, …). Nothing found gives an empty frame with the record columns.
    """
    items = [dirs_or_glob] if isinstance(dirs_or_glob, (str, Path)) else list(dirs_or_glob)
    paths = sorted({p.resolve() for item in items for p in _record_paths(item)})
    rows = []
    for path in paths:
        record = json.loads(path.read_text())
        row = {key: record.get(key) for key in RECORD_COLUMNS}
        row["run_dir"] = str(path.parent)
        row.update(record.get("metrics", {}))
        for baseline in BASELINES:
            row.update({f"{baseline}_{key}": value for key, value in (record.get(baseline) or {}).items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.reindex(columns=list(dict.fromkeys(RECORD_COLUMNS + list(frame.columns))))


def _baseline_rows(records: pd.DataFrame, baseline: str, keys: list[str], metric_cols: Sequence[str]) -> pd.DataFrame:
    """One ``baseline`` row per ``keys`` group, from the latest record that scored that baseline."""
    columns = {f"{baseline}_{m}": m for m in metric_cols if f"{baseline}_{m}" in records.columns}
    scored = records.dropna(subset=list(columns), how="all") if columns else records.iloc[:0]
    rows = scored.drop_duplicates(keys, keep="last")[[*keys, *columns]].rename(columns=columns)
    return rows.assign(method=baseline)


def _long_records(records: pd.DataFrame, metric_cols: Sequence[str]) -> pd.DataFrame:
    """Model rows plus one row per baseline (identity, collapse) and (subset, inversion, seed); the latest record
    wins a repeat."""
    keys = ["subset_label", "inversion", "seed"]
    if records.empty:
        return pd.DataFrame(columns=["method", *keys, *metric_cols])
    records = records.sort_values("created", kind="stable")
    records = records.assign(subset_label=records["subset"].map(subset_label))
    models = records.drop_duplicates(["method", *keys], keep="last")
    models = models[["method", *keys, *[m for m in metric_cols if m in models.columns]]]
    baselines = [_baseline_rows(records, baseline, keys, metric_cols) for baseline in BASELINES]
    return pd.concat([models, *baselines], ignore_index=True).reindex(columns=["method", *keys, *metric_cols])


def model_order(names: Iterable[str]) -> list[str]:
    """``names`` (e.g. ``paths.PATHS``) in table order, :data:`MODELS` first; unknown names follow in order."""
    names = list(dict.fromkeys(names))
    return [m for m in MODELS if m in names] + [m for m in names if m not in MODELS]


def benchmark_stats(
    records: pd.DataFrame,
    metric_cols: Sequence[str] = ("pm_atom", "pm_center"),
    methods: Sequence[str] = TABLE_ROWS,
    subsets: Sequence[int | None] | None = None,
    inversion: bool | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(mean, std, n)`` over seeds, each indexed by method and with columns ``(subset label, metric)``.

    ``std`` is the sample standard deviation (``ddof=1``), NaN for a single seed; ``n`` counts seeds (0 where
    no run exists). ``inversion`` keeps only records of that data variant (``None``: all). ``subsets`` defaults
    to the subsets present, in increasing size with ``all`` last. The baselines ``"identity"`` and
    ``"collapse"`` are rows like the methods (by default after them), from the records of any method.
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


def _best_in_column(mean: pd.Series, candidates: pd.Series, direction: str | None) -> pd.Series:
    """True where ``mean`` equals the best of ``candidates`` (lowest for ↓, highest for ↑; none for neither)."""
    if direction is None or candidates.isna().all():
        return pd.Series(False, index=mean.index)
    best = candidates.max() if direction == HIGHER else candidates.min()
    return (mean == best) & mean.notna()


def best_mask(mean: pd.DataFrame, exclude: Sequence[str] = BASELINES) -> pd.DataFrame:
    """Boolean frame: the best mean of each column among the methods not in ``exclude`` (ties all true).

    Best is the lowest mean for a metric marked ↓, the highest for one marked ↑ (``matched``, ``pass_rate``), and
    no cell for a metric with neither (``separation``) or without a label. Columns are metric names or
    ``(subset, metric)`` pairs; the baselines in ``exclude`` are never best.
    """
    excluded = [m for m in exclude if m in mean.index]
    candidates = mean.drop(index=excluded)
    mask = pd.DataFrame(False, index=mean.index, columns=mean.columns)
    for column in mean.columns:
        metric = column[-1] if isinstance(column, tuple) else column
        mask[column] = _best_in_column(mean[column], candidates[column], metric_direction(metric))
    mask.loc[excluded] = False  # a baseline that ties the best method is still not best
    return mask


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.rename(index=lambda m: METHOD_LABELS.get(m, m))
    frame.columns = frame.columns.set_levels([metric_label(m) for m in frame.columns.levels[1]], level=1)
    frame.index.name = None
    return frame


def benchmark_table(
    records: pd.DataFrame,
    metric_cols: Sequence[str] = ("pm_atom", "pm_center"),
    methods: Sequence[str] = TABLE_ROWS,
    subsets: Sequence[int | None] | None = None,
    inversion: bool | None = None,
    digits: int = 3,
) -> pd.DataFrame:
    """The paper's Tables 1–2 layout: rows GNN-MD … CrystalFlow-Rigid, then the identity and collapse baselines;
    column groups per subset; string cells.

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
    methods: Sequence[str] = TABLE_ROWS,
    subsets: Sequence[int | None] | None = None,
    inversion: bool | None = None,
    digits: int = 3,
    bold_best: bool = True,
    caption: str | None = None,
):
    """:func:`benchmark_table` as a pandas ``Styler`` with the best method of each column in bold
    (:func:`best_mask`: lowest for ↓ metrics, highest for ↑, baselines never)."""
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
