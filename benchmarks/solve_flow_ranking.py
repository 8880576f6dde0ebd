"""Does the learned rigid flow help ``crystalflow solve`` rank its crystals? Measured on the validation split only.

For every crystal that ``solve`` found for a val cluster (its cut superposed on ``x_w``, in ``x_w``'s molecule and atom
order) this takes the per-molecule orientation disagreement with the rigid flow's predictions from ``x_w`` (mean
squared distance of the centred atoms, Å², averaged over the flow's samples) and adds ``w`` times it to solve's
score, ``misfit / 2 sigma^2 + (E - E_min) / T``. A control does the same with ``x_w``'s own orientations, which
the noise made random. The flow must be trained on the train split (its val clusters unseen):

    crystalflow train --data data/default --path rigid --out runs/rigid_train_s0
    crystalflow sample --run runs/rigid_train_s0 --data data/default --split val --samples 4 --out runs/rigid_val
    python3 benchmarks/solve_flow_ranking.py --data data/default --solved runs/solve_val_s0 \\
        --ranking benchmarks/records/solve/ranking --flow runs/rigid_val --out benchmarks/records/solve/flow_ranking.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from crystalflow_core.data import codcluster17
from crystalflow_core.packing import PASS_MATCHED
from crystalflow_core.settings import SOLVE_TEMPERATURE
from crystalflow_core.solve import CANDIDATES_DIR, found_cuts, score_crystals

WEIGHTS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)


def orientation_disagreement(cuts: np.ndarray, references: list[np.ndarray]) -> np.ndarray:
    """``[C]``: mean over molecules of the centred atoms' mean squared distance between each cut ``[C, M, n, 3]``
    and each reference ``[M, n, 3]``, averaged over the references."""
    centred = cuts - cuts.mean(axis=2, keepdims=True)
    out = []
    for reference in references:
        ref = reference - reference.mean(axis=1, keepdims=True)
        out.append(((centred - ref[None]) ** 2).sum(-1).mean(axis=(-1, -2)))
    return np.mean(out, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--solved", type=Path, required=True, help="crystalflow solve output of the val split")
    parser.add_argument("--ranking", type=Path, required=True, help="solve_ranking.py's output (candidates.csv)")
    parser.add_argument("--flow", type=Path, required=True, help="crystalflow sample output of the val split")
    parser.add_argument("--out", type=Path, required=True, help="a markdown file")
    args = parser.parse_args()
    sampling = json.loads((args.solved / "sampling.json").read_text())
    if sampling["split"] != "val" or json.loads((args.flow / "sampling.json").read_text())["split"] != "val":
        raise SystemExit("the flow's help to the ranking is measured on the val split only")
    sigma, temperature = float(sampling["settings"]["sigma"]), SOLVE_TEMPERATURE
    candidates = pd.read_csv(args.ranking / "candidates.csv", dtype={"id": str})
    n_clusters = len(list((args.solved / CANDIDATES_DIR).glob("*.json")))
    tables = []
    for cluster_id, table in candidates.groupby("id", sort=False):
        cluster = codcluster17.read_cluster(args.data, cluster_id)
        shape = (cluster.n_molecules, -1, 3)
        cuts = found_cuts(args.solved, cluster)
        flow = [
            codcluster17.read_positions_csv(p)[2].reshape(shape)
            for p in sorted((args.flow / "PredictedPositions").glob(f"{cluster_id}_cluster16_pred*.csv"))
        ]
        table = table.reset_index(drop=True)
        table["flow"] = orientation_disagreement(cuts, flow)
        table["x_w"] = orientation_disagreement(cuts, [cluster.x_w.reshape(shape)])
        table["base"] = score_crystals(table, sigma, temperature)
        tables.append(table)
    rows, correlations = [], {}
    for reference in ("flow", "x_w"):
        for weight in WEIGHTS:
            chosen = [t.loc[(t["base"] + weight * t[reference]).idxmin(), "matched"] for t in tables]
            rows.append(
                {
                    "orientations of": reference,
                    "w (1/Å²)": weight,
                    "mean matched of 15": sum(chosen) / n_clusters,
                    "pass %": 100 * sum(m >= PASS_MATCHED for m in chosen) / n_clusters,
                }
            )
        correlations[reference] = np.nanmean([t["matched"].corr(-t[reference]) for t in tables])
    lines = [
        "# The rigid flow in solve's ranking (validation split)",
        "",
        f"{n_clusters} val clusters ({len(tables)} searched, {sum(map(len, tables))} crystals); score "
        f"misfit/2σ² + (E − E_min)/{temperature} + w · disagreement; flow samples from {args.flow}.",
        "",
        pd.DataFrame(rows).round(3).to_markdown(index=False),
        "",
        "Within a cluster, the correlation of matched with minus the disagreement (mean over clusters): flow "
        f"{correlations['flow']:.3f}, x_w {correlations['x_w']:.3f}.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
