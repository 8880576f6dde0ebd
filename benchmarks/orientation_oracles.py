"""What centroids and orientations are each worth: oracle packings scored like a prediction.

Usage: ``python benchmarks/orientation_oracles.py [--data data_out/default] [--split test] [--seed 0]``.
Every oracle puts rigid copies of each cluster's own molecules at centroids and orientations taken from `x_w`, from
the crystal or from a mixture, and is scored with the packing metrics (OXtalign molecules matched of 15, PM(atom),
PM(center)). It shows how much a method must get right before the shell molecules it matches rise above `x_w`'s.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crystalflow_core.data.dataset import ClusterDataset
from crystalflow_core.metrics import pm_atom, pm_center
from crystalflow_core.packing import packing_similarity, prepare_reference


@dataclass(frozen=True)
class Parts:
    """One cluster taken apart: crystal and x_w centroids `[M, 3]` (x_w's shifted onto the crystal's mean), every
    atom relative to its molecule's centroid in the crystal and in x_w `[N, 3]`, and the molecule ids `[N]`."""

    c_s: np.ndarray
    c_w: np.ndarray
    body_s: np.ndarray
    body_w: np.ndarray
    molecule: np.ndarray

    @classmethod
    def of(cls, x_s: np.ndarray, x_w: np.ndarray, molecule: np.ndarray) -> Parts:
        c_s, c_w = _centroids(x_s, molecule), _centroids(x_w, molecule)
        shifted = c_w - c_w.mean(axis=0) + c_s.mean(axis=0)
        return cls(c_s, shifted, x_s - c_s[molecule], x_w - c_w[molecule], molecule)

    def place(self, centroids: np.ndarray, bodies: np.ndarray) -> np.ndarray:
        """Atoms `[N, 3]` at ``centroids[molecule] + bodies``."""
        return centroids[self.molecule] + bodies

    def central_everywhere(self) -> np.ndarray:
        """Every molecule's body turned as the central molecule's is in the crystal (right for its translation
        images, which share its orientation)."""
        central = self.body_s[self.molecule == 0]
        return np.tile(central, (int(self.molecule.max()) + 1, 1))


def _centroids(x: np.ndarray, molecule: np.ndarray) -> np.ndarray:
    return np.stack([x[molecule == k].mean(axis=0) for k in range(int(molecule.max()) + 1)])


#: Each oracle's packing from a cluster's :class:`Parts` and a random generator.
ORACLES: dict[str, Callable[[Parts, np.random.Generator], np.ndarray]] = {
    "x_w centroids, x_w orientations (identity)": lambda p, rng: p.place(p.c_w, p.body_w),
    "crystal centroids, x_w orientations": lambda p, rng: p.place(p.c_s, p.body_w),
    "x_w centroids, the central molecule's crystal orientation for all": lambda p, rng: p.place(
        p.c_w, p.central_everywhere()
    ),
    "crystal centroids, the central molecule's crystal orientation for all": lambda p, rng: p.place(
        p.c_s, p.central_everywhere()
    ),
    "x_w centroids, crystal orientations": lambda p, rng: p.place(p.c_w, p.body_s),
    "centroid noise halved, crystal orientations": lambda p, rng: p.place((p.c_s + p.c_w) / 2, p.body_s),
    "crystal centroids + 0.3 Å noise per axis, crystal orientations": lambda p, rng: p.place(
        p.c_s + 0.3 * rng.normal(size=p.c_s.shape), p.body_s
    ),
}


def score_oracles(dataset: ClusterDataset, seed: int) -> pd.DataFrame:
    """Mean matched, PM(atom) and PM(center) of every oracle over the clusters of ``dataset``."""
    rng = np.random.default_rng(seed)
    rows = []
    for item in dataset:
        x_s, x_w = item.x_s.double().numpy(), item.x_w.double().numpy()
        molecule, numbers = item.mol_index.numpy(), item.z.numpy()
        reference = prepare_reference(x_s, numbers, molecule)
        parts = Parts.of(x_s, x_w, molecule)
        for name, oracle in ORACLES.items():
            x = oracle(parts, rng)
            rows.append(
                {
                    "oracle": name,
                    "matched": packing_similarity(x, reference)["matched"],
                    "pm_atom": pm_atom(x, x_s),
                    "pm_center": pm_center(x, x_s, molecule),
                }
            )
    return pd.DataFrame(rows).groupby("oracle", sort=False).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data_out/default", help="curated directory")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--seed", type=int, default=0, help="split seed and noise seed (default: %(default)s)")
    args = parser.parse_args()
    dataset = ClusterDataset(args.data, split=args.split, seed=args.seed, progress=False)
    table = score_oracles(dataset, args.seed)
    print(f"{len(dataset)} {args.split} clusters of {args.data}, seed {args.seed}")
    print("| oracle | matched of 15 ↑ | PM(atom) Å ↓ | PM(center) Å ↓ |\n|---|---:|---:|---:|")
    for name, row in table.iterrows():
        print(f"| {name} | {row['matched']:.2f} | {row['pm_atom']:.3f} | {row['pm_center']:.3f} |")


if __name__ == "__main__":
    main()
