"""Curation throughput and memory: CIFs per second per core, scaling over workers, and peak RSS of the processes.

Usage: ``python benchmarks/curation_throughput.py [--source default|DIR] [--workers 1,2] [--synthetic 1,20]``.
Each measurement curates into a fresh temporary directory (journal, manifest, clusters and all) in a fresh
process, so its peak resident memory is that run's own: the parent's (which walks the source, journals the rows
and writes the manifest) and the largest worker's. The time includes the worker start-up. ``--synthetic K,...``
also curates, for each K, a mirror of K copies of every bundled COD CIF laid out as COD's
(``1/00/00/1000000.cif.gz``; all copies after the first are duplicates), so the parent's memory can be compared
across source sizes. Prints a markdown table; asserts nothing. Goal:
≥ 20 CIFs/s per core (a 500K-CIF COD mirror in under an hour on 16 cores) with a parent whose memory does not
grow with the source.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from crystalflow_core.data.curate import run_curation
from crystalflow_core.data.sources import bundled_cod_directory, resolve_refs

COLUMNS = ["source", "CIFs", "workers", "seconds", "CIFs/s", "CIFs/s per worker", "curated", "parent peak RSS"]
COLUMNS += ["worker peak RSS"]


def synthetic_mirror(root: Path, copies: int) -> Path:
    """``copies`` copies of every bundled COD CIF under COD ids from 1000000 in COD's directory layout."""
    bundled = sorted(bundled_cod_directory().glob("*.cif.gz"))
    for k in range(copies * len(bundled)):
        name = str(1_000_000 + k)
        path = root / name[0] / name[1:3] / name[3:5] / f"{name}.cif.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundled[k % len(bundled)], path)
    return root


def _counted(refs: Iterable, tally: list[int]) -> Iterator:
    for ref in refs:
        tally[0] += 1
        yield ref


def measure(source: str, workers: int) -> dict[str, float]:
    """Curate ``source`` with ``workers`` workers (run in a fresh process); seconds, inputs, curated, peak RSS."""
    tally = [0]
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        counts = run_curation(
            _counted(resolve_refs(source), tally), Path(out) / "curated", workers=workers, progress=False
        )
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "inputs": tally[0],
        "curated": counts["curated", ""],
        "parent_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def measure_apart(source: str, workers: int) -> dict[str, float]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, source, workers).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="default", help="'default' (the bundle) or a directory of CIFs")
    parser.add_argument("--workers", default=f"1,{os.cpu_count()}", help="comma list of worker counts")
    parser.add_argument(
        "--synthetic", default="", help="comma list of K: also a COD-like mirror of K copies of the COD bundle for each"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        sources = {args.source: args.source}
        for copies in (int(part) for part in args.synthetic.split(",") if part):
            mirror = synthetic_mirror(Path(scratch) / f"cod{copies}", copies)
            sources[f"synthetic mirror, {copies}x the COD bundle"] = str(mirror)
        print(f"{os.cpu_count()} cores\n")
        print(_table_row(COLUMNS))
        print(_table_row(["---"] + ["---:"] * (len(COLUMNS) - 1)))
        for name, source in sources.items():
            for workers in (int(part) for part in args.workers.split(",")):
                run = measure_apart(source, workers)
                rate = run["inputs"] / run["seconds"]
                cells = [name, run["inputs"], workers, f"{run['seconds']:.1f}", f"{rate:.1f}", f"{rate / workers:.1f}"]
                cells += [run["curated"], f"{run['parent_mb']:.0f} MB", f"{run['worker_mb']:.0f} MB"]
                print(_table_row(cells), flush=True)


def _table_row(cells: list) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


if __name__ == "__main__":
    main()
