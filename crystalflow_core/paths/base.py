"""Common interface of the probability paths (training objectives) from x_w to x_s, and the CFM loss.

Every stochastic path here is Gaussian and affine in the data (paper Appendix B.4):

    x_t = μ_t + σ_t ε,   μ_t = a_t x_s + b_t x_w,   ε ~ N(0, I),

so the exact conditional velocity (Eq. 24) is u_t = μ'_t + σ'_t ε = (σ'_t / σ_t)(x_t − μ_t) + μ'_t. A path
subclass only supplies the coefficients a_t, b_t, σ_t and their time derivatives; times run from the prior
(t = 0, around x_w) to the crystal (t = 1, around x_s), one time per graph broadcast to its atoms with `batch`.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

VelocityModel = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]
"""`model(numbers [N], x [N, 3], x_w [N, 3], t [B], batch [N]) -> output [N, 3]`, read by `path.field`."""


PREDICTIONS = ("velocity", "crystal")


@dataclass
class PathSample:
    """A training point on a path: `x_t [N, 3]`, the target velocity `target [N, 3]` and the times `t [B]`."""

    x_t: Tensor
    target: Tensor
    t: Tensor


@dataclass
class PathCoefficients:
    """μ_t = a·x_s + b·x_w and σ_t, with time derivatives, each shaped like the times they were computed at."""

    a: Tensor
    b: Tensor
    sigma: Tensor
    d_a: Tensor
    d_b: Tensor
    d_sigma: Tensor


def _atom_column(t_atom: Tensor) -> Tensor:
    """Per-atom times `[N]` or `[N, 1]` as a column `[N, 1]` that broadcasts against `[N, 3]`."""
    return t_atom.reshape(-1, 1)


class Objective(ABC):
    """What training and sampling need of an objective: a name, a loss, and the sampler that fits it."""

    name: str
    deterministic: bool = False
    reverse_sde: bool = False
    """Whether the objective defines the reverse-time SDE (`diffusion_coefficient`) that the "sde" sampler needs."""
    default_sampler: str = "euler"
    """Sampler that `crystalflow_core.sampling.sample` picks for `method="auto"`, one of its methods."""
    default_steps: int = 20
    """Steps that `crystalflow_core.sampling.sample` takes with the default sampler when none are given."""
    network_options: dict[str, bool] = {}
    """Extra options of `PaiNNVelocity` that this objective's network needs."""
    uses_automorphisms: bool = False
    """Whether `loss` reads the molecules' `automorphisms` (training computes them only then)."""
    training_defaults: dict[str, float] = {"epochs": 30, "molecule_cutoff": 0.0}
    """`TrainConfig` settings that default per objective (a config that leaves them `None` takes these)."""

    @abstractmethod
    def loss(
        self,
        model: VelocityModel,
        numbers: Tensor,
        x_w: Tensor,
        x_s: Tensor,
        batch: Tensor,
        generator: torch.Generator | None = None,
        molecule: Tensor | None = None,
        automorphisms: list[Tensor] | None = None,
        t: Tensor | None = None,
    ) -> Tensor:
        """Training loss of one batch: `numbers [N]`, `x_w`, `x_s [N, 3]`, `batch [N]`, `molecule [N]` global
        molecule ids, and per graph the atom permutations `[P, n]` of its molecules that leave them unchanged
        (`automorphisms`, used by objectives that score molecules as rigid bodies). The times are drawn from
        `generator` as in training, or given per graph `t [B]` (`time_quantile`), the rest still drawn."""

    @abstractmethod
    def time_quantile(self, u: Tensor) -> Tensor:
        """The training time at quantile `u` in [0, 1) of the times `loss` draws, shaped like `u`: evenly spaced
        quantiles give a fixed quadrature of the loss over its times (the validation loss)."""


