"""How a training step of our PaiNN grows with the atoms of a cluster and with the cutoff, in both pair layouts.

Usage: ``python benchmarks/cost_growth.py [--data DIR] [--out benchmarks/records/cost_growth]``. Each point runs
in a fresh process (so its peak RSS is its own): one forward + backward + Adam step of the 128-feature, 3-layer,
20-RBF network on one real cluster, median of 3 after a warm-up. Writes ``points.csv`` and a log–log
``cost_growth.png`` and prints the fitted exponents.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SIZES_CUTOFF = 10.0
CUTOFFS = (3.0, 5.0, 7.0, 10.0, 14.0, 20.0)
TARGET_ATOMS = (100, 200, 350, 500, 700, 1000, 1400, 2000)


def _measure(csv: str, cutoff: float, dense: bool) -> dict:
    """One point, in this process: median step seconds and peak RSS growth during the steps."""
    import gemmi
    import torch

    from crystalflow_core.nn import PaiNNVelocity

    torch.manual_seed(0)
    frame = pd.read_csv(csv)
    numbers = torch.tensor([gemmi.Element(symbol).atomic_number for symbol in frame["atom_type"]])
    x = torch.tensor(frame[["x", "y", "z"]].to_numpy(), dtype=torch.float32)
    x_w = x + 0.5 * torch.randn_like(x)
    batch = torch.zeros(len(x), dtype=torch.long)
    molecule = torch.tensor(frame["mol_idx"].to_numpy())
    model = PaiNNVelocity(hidden=128, layers=3, n_rbf=20, cutoff=cutoff)
    model.dense_pairs = dense
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    target = torch.randn_like(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(numbers, x, x_w, torch.tensor([0.5]), batch, molecule), target)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    step()
    seconds = float(np.median([step() for _ in range(3)]))
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"atoms": len(x), "cutoff": cutoff, "dense": dense, "step_s": seconds, "step_rss_mb": peak}


def _point(csv: str, cutoff: float, dense: bool) -> dict:
    command = [sys.executable, __file__, "--point", json.dumps([csv, cutoff, dense])]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _clusters_by_size(data: Path) -> list[str]:
    files = sorted((data / "FinalPositions").glob("*.csv"))
    sizes = np.array([sum(1 for _ in open(f)) - 1 for f in files])
    return [str(files[int(np.abs(sizes - target).argmin())]) for target in TARGET_ATOMS]


def _exponent(x: pd.Series, y: pd.Series) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data_out/default"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/records/cost_growth"))
    parser.add_argument("--point", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        print(json.dumps(_measure(*json.loads(args.point))))
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    clusters = _clusters_by_size(args.data)
    middle = clusters[TARGET_ATOMS.index(500)]
    rows = []
    for dense in (True, False):
        rows += [{"sweep": "atoms", **_point(csv, SIZES_CUTOFF, dense)} for csv in clusters]
        rows += [{"sweep": "cutoff", **_point(middle, cutoff, dense)} for cutoff in CUTOFFS]
        print(pd.DataFrame(rows).tail(len(clusters) + len(CUTOFFS)).to_string(index=False), flush=True)
    points = pd.DataFrame(rows)
    points.to_csv(args.out / "points.csv", index=False)
    figure, axes = plt.subplots(2, 2, figsize=(10, 8))
    for column, (sweep, x_name) in enumerate((("atoms", "atoms"), ("cutoff", "cutoff"))):
        for row, y_name in enumerate(("step_s", "step_rss_mb")):
            axis = axes[row, column]
            for dense, part in points[points["sweep"] == sweep].groupby("dense"):
                label = "dense pair blocks" if dense else "edge lists"
                slope = _exponent(part[x_name], part[y_name].clip(lower=1e-3))
                axis.loglog(part[x_name], part[y_name], "o-", label=f"{label} (slope {slope:.2f})")
                print(f"{sweep:6s} {label:18s} {y_name:12s} exponent {slope:.2f}")
            axis.set_xlabel("atoms in the cluster" if sweep == "atoms" else "cutoff (Å), 500-atom cluster")
            axis.set_ylabel("step time (s)" if y_name == "step_s" else "step memory (MB, peak RSS)")
            axis.legend()
    figure.suptitle(f"PaiNN 128×3, 20 RBF, one training step (atoms sweep at {SIZES_CUTOFF:g} Å)")
    figure.tight_layout()
    figure.savefig(args.out / "cost_growth.png", dpi=110)


if __name__ == "__main__":
    main()
