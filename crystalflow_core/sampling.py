"""Generic samplers that integrate a learned velocity field from the prior (t = 0) to the crystal (t = 1).

The samplers only use the objective's interface (`prior`, `field`, `predict_crystal`, `conditional_velocity`,
`score_from_crystal`, `diffusion_coefficient`, `default_sampler`); `model(numbers, x_t, x_w, t, batch[,
molecule=...])` returns an output `[N, 3]` for per-graph times `t [B]` that the path reads; `molecule [N]`
(global molecule ids) is passed on only when given. Every sampler returns the whole trajectory `[T, N, 3]`,
starting frame included, on the model's device.
"""

import torch
from torch import Tensor
from torchdiffeq import odeint

from crystalflow_core import so3
from crystalflow_core.checks import check_choice
from crystalflow_core.data.noise import molecule_centroids
from crystalflow_core.errors import ParameterError
from crystalflow_core.paths.base import Objective, ProbabilityPath, VelocityModel
from crystalflow_core.paths.rigid import RigidPath
from crystalflow_core.settings import METHODS, ODE_METHODS

#: Steps of each method when neither `steps` nor the path's default (for its own default sampler) applies.
METHOD_STEPS = {"euler": 20, "rk4": 20, "dopri5": 20, "ddim": 20, "sde": 100, "direct": 1, "rigid": 10}


def sampler_mismatch(method: str, path: Objective) -> str | None:
    """Why `method` (one of `METHODS`) cannot sample `path`, or `None` when it can: "rigid" is the rigid path's
    only sampler and fits no other path, "ddim" and "sde" carry noise that a deterministic path (gnn_md) lacks,
    and "sde" needs the reverse-time SDE that only some paths define (ve, vp)."""
    if method == "auto":
        return None
    if (method == "rigid") != isinstance(path, RigidPath):
        return f"does not fit path {path.name!r} (the rigid path samples with 'rigid', and only with it)"
    if method in ("ddim", "sde") and path.deterministic:
        return f"path {path.name!r} is deterministic; use 'auto' or an ODE method"
    if method == "sde" and not path.reverse_sde:
        return f"path {path.name!r} has no reverse-time SDE (ve and vp have one); use 'auto', 'ddim' or an ODE method"
    return None


