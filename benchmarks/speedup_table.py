"""Markdown table of a peer-benchmark CSV: step time and peak memory of each model, and our speed-up.

Usage: ``python benchmarks/speedup_table.py results.csv [layouts.csv]``. Speed-up = schnetpack's median step time /
ours; memory ratio = our step memory (peak RSS, or CUDA peak on a GPU) / schnetpack's, both from the same run. With
the layout log of the run (``CRYSTALFLOW_LAYOUT_LOG`` of ``schnetpack_adapter.py``) a column names the pair layout
ours chose at each setting.
"""

from __future__ import annotations

import re
import sys

import pandas as pd

NAMES = {
    "make_model": "ours",
    "make_edge_model": "ours (edge lists)",
    "make_compiled_edge_model": "ours (compiled edge lists)",
    "make_dense_model": "ours (dense blocks)",
    "make_tf32_model": "ours tf32",
    "make_bf16_model": "ours bf16",
    "make_compiled_model": "ours compiled",
    "spk_painn": "schnetpack",
}


def _short(model: str) -> str:
    return NAMES.get(model.rsplit(":", 1)[-1], model)


def speedup_table(results: pd.DataFrame, layouts: pd.DataFrame | None = None) -> str:
    """One row per (cutoff, batch): each model's step time, ours (float32) against schnetpack, the best of our
    modes against schnetpack, and the memory ratio of ours (float32) to schnetpack's; with `layouts` (columns
    cutoff, batch, layout) the pair layout ours chose."""
    results = results.assign(model=results["model"].map(_short))
    memory = "cuda_peak_alloc_mb" if results["cuda_peak_alloc_mb"].notna().any() else "peak_rss_mb"
    models = [name for name in NAMES.values() if name in set(results["model"])]
    ours = [name for name in models if name.startswith("ours") and "(" not in name]
    chosen = {} if layouts is None else {(float(c), int(b)): layout for c, b, layout in layouts.values[:, :3]}
    layout_head, layout_rule = (" ours: layout |", "---|") if chosen else ("", "")
    lines = [
        f"| cutoff Å | batch | edges |{layout_head} {' | '.join(f'{m} s' for m in models)} | speed-up | "
        f"best mode: speed-up | memory ours / schnetpack ({memory}) |",
        "|---:|---:|---:|" + layout_rule + "---:|" * len(models) + "---:|---|---:|",
    ]
    for (cutoff, batch), rows in results.groupby(["cutoff", "batch"]):
        by_model = rows.set_index("model")
        ok = by_model["status"].astype(str).str.startswith("ok")
        step = by_model["step_median_s"].where(ok)
        times = " | ".join(f"{step.get(m, float('nan')):.3f}" for m in models)
        reference = step.get("schnetpack", float("nan"))
        speedup = reference / step.get("ours", float("nan"))
        timed = step.reindex(ours).dropna()
        best = f"{timed.idxmin()}: {reference / timed.min():.2f}×" if len(timed) > 1 else "—"
        ratio = by_model[memory].get("ours", float("nan")) / by_model[memory].where(ok).get("schnetpack", float("nan"))
        edges = int(by_model["edges"].max())
        layout = f" {chosen.get((float(cutoff), int(batch)), '—')} |" if chosen else ""
        lines.append(f"| {cutoff:g} | {batch} | {edges} |{layout} {times} | {speedup:.2f}× | {best} | {ratio:.2f} |")
    return re.sub(r"\bnan×?", "not run", "\n".join(lines))


if __name__ == "__main__":
    layout_log = pd.read_csv(sys.argv[2], header=None) if len(sys.argv) > 2 else None
    print(speedup_table(pd.read_csv(sys.argv[1]), layout_log))
