"""Direct regression x_w → x_s (GNN-MD baseline, paper Section 3.1) in the path interface."""

import torch
from torch import Tensor

from crystalflow_core.paths.base import PathCoefficients, ProbabilityPath


class DirectPath(ProbabilityPath):
    """GNN-MD: the model sees x_t = x_w at t = 0 and regresses the displacement x_s − x_w; prediction x_w + v.

    Written as the noise-free line μ_t = (1 − t) x_w + t x_s, σ_t = 0, with every training time fixed at 0.
    """

    name = "gnn_md"
    deterministic = True
    default_sampler = "direct"
    default_steps = 1

    def coefficients(self, t: Tensor) -> PathCoefficients:
        zeros = torch.zeros_like(t)
        return PathCoefficients(
            a=t, b=1.0 - t, sigma=zeros, d_a=torch.ones_like(t), d_b=-torch.ones_like(t), d_sigma=zeros
        )

    def sample_t(
        self, n_graphs: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> Tensor:
        """All times are 0 `[B]`."""
        return torch.zeros(n_graphs, device=device)

    def time_quantile(self, u: Tensor) -> Tensor:
        """0 at every quantile."""
        return torch.zeros_like(u)

    def conditional_velocity(self, x: Tensor, x_w: Tensor, x_s: Tensor, t_atom: Tensor) -> Tensor:
        """x_s − x_w `[N, 3]` everywhere."""
        return x_s - x_w

    def prior(self, x_w: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_w itself (a copy)."""
        return x_w.clone()

    def score_from_crystal(self, x_s: Tensor, x: Tensor, x_w: Tensor, t_atom: Tensor) -> Tensor:
        raise NotImplementedError("the direct (gnn_md) path is deterministic and has no score")
