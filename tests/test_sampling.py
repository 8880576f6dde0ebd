"""Samplers: trajectory layout, oracle velocity fields reach x_s, GNN-MD is one step x_w + v."""

import math

import pytest
import torch

from crystalflow_core.errors import ParameterError
from crystalflow_core.nn import PaiNNVelocity
from crystalflow_core.paths import get_path
from crystalflow_core.sampling import check_sampler, sample, sample_ddim, sample_ode, sample_sde


def _cluster(seed: int = 0, n_atoms: int = 9):
    """Centred float64 x_s and x_w `[N, 3]`, numbers `[N]` and a two-graph batch vector `[N]`."""
    gen = torch.Generator().manual_seed(seed)
    x_s = 3.0 * torch.randn(n_atoms, 3, generator=gen, dtype=torch.float64)
    x_s = x_s - x_s.mean(dim=0)
    x_w = x_s + torch.randn(n_atoms, 3, generator=gen, dtype=torch.float64)
    numbers = torch.randint(1, 9, (n_atoms,), generator=gen)
    batch = torch.tensor([0] * 4 + [1] * (n_atoms - 4))
    return numbers, x_w, x_s, batch


def _lerp_oracle(x_s, sigma_min=1e-3):
    """Exact conditional LERP field (paper Eq. 36, σ0 = 1) as a parameter-free model."""

    def field(numbers, x, x_w, t, batch):
        t_atom = t[batch][:, None]
        return (x_s - sigma_min * x_w - (1 - sigma_min) * x) / (1 - (1 - sigma_min) * t_atom)

    return field


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_ode_trajectory_shape_start_and_oracle_reaches_x_s(method):
    numbers, x_w, x_s, batch = _cluster()
    path = get_path("lerp", prediction="velocity")
    trajectory = sample_ode(_lerp_oracle(x_s), path, numbers, x_w, batch, steps=10, method=method, x_0=x_w)
    assert trajectory.shape == (11, 9, 3)
    torch.testing.assert_close(trajectory[0], x_w)
    assert (trajectory[-1] - x_s).abs().max() < 1e-4


