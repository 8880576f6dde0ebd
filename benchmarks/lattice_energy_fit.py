"""Does the lattice energy keep experimental crystals, and which weight of its D3 dispersion term does?

Minimises the experimental crystal of every rigid molecule (at most one rotatable bond) of the default curation
(seed 0) with the lattice energy's D3(BJ) term scaled by each value of ``--scales`` (0: MMFF94 alone), and records
the shell molecules still matched (of 15, periodic RMSD_15) and the volume change. The scale is chosen on the
train split alone: the most crystals kept (>= 14 of 15), then the smallest median volume change; the validation
split judges it, and the test split is shown at the chosen scale and at 0 (MMFF94 as published) only.

    python3 benchmarks/lattice_energy_fit.py --data DIR --out benchmarks/records/lattice_energy_fit

``OUT/relaxed.csv`` holds every minimisation and ``OUT/summary.md`` the choice; a rerun keeps finished rows.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import torch
from crystal_search import relax_experimental, rigid_molecule, split_crystals

from crystalflow_core.csp.compare import CrystalReference
from crystalflow_core.errors import InputError

KEPT = 14
_crystals: dict = {}


def _relax(job: tuple[str, str, float]) -> dict:
    split, cluster_id, scale = job
    mc, molecule = _crystals[cluster_id]
    started = time.perf_counter()
    row = relax_experimental(mc, molecule, CrystalReference.of(mc), dispersion_scale=scale)
    return {"split": split, "id": cluster_id, "scale": scale, **row, "seconds": time.perf_counter() - started}


def per_scale(rows: pd.DataFrame) -> pd.DataFrame:
    """Per split and scale: crystals, kept fraction, mean matched, median and spread of the volume change."""
    return (
        rows.groupby(["split", "scale"])
        .agg(
            crystals=("id", "size"),
            kept_percent=("relaxed_matched", lambda m: 100.0 * (m >= KEPT).mean()),
            mean_matched=("relaxed_matched", "mean"),
            volume_change_median=("volume_change_percent", "median"),
            volume_change_q10=("volume_change_percent", lambda v: v.quantile(0.1)),
            volume_change_q90=("volume_change_percent", lambda v: v.quantile(0.9)),
        )
        .reset_index()
    )


def choose(table: pd.DataFrame) -> float:
    train = table[table["split"] == "train"].copy()
    train["abs_volume"] = train["volume_change_median"].abs()
    return float(train.sort_values(["kept_percent", "abs_volume"], ascending=[False, True]).iloc[0]["scale"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the default curation (made there if absent)")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    table_path = args.out / "relaxed.csv"
    done = pd.read_csv(table_path, dtype={"id": str}) if table_path.is_file() else pd.DataFrame()
    ids: dict[str, list[str]] = {}
    for split in ("train", "val", "test"):
        ids[split] = []
        for cluster_id, mc in split_crystals(args.data, args.seed, split).items():
            try:
                molecule = rigid_molecule(cluster_id, mc)
            except InputError:
                continue
            if molecule is not None:
                _crystals[cluster_id] = (mc, molecule)
                ids[split].append(cluster_id)

    def run(jobs: list[tuple[str, str, float]]) -> pd.DataFrame:
        nonlocal done
        finished = set(zip(done.get("id", []), done.get("scale", []), strict=True))
        todo = [job for job in jobs if (job[1], job[2]) not in finished]
        with get_context("fork").Pool(args.workers) as pool:
            for i, row in enumerate(pool.imap_unordered(_relax, todo), start=1):
                done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
                if i % 20 == 0 or i == len(todo):
                    done.to_csv(table_path, index=False)
                    print(f"{i}/{len(todo)} minimisations", flush=True)
        return done

    started = time.perf_counter()
    run([(split, cid, scale) for split in ("train", "val") for cid in ids[split] for scale in args.scales])
    chosen = choose(per_scale(done))
    rows = run([("test", cid, scale) for cid in ids["test"] for scale in sorted({0.0, chosen})])
    table = per_scale(rows[rows["scale"].isin(args.scales)])
    lines = [
        "# Experimental crystals relaxed: the weight of the D3 dispersion term on top of MMFF94",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"{args.workers} workers; seed {args.seed}; rigid molecules of the default curation: "
        + ", ".join(f"{split} {len(ids[split])}" for split in ids)
        + f"; {time.perf_counter() - started:.0f} s for this run's minimisations.",
        "",
        f"Chosen on the train split (most kept >= {KEPT} of 15, then the smallest median volume change): "
        f"**D3 scale {chosen:.2f}**.",
        "",
        table.to_markdown(index=False, floatfmt=".2f"),
        "",
    ]
    (args.out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
