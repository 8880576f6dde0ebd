"""Training steps of ``crystalflow train`` under the system allocator and under jemalloc, in one run.

Usage: ``python benchmarks/allocator.py [--data data_out/default] [--path rigid] [--hidden 32] [--cutoff 4]
[--steps 40] [--rounds 2]``. Each measurement is a fresh process (``--worker``) that takes ``--steps`` optimiser
steps on the training split (batch 4, the objective's defaults but ``--hidden`` and ``--cutoff``, 2 torch threads)
after 3 untimed ones, alternating the allocators ``--rounds`` times so that the machine's drift hits both. Prints
the median step, the kernel (page-fault) CPU seconds per step and peak RSS of each, and the ratio. jemalloc runs
as ``crystalflow train`` starts it (:mod:`crystalflow_core.allocator`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from crystalflow_core.allocator import JEMALLOC_CONF, find_jemalloc


def worker(data: str, path_name: str, hidden: int, cutoff: float, steps: int) -> dict:
    """Time ``steps`` training steps in this process; returns the figures."""
    import torch
    from torch_geometric.data import Batch

    from crystalflow_core.allocator import loaded_allocator
    from crystalflow_core.data.dataset import ClusterDataset
    from crystalflow_core.paths import get_path
    from crystalflow_core.train import TrainConfig, batch_loss, build_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = TrainConfig(data=data, out="", path=path_name, hidden=hidden, cutoff=cutoff)
    dataset = ClusterDataset(data, split="train", progress=False)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    path = get_path(path_name)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(dataset), generator=generator).tolist()
    times = []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for step in range(steps + 3):
        if step == 3:
            usage = resource.getrusage(resource.RUSAGE_SELF)
        indices = [order[(step * config.batch_size + i) % len(order)] for i in range(config.batch_size)]
        batch = Batch.from_data_list([dataset[i] for i in indices])
        start = time.perf_counter()
        loss = batch_loss(model, path, batch, dataset, batch.x_w, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 3:
            times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "allocator": loaded_allocator(),
        "step_median_s": statistics.median(times),
        "sys_s_per_step": (after.ru_stime - usage.ru_stime) / steps,
        "peak_rss_mb": after.ru_maxrss / 1024,
    }


def measure(args: argparse.Namespace, jemalloc: str | None) -> dict:
    """One :func:`worker` run in a fresh process, under jemalloc when ``jemalloc`` names the library."""
    environment = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    if jemalloc:
        environment.update(LD_PRELOAD=jemalloc, MALLOC_CONF=JEMALLOC_CONF)
    command = [sys.executable, __file__, "--worker", "--data", args.data, "--path", args.path]
    command += ["--steps", str(args.steps), "--hidden", str(args.hidden), "--cutoff", str(args.cutoff)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data_out/default", help="curated directory")
    parser.add_argument("--path", default="rigid", help="objective (default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=32, help="feature width (default: %(default)s)")
    parser.add_argument("--cutoff", type=float, default=4.0, help="atom cutoff, Å (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each allocator (default: %(default)s)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.data, args.path, args.hidden, args.cutoff, args.steps)))
        return
    library = find_jemalloc()
    if library is None:
        sys.exit("jemalloc is not installed (apt-get install libjemalloc2)")
    if not Path(args.data).is_dir():
        sys.exit(f"{args.data}: not a curated directory (crystalflow curate --source default --out {args.data})")
    runs: dict[str, list[dict]] = {"system": [], "jemalloc": []}
    for _ in range(args.rounds):
        for name, chosen in (("system", None), ("jemalloc", library)):
            runs[name].append(measure(args, chosen))
    settings = f"hidden {args.hidden}, cutoff {args.cutoff:g} Å, batch 4"
    print(f"{args.path} ({settings}), {args.steps} steps per run, {args.rounds} runs each, 2 threads")
    print("| allocator | step median s | kernel CPU s per step | peak RSS MB |")
    print("|---|---:|---:|---:|")
    medians = {}
    for name, results in runs.items():
        if any(result["allocator"] != name for result in results):
            sys.exit(f"a {name} run ran under another allocator: {results}")
        medians[name] = statistics.median(result["step_median_s"] for result in results)
        sys_s = statistics.median(result["sys_s_per_step"] for result in results)
        rss = max(result["peak_rss_mb"] for result in results)
        print(f"| {name} | {medians[name]:.3f} | {sys_s:.3f} | {rss:.0f} |")
    print(f"jemalloc speed-up: {medians['system'] / medians['jemalloc']:.2f}×")


if __name__ == "__main__":
    main()
