"""Run records: what a scored run is, written once and read by the benchmark (the paper's Tables 1 and 2).

A run directory written by :func:`crystalflow_core.train.train` gets a ``record.json`` once predictions of it have
been scored: the configuration, the seed, the git revision, the probability path, the subset, whether the data
were curated with inversion noise, where the checkpoint and the per-cluster metrics are, and the mean metrics of
the model and of the baselines: identity (``x_w`` returned unchanged), collapse (every atom of a molecule put at
its ``x_w`` centroid) and the crystal itself (``x_s`` scored as a prediction, the reference), and for every
mean that rests on fewer clusters than the run scored (a molecule MMFF94 cannot type, a cluster OXtalign cannot
compare) on how many, and why (``coverage``).

There is one evaluation route. Predictions are written with a ``sampling.json`` that names the run, the split and
the sampler settings (:func:`write_sampling`), by ``crystalflow sample`` and by :func:`evaluate_run` (notebook 03)
alike; :func:`score_evaluation` scores them and the baselines, and :func:`record_evaluation` writes the run's
record from the scores and that provenance (``crystalflow evaluate`` does so whenever the provenance is there).
:func:`load_run_records` gathers records into one DataFrame, :func:`benchmark_stats` turns it into mean, std and
count over seeds per method and subset; labelling and styling those tables is the notebook layer's
(``crystalflow_reports.tables``).
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import inference, metrics
from .checks import check_predictions_dir
from .data import codcluster17
from .data.curate import data_inversion
from .data.dataset import ClusterDataset
from .errors import InputError
from .files import atomic_open
from .paths import get_path
from .train import load_model

RECORD = "record.json"
PER_CLUSTER = "per_cluster.csv"
IDENTITY = "identity.csv"
COLLAPSE = "collapse.csv"
PREDICTIONS = "predictions"
SAMPLING = "sampling.json"
CRYSTAL = "crystal.csv"
#: Trained methods in table order, then the classical one (``crystalflow relax``: x_w relaxed in MMFF94, no
#: model); the baselines, scored like any prediction, follow them in every table, and last the crystal itself
#: (the answer, scored as a prediction: the reference for every metric, the interaction energy included).
MODELS = ("gnn_md", "ve", "vp", "lerp", "rigid")
CLASSICAL = ("relax", "solve")
BASELINES = ("identity", "collapse", "crystal")
TABLE_ROWS = (*MODELS, *CLASSICAL, *BASELINES)
#: Per-cluster metrics file of the predictions and of each baseline, in a run directory or ``evaluate --out``.
SCORE_FILES = {"prediction": PER_CLUSTER, "identity": IDENTITY, "collapse": COLLAPSE, "crystal": CRYSTAL}
#: The methods' published names, which the command line prints and the benchmark tables show.
METHOD_LABELS = {
    "gnn_md": "GNN-MD",
    "ve": "CrystalSDE-VE",
    "vp": "CrystalSDE-VP",
    "lerp": "CrystalFlow-LERP",
    "rigid": "CrystalFlow-Rigid",
    "relax": "MMFF94 relax of x_w",
    "solve": "Structure solution from x_w (solve)",
    "identity": "Identity (x_w)",
    "collapse": "Collapse (x_w centroids)",
    "crystal": "Crystal (x_s, the answer)",
}
#: Column suffixes of :func:`~crystalflow_core.metrics.metrics_table` with K > 1 samples: the mean over samples
#: (no suffix), the oracle best of k (chosen with the truth) and the best of k chosen without it (fewest clashes,
#: then lowest MMFF94 energy).
SELECTIONS = {"": "mean of k", "_best": "best of k (oracle)", "_chosen": "chosen of k (fewest clashes, lowest energy)"}
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


def metric_means(per_cluster: pd.DataFrame) -> dict[str, float]:
    """Mean over clusters (NaNs skipped: :func:`metric_coverage` says where) of every metric column of a metrics
    table: each of ``metrics.METRIC_KEYS`` and its ``_best`` / ``_chosen`` columns where present."""
    columns = [f"{key}{suffix}" for suffix in SELECTIONS for key in metrics.METRIC_KEYS]
    present = [c for c in columns if c in per_cluster.columns]
    return {key: float(value) for key, value in per_cluster[present].astype(float).mean().items()}


def metric_coverage(per_cluster: pd.DataFrame) -> dict[str, dict[str, object]]:
    """``{column: {"clusters", "of", "why"}}`` for each mean of :func:`metric_means` that rests on fewer than all
    clusters (:func:`~crystalflow_core.metrics.coverage`)."""
    return metrics.coverage(per_cluster).to_dict(orient="index")


def coverage_lines(coverage: Mapping[str, Mapping[str, Mapping[str, object]]]) -> list[str]:
    """One line for each mean that rests on fewer than all clusters, from ``{name: metric_coverage(...)}`` (a
    record's ``coverage``; names as in :data:`METHOD_LABELS`): on how many clusters, and why not the others."""
    return [
        f"{METHOD_LABELS.get(name, name)}: {column} is the mean of {row['clusters']} of {row['of']} clusters "
        f"({row['why']})"
        for name, columns in coverage.items()
        for column, row in columns.items()
    ]


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


#: The scorer of each baseline of :data:`BASELINES`, scored like any prediction.
BASELINE_SCORERS: dict[str, Callable[..., pd.DataFrame]] = {
    "identity": inference.score_identity,
    "collapse": inference.score_collapse,
    "crystal": inference.score_crystal,
}


def score_baselines(truth_dir: str | Path, cluster_ids: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Per-cluster metrics of every baseline (:data:`BASELINES`) on ``cluster_ids`` of ``truth_dir``."""
    return {name: BASELINE_SCORERS[name](truth_dir, list(cluster_ids)) for name in BASELINES}


def _check_evaluation_input(truth_dir: Path, pred_dir: Path) -> None:
    """Predictions exist under ``pred_dir`` and every predicted cluster is curated in ``truth_dir``."""
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
    truth_dir, pred_dir = Path(truth_dir), Path(pred_dir)
    _check_evaluation_input(truth_dir, pred_dir)
    per_cluster = inference.score_predictions(truth_dir, pred_dir)
    return {"prediction": per_cluster, **score_baselines(truth_dir, list(per_cluster["cluster_id"]))}


def _config_dict(config: Mapping | object) -> dict:
    """A :class:`~crystalflow_core.train.TrainConfig`, or its ``to_dict()``, as a plain dict."""
    return dict(config) if isinstance(config, Mapping) else config.to_dict()


def write_scores(out_dir: str | Path, scored: Mapping[str, pd.DataFrame | None]) -> dict[str, Path]:
    """Write each per-cluster table of ``scored`` (the keys of :func:`score_evaluation`; ``None`` is skipped) to
    its :data:`SCORE_FILES` name in ``out_dir``; returns the files written, by key."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in scored.items():
        if frame is not None:
            written[name] = out_dir / SCORE_FILES[name]
            with atomic_open(written[name]) as handle:
                frame.to_csv(handle, index=False)
    return written


def write_run_record(
    run_dir: str | Path,
    config: Mapping | object,
    per_cluster: pd.DataFrame,
    baselines: Mapping[str, pd.DataFrame] | None = None,
    split: str = "test",
    samples: int = 1,
) -> Path:
    """Write ``per_cluster.csv`` (and ``identity.csv``, ``collapse.csv``, ``crystal.csv``) and ``record.json``
    into ``run_dir``; returns the record.

    ``config`` is a :class:`~crystalflow_core.train.TrainConfig` or its ``to_dict()`` (for ``relax``, the
    :func:`relax_config`); ``per_cluster`` is a :func:`~crystalflow_core.metrics.metrics_table` of the
    predictions, ``baselines`` the same of each of :data:`BASELINES` by name (:func:`score_baselines`). A
    baseline not given is stored as ``{}``.
    """
    run_dir = Path(run_dir)
    config = _config_dict(config)
    baselines = {name: frame for name, frame in (baselines or {}).items() if frame is not None}
    files = write_scores(run_dir, {"prediction": per_cluster, **baselines})
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
        "per_cluster_csv": str(files["prediction"]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metrics": metric_means(per_cluster),
        "config": config,
        **{name: metric_means(baselines[name]) if name in baselines else {} for name in BASELINES},
        "coverage": {name: metric_coverage(frame) for name, frame in {"prediction": per_cluster, **baselines}.items()},
    }
    path = run_dir / RECORD
    with atomic_open(path) as handle:
        json.dump(record, handle, indent=2)
    return path


def relax_config(data: str | Path, seed: int, subset: int | None, iterations: int) -> dict:
    """The configuration of the classical ``relax`` method, in the keys a run record reads from a TrainConfig."""
    return {"path": "relax", "seed": int(seed), "subset": subset, "data": str(data), "iterations": int(iterations)}


def write_sampling(
    pred_dir: str | Path, run_dir: str | Path, config: Mapping | object, split: str, samples: int, **settings: object
) -> dict:
    """Write ``PRED/sampling.json`` beside the predictions under ``pred_dir``: the run that sampled them (its
    directory and configuration), the split, the samples per cluster and the sampler ``settings`` (steps, seed,
    ...). Scoring the predictions can then record them as that run's (:func:`record_evaluation`), whichever
    route sampled them. Returns what was written."""
    sampling = {
        "run_dir": str(Path(run_dir).resolve()),
        "split": split,
        "samples": int(samples),
        "settings": settings,
        "config": _config_dict(config),
    }
    pred_dir = Path(pred_dir)
    pred_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(pred_dir / SAMPLING) as handle:
        json.dump(sampling, handle, indent=2)
    return sampling


def read_sampling(pred_dir: str | Path) -> dict | None:
    """The ``sampling.json`` of the predictions under ``pred_dir`` (:func:`write_sampling`); ``None`` for
    predictions without one, such as another model's."""
    path = Path(pred_dir) / SAMPLING
    if not path.is_file():
        return None
    try:
        sampling = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not JSON ({error})") from error
    if not isinstance(sampling, dict) or not {"run_dir", "split", "samples", "config"} <= sampling.keys():
        raise InputError(f"{path}: not written by crystalflow sample (no run_dir, split, samples and config)")
    return sampling


def record_evaluation(sampling: Mapping, scored: Mapping[str, pd.DataFrame]) -> Path:
    """Write the run record of scored predictions (:func:`score_evaluation`) into the run that sampled them, as
    their ``sampling`` (:func:`read_sampling`) names it; returns the ``record.json`` path."""
    return write_run_record(
        sampling["run_dir"],
        sampling["config"],
        scored["prediction"],
        baselines={name: scored[name] for name in BASELINES if scored.get(name) is not None},
        split=sampling["split"],
        samples=sampling["samples"],
    )


def evaluate_run(
    run_dir: str | Path,
    samples: int = 1,
    steps: int | None = None,
    split: str = "test",
    device: str = "auto",
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Sample a trained run on its own ``split`` (same seed and subset as training) into ``RUN/predictions/``,
    score it and the baselines (:func:`score_evaluation`) and write the run record; returns the ``record.json``
    path. ``crystalflow sample`` followed by ``crystalflow evaluate`` writes the same files."""
    run_dir = Path(run_dir)
    model, config = load_model(run_dir, device)
    dataset = ClusterDataset(config.data, split=split, seed=config.seed, subset=config.subset, progress=False)
    if len(dataset) == 0:
        raise InputError(f"{config.data}: the {split} split of this run is empty")
    predictions = inference.predict_dataset(
        model,
        get_path(config.path, **config.path_kwargs),
        dataset,
        samples=samples,
        steps=steps,
        seed=seed,
        progress=progress,
    )
    shutil.rmtree(run_dir / PREDICTIONS, ignore_errors=True)
    pred_dir = inference.write_predictions(run_dir / PREDICTIONS, dataset, predictions)
    sampling = write_sampling(pred_dir, run_dir, config, split, samples, steps=steps, seed=seed)
    return record_evaluation(sampling, score_evaluation(config.data, pred_dir))


def load_run_per_cluster(run_dir: str | Path) -> pd.DataFrame:
    """Per-cluster metrics of a recorded run and of its baselines, one frame with a ``method`` label column
    (:data:`METHOD_LABELS`); a baseline whose CSV is absent is left out."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / RECORD).read_text())
    method = record["method"]
    frames = [read_per_cluster(run_dir / PER_CLUSTER).assign(method=method)]
    for name in BASELINES:
        path = run_dir / SCORE_FILES[name]
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
