"""Curation throughput: CIFs per second per core, and its scaling from one worker to every core.

Usage: ``python benchmarks/curation_throughput.py [--source default|DIR] [--workers 1,2]``. Each count curates
the same structures into a fresh temporary directory (manifest, clusters and all); the time includes the
worker start-up. Prints a markdown table; asserts nothing. Goal: ≥ 20 CIFs/s per core (a 500K-CIF COD mirror
in under an hour on 16 cores).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from crystalflow_core.data.curate import curate
from crystalflow_core.data.sources import resolve_refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="default", help="'default' (the bundle) or a directory of CIFs")
    parser.add_argument("--workers", default=f"1,{os.cpu_count()}", help="comma list of worker counts")
    args = parser.parse_args()
    refs = resolve_refs(args.source)
    print(f"{len(refs)} structures from {args.source}; {os.cpu_count()} cores\n")
    print("| workers | seconds | CIFs/s | CIFs/s per worker | curated |")
    print("|---:|---:|---:|---:|---:|")
    for workers in (int(part) for part in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            manifest = curate(refs, Path(out) / "curated", workers=workers, progress=False)
            seconds = time.perf_counter() - start
        curated = int((manifest["status"] == "curated").sum())
        rate = len(refs) / seconds
        print(f"| {workers} | {seconds:.1f} | {rate:.1f} | {rate / workers:.1f} | {curated} |", flush=True)


if __name__ == "__main__":
    main()
