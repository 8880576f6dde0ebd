"""Plain-numpy container for one cluster and the samples a method predicted for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class ClusterView:
    """One cluster as the viewers need it.

    numbers [N] atomic numbers, mol_index [N] molecule of each atom (0 = central molecule), x_w [N, 3] weakly
    correlated input, x_s [N, 3] crystal ground truth, samples [K, N, 3] predictions, optional trajectories
    [K, T, N, 3] sampled at times [T] (t = 0 at x_w, t = 1 at the prediction), optional metrics per sample.
    """

    numbers: np.ndarray
    mol_index: np.ndarray
    x_w: np.ndarray
    x_s: np.ndarray
    samples: np.ndarray
    trajectories: np.ndarray | None = None
    times: np.ndarray | None = None
    metrics: Sequence[Mapping[str, float]] | None = None

    def __post_init__(self) -> None:
        self.numbers = np.asarray(self.numbers, dtype=int)
        self.mol_index = np.asarray(self.mol_index, dtype=int)
        self.x_w = np.asarray(self.x_w, dtype=float)
        self.x_s = np.asarray(self.x_s, dtype=float)
        self.samples = np.asarray(self.samples, dtype=float)
        if self.samples.ndim == 2:
            self.samples = self.samples[None]
        n_atoms = len(self.numbers)
        if self.mol_index.shape != (n_atoms,):
            raise ValueError(f"mol_index has shape {self.mol_index.shape}, expected ({n_atoms},)")
        for name in ("x_w", "x_s"):
            if getattr(self, name).shape != (n_atoms, 3):
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected ({n_atoms}, 3)")
        if self.samples.shape[1:] != (n_atoms, 3):
            raise ValueError(f"samples has shape {self.samples.shape}, expected (K, {n_atoms}, 3)")
        if self.trajectories is not None:
            self.trajectories = np.asarray(self.trajectories, dtype=float)
            n_frames = self.trajectories.shape[1]
            if self.trajectories.shape != (self.n_samples, n_frames, n_atoms, 3):
                raise ValueError(
                    f"trajectories has shape {self.trajectories.shape}, expected ({self.n_samples}, T, {n_atoms}, 3)"
                )
            self.times = np.linspace(0.0, 1.0, n_frames) if self.times is None else np.asarray(self.times)
            if self.times.shape != (n_frames,):
                raise ValueError(f"times has shape {self.times.shape}, expected ({n_frames},)")
        if self.metrics is not None and len(self.metrics) != self.n_samples:
            raise ValueError(f"{len(self.metrics)} metric entries for {self.n_samples} samples")

    @property
    def n_samples(self) -> int:
        """Number of predicted samples K."""
        return len(self.samples)

    @property
    def n_molecules(self) -> int:
        """Number of molecules in the cluster (17 in COD-Cluster17)."""
        return int(self.mol_index.max()) + 1

    def trajectory(self, sample: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (times [T], frames [T, N, 3]) of one sample; without stored trajectories, [x_w, sample]."""
        if self.trajectories is None:
            return np.array([0.0, 1.0]), np.stack([self.x_w, self.samples[sample]])
        return self.times, self.trajectories[sample]

    def sample_metrics(self, sample: int) -> Mapping[str, float] | None:
        """Stored metrics of one sample, or None when they should be computed on demand."""
        return None if self.metrics is None else self.metrics[sample]
