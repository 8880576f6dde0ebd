"""Variance-preserving diffusion path as a conditional flow (CrystalSDE-VP, paper Eq. 30–33, B.6)."""

import torch
from torch import Tensor

from crystalflow_core.paths.base import PathCoefficients, ProbabilityPath


class VPPath(ProbabilityPath):
    """μ_t = α_{1−t} x_s,  σ_t = L √(1 − α²_{1−t}),  α_s = exp(−T(s)/2),  T(s) = s β_min + s² (β_max − β_min)/2.

    Eq. 30 with the linear β(s) = β_min + s (β_max − β_min) of Eq. 33, in units of a length `scale` L (Å):
    the prior at t = 0 is L ε (clusters are centred, and α_1 ≈ 0.007 for the defaults). The matching forward
    SDE in s = 1 − t is dx = −½β(s) x ds + L √β(s) dW, so g(t) = L √β(1 − t).

    σ_t → 0 as t → 1 makes σ'_t / σ_t diverge, so s = 1 − t is clamped to ≥ `eps` (default 1e-3) in every
    coefficient; the path then stops at s = eps (σ ≈ 0.1 Å for the defaults) and derivatives are those at the
    clamped time.

    The network predicts the crystal (`prediction = "crystal"`, see `ProbabilityPath.field`): at t = 0 the VP
    velocity holds x_s only as 0.5 β α x_s ≈ 0.07 x_s, far too small a signal to learn as a velocity. Sampling
    defaults to deterministic DDIM steps (`crystalflow_core.sampling.sample_ddim`); the reverse SDE is
    `method="sde"`.
    """

    name = "vp"
    reverse_sde = True
    default_sampler = "ddim"
    default_steps = 1

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        scale: float = 10.0,
        eps: float = 1e-3,
        prediction: str = "crystal",
        data_scale: float = 2.0,
    ) -> None:
        self._read_network_as(prediction, data_scale)
        self.beta_min = beta_min
        self.beta_max = beta_max
        self.scale = scale
        self.eps = eps

    def _s(self, t: Tensor) -> Tensor:
        return (1.0 - t).clamp(min=self.eps)

    def beta(self, s: Tensor) -> Tensor:
        """β(s) = T'(s)."""
        return self.beta_min + s * (self.beta_max - self.beta_min)

    def integrated_beta(self, s: Tensor) -> Tensor:
        """T(s) = ∫_0^s β."""
        return s * self.beta_min + 0.5 * s**2 * (self.beta_max - self.beta_min)

    def coefficients(self, t: Tensor) -> PathCoefficients:
        s = self._s(t)
        big_t = self.integrated_beta(s)
        beta = self.beta(s)
        alpha = torch.exp(-0.5 * big_t)
        one_minus_alpha2 = -torch.expm1(-big_t)
        root = torch.sqrt(one_minus_alpha2)
        return PathCoefficients(
            a=alpha,
            b=torch.zeros_like(t),
            sigma=self.scale * root,
            d_a=0.5 * beta * alpha,
            d_b=torch.zeros_like(t),
            d_sigma=-0.5 * self.scale * beta * alpha**2 / root,
        )

    def prior(self, x_w: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """L ε `[N, 3]` (independent of x_w; clusters are centred at the origin)."""
        eps = torch.randn(x_w.shape, generator=generator, device=x_w.device, dtype=x_w.dtype)
        return self.scale * eps

    def diffusion_coefficient(self, t: Tensor) -> Tensor:
        return self.scale * torch.sqrt(self.beta(self._s(t)))
