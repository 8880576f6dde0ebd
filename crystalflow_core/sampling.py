"""Generic samplers that integrate a learned velocity field from the prior (t = 0) to the crystal (t = 1).

The samplers only use the path interface (`prior`, `field`, `crystal_from_velocity`, `score_from_velocity`,
`diffusion_coefficient`, `default_sampler`); `model(numbers, x_t, x_w, t, batch[, molecule=...])` returns an
output `[N, 3]` for per-graph times `t [B]` that `path.field` reads as a velocity; `molecule [N]` (global
molecule ids) is passed on only when given. Every sampler
returns the whole trajectory `[T, N, 3]`, starting frame included, on the model's device.
"""

import torch
from torch import Tensor
from torchdiffeq import odeint

from crystalflow_core.paths.base import ProbabilityPath, VelocityModel

ODE_METHODS = ("euler", "rk4", "dopri5")
METHODS = ("auto", *ODE_METHODS, "ddim", "sde", "direct")
#: Steps of each method when neither `steps` nor the path's default (for its own default sampler) applies.
METHOD_STEPS = {"euler": 20, "rk4": 20, "dopri5": 20, "ddim": 20, "sde": 100, "direct": 1}


def _model_device(model: VelocityModel, fallback: torch.device) -> torch.device:
    """Device of the model's parameters, or `fallback` for a parameter-free callable."""
    parameters = getattr(model, "parameters", None)
    if parameters is None:
        return fallback
    first = next(iter(parameters()), None)
    return fallback if first is None else first.device


class _Field:
    """Velocity field v(t, x) `[N, 3]` at one scalar time shared by all graphs of the batch."""

    def __init__(
        self,
        model: VelocityModel,
        path: ProbabilityPath,
        numbers: Tensor,
        x_w: Tensor,
        batch: Tensor,
        molecule: Tensor | None,
    ) -> None:
        self.model = model
        self.path = path
        self.numbers = numbers
        self.x_w = x_w
        self.batch = batch
        self.n_graphs = int(batch.max()) + 1
        self.molecule = molecule

    def __call__(self, t: float | Tensor, x: Tensor) -> Tensor:
        t_graph = torch.full((self.n_graphs,), float(t), dtype=x.dtype, device=x.device)
        return self.path.field(self.model, self.numbers, x, self.x_w, t_graph, self.batch, self.molecule)


def _prepare(
    model: VelocityModel,
    path: ProbabilityPath,
    numbers: Tensor,
    x_w: Tensor,
    batch: Tensor,
    generator: torch.Generator | None,
    x_0: Tensor | None,
    molecule: Tensor | None = None,
) -> tuple[_Field, Tensor]:
    """Move inputs to the model's device and pick the start `[N, 3]`: `x_0` if given, else the path's prior."""
    device = _model_device(model, x_w.device)
    numbers, x_w, batch = numbers.to(device), x_w.to(device), batch.to(device)
    start = path.prior(x_w, generator=generator) if x_0 is None else x_0.to(device=device, dtype=x_w.dtype)
    molecule = None if molecule is None else molecule.to(device)
    return _Field(model, path, numbers, x_w, batch, molecule), start


