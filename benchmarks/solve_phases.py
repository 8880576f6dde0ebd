"""Where a cluster's time goes in ``crystalflow solve``: the search (pyxtal candidates, minimisation, merging), the
crystals' pools, the capped fits that score them, and the placement of the chosen crystal; beside it, placing every
crystal found (what ``solve`` did at revision 1afa240). Parts are timed one after another in one process, so their
ratios hold on a noisy machine; the search uses every core, as ``solve`` does.

    python3 benchmarks/solve_phases.py --data data_out/default --cluster 2240041 \
        > benchmarks/records/solve/phases_2240041.md
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from crystalflow_core import solve
from crystalflow_core.csp.cluster_fit import place_cut
from crystalflow_core.csp.cluster_lattice import SPACE_GROUP_PRIOR
from crystalflow_core.csp.search import SearchSettings, search_crystals
from crystalflow_core.data.codcluster17 import read_cluster
from crystalflow_core.data.curate import curated_noise


def timed(part: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = part()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data_out/default"))
    parser.add_argument("--cluster", required=True, help="the cluster id")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cluster = read_cluster(args.data, args.cluster)
    noise = curated_noise(args.data)
    inversion = bool(noise and noise.inversion)
    sigma = solve.DEFAULT_SIGMA if noise is None else noise.translation_sigma
    weak, informative, groups = solve.read_x_w(cluster, inversion)
    molecule = solve.central_molecule(cluster)
    candidates = solve.candidates_for(molecule.GetNumAtoms())
    settings = SearchSettings(candidates, groups, args.seed, group_weights=SPACE_GROUP_PRIOR)
    search_seconds, result = timed(lambda: search_crystals(molecule, settings, progress=False))
    found = result.crystals
    pool_seconds, pools = timed(lambda: [solve.crystal_pool(f.crystal) for f in found])
    fit_seconds, _ = timed(lambda: [solve.fit_crystal(f, weak, informative, sigma, args.seed) for f in found])
    every_seconds, _ = timed(lambda: [place_cut(m, p, weak, informative, seed=args.seed) for m, p in pools])
    # one crystal placed, as solve places its chosen one (the lowest in energy here: the cost is alike for any)
    one_seconds, _ = timed(lambda: solve.place_crystal(found[0].crystal, weak, informative, args.seed))
    shared = search_seconds + fit_seconds  # the scoring fits make their own pools
    now, before = shared + one_seconds, shared + every_seconds
    print(f"# Where the time of `solve` goes: cluster {args.cluster}\n")
    print(
        f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores; {candidates} candidates, "
        f"{len(found)} distinct crystals; seed {args.seed}.\n"
    )
    print("| part | seconds |\n|---|---|")
    for part, seconds in (
        *((f"search: {stage}", value) for stage, value in result.seconds.items()),
        ("search in all", search_seconds),
        ("pools of every crystal (27 molecules)", pool_seconds),
        ("capped fits that score every crystal (their pools included)", fit_seconds),
        ("placing the chosen crystal (solve now)", one_seconds),
        ("placing every crystal (solve at 1afa240)", every_seconds),
    ):
        print(f"| {part} | {seconds:.2f} |")
    print(f"\nA cluster now: {now:.1f} s; at 1afa240: {before:.1f} s ({before / now:.3f} times).")


if __name__ == "__main__":
    main()