class ProbabilityPath(Objective):
    """A Gaussian conditional probability path p_t(x | x_s, x_w) = N(a_t x_s + b_t x_w, σ_t² I)."""

    prediction: str = "velocity"
    """How the network is read: "velocity" (it sees x_t and outputs v_θ) or "crystal" (it sees a posterior mean
    of x_s and outputs a scaled correction to it, which `field` turns into v_θ; see there)."""
    data_scale: float = 2.0
    """σ_d (Å): spread per coordinate of x_s around x_w assumed by the "crystal" prediction."""

    def _read_network_as(self, prediction: str, data_scale: float) -> None:
        """Set `prediction` ("velocity" or "crystal") and `data_scale` (Å), rejecting unknown values."""
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
        if data_scale <= 0:
            raise ValueError(f"data_scale must be positive, got {data_scale}")
        self.prediction = prediction
        self.data_scale = data_scale

    @abstractmethod
    def coefficients(self, t: Tensor) -> PathCoefficients:
        """Coefficients a, b, σ and their t-derivatives at times `t` (any shape)."""

    def loss(
        self,
        model: VelocityModel,
        numbers: Tensor,
        x_w: Tensor,
        x_s: Tensor,
        batch: Tensor,
        generator: torch.Generator | None = None,
        molecule: Tensor | None = None,
        automorphisms: list[Tensor] | None = None,
        t: Tensor | None = None,
    ) -> Tensor:
        """The CFM loss (`flow_matching_loss`); atoms move freely here, so `automorphisms` are not used."""
        return flow_matching_loss(model, self, numbers, x_w, x_s, batch, generator=generator, molecule=molecule, t=t)

    def sample_t(
        self, n_graphs: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> Tensor:
        """One training time per graph `[B]`, uniform on [0, 1)."""
        return torch.rand(n_graphs, generator=generator, device=device)

    def time_quantile(self, u: Tensor) -> Tensor:
        """`u` itself: the times are uniform."""
        return u

    def mean(self, x_w: Tensor, x_s: Tensor, t_atom: Tensor) -> Tensor:
        """μ_t `[N, 3]` at per-atom times `t_atom [N]`."""
        c = self.coefficients(_atom_column(t_atom))
        return c.a * x_s + c.b * x_w

    def d_mean(self, x_w: Tensor, x_s: Tensor, t_atom: Tensor) -> Tensor:
        """dμ_t/dt `[N, 3]` at per-atom times `t_atom [N]`."""
        c = self.coefficients(_atom_column(t_atom))
        return c.d_a * x_s + c.d_b * x_w

    def std(self, t: Tensor) -> Tensor:
        """σ_t, shaped like `t`."""
        return self.coefficients(t).sigma

    def d_std(self, t: Tensor) -> Tensor:
        """dσ_t/dt, shaped like `t`."""
        return self.coefficients(t).d_sigma

    def sample(
        self, x_w: Tensor, x_s: Tensor, t_graph: Tensor, batch: Tensor, noise: Tensor | None = None
    ) -> PathSample:
        """Draw x_t = μ_t + σ_t ε and its target velocity μ'_t + σ'_t ε (Eq. 24) at per-graph times `t_graph [B]`.

        `x_w`, `x_s`, `noise` (ε, drawn when None) are `[N, 3]`; `batch [N]` maps atoms to graphs.
        """
        eps = torch.randn_like(x_w) if noise is None else noise
        c = self.coefficients(_atom_column(t_graph[batch]).to(x_w.dtype))
        x_t = c.a * x_s + c.b * x_w + c.sigma * eps
        target = c.d_a * x_s + c.d_b * x_w + c.d_sigma * eps
        return PathSample(x_t=x_t, target=target, t=t_graph)

    def conditional_velocity(self, x: Tensor, x_w: Tensor, x_s: Tensor, t_atom: Tensor) -> Tensor:
        """Exact conditional field u_t(x | x_s) = (σ'_t/σ_t)(x − μ_t) + μ'_t (Eq. 24) at any `x [N, 3]`."""
        c = self.coefficients(_atom_column(t_atom).to(x.dtype))
        mu = c.a * x_s + c.b * x_w
        return c.d_sigma / c.sigma * (x - mu) + c.d_a * x_s + c.d_b * x_w

    def posterior(self, x: Tensor, x_w: Tensor, t_atom: Tensor) -> tuple[Tensor, Tensor]:
        """Mean `[N, 3]` and spread `[N, 1]` of x_s given x_t = x under the simple prior x_s ~ N(x_w, σ_d²).

        With r = x − (a + b) x_w: m = x_w + a σ_d² r / (a² σ_d² + σ²) and s = σ_d σ / √(a² σ_d² + σ²), σ_d being
        `data_scale`. m runs from ≈ x_w where x_t is mostly noise to ≈ x_t / a near the data, s from ≈ σ_d
        down to ≈ σ / a.
        """
        c = self.coefficients(_atom_column(t_atom).to(x.dtype))
        prior_var = self.data_scale**2
        denominator = c.a**2 * prior_var + c.sigma**2
        mean = x_w + c.a * prior_var / denominator * (x - (c.a + c.b) * x_w)
        return mean, self.data_scale * c.sigma / torch.sqrt(denominator)

    def predict_crystal(
        self,
        model: VelocityModel,
        numbers: Tensor,
        x: Tensor,
        x_w: Tensor,
        t: Tensor,
        batch: Tensor,
        molecule: Tensor | None = None,
    ) -> Tensor:
        """The network's estimate x̂_s `[N, 3]` of the crystal at `x [N, 3]` and per-graph times `t [B]`.

        `prediction == "crystal"`: the network sees the posterior mean m of `posterior` in place of x (a sensible
        geometry at every noise level, where x itself is x_w plus up to 20 Å of noise at the start of the
        diffusion paths) and its output o is read as x̂_s = m + s·o, so it only has to supply a correction of
        order one at every noise level. `"velocity"`: the network's output is a velocity, and x̂_s is the end
        point it points to (`crystal_from_velocity`). `molecule [N]` is passed on when given.
        """
        extra = {} if molecule is None else {"molecule": molecule}
        t_atom = t[batch]
        if self.prediction == "velocity":
            return self.crystal_from_velocity(model(numbers, x, x_w, t, batch, **extra), x, x_w, t_atom)
        mean, spread = self.posterior(x, x_w, t_atom)
        return mean + spread * model(numbers, mean, x_w, t, batch, **extra)

    def field(
        self,
        model: VelocityModel,
        numbers: Tensor,
        x: Tensor,
        x_w: Tensor,
        t: Tensor,
        batch: Tensor,
        molecule: Tensor | None = None,
    ) -> Tensor:
        """The learned velocity v_θ `[N, 3]` at `x [N, 3]` and per-graph times `t [B]`, read from the network.

        `prediction == "velocity"`: the network's output is v_θ. `"crystal"`: the exact conditional field
        towards the network's crystal x̂_s (`predict_crystal`), u_t(x | x̂_s). A velocity would otherwise hold x_s
        only as a tiny multiple next to a large noise term (VP at t = 0: 0.07 x_s). With this reading the CFM
        loss (Eq. 23) is unchanged; it becomes a time-weighted squared error of x̂_s.
        """
        if self.prediction == "velocity":
            extra = {} if molecule is None else {"molecule": molecule}
            return model(numbers, x, x_w, t, batch, **extra)
        x_s = self.predict_crystal(model, numbers, x, x_w, t, batch, molecule)
        return self.conditional_velocity(x, x_w, x_s, t[batch])

    def crystal_from_velocity(self, v: Tensor, x: Tensor, x_w: Tensor, t_atom: Tensor) -> Tensor:
        """The end point x̂_s `[N, 3]` that a velocity `v [N, 3]` at `x [N, 3]` points to on this path.

        From x − b x_w = a x_s + σ ε and v − b' x_w = a' x_s + σ' ε, eliminating ε gives
        x̂_s = (σ'(x − b x_w) − σ(v − b' x_w)) / (σ' a − σ a'). For the exact conditional velocity this is x_s;
        for a learned (marginal) velocity it is the model's estimate of E[x_s | x_t = x, x_w].
        """
        c = self.coefficients(_atom_column(t_atom).to(x.dtype))
        return (c.d_sigma * (x - c.b * x_w) - c.sigma * (v - c.d_b * x_w)) / (c.d_sigma * c.a - c.sigma * c.d_a)

    @abstractmethod
    def prior(self, x_w: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Starting coordinates `[N, 3]` at t = 0 for sampling, given x_w `[N, 3]`."""

    def score_from_crystal(self, x_s: Tensor, x: Tensor, x_w: Tensor, t_atom: Tensor) -> Tensor:
        """Score ∇ log p_t(x) `[N, 3]` at `x [N, 3]` implied by a crystal estimate `x_s [N, 3]`.

        ε = (x − a x_s − b x_w) / σ and the score is −ε/σ. For the true x_s this is the conditional score; for a
        learned estimate of E[x_s | x_t = x, x_w], the marginal score.
        """
        c = self.coefficients(_atom_column(t_atom).to(x.dtype))
        return -(x - c.a * x_s - c.b * x_w) / c.sigma**2

    def diffusion_coefficient(self, t: Tensor) -> Tensor:
        """g(t) of the reverse-time SDE dx = [v + ½g² ∇log p_t] dt + g dW, shaped like `t`."""
        raise NotImplementedError(f"path {self.name!r} has no diffusion SDE; sample it with an ODE")


def flow_matching_loss(
    model: VelocityModel,
    path: ProbabilityPath,
    numbers: Tensor,
    x_w: Tensor,
    x_s: Tensor,
    batch: Tensor,
    generator: torch.Generator | None = None,
    molecule: Tensor | None = None,
    t: Tensor | None = None,
) -> Tensor:
    """Conditional flow-matching loss (Eq. 23): mean squared error per coordinate of v_θ(x_t, x_w, t) − u_t.

    `numbers [N]`, `x_w`, `x_s [N, 3]`, `batch [N]`; times `t [B]` (default: drawn, `path.sample_t`) and noise
    are drawn from `generator`; `molecule [N]` (global molecule ids) is passed to the model when given.
    """
    n_graphs = int(batch.max()) + 1
    if t is None:
        t = path.sample_t(n_graphs, generator=generator, device=x_w.device)
    t = t.to(device=x_w.device, dtype=x_w.dtype)
    noise = torch.randn(x_w.shape, generator=generator, device=x_w.device, dtype=x_w.dtype)
    point = path.sample(x_w, x_s, t, batch, noise=noise)
    velocity = path.field(model, numbers, point.x_t, x_w, point.t, batch, molecule=molecule)
    return ((velocity - point.target) ** 2).mean()
