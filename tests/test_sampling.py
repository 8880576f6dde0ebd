"""Samplers: trajectory layout, oracle velocity fields reach x_s, GNN-MD is one step x_w + v."""

import math

import pytest
import torch

from crystalflow_core.nn import PaiNNVelocity
from crystalflow_core.paths import get_path
from crystalflow_core.sampling import sample, sample_ode, sample_sde


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


def _ve_oracle(x_s, sigma_min=0.01, sigma_max=20.0):
    """Exact conditional VE field (paper Eq. 28): −(dσ/ds / σ)(x − x_s) = −ln(σ_max/σ_min)(x − x_s)."""

    def field(numbers, x, x_w, t, batch):
        return -math.log(sigma_max / sigma_min) * (x - x_s)

    return field


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_ode_trajectory_shape_start_and_oracle_reaches_x_s(method):
    numbers, x_w, x_s, batch = _cluster()
    path = get_path("lerp")
    trajectory = sample_ode(_lerp_oracle(x_s), path, numbers, x_w, batch, steps=10, method=method, x_0=x_w)
    assert trajectory.shape == (11, 9, 3)
    torch.testing.assert_close(trajectory[0], x_w)
    assert (trajectory[-1] - x_s).abs().max() < 1e-4


def test_ode_from_the_prior_starts_at_the_prior_and_ends_near_x_s():
    numbers, x_w, x_s, batch = _cluster(seed=1)
    path = get_path("lerp")
    expected_start = path.prior(x_w, generator=torch.Generator().manual_seed(5))
    trajectory = sample_ode(
        _lerp_oracle(x_s), path, numbers, x_w, batch, steps=40, method="rk4", generator=torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(trajectory[0], expected_start)
    eps = expected_start - x_w
    torch.testing.assert_close(trajectory[-1], x_s + 1e-3 * eps, rtol=0.0, atol=1e-6)


def test_sde_trajectory_with_exact_ve_score_reaches_x_s():
    numbers, x_w, x_s, batch = _cluster(seed=2)
    path = get_path("ve")
    gen = torch.Generator().manual_seed(0)
    expected_start = path.prior(x_w, generator=torch.Generator().manual_seed(0))
    trajectory = sample_sde(_ve_oracle(x_s), path, numbers, x_w, batch, steps=100, generator=gen)
    assert trajectory.shape == (101, 9, 3)
    torch.testing.assert_close(trajectory[0], expected_start)
    assert (trajectory[0] - x_s).abs().max() > 5.0
    assert (trajectory[-1] - x_s).norm(dim=-1).max() < 0.05


def test_sde_with_exact_vp_score_reaches_x_s():
    numbers, x_w, x_s, batch = _cluster(seed=3)
    path = get_path("vp")

    def field(numbers, x, x_w_in, t, batch_in):
        return path.conditional_velocity(x, x_w_in, x_s, t[batch_in])

    trajectory = sample_sde(field, path, numbers, x_w, batch, steps=200, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(trajectory).all()
    assert (trajectory[-1] - x_s).norm(dim=-1).max() < 0.5
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


def test_auto_picks_ode_for_lerp_and_sde_for_diffusion_paths():
    numbers, x_w, x_s, batch = _cluster(seed=5)
    lerp = sample(_lerp_oracle(x_s), get_path("lerp"), numbers, x_w, batch, x_0=x_w)
    assert lerp.shape == (21, 9, 3)
    assert (lerp[-1] - x_s).abs().max() < 1e-4
    ve = sample(_ve_oracle(x_s), get_path("ve"), numbers, x_w, batch, generator=torch.Generator().manual_seed(0))
    assert ve.shape == (101, 9, 3)
    with pytest.raises(ValueError, match="unknown sampling method"):
        sample(_ve_oracle(x_s), get_path("ve"), numbers, x_w, batch, method="heun")


def test_samplers_do_not_track_gradients_and_keep_dtype():
    numbers, x_w, _, batch = _cluster(seed=6)
    model = PaiNNVelocity(hidden=8, layers=1, n_rbf=4, cutoff=10.0, time_embedding=4).double()
    trajectory = sample(model, get_path("lerp"), numbers, x_w, batch, steps=3)
    assert not trajectory.requires_grad and trajectory.dtype == torch.float64
    assert trajectory.device == next(model.parameters()).device
