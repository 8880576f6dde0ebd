"""Radial basis and cutoff functions of an interatomic distance, used to build PaiNN's edge filters."""

import math

import torch
from torch import Tensor, nn


class GaussianRBF(nn.Module):
    """Expand distances `[E]` into `n_rbf` Gaussians `[E, n_rbf]` with centres evenly spaced on [0, cutoff].

    The width of every Gaussian equals the spacing of the centres.
    """

    def __init__(self, n_rbf: int, cutoff: float) -> None:
        super().__init__()
        if n_rbf < 2:
            raise ValueError(f"n_rbf must be at least 2, got {n_rbf}")
        self.n_rbf = n_rbf
        self.cutoff = cutoff
        self.register_buffer("centres", torch.linspace(0.0, cutoff, n_rbf))
        self.register_buffer("width", torch.tensor(cutoff / (n_rbf - 1)))

    def forward(self, distance: Tensor) -> Tensor:
        """Map `distance [E]` to Gaussian features `[E, n_rbf]`."""
        return torch.exp(-0.5 * ((distance[..., None] - self.centres) / self.width) ** 2)


class CosineCutoff(nn.Module):
    """Smooth cutoff 0.5·(cos(π d / cutoff) + 1) for d < cutoff and 0 beyond (Behler 2011)."""

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = cutoff

    def forward(self, distance: Tensor) -> Tensor:
        """Map `distance [E]` to weights `[E]` that fall smoothly from 1 at d = 0 to 0 at the cutoff."""
        weight = 0.5 * (torch.cos(distance * (math.pi / self.cutoff)) + 1.0)
        return weight * (distance < self.cutoff).to(distance.dtype)
