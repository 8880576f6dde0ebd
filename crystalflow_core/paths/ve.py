"""Variance-exploding diffusion path as a conditional flow (CrystalSDE-VE, paper Eq. 27–29, B.5)."""

import math

import torch
from torch import Tensor

from crystalflow_core.paths.base import PathCoefficients, ProbabilityPath


class VEPath(ProbabilityPath):
    """μ_t = x_s,  σ_t = σ(1 − t) with σ(s) = σ_min (σ_max / σ_min)^s  (Eq. 27).

    The prior is x_w + σ_max ε: the path ends at t = 0 in N(x_s, σ_max²), which is ≈ N(x_w, σ_max²) because
    σ_max (20 Å) ≫ |x_s − x_w|. The matching forward SDE in s = 1 − t is dx = √(dσ²/ds) dW, so the reverse
    SDE has g(t) = σ(1 − t) √(2 ln(σ_max / σ_min)). All coefficients are finite on the closed interval [0, 1].

    The network predicts the crystal (`prediction = "crystal"`, see `ProbabilityPath.field`); with it the CFM
    loss (Eq. 29) is ln(σ_max/σ_min)² times the squared error of x̂_s, the same weight at every noise level.
    Sampling defaults to deterministic DDIM steps (`crystalflow_core.sampling.sample_ddim`); the reverse SDE is
    `method="sde"`.
    """

    name = "ve"
    reverse_sde = True
    default_sampler = "ddim"
    default_steps = 1

    def __init__(
        self, sigma_min: float = 0.01, sigma_max: float = 20.0, prediction: str = "crystal", data_scale: float = 2.0
    ) -> None:
        self._read_network_as(prediction, data_scale)
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.log_ratio = math.log(sigma_max / sigma_min)

    def coefficients(self, t: Tensor) -> PathCoefficients:
        sigma = self.sigma_min * torch.exp((1.0 - t) * self.log_ratio)
        return PathCoefficients(
            a=torch.ones_like(t),
            b=torch.zeros_like(t),
            sigma=sigma,
            d_a=torch.zeros_like(t),
            d_b=torch.zeros_like(t),
            d_sigma=-self.log_ratio * sigma,
        )

    def prior(self, x_w: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_w + σ_max ε `[N, 3]`."""
        eps = torch.randn(x_w.shape, generator=generator, device=x_w.device, dtype=x_w.dtype)
        return x_w + self.sigma_max * eps

    def diffusion_coefficient(self, t: Tensor) -> Tensor:
        return self.std(t) * math.sqrt(2.0 * self.log_ratio)
