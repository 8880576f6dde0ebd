"""Reading the weak cluster: how often are the true cell and space group among the guesses from ``x_w`` alone?

For every cluster of a split of a curated bundle (default: the test and validation splits, seed 0), this reads
``x_w`` (``InitialPositions``) with :mod:`crystalflow_core.csp.cluster_lattice` and compares its ranked cell and
space-group guesses with the crystal behind the cluster:

- cell: the guessed primitive cell matches the true primitive cell (both Niggli-reduced, compared over the
  equivalent bases of the true one, orientation ignored) with every edge within 5 % and every angle within 5°
  (and, stricter, 3°); a supercell or subcell does not count;
- space group: the true number (spglib on the crystal's unit cell, symprec 0.01 Å) among the top 1 / 3 groups
  guessed for the top-ranked cell.

    python3 benchmarks/cluster_lattice_guess.py --data /tmp/cur --out benchmarks/records/cluster_lattice_guess

Writes ``OUT/table.csv`` (one row per cluster) and ``OUT/summary.md`` (rates per split, machine, time).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import spglib
from crystal_search import split_crystals

from crystalflow_core.csp import cluster_lattice
from crystalflow_core.data import codcluster17
from crystalflow_core.data.molecules import MolecularCrystal

TOP_CELLS = (1, 3, 10)
TOP_GROUPS = (1, 3)


def space_group_number(mc: MolecularCrystal) -> int:
    crystal = mc.crystal
    numbers, frac = crystal.unit_cell()
    dataset = spglib.get_symmetry_dataset((crystal.lattice, frac, numbers), symprec=0.01)
    return int(dataset.number) if dataset is not None else 0


def evaluate(data: Path, cluster_id: str, mc: MolecularCrystal, k: int) -> dict:
    """One cluster: its guesses against its crystal."""
    crystal = mc.crystal
    truth = cluster_lattice.primitive_lattice(crystal.lattice, crystal.rotations, crystal.translations)
    cluster = codcluster17.read_cluster(data, cluster_id)
    start = time.perf_counter()
    cues = cluster_lattice.read_weak_cluster(cluster.numbers, cluster.mol_index, cluster.x_w)
    guesses = cluster_lattice.guess_cells(cues, k=k)
    seconds = time.perf_counter() - start
    row = {
        "id": cluster_id,
        "space_group": space_group_number(mc),
        "z_primitive": int(round(mc.z * abs(np.linalg.det(truth)) / abs(np.linalg.det(crystal.lattice)))),
        "true_cell": " ".join(f"{v:.2f}" for v in cluster_lattice.cell_parameters(truth)),
        "guess_cell": " ".join(f"{v:.2f}" for v in guesses[0].cell_parameters()) if guesses else "",
        "guess_z": guesses[0].z if guesses else 0,
        "volume_ratio": cues.molecule_volume / (abs(np.linalg.det(crystal.lattice)) / mc.z),
        "chirality_informative": cues.chirality_informative,
        "n_improper": int((cues.handedness < 0).sum()),
        "seconds": seconds,
    }
    for angle, name in ((5.0, "cell_rank"), (3.0, "cell_rank_3deg")):
        ranks = [i + 1 for i, g in enumerate(guesses) if cluster_lattice.same_cell(g.lattice, truth, 0.05, angle)]
        row[name] = ranks[0] if ranks else 0
    groups = [number for number, _ in guesses[0].space_groups] if guesses else []
    row["group_rank"] = groups.index(row["space_group"]) + 1 if row["space_group"] in groups else 0
    row["group_guess"] = groups[0] if groups else 0
    return row


def rate(ranks: pd.Series, top: int) -> str:
    hits = int(((ranks > 0) & (ranks <= top)).sum())
    return f"{hits}/{len(ranks)} ({100.0 * hits / max(len(ranks), 1):.0f} %)"


def summary(table: pd.DataFrame, data: Path, seed: int, started: str, wall: float) -> str:
    lines = [
        "# Reading the weak cluster: cell and space-group guesses from x_w",
        "",
        f"Data {data} (seed {seed}), run {started} on {platform.node()} ({platform.machine()}, "
        f"{os.cpu_count()} CPUs, {platform.python_version()}), {wall:.0f} s in all.",
        "",
        "Cell: the guessed primitive, Niggli-reduced cell matches the true one with every edge within 5 % and every"
        " angle within 5° (3° in brackets), over the equivalent bases of the true cell; sub- and supercells do not"
        " count. Space group: the true number among the top 1 / 3 guessed for the top-ranked cell.",
        "",
        "| split | clusters | cell top 1 | cell top 3 | cell top 10 | group top 1 | group top 3 | s/cluster |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split, part in table.groupby("split", sort=False):
        cells = [f"{rate(part.cell_rank, t)} [{rate(part.cell_rank_3deg, t).split(' ')[0]}]" for t in TOP_CELLS]
        groups = [rate(part.group_rank, t) for t in TOP_GROUPS]
        lines.append(f"| {split} | {len(part)} | " + " | ".join(cells + groups) + f" | {part.seconds.mean():.1f} |")
    lines += [
        "",
        "Per split: true space groups, and how often the top cell's Z (cosets) equals the true primitive Z.",
        "",
    ]
    for split, part in table.groupby("split", sort=False):
        counts = part.space_group.value_counts()
        groups = ", ".join(f"{number}: {count}" for number, count in counts.items())
        z_right = int((part.guess_z == part.z_primitive).sum())
        lines.append(f"- {split}: {groups}; Z right {z_right}/{len(part)}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/cur"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/records/cluster_lattice_guess"))
    parser.add_argument("--splits", nargs="+", default=["test", "val"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    start = time.perf_counter()
    rows = []
    for split in args.splits:
        for cluster_id, mc in split_crystals(args.data, args.seed, split).items():
            row = {"split": split, **evaluate(args.data, cluster_id, mc, args.k)}
            rows.append(row)
            print(split, cluster_id, row["cell_rank"], row["group_rank"], flush=True)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "table.csv", index=False, float_format="%.4g")
    text = summary(table, args.data, args.seed, started, time.perf_counter() - start)
    (args.out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