def test_ode_from_the_prior_starts_at_the_prior_and_ends_near_x_s():
    numbers, x_w, x_s, batch = _cluster(seed=1)
    path = get_path("lerp", prediction="velocity")
    expected_start = path.prior(x_w, generator=torch.Generator().manual_seed(5))
    trajectory = sample_ode(
        _lerp_oracle(x_s), path, numbers, x_w, batch, steps=40, method="rk4", generator=torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(trajectory[0], expected_start)
    eps = expected_start - x_w
    torch.testing.assert_close(trajectory[-1], x_s + 1e-3 * eps, rtol=0.0, atol=1e-6)


def test_exact_ve_output_is_the_paper_field(exact_model):
    """The exact model's output, read by the VE path, is Eq. 28: −(dσ/ds / σ)(x − x_s) = −ln(σ_max/σ_min)(x − x_s)."""
    numbers, x_w, x_s, batch = _cluster(seed=2)
    path = get_path("ve")
    x = x_w + 5.0 * torch.randn(x_w.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.tensor([0.1, 0.9], dtype=torch.float64)
    velocity = path.field(exact_model(path, x_s), numbers, x, x_w, t, batch)
    torch.testing.assert_close(velocity, -math.log(20.0 / 0.01) * (x - x_s))


def test_sde_trajectory_with_exact_ve_score_reaches_x_s(exact_model):
    numbers, x_w, x_s, batch = _cluster(seed=2)
    path = get_path("ve")
    gen = torch.Generator().manual_seed(0)
    expected_start = path.prior(x_w, generator=torch.Generator().manual_seed(0))
    trajectory = sample_sde(exact_model(path, x_s), path, numbers, x_w, batch, steps=100, generator=gen)
    assert trajectory.shape == (101, 9, 3)
    torch.testing.assert_close(trajectory[0], expected_start)
    assert (trajectory[0] - x_s).abs().max() > 5.0
    assert (trajectory[-1] - x_s).norm(dim=-1).max() < 0.1


def test_sde_with_exact_vp_score_reaches_x_s(exact_model):
    numbers, x_w, x_s, batch = _cluster(seed=3)
    path = get_path("vp")
    trajectory = sample_sde(
        exact_model(path, x_s), path, numbers, x_w, batch, steps=200, generator=torch.Generator().manual_seed(1)
    )
    assert torch.isfinite(trajectory).all()
    # the last noisy step leaves σ_t ≈ 0.3 Å of noise at t = 1 − dt (scale 10 Å), hence the loose bound
    assert (trajectory[-1] - x_s).norm(dim=-1).max() < 1.0
    assert (trajectory[0] - x_s).norm(dim=-1).max() > 5.0


def test_auto_gnn_md_is_one_step_x_w_plus_velocity():
    numbers, x_w, x_s, batch = _cluster(seed=4)
    torch.manual_seed(0)
    model = PaiNNVelocity(hidden=8, layers=1, n_rbf=4, cutoff=10.0, time_embedding=4).double()
    trajectory = sample(model, get_path("gnn_md"), numbers, x_w, batch)
    velocity = model(numbers, x_w, x_w, torch.zeros(2, dtype=torch.float64), batch)
    assert trajectory.shape == (2, 9, 3)
    torch.testing.assert_close(trajectory[0], x_w)
    torch.testing.assert_close(trajectory[1], x_w + velocity)


def test_auto_picks_euler_for_lerp_and_ddim_for_diffusion_paths(exact_model):
    numbers, x_w, x_s, batch = _cluster(seed=5)
    lerp_oracle = exact_model(get_path("lerp"), x_s)
    lerp = sample(lerp_oracle, get_path("lerp"), numbers, x_w, batch, x_0=x_w)
    assert get_path("lerp").default_steps == 1 and lerp.shape == (2, 9, 3)
    assert (lerp[-1] - x_s).abs().max() < 1e-4  # straight conditional paths: one Euler step lands exactly
    lerp = sample(lerp_oracle, get_path("lerp"), numbers, x_w, batch, x_0=x_w, steps=20)
    assert lerp.shape == (21, 9, 3)
    assert (lerp[-1] - x_s).abs().max() < 1e-4
    for name in ("ve", "vp"):
        path = get_path(name)
        oracle = exact_model(path, x_s)
        start = path.prior(x_w, generator=torch.Generator().manual_seed(0))
        auto = sample(oracle, path, numbers, x_w, batch, x_0=start)
        torch.testing.assert_close(auto, sample_ddim(oracle, path, numbers, x_w, batch, steps=1, x_0=start))
        forced = sample(oracle, path, numbers, x_w, batch, method="sde", generator=torch.Generator().manual_seed(0))
        assert forced.shape == (101, 9, 3)
    with pytest.raises(ValueError, match="unknown sampling method"):
        sample(oracle, get_path("ve"), numbers, x_w, batch, method="heun")


def test_samplers_do_not_track_gradients_and_keep_dtype():
    numbers, x_w, _, batch = _cluster(seed=6)
    model = PaiNNVelocity(hidden=8, layers=1, n_rbf=4, cutoff=10.0, time_embedding=4).double()
    trajectory = sample(model, get_path("lerp"), numbers, x_w, batch, steps=3)
    assert not trajectory.requires_grad and trajectory.dtype == torch.float64
    assert trajectory.device == next(model.parameters()).device


@pytest.mark.parametrize(("method", "tolerance"), [("euler", 1e-12), ("rk4", 1e-5), ("dopri5", 1e-4)])
def test_ode_solvers_on_exponential_growth(method, tolerance):
    """dx/dt = x from x_0: Euler gives (1 + 1/n)^n x_0 exactly, rk4 and dopri5 approach e·x_0."""
    numbers, x_w, _, batch = _cluster(seed=7)
    x_0 = torch.randn(x_w.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    path = get_path("lerp", prediction="velocity")
    trajectory = sample_ode(lambda *args: args[1], path, numbers, x_w, batch, 10, method, x_0=x_0)
    expected = (1.1**10 if method == "euler" else math.e) * x_0
    assert ((trajectory[-1] - expected).norm() / expected.norm()).item() < tolerance


@pytest.mark.parametrize("name", ["ve", "vp"])
def test_sde_keeps_the_marginal_of_a_point_mass(name, exact_model):
    """From x_0 ~ N(μ_0, σ_0²), the reverse SDE with the exact score keeps x_t ~ N(μ_t, σ_t²) (Eq. 27, 30)."""
    n_atoms = 3000
    gen = torch.Generator().manual_seed(0)
    x_s = torch.randn(n_atoms, 3, generator=gen, dtype=torch.float64)
    path = get_path(name)
    field = exact_model(path, x_s)
    zero = torch.zeros(n_atoms, dtype=torch.float64)
    x_0 = path.mean(x_s, x_s, zero) + path.std(zero)[:, None] * torch.randn(x_s.shape, generator=gen, dtype=x_s.dtype)
    numbers, batch = torch.ones(n_atoms, dtype=torch.long), torch.zeros(n_atoms, dtype=torch.long)
    steps = 400
    trajectory = sample_sde(field, path, numbers, x_s, batch, steps=steps, generator=gen, x_0=x_0)
    for t in (0.25, 0.5, 0.9):
        t_atom = torch.full((n_atoms,), t, dtype=torch.float64)
        residual = trajectory[int(t * steps)] - path.mean(x_s, x_s, t_atom)
        sigma = path.std(t_atom)[0].item()
        assert residual.std().item() == pytest.approx(sigma, rel=0.1)
        assert abs(residual.mean().item()) < 0.05 * sigma


@pytest.mark.parametrize("name", ["lerp", "ve", "vp"])
@pytest.mark.parametrize("steps", [1, 7])
def test_ddim_with_the_exact_field_lands_on_x_s(name, steps, exact_model):
    """The exact field points to x_s from anywhere, so every DDIM step keeps x̂_s = x_s and ends at μ_1 + σ_1 ε."""
    numbers, x_w, x_s, batch = _cluster(seed=8)
    path = get_path(name)
    start = path.prior(x_w, generator=torch.Generator().manual_seed(2))
    trajectory = sample_ddim(exact_model(path, x_s), path, numbers, x_w, batch, steps=steps, x_0=start)
    assert trajectory.shape == (steps + 1, 9, 3)
    torch.testing.assert_close(trajectory[0], start)
    zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    eps = (start - path.mean(x_w, x_s, zero.expand(9))) / path.std(zero)
    torch.testing.assert_close(trajectory[-1], path.mean(x_w, x_s, one.expand(9)) + path.std(one) * eps)
    assert (trajectory[-1] - x_s).norm(dim=-1).max() < 0.5  # σ_1 is 0.1 Å for VP, less for the others


def test_ddim_refuses_the_noise_free_direct_path():
    numbers, x_w, x_s, batch = _cluster(seed=9)
    with pytest.raises(ValueError, match="gnn_md"):
        sample_ddim(_lerp_oracle(x_s), get_path("gnn_md"), numbers, x_w, batch)


def test_check_sampler_refuses_what_does_not_fit_the_path_before_sampling():
    assert check_sampler("method", "rigid", get_path("rigid")) == "rigid"
    assert check_sampler("method", "sde", get_path("ve")) == "sde" and check_sampler("method", "auto", get_path("lerp"))
    refused = {
        ("rigid", "lerp"): r"^method='rigid': does not fit path 'lerp'",
        ("euler", "rigid"): r"^method='euler': does not fit path 'rigid'",
        ("ddim", "gnn_md"): r"^method='ddim': path 'gnn_md' is deterministic",
        ("sde", "lerp"): r"^method='sde': path 'lerp' has no reverse-time SDE",
        ("sde", "gnn_md"): r"^method='sde': path 'gnn_md' is deterministic",
        ("leapfrog", "lerp"): r"^method='leapfrog': must be one of auto",
    }
    for (method, name), message in refused.items():
        with pytest.raises(ParameterError, match=message):
            check_sampler("method", method, get_path(name))


def test_sample_refuses_the_sde_of_a_path_without_one_in_words():
    numbers, x_w, x_s, batch = _cluster()
    with pytest.raises(ValueError, match=r"method 'sde': path 'lerp' has no reverse-time SDE"):
        sample(_lerp_oracle(x_s), get_path("lerp"), numbers, x_w, batch, method="sde")
