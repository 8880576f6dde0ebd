"""Weakly-correlated starting clusters ``x_w``: an independent random rigid motion per molecule.

The paper does not give the distributions, so the defaults below aim at a loose, liquid-like cluster:

* every molecule is rotated about its centroid by a rotation drawn uniformly from SO(3)
  (``rotation_deg=180``), so orientations are forgotten entirely; smaller ``rotation_deg`` draws a uniform
  axis and an angle uniform in ``[0, rotation_deg]``;
* every centroid is displaced by an isotropic Gaussian with ``translation_sigma`` Å per axis (default 1 Å);
* with ``inversion`` each molecule is also inverted through its centroid with probability 0.5 (the paper's
  "with inversion" variant of COD-Cluster17).

All functions work on a whole batch at once: molecules are addressed by a global molecule id, never looped over.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor
from torch_geometric.utils import scatter


@dataclass(frozen=True)
class NoiseConfig:
    """Scales of the per-molecule rigid noise that turns a crystal cluster ``x_s`` into ``x_w``."""

    rotation_deg: float = 180.0
    translation_sigma: float = 1.0
    inversion: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.rotation_deg <= 180.0:
            raise ValueError(f"rotation_deg must lie in [0, 180], got {self.rotation_deg}")
        if self.translation_sigma < 0.0:
            raise ValueError(f"translation_sigma must be >= 0, got {self.translation_sigma}")

    def to_dict(self) -> dict:
        return asdict(self)


def random_rotations(
    n: int, max_angle_deg: float, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
) -> Tensor:
    """``[n, 3, 3]`` proper rotation matrices.

    ``max_angle_deg = 180`` gives the uniform (Haar) distribution on SO(3) via normalised Gaussian quaternions;
    otherwise a uniform axis with an angle uniform in ``[0, max_angle_deg]``.
    """
    if max_angle_deg >= 180.0:
        q = torch.randn(n, 4, generator=generator, dtype=dtype)
        q = q / q.norm(dim=1, keepdim=True)
    else:
        axis = torch.randn(n, 3, generator=generator, dtype=dtype)
        axis = axis / axis.norm(dim=1, keepdim=True)
        angle = torch.rand(n, generator=generator, dtype=dtype) * torch.deg2rad(
            torch.tensor(max_angle_deg, dtype=dtype)
        )
        q = torch.cat([torch.cos(angle / 2)[:, None], torch.sin(angle / 2)[:, None] * axis], dim=1)
    w, x, y, z = q.unbind(dim=1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - z * w),
            2 * (x * z + y * w),
            2 * (x * y + z * w),
            1 - 2 * (x * x + z * z),
            2 * (y * z - x * w),
            2 * (x * z - y * w),
            2 * (y * z + x * w),
            1 - 2 * (x * x + y * y),
        ],
        dim=1,
    ).reshape(n, 3, 3)


def molecule_centroids(x: Tensor, molecule: Tensor, n_molecules: int) -> Tensor:
    """``[n_molecules, 3]`` unweighted mean atom position of each molecule (``molecule`` is ``[N]`` global ids)."""
    return scatter(x, molecule, dim=0, dim_size=n_molecules, reduce="mean")


def rigid_noise(x_s: Tensor, molecule: Tensor, config: NoiseConfig, generator: torch.Generator | None = None) -> Tensor:
    """Apply an independent random rigid motion (and optional inversion) to every molecule.

    ``x_s`` is ``[N, 3]``; ``molecule`` ``[N]`` holds a global molecule id (0..M-1, each id one whole molecule).
    Returns ``x_w`` ``[N, 3]``; intramolecular distances are preserved exactly (up to round-off).
    """
    n_molecules = int(molecule.max()) + 1
    dtype = x_s.dtype
    centroid = molecule_centroids(x_s, molecule, n_molecules)
    rotation = random_rotations(n_molecules, config.rotation_deg, generator, dtype=torch.float64).to(dtype)
    shift = torch.randn(n_molecules, 3, generator=generator, dtype=torch.float64).to(dtype)
    sign = torch.ones(n_molecules, dtype=dtype)
    if config.inversion:
        flip = torch.rand(n_molecules, generator=generator, dtype=torch.float64) < 0.5
        sign = torch.where(flip, -sign, sign)
    local = (x_s - centroid[molecule]) * sign[molecule, None]
    rotated = torch.einsum("nij,nj->ni", rotation[molecule], local)
    return rotated + centroid[molecule] + config.translation_sigma * shift[molecule]


def centre_on_weak(x_w: Tensor, x_s: Tensor, batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Shift both clusters by the centroid of ``x_w`` (as COD-Cluster17 loaders do), so the frame leaks nothing
    about ``x_s``. With ``batch`` ``[N]`` every graph is centred on its own ``x_w`` centroid."""
    if batch is None:
        batch = torch.zeros(len(x_w), dtype=torch.long, device=x_w.device)
    origin = scatter(x_w, batch, dim=0, reduce="mean")[batch]
    return x_w - origin, x_s - origin
