"""A synthetic 17-molecule ethanol cluster with LERP trajectories, for examples and smoke tests."""

from __future__ import annotations

import numpy as np
import torch

from crystalflow_core.data.noise import NoiseConfig, random_rotations, rigid_noise
from crystalviz.views import ClusterView

ETHANOL_NUMBERS = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])
ETHANOL_POSITIONS = np.array(
    [
        [-0.854, 0.224, 0.194],
        [0.387, -0.359, -0.449],
        [1.532, 0.384, -0.055],
        [-1.748, -0.328, -0.113],
        [-0.975, 1.276, -0.083],
        [-0.777, 0.189, 1.286],
        [0.528, -1.403, -0.155],
        [0.310, -0.314, -1.539],
        [1.597, 0.331, 0.914],
    ]
)
N_MOLECULES = 17


def _lattice_sites(spacing: float) -> np.ndarray:
    """Centre and 16 nearest sites of a simple cubic lattice: [17, 3], site 0 at the origin."""
    grid = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    order = np.lexsort((grid[:, 2], grid[:, 1], grid[:, 0], np.sum(grid**2, axis=1)))
    return grid[order[:N_MOLECULES]] * spacing


def _rigid_noise(
    positions: np.ndarray, mol_index: np.ndarray, generator: torch.Generator, rotation_deg: float, shift: float
) -> np.ndarray:
    """Rotate each molecule about its centroid by up to ``rotation_deg`` and shift it by ~``shift`` Å."""
    config = NoiseConfig(rotation_deg=rotation_deg, translation_sigma=shift)
    return rigid_noise(torch.from_numpy(positions), torch.from_numpy(mol_index), config, generator).numpy()


def demo_cluster_view(n_samples: int = 2, n_frames: int = 11, seed: int = 0) -> ClusterView:
    """Ethanol molecules on a cubic lattice (x_s), rigidly perturbed and expanded (x_w), noisy predictions
    (samples [K, N, 3]) and straight-line trajectories x_w -> sample ([K, T, N, 3]) at T evenly spaced times.
    """
    generator = torch.Generator().manual_seed(seed)
    sites = _lattice_sites(spacing=5.5)
    rotations = random_rotations(N_MOLECULES, 180.0, generator).numpy()
    x_s = np.concatenate(
        [ETHANOL_POSITIONS @ rotation.T + site for rotation, site in zip(rotations, sites, strict=True)]
    )
    numbers = np.tile(ETHANOL_NUMBERS, N_MOLECULES)
    mol_index = np.repeat(np.arange(N_MOLECULES), len(ETHANOL_NUMBERS))
    x_w = _rigid_noise(x_s, mol_index, generator, rotation_deg=45.0, shift=1.0)
    x_w += np.repeat(sites, len(ETHANOL_NUMBERS), axis=0) * 0.3
    samples = np.stack(
        [_rigid_noise(x_s, mol_index, generator, rotation_deg=8.6, shift=0.25) for _ in range(n_samples)]
    )
    times = np.linspace(0.0, 1.0, n_frames)
    trajectories = (1.0 - times[None, :, None, None]) * x_w + times[None, :, None, None] * samples[:, None]
    return ClusterView(numbers, mol_index, x_w, x_s, samples, trajectories, times)
