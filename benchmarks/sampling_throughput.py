"""Sampling throughput of the shipped rigid model: clusters/s for 1…1024 clusters at 1, 10 and 50 steps, and the
latency of one cluster.

Usage: ``python benchmarks/sampling_throughput.py [--data DIR] [--clusters 1,4,16,64,256,1024] [--steps 1,10,50]
[--batch-size 64] [--device auto]``. The clusters are the test split of a curated directory, repeated to the
count; they are sampled ``--batch-size`` at a time. Prints a markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch_geometric.loader import DataLoader

from crystalflow_core.data.dataset import ClusterDataset
from crystalflow_core.paths import get_path
from crystalflow_core.sampling import sample
from crystalflow_core.shipped import SHIPPED_MODEL
from crystalflow_core.train import load_model, resolve_device


def _counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def time_sampling(model, path, dataset, count: int, steps: int, batch_size: int, device: torch.device) -> float:
    """Seconds to sample `count` clusters (the dataset repeated) in batches of `batch_size`."""
    items = [dataset[i % len(dataset)] for i in range(count)]
    start = time.perf_counter()
    with torch.no_grad():
        for batch in DataLoader(items, batch_size=batch_size):
            batch = batch.to(device)
            sample(model, path, batch.z, batch.x_w, batch.batch, steps=steps, molecule=batch.molecule)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data_out/default"), help="curated directory")
    parser.add_argument("--clusters", type=_counts, default=_counts("1,4,16,64,256,1024"))
    parser.add_argument("--steps", type=_counts, default=_counts("1,10,50"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    model, config = load_model(SHIPPED_MODEL, device)
    model.eval()
    path = get_path(config.path, **config.path_kwargs)
    dataset = ClusterDataset(args.data, split="test", progress=False)
    atoms = sum(item.num_nodes for item in dataset) / len(dataset)
    print(f"shipped {config.path} model ({config.hidden} features, {config.layers} layers, cutoff {config.cutoff} Å)")
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, {len(dataset)} test clusters of {atoms:.0f} atoms"
    )
    time_sampling(model, path, dataset, 1, 1, 1, device)  # warm-up
    print("\n| clusters | " + " | ".join(f"{s} steps: clusters/s" for s in args.steps) + " |")
    print("|---:|" + "---:|" * len(args.steps))
    for count in args.clusters:
        rates = [count / time_sampling(model, path, dataset, count, s, args.batch_size, device) for s in args.steps]
        print(f"| {count} | " + " | ".join(f"{rate:.2f}" for rate in rates) + " |", flush=True)
    latency = min(
        time_sampling(model, path, dataset, 1, args.steps[1 if len(args.steps) > 1 else 0], 1, device) for _ in range(3)
    )
    print(f"\nlatency of one cluster, {args.steps[1 if len(args.steps) > 1 else 0]} steps: {latency * 1000:.0f} ms")


if __name__ == "__main__":
    main()
