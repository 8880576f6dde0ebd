"""Choosing the ranking of ``crystalflow solve`` on the validation split: the energy temperature ``T``.

``solve`` keeps every distinct crystal it found for a cluster (``OUT/Candidates/{id}.csv`` and the crystals'
CIFs), each placed on ``x_w`` here as ``solve`` places the chosen one. This scores each cut against the crystal
cluster (OXtalign: shell molecules matched of 15, and PM(atom)) and, for each ``T`` of a grid, which crystal the score
``misfit / (2 sigma^2) + (E - E_min) / T`` would choose; also the misfit alone (``T`` infinite), the energy alone,
and the oracle (the best crystal found). Only the validation split is read to choose; the rule is the highest mean
matched, then the highest pass rate, then the larger ``T``. It also shows how the oracle grows with the search:
the best crystal among a random fraction of those found (a fraction of the candidates, roughly), which is why
``solve`` searches as many candidates as its time budget allows.

    crystalflow solve --data data/default --split val --out runs/solve_val
    python3 benchmarks/solve_ranking.py --data data/default --solved runs/solve_val \\
        --out benchmarks/records/solve_ranking

With ``--diagnose`` it scores a run of another split the same way, and chooses nothing: how often the search found
a passing crystal (the oracle) and how often the ranking picked it, on the run's own crystals.

Writes ``OUT/candidates.csv`` (every crystal with its ``matched`` and ``pm_atom``), ``OUT/choices.csv`` (per
cluster and rule, the row of ``candidates.csv`` chosen) and ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from crystalflow_core.data import codcluster17
from crystalflow_core.metrics import pm_atom
from crystalflow_core.packing import PASS_MATCHED, packing_similarity, prepare_reference
from crystalflow_core.solve import CANDIDATES_DIR, found_cuts, score_crystals

TEMPERATURES = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, math.inf)
#: Fractions of the crystals found, and random draws of each, for the oracle's growth with the search.
FRACTIONS = (0.125, 0.25, 0.5, 0.75, 1.0)
DRAWS = 50


def scored_candidates(data: Path, solved: Path) -> pd.DataFrame:
    """Every crystal ``solve`` found, with ``matched`` and ``pm_atom`` of its cut against its cluster's crystal
    (NaN for a crystal whose CIF cannot be read back: :func:`~crystalflow_core.solve.found_cuts`)."""
    frames = []
    for table_path in tqdm(sorted((solved / CANDIDATES_DIR).glob("*.csv")), desc="placing crystals", unit="cluster"):
        cluster_id = table_path.stem
        table = pd.read_csv(table_path)
        cluster = codcluster17.read_cluster(data, cluster_id)
        cuts = [cut.reshape(-1, 3) for cut in found_cuts(solved, cluster)]
        reference = prepare_reference(cluster.x_s, cluster.numbers, cluster.mol_index)
        table["matched"] = [
            np.nan if np.isnan(cut).any() else packing_similarity(cut, reference)["matched"] for cut in cuts
        ]
        table["pm_atom"] = [pm_atom(cut, cluster.x_s) for cut in cuts]
        table.insert(0, "id", cluster_id)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def choices(candidates: pd.DataFrame, sigma: float, ids: list[str]) -> pd.DataFrame:
    """The row of ``candidates`` each rule chooses per cluster (``NaN`` for clusters ``solve`` could not search:
    their prediction is ``x_w``, which is scored apart)."""
    rows = []
    for cluster_id in ids:
        table = candidates[candidates["id"] == cluster_id]
        row: dict[str, object] = {"id": cluster_id}
        if not table.empty:
            for temperature in TEMPERATURES:
                row[f"T={temperature:g}"] = score_crystals(table, sigma, temperature).idxmin()  # T = inf: misfit
            row["energy only"] = table["energy"].idxmin()
            row["oracle (best found)"] = table["matched"].idxmax()
        rows.append(row)
    return pd.DataFrame(rows).set_index("id")


def rule_summary(candidates: pd.DataFrame, chosen: pd.DataFrame, unsearched_pm: dict[str, float]) -> pd.DataFrame:
    """Mean matched, pass rate and mean PM(atom) of each rule's choices over every cluster (a cluster not searched
    counts 0 matched and ``x_w``'s PM(atom), ``unsearched_pm``; a crystal that cannot be read back, 0 matched and no
    PM(atom))."""
    summary = {}
    for rule in chosen.columns:
        matched, pm = [], []
        for cluster_id, index in chosen[rule].items():
            if pd.isna(index):
                matched.append(0.0)
                pm.append(unsearched_pm[cluster_id])
            else:
                matched.append(np.nan_to_num(candidates.loc[index, "matched"]))
                pm.append(candidates.loc[index, "pm_atom"])
        summary[rule] = {
            "mean matched of 15": np.mean(matched),
            "pass %": 100 * np.mean(np.array(matched) >= PASS_MATCHED),
            "PM(atom) Å": np.nanmean(pm),  # over the crystals that could be placed
        }
    return pd.DataFrame(summary).T


def search_depth(candidates: pd.DataFrame, n_clusters: int, seed: int = 0) -> pd.DataFrame:
    """The oracle (best crystal found: mean matched, pass %) over ``n_clusters`` when only a random fraction of
    each cluster's crystals had been found (at least one), averaged over ``DRAWS`` draws."""
    rng = np.random.default_rng(seed)
    groups = [np.nan_to_num(table["matched"].to_numpy()) for _, table in candidates.groupby("id")]
    rows = []
    for fraction in FRACTIONS:
        best = np.array(
            [
                [rng.choice(m, size=max(1, round(fraction * len(m))), replace=False).max() for m in groups]
                for _ in range(DRAWS)
            ]
        )
        rows.append(
            {
                "fraction of crystals": fraction,
                "oracle mean matched of 15": best.sum(axis=1).mean() / n_clusters,
                "oracle pass %": 100 * (best >= PASS_MATCHED).sum(axis=1).mean() / n_clusters,
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument(
        "--solved", type=Path, required=True, help="a crystalflow solve output of the val split (any with --diagnose)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--diagnose", action="store_true", help="score a run of any split and choose nothing (e.g. the test record)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    sampling = json.loads((args.solved / "sampling.json").read_text())
    split = sampling["split"]
    if split != "val" and not args.diagnose:
        raise SystemExit(f"{args.solved}: solved the {split} split; the ranking is chosen on val")
    sigma = float(sampling["settings"]["sigma"])
    ids = sorted(p.stem for p in (args.solved / CANDIDATES_DIR).glob("*.json"))
    candidates = scored_candidates(args.data, args.solved)
    chosen = choices(candidates, sigma, ids)
    unsearched = [cluster_id for cluster_id in ids if chosen.loc[cluster_id].isna().all()]
    weak_pm = {}
    for cluster_id in unsearched:
        cluster = codcluster17.read_cluster(args.data, cluster_id)
        weak_pm[cluster_id] = pm_atom(cluster.x_w, cluster.x_s)
    summary = rule_summary(candidates, chosen, weak_pm)
    ranked = summary.drop(index=["energy only", "oracle (best found)"])
    best = max(ranked.index, key=lambda r: (ranked.loc[r].iloc[0], ranked.loc[r].iloc[1], float(r[2:])))
    args.out.mkdir(parents=True, exist_ok=True)
    candidates.to_csv(args.out / "candidates.csv", index=False)
    chosen.to_csv(args.out / "choices.csv")
    title = (
        f"# Ranking of crystalflow solve on the {split} split: a diagnosis, nothing chosen"
        if args.diagnose
        else "# Ranking of crystalflow solve, chosen on the validation split"
    )
    lines = [
        title,
        "",
        f"Machine: {platform.machine()}; solve settings {json.dumps(sampling['settings'])}; {len(ids)} {split} "
        f"clusters ({len(ids) - len(unsearched)} searched; the others keep x_w); {len(candidates)} crystals scored in "
        f"{time.perf_counter() - started:.0f} s ({int(candidates['matched'].isna().sum())} whose CIF cannot be read "
        "back count as matching none).",
        "",
        summary.round(2).to_markdown(),
        "",
        *([] if args.diagnose else [f"Chosen: {best} (highest mean matched, then pass rate, then larger T).", ""]),
        "The oracle against the share of the search (the best of a random fraction of each cluster's crystals, "
        f"{DRAWS} draws; clusters not searched count 0):",
        "",
        search_depth(candidates, len(ids)).round(2).to_markdown(index=False),
    ]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