def check_sampler(name: str, method: object, path: Objective) -> str:
    """`method` if it is one of `METHODS` and fits `path` (`sampler_mismatch`); else a `ParameterError` naming
    `name`, so a command refuses it before any sampling."""
    check_choice(name, method, METHODS)
    problem = sampler_mismatch(method, path)
    if problem is not None:
        raise ParameterError(name, method, problem)
    return method


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

    def _times(self, t: float | Tensor, x: Tensor) -> Tensor:
        return torch.full((self.n_graphs,), float(t), dtype=x.dtype, device=x.device)

    def __call__(self, t: float | Tensor, x: Tensor) -> Tensor:
        return self.path.field(self.model, self.numbers, x, self.x_w, self._times(t, x), self.batch, self.molecule)

    def crystal(self, t: float | Tensor, x: Tensor) -> Tensor:
        """The model's crystal x̂_s `[N, 3]` at time `t`, read directly (no detour through a velocity)."""
        return self.path.predict_crystal(
            self.model, self.numbers, x, self.x_w, self._times(t, x), self.batch, self.molecule
        )


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

    `method` is "euler" or "rk4" (fixed steps; torchdiffeq's RK4 is its 3/8-rule variant) or "dopri5"
    (adaptive, tolerances rtol/atol, reported at the same even times); torchdiffeq integrates all three.
    """
    if method not in ODE_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {', '.join(ODE_METHODS)}")
    field, x = _prepare(model, path, numbers, x_w, batch, generator, x_0, molecule)
    times = torch.linspace(0.0, 1.0, steps + 1, dtype=x.dtype, device=x.device)
    if method == "dopri5":
        return odeint(field, x, times, method="dopri5", rtol=rtol, atol=atol)
    # fixed-grid solvers take exactly one step between consecutive reported times
    return odeint(field, x, times, method=method)


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

    At each time the model gives its crystal x̂_s (`path.predict_crystal`) and the implied
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
        x_s = field.crystal(t, x)
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

    The model's crystal x̂_s gives both the velocity (`path.conditional_velocity`) and the score
    (`path.score_from_crystal`); the last step adds no noise.
    """
    field, x = _prepare(model, path, numbers, x_w, batch, generator, x_0, molecule)
    times = torch.linspace(0.0, 1.0, steps + 1, dtype=x.dtype, device=x.device)
    frames = [x]
    for step in range(steps):
        t, dt = times[step], times[step + 1] - times[step]
        t_atom = t.expand(x.shape[0])
        x_s = field.crystal(t, x)
        velocity = path.conditional_velocity(x, field.x_w, x_s, t_atom)
        score = path.score_from_crystal(x_s, x, field.x_w, t_atom)
        g = path.diffusion_coefficient(t)
        x = x + (velocity + 0.5 * g**2 * score) * dt
        if step < steps - 1:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + g * torch.sqrt(dt) * noise
        frames.append(x)
    return torch.stack(frames)


@torch.no_grad()
def sample_rigid(
    model: VelocityModel,
    path: RigidPath,
    numbers: Tensor,
    x_w: Tensor,
    batch: Tensor,
    molecule: Tensor,
    steps: int = 10,
    generator: torch.Generator | None = None,
    x_0: Tensor | None = None,
) -> Tensor:
    """Geodesic Euler steps on SE(3) for every molecule, t: 0 → 1 on `steps` even times; `[steps + 1, N, 3]`.

    The velocities come from the network's crystal (`RigidPath.velocities`), and every molecule moves along the
    geodesic: R ← exp(dt [ω]×) R, c ← c + dt v. Poses are kept in float64 and every frame places the start's
    own molecules, so intramolecular distances are exact; the last step lands on the predicted pose.
    """
    device = _model_device(model, x_w.device)
    numbers, x_w, batch, molecule = numbers.to(device), x_w.to(device), batch.to(device), molecule.to(device)
    start = path.prior(x_w, molecule, generator) if x_0 is None else x_0.to(device=device, dtype=x_w.dtype)
    n_molecules = int(molecule.max()) + 1
    start = start.double()
    centre = molecule_centroids(start, molecule, n_molecules)
    body = start - centre[molecule]
    rotation = torch.eye(3, dtype=torch.float64, device=device).expand(n_molecules, 3, 3).clone()
    times = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64, device=device)
    frames = [start]
    n_graphs = int(batch.max()) + 1
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        t_graph = torch.full((n_graphs,), float(t), dtype=torch.float64, device=device)
        v, omega = path.velocities(model, numbers, frames[-1], x_w, t_graph, batch, molecule)
        dt = t_next - t
        rotation = so3.exp_map(dt * omega) @ rotation
        centre = centre + dt * v
        frames.append(so3.place(centre, rotation, body, molecule))
    return torch.stack(frames).to(x_w.dtype)


def sample(
    model: VelocityModel,
    path: Objective,
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
    trajectory [x_w, x_w + v]), "euler" for lerp, "ddim" for ve and vp, "rigid" (geodesic steps on SE(3),
    `sample_rigid`) for rigid, which needs `molecule` and has no other sampler. "euler", "rk4", "dopri5",
    "ddim" or "sde" force a sampler on the other paths. `steps` defaults to `path.default_steps` with the
    path's default sampler (lerp 1, the conditional mean; ve and vp 1; rigid 10) and to `METHOD_STEPS` with any
    other (e.g. 100 reverse-SDE steps).
    """
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "auto":
        method = path.default_sampler
    problem = sampler_mismatch(method, path)
    if problem is not None:
        raise ValueError(f"method {method!r}: {problem}")
    if steps is None:
        steps = path.default_steps if method == path.default_sampler else METHOD_STEPS[method]
    inputs = (model, path, numbers, x_w, batch)
    options = {"generator": generator, "x_0": x_0, "molecule": molecule}
    if method == "rigid":
        if molecule is None:
            raise ValueError("the rigid sampler needs molecule ids")
        return sample_rigid(model, path, numbers, x_w, batch, molecule, steps=steps, generator=generator, x_0=x_0)
    if method == "direct":
        return sample_ode(*inputs, steps=1, method="euler", **options)
    if method == "ddim":
        return sample_ddim(*inputs, steps=steps, **options)
    if method == "sde":
        return sample_sde(*inputs, steps=steps, **options)
    return sample_ode(*inputs, steps=steps, method=method, **options)