@torch.no_grad()
def sample_ode(
    model: VelocityModel,
    path: ProbabilityPath,
    numbers: Tensor,
    x_w: Tensor,
    batch: Tensor,
    steps: int = 20,
    method: str = "euler",
    generator: torch.Generator | None = None,
    x_0: Tensor | None = None,
    molecule: Tensor | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Tensor:
    """Integrate dx/dt = v_θ(x, x_w, t) from t = 0 to 1; trajectory `[steps + 1, N, 3]` on `steps` even times.

    `method` is "euler" or "rk4" (fixed steps) or "dopri5" (adaptive, torchdiffeq, tolerances rtol/atol,
    reported at the same even times).
    """
    if method not in ODE_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {', '.join(ODE_METHODS)}")
    field, x = _prepare(model, path, numbers, x_w, batch, generator, x_0, molecule)
    times = torch.linspace(0.0, 1.0, steps + 1, dtype=x.dtype, device=x.device)
    if method == "dopri5":
        return odeint(field, x, times, method="dopri5", rtol=rtol, atol=atol)
    frames = [x]
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        dt = t_next - t
        if method == "euler":
            x = x + dt * field(t, x)
        else:
            k1 = field(t, x)
            k2 = field(t + dt / 2, x + dt / 2 * k1)
            k3 = field(t + dt / 2, x + dt / 2 * k2)
            k4 = field(t_next, x + dt * k3)
            x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        frames.append(x)
    return torch.stack(frames)


@torch.no_grad()
def sample_ddim(
    model: VelocityModel,
    path: ProbabilityPath,
    numbers: Tensor,
    x_w: Tensor,
    batch: Tensor,
    steps: int = 20,
    generator: torch.Generator | None = None,
    x_0: Tensor | None = None,
    molecule: Tensor | None = None,
) -> Tensor:
    """Deterministic DDIM steps along a Gaussian path, t: 0 → 1 on `steps` even times; `[steps + 1, N, 3]`.

    At each time the model's velocity gives its end point x̂_s (`path.crystal_from_velocity`) and the implied
    noise ε̂ = (x − a x̂_s − b x_w) / σ; the step carries both exactly along the conditional path,
    x' = a' x̂_s + b' x_w + σ' ε̂. This first-order exponential integrator of the probability-flow ODE is exact
    when x̂_s stays put, and, unlike Euler, does not overshoot on the exponential noise schedules of VE and VP:
    one step from the prior returns the model's conditional mean of x_s given x_w.
    """
    if path.deterministic:
        raise ValueError(f"path {path.name!r} has no noise to carry; sample it with 'direct' or an ODE method")
    field, x = _prepare(model, path, numbers, x_w, batch, generator, x_0, molecule)
    times = torch.linspace(0.0, 1.0, steps + 1, dtype=x.dtype, device=x.device)
    frames = [x]
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        t_atom = t.expand(x.shape[0])
        x_s = path.crystal_from_velocity(field(t, x), x, field.x_w, t_atom)
        now, later = path.coefficients(t), path.coefficients(t_next)
        eps = (x - now.a * x_s - now.b * field.x_w) / now.sigma
        x = later.a * x_s + later.b * field.x_w + later.sigma * eps
        frames.append(x)
    return torch.stack(frames)


@torch.no_grad()
def sample_sde(
    model: VelocityModel,
    path: ProbabilityPath,
    numbers: Tensor,
    x_w: Tensor,
    batch: Tensor,
    steps: int = 100,
    generator: torch.Generator | None = None,
    x_0: Tensor | None = None,
    molecule: Tensor | None = None,
) -> Tensor:
    """Euler–Maruyama for the reverse diffusion dx = [v + ½g²·score] dt + g dW, t: 0 → 1; `[steps + 1, N, 3]`.

    The score comes from the velocity via `path.score_from_velocity`; the last step adds no noise.
    """
    field, x = _prepare(model, path, numbers, x_w, batch, generator, x_0, molecule)
    times = torch.linspace(0.0, 1.0, steps + 1, dtype=x.dtype, device=x.device)
    frames = [x]
    for step in range(steps):
        t, dt = times[step], times[step + 1] - times[step]
        velocity = field(t, x)
        score = path.score_from_velocity(velocity, x, field.x_w, t.expand(x.shape[0]))
        g = path.diffusion_coefficient(t)
        x = x + (velocity + 0.5 * g**2 * score) * dt
        if step < steps - 1:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + g * torch.sqrt(dt) * noise
        frames.append(x)
    return torch.stack(frames)


def sample(
    model: VelocityModel,
    path: ProbabilityPath,
    numbers: Tensor,
    x_w: Tensor,
    batch: Tensor,
    steps: int | None = None,
    method: str = "auto",
    generator: torch.Generator | None = None,
    x_0: Tensor | None = None,
    molecule: Tensor | None = None,
) -> Tensor:
    """Sample x_s given x_w with the path's own sampler; trajectory `[T, N, 3]`, the last frame is the prediction.

    `method="auto"` uses `path.default_sampler`: "direct" for gnn_md (one Euler step of dt = 1 from t = 0,
    trajectory [x_w, x_w + v]), "euler" for lerp, "ddim" for ve and vp. "euler", "rk4", "dopri5", "ddim" or "sde"
    force a sampler. `steps` defaults to `path.default_steps` with the path's default sampler (lerp 1, the
    conditional mean; ve and vp 1) and to `METHOD_STEPS` with any other (e.g. 100 reverse-SDE steps).
    """
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "auto":
        method = path.default_sampler
    if steps is None:
        steps = path.default_steps if method == path.default_sampler else METHOD_STEPS[method]
    inputs = (model, path, numbers, x_w, batch)
    options = {"generator": generator, "x_0": x_0, "molecule": molecule}
    if method == "direct":
        return sample_ode(*inputs, steps=1, method="euler", **options)
    if method == "ddim":
        return sample_ddim(*inputs, steps=steps, **options)
    if method == "sde":
        return sample_sde(*inputs, steps=steps, **options)
    return sample_ode(*inputs, steps=steps, method=method, **options)
