"""How many threads a search worker should compute on: crystal minimisations run by ``workers`` forked processes at
once, with numpy's and scipy's BLAS (OpenBLAS) at one thread per process or at its default of one per core; torch
runs one thread in both. The two layouts alternate, ``--repeats`` times each, in one run, so their ratio holds on a
noisy machine. ``crystalflow_core.data.workers`` takes one thread per worker from this measurement.

    python3 benchmarks/worker_threads.py --data data_out/default --cluster 1511801 \
        > benchmarks/records/worker_threads.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from threadpoolctl import threadpool_info, threadpool_limits

from crystalflow_core import solve
from crystalflow_core.csp.candidates import Candidate, generate_candidates
from crystalflow_core.csp.cluster_lattice import SPACE_GROUP_PRIOR
from crystalflow_core.csp.search import minimise_candidate
from crystalflow_core.data.codcluster17 import read_cluster
from crystalflow_core.forcefield import PairTerms, mmff_terms


def _start_worker(blas_threads: int | None) -> None:
    torch.set_num_threads(1)
    if blas_threads is not None:
        threadpool_limits(limits=blas_threads)


def _energy(candidate: Candidate, terms: PairTerms) -> float:
    return minimise_candidate(candidate, terms).energy  # only the energy travels back to the parent


def seconds_per_candidate(
    candidates: list[Candidate], terms: PairTerms, workers: int, blas_threads: int | None
) -> tuple[float, list[float]]:
    """Wall seconds per candidate with ``workers`` processes at once, and the energies (to check the layouts agree)."""
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_start_worker, initargs=(blas_threads,)) as pool:
        started = time.perf_counter()
        energies = pool.map(partial(_energy, terms=terms), candidates, chunksize=1)
        return (time.perf_counter() - started) / len(candidates), energies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data_out/default"))
    parser.add_argument("--cluster", default="1511801")
    parser.add_argument("--candidates", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    molecule = solve.central_molecule(read_cluster(args.data, args.cluster))
    terms = mmff_terms(molecule)
    groups = tuple(SPACE_GROUP_PRIOR)
    candidates = list(generate_candidates(molecule, args.candidates, groups, 0, SPACE_GROUP_PRIOR))
    blas = max((pool["num_threads"] for pool in threadpool_info() if pool["internal_api"] == "openblas"), default=0)
    layouts = {"BLAS 1 thread per worker": 1, f"BLAS default ({blas} threads per worker)": None}
    timings: dict[tuple[str, int], list[float]] = {}
    energies: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for workers in sorted({1, cores}):
            for name, threads in layouts.items():
                seconds, energies[name] = seconds_per_candidate(candidates, terms, workers, threads)
                timings.setdefault((name, workers), []).append(seconds)
    same = len({tuple(e) for e in energies.values()}) == 1
    print("# Threads per search worker\n")
    print(
        f"{platform.machine()}, {cores} cores, torch {torch.__version__}; cluster {args.cluster}, "
        f"{len(candidates)} candidates, {args.repeats} alternating repeats (median).\n"
    )
    print("| layout | workers | s per candidate (wall) |\n|---|---|---|")
    for (name, workers), values in timings.items():
        print(f"| {name} | {workers} | {statistics.median(values):.3f} |")
    one, default = (statistics.median(timings[(name, cores)]) for name in layouts)
    print(f"\nWith {cores} workers the default BLAS threads take {default / one:.2f} times as long as one thread each.")
    print(f"Energies identical in both layouts: {same}.")


if __name__ == "__main__":
    main()
