"""Benchmark tables as a reader sees them: metric labels with their better direction, "mean ± std" cells and the
best method of each column in bold (the paper's Tables 1–2).

The numbers come from the core (:func:`crystalflow_core.records.benchmark_stats`); this module only names, formats
and styles them, so the run record stays free of presentation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from crystalflow_core import metrics
from crystalflow_core.records import BASELINES, METHOD_LABELS, SELECTIONS, benchmark_stats, summary_rows

MISSING = "—"
LOWER, HIGHER = "↓", "↑"
#: Every metric's name and direction: lower (↓) or higher (↑) is better, or neither (``None``: never bold).
_METRICS: dict[str, tuple[str, str | None]] = {
    "pm_atom": ("PM (atom)", LOWER),
    "pm_center": ("PM (center)", LOWER),
    "collision": ("Collision (%)", LOWER),
    "clash": ("Clash (%)", LOWER),
    "separation": ("Separation (%)", None),
    "energy": ("Energy (kcal/mol per molecule)", LOWER),
    "matched": ("Matched (of 15)", HIGHER),
    "rmsd15": ("RMSD₁₅ (Å)", LOWER),
    "pass_rate": ("Pass rate (%)", HIGHER),
    "rmsd": ("RMSD (Å)", LOWER),
    "integrity": ("Integrity (Å)", LOWER),
}
METRIC_LABELS = {key: f"{name} {arrow}" if arrow else name for key, (name, arrow) in _METRICS.items()}
METRIC_DIRECTIONS = {key: arrow for key, (_, arrow) in _METRICS.items()}
#: OXtalign packing-similarity metrics (15-molecule shell); Tables 1–2 show them in a table of their own.
PACKING_SIMILARITY = ("matched", "rmsd15", "pass_rate")


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


def format_cell(mean: float, std: float, digits: int = 3) -> str:
    """``"13.589 ± 0.087"``; a single seed (NaN std) gives ``"13.589"``; a missing run gives ``"—"``."""
    if pd.isna(mean):
        return MISSING
    if pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summary_table(means: Mapping[str, Mapping[str, float]], digits: int = 3) -> pd.DataFrame:
    """:func:`~crystalflow_core.records.summary_rows` of ``means`` as string cells with metric labels: a number to
    ``digits`` places, ``"—"`` where a mean is missing (as in the benchmark tables; e.g. RMSD₁₅ of a set that
    matched no molecule)."""
    rows = summary_rows(means)
    cells = rows.apply(lambda column: column.map(lambda mean: format_cell(mean, np.nan, digits)))
    return cells.rename(columns=metric_label)


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


def benchmark_table(records: pd.DataFrame, digits: int = 3, **selection: object) -> pd.DataFrame:
    """The paper's Tables 1–2 layout: rows GNN-MD … CrystalFlow-Rigid, the classical MMFF94 relax, then
    the identity and collapse baselines and the crystal;
    column groups per subset; string cells.

    Cells are "mean ± std" over seeds and "—" where no run exists; ``selection`` (``metric_cols``, ``methods``,
    ``subsets``, ``inversion``) chooses them as in :func:`~crystalflow_core.records.benchmark_stats`.
    """
    mean, std, _ = benchmark_stats(records, **selection)
    return _cell_table(mean, std, digits)


def _cell_table(mean: pd.DataFrame, std: pd.DataFrame, digits: int) -> pd.DataFrame:
    """Labelled "mean ± std" / "—" string cells from the statistics of ``benchmark_stats``."""
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
    records: pd.DataFrame, digits: int = 3, bold_best: bool = True, caption: str | None = None, **selection: object
):
    """:func:`benchmark_table` (same ``selection``) as a pandas ``Styler`` with the best method of each column in
    bold (:func:`best_mask`: lowest for ↓ metrics, highest for ↑, baselines never)."""
    mean, std, _ = benchmark_stats(records, **selection)
    table = _cell_table(mean, std, digits)
    mask = best_mask(mean) if bold_best else pd.DataFrame(False, index=mean.index, columns=mean.columns)
    css = pd.DataFrame(np.where(mask.to_numpy(), "font-weight: bold", ""), index=table.index, columns=table.columns)
    styler = table.style.apply(lambda _: css, axis=None)
    return styler.set_caption(caption) if caption else styler
