"""Speed figures of the pipeline on the bundled data: curation, training steps, sampling and metrics.

Usage: ``python benchmarks/speed.py [--data DIR] [--device auto]``. Prints figures; asserts nothing. ``--data`` is a
curated directory (curated from the bundled default into a temporary folder when omitted).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch_geometric.loader import DataLoader

from crystalflow_core import metrics
from crystalflow_core.data.curate import curate
from crystalflow_core.data.dataset import ClusterDataset
from crystalflow_core.data.sources import default_refs
from crystalflow_core.paths import flow_matching_loss, get_path
from crystalflow_core.sampling import sample
from crystalflow_core.train import TrainConfig, build_model, resolve_device


def timed(label: str, seconds: float, count: int, unit: str) -> None:
    print(f"{label:38s} {seconds:8.2f} s   {count / seconds:10.1f} {unit}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="curated directory (default: curate the bundle)")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    parser.add_argument("--steps", type=int, default=20, help="training steps to time (default: %(default)s)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}")

    data = args.data
    if data is None:
        data = Path(tempfile.mkdtemp()) / "default"
        refs = default_refs()
        start = time.perf_counter()
        curate(refs, data, progress=False)
        timed("curate bundled default", time.perf_counter() - start, len(refs), "structures")

    config = TrainConfig(data=str(data), out="")
    dataset = ClusterDataset(data, split="train", progress=False)
    model = build_model(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    path = get_path("lerp")
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    atoms, steps, start = 0, 0, time.perf_counter()
    for batch in loader:
        batch = batch.to(device)
        molecule = batch.molecule
        loss = flow_matching_loss(model, path, batch.z, batch.x_w, batch.x_s, batch.batch, molecule=molecule)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        atoms, steps = atoms + batch.num_nodes, steps + 1
        if steps == args.steps:
            break
    elapsed = time.perf_counter() - start
    timed(f"train steps (batch {config.batch_size}, default model)", elapsed, atoms, "atoms")
    print(
        f"{'':38s} {elapsed / steps:8.3f} s/step; epoch of {len(dataset)} clusters ≈ "
        f"{elapsed / steps * len(loader):.0f} s"
    )

    test = ClusterDataset(data, split="test", progress=False)
    batch = next(iter(DataLoader(test, batch_size=len(test)))).to(device)
    molecule = batch.molecule
    for steps in (1, 20):
        start = time.perf_counter()
        sample(model, path, batch.z, batch.x_w, batch.batch, steps=steps, molecule=molecule)
        timed(f"sample test split, {steps} Euler step(s)", time.perf_counter() - start, len(test), "clusters")

    start = time.perf_counter()
    for item in test:
        metrics.cluster_metrics(item.x_w, item.x_s, item.z, item.mol_index)
    timed("metrics of the test split", time.perf_counter() - start, len(test), "clusters")


if __name__ == "__main__":
    main()
