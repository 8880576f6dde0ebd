"""Probability paths: targets are time derivatives of x_t, closed forms of the paper, finite coefficients."""

import math

import pytest
import torch

from crystalflow_core.paths import PATHS, DirectPath, LerpPath, VEPath, VPPath, flow_matching_loss, get_path
from crystalflow_core.sampling import sample_ode

GAUSSIAN_PATHS = ("lerp", "ve", "vp")
#: Paths with the CFM loss on free atoms (the rigid objective has tests of its own in test_rigid.py).
FREE_ATOM_PATHS = (*GAUSSIAN_PATHS, "gnn_md")


def _cluster(seed: int = 0, n_atoms: int = 7, n_graphs: int = 2):
    """Random x_w, x_s `[N, 3]` in float64, a sorted batch vector and a noise draw."""
    gen = torch.Generator().manual_seed(seed)
    x_s = 3.0 * torch.randn(n_atoms, 3, generator=gen, dtype=torch.float64)
    x_w = x_s + torch.randn(n_atoms, 3, generator=gen, dtype=torch.float64)
    eps = torch.randn(n_atoms, 3, generator=gen, dtype=torch.float64)
    batch = torch.sort(torch.randint(0, n_graphs, (n_atoms,), generator=gen)).values
    batch[0], batch[-1] = 0, n_graphs - 1
    return x_w, x_s, eps, batch


def test_registry_builds_every_path_and_rejects_unknown_names():
    assert PATHS == ("lerp", "ve", "vp", "gnn_md", "rigid")
    assert [get_path(name).name for name in PATHS] == list(PATHS)
    assert get_path("lerp", sigma_min=0.1).sigma_min == 0.1
    with pytest.raises(ValueError, match="lerp, ve, vp, gnn_md, rigid"):
        get_path("ddpm")
    assert [get_path(name).prediction for name in FREE_ATOM_PATHS] == ["crystal", "crystal", "crystal", "velocity"]
    assert get_path("ve", prediction="velocity").prediction == "velocity"
    with pytest.raises(ValueError, match="prediction must be one of velocity, crystal"):
        get_path("vp", prediction="score")


@pytest.mark.parametrize("name", GAUSSIAN_PATHS)
@pytest.mark.parametrize("t0", [0.1, 0.45, 0.9])
def test_target_is_central_difference_of_path_in_t(name, t0):
    path = get_path(name)
    x_w, x_s, eps, batch = _cluster()
    h = 1e-6
    t = torch.tensor([t0, t0 + 0.03], dtype=torch.float64)
    point = path.sample(x_w, x_s, t, batch, noise=eps)
    x_plus = path.sample(x_w, x_s, t + h, batch, noise=eps).x_t
    x_minus = path.sample(x_w, x_s, t - h, batch, noise=eps).x_t
    finite_difference = (x_plus - x_minus) / (2 * h)
    torch.testing.assert_close(point.target, finite_difference, rtol=1e-6, atol=1e-6)
    t_atom = t[batch]
    expected_x_t = path.mean(x_w, x_s, t_atom) + path.std(t_atom)[:, None] * eps
    torch.testing.assert_close(point.x_t, expected_x_t)


def test_lerp_matches_paper_velocity_eq36_and_its_noise_free_limit_eq9():
    path = LerpPath(sigma0=1.0, sigma_min=1e-3)
    x_w, x_s, eps, batch = _cluster(seed=1)
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    point = path.sample(x_w, x_s, t, batch, noise=eps)
    t_atom = t[batch][:, None]
    s_min = 1e-3
    paper = (x_s - s_min * x_w - (1 - s_min) * point.x_t) / (1 - (1 - s_min) * t_atom)
    torch.testing.assert_close(point.target, paper)
    noise_free = path.sample(x_w, x_s, t, batch, noise=torch.zeros_like(eps))
    torch.testing.assert_close(noise_free.target, x_s - x_w)
    torch.testing.assert_close(noise_free.x_t, (1 - t_atom) * x_w + t_atom * x_s)


def test_ve_matches_paper_eq28():
    path = VEPath(sigma_min=0.01, sigma_max=20.0)
    x_w, x_s, eps, batch = _cluster(seed=2)
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    point = path.sample(x_w, x_s, t, batch, noise=eps)
    s = 1 - t[batch][:, None]
    sigma = 0.01 * 2000.0**s
    d_sigma_ds = math.log(2000.0) * sigma
    torch.testing.assert_close(point.x_t, x_s + sigma * eps)
    torch.testing.assert_close(point.target, -(d_sigma_ds / sigma) * (point.x_t - x_s))


@pytest.mark.parametrize("scale", [1.0, 10.0])
@pytest.mark.parametrize("t0", [0.0, 0.5, 0.99, 1.0])
def test_vp_matches_paper_closed_form_eq31_eq32(scale, t0):
    eps_clamp = 1e-3
    path = VPPath(beta_min=0.1, beta_max=20.0, scale=scale, eps=eps_clamp)
    x_w, x_s, eps, batch = _cluster(seed=3)
    t = torch.tensor([t0, t0], dtype=torch.float64)
    point = path.sample(x_w, x_s, t, batch, noise=eps)
    s = max(1.0 - t0, eps_clamp)
    big_t = 0.1 * s + 0.5 * s**2 * (20.0 - 0.1)
    t_prime = 0.1 + s * (20.0 - 0.1)
    x = point.x_t
    eq31 = -t_prime / 2 * (math.exp(-big_t) * x - math.exp(-big_t / 2) * x_s) / (1 - math.exp(-big_t))
    eq32 = t_prime / 2 * (math.exp(-big_t / 2) * x_s - math.exp(-big_t) * x) / (1 - math.exp(-big_t))
    torch.testing.assert_close(point.target, eq31)
    torch.testing.assert_close(point.target, eq32)
    alpha = math.exp(-big_t / 2)
    torch.testing.assert_close(x, alpha * x_s + scale * math.sqrt(1 - alpha**2) * eps)


@pytest.mark.parametrize("name", ["ve", "vp"])
def test_coefficients_are_finite_at_the_ends(name):
    path = get_path(name)
    t = torch.tensor([0.0, 1e-9, 0.5, 1 - 1e-9, 1.0], dtype=torch.float64)
    c = path.coefficients(t)
    for value in (c.a, c.b, c.sigma, c.d_a, c.d_b, c.d_sigma, path.diffusion_coefficient(t)):
        assert torch.isfinite(value).all()
    assert (c.sigma > 0).all()
    x_w, x_s, eps, _ = _cluster(seed=4, n_atoms=5)
    batch = torch.zeros(5, dtype=torch.long)
    for t_end in (0.0, 1.0):
        point = path.sample(x_w, x_s, torch.tensor([t_end], dtype=torch.float64), batch, noise=eps)
        assert torch.isfinite(point.x_t).all() and torch.isfinite(point.target).all()


@pytest.mark.parametrize("name", GAUSSIAN_PATHS)
def test_score_from_exact_velocity_is_conditional_score(name):
    path = get_path(name)
    x_w, x_s, eps, batch = _cluster(seed=5)
    t = torch.tensor([0.25, 0.8], dtype=torch.float64)
    point = path.sample(x_w, x_s, t, batch, noise=eps)
    t_atom = t[batch]
    x_hat = path.crystal_from_velocity(point.target, point.x_t, x_w, t_atom)
    score = path.score_from_crystal(x_hat, point.x_t, x_w, t_atom)
    torch.testing.assert_close(score, -eps / path.std(t_atom)[:, None])
    field = path.conditional_velocity(point.x_t, x_w, x_s, t_atom)
    torch.testing.assert_close(field, point.target)


@pytest.mark.parametrize("name", FREE_ATOM_PATHS)
def test_model_returning_exact_target_has_zero_loss_and_others_do_not(name, exact_model):
    path = get_path(name)
    x_w, x_s, _, batch = _cluster(seed=6)
    numbers = torch.ones(len(batch), dtype=torch.long)
    seen = {}
    exact = exact_model(path, x_s)

    def oracle(numbers, x_t, x_w_in, t, batch_in):
        seen["t"] = t
        return exact(numbers, x_t, x_w_in, t, batch_in)

    loss = flow_matching_loss(oracle, path, numbers, x_w, x_s, batch, torch.Generator().manual_seed(11))
    assert loss.item() < 1e-24
    zero_model = lambda *args: torch.zeros_like(x_w)  # noqa: E731
    wrong = flow_matching_loss(zero_model, path, numbers, x_w, x_s, batch, torch.Generator().manual_seed(11))
    assert wrong.item() > 1e-3
    if path.deterministic:
        assert (seen["t"] == 0).all()


def test_gnn_md_regresses_displacement_at_t_zero():
    path = DirectPath()
    x_w, x_s, eps, batch = _cluster(seed=7)
    t = path.sample_t(2)
    assert path.deterministic and (t == 0).all()
    point = path.sample(x_w, x_s, t.to(x_w.dtype), batch, noise=eps)
    torch.testing.assert_close(point.x_t, x_w)
    torch.testing.assert_close(point.target, x_s - x_w)
    torch.testing.assert_close(path.prior(x_w), x_w)


def test_sample_t_is_uniform_per_graph_and_reproducible():
    path = LerpPath()
    t = path.sample_t(4000, generator=torch.Generator().manual_seed(0))
    again = path.sample_t(4000, generator=torch.Generator().manual_seed(0))
    assert t.shape == (4000,) and torch.equal(t, again)
    assert t.min() >= 0 and t.max() < 1
    assert abs(t.mean().item() - 0.5) < 0.02 and abs(t.var().item() - 1 / 12) < 0.01


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_integrating_exact_lerp_field_from_x_w_lands_on_x_s(method):
    path = LerpPath(prediction="velocity")
    x_w, x_s, _, batch = _cluster(seed=8)
    numbers = torch.ones(len(batch), dtype=torch.long)

    def field(numbers, x, x_w_in, t, batch_in):
        t_atom = t[batch_in][:, None]
        return (x_s - 1e-3 * x_w_in - (1 - 1e-3) * x) / (1 - (1 - 1e-3) * t_atom)

    trajectory = sample_ode(field, path, numbers, x_w, batch, steps=50, method=method, x_0=x_w)
    assert (trajectory[-1] - x_s).abs().max() < 1e-4
    t_mid = 0.5
    torch.testing.assert_close(trajectory[25], (1 - t_mid) * x_w + t_mid * x_s)


@pytest.mark.parametrize("name", ["ve", "vp"])
def test_diffusion_coefficient_matches_forward_sde_of_the_path(name):
    """A forward SDE dx = (d ln a/ds) x ds + g dW in s = 1 − t has Var' = 2 (d ln a/ds) σ² + g² along the path,
    so g² = −dσ²/dt + 2 (d ln a/dt) σ² (finite differences in t of the path's own a_t, σ_t)."""
    path = get_path(name)
    t = torch.tensor([0.05, 0.3, 0.6, 0.9], dtype=torch.float64)
    h = 1e-6
    plus, minus, here = path.coefficients(t + h), path.coefficients(t - h), path.coefficients(t)
    d_sigma2 = (plus.sigma**2 - minus.sigma**2) / (2 * h)
    d_log_a = (torch.log(plus.a) - torch.log(minus.a)) / (2 * h)
    expected = -d_sigma2 + 2 * d_log_a * here.sigma**2
    torch.testing.assert_close(path.diffusion_coefficient(t) ** 2, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", GAUSSIAN_PATHS)
def test_crystal_from_exact_velocity_is_x_s(name):
    path = get_path(name)
    x_w, x_s, eps, batch = _cluster(seed=8)
    t = torch.tensor([0.0, 0.6], dtype=torch.float64)
    point = path.sample(x_w, x_s, t, batch, noise=eps)
    torch.testing.assert_close(path.crystal_from_velocity(point.target, point.x_t, x_w, t[batch]), x_s)


@pytest.mark.parametrize("name", GAUSSIAN_PATHS)
def test_crystal_prediction_reads_a_correction_to_the_posterior_mean(name):
    """The network sees E[x_s | x_t] under x_s ~ N(x_w, σ_d²) (checked by regression on samples), and its output o
    moves the end point x̂_s from there by o times the posterior spread."""
    path = get_path(name)
    assert path.prediction == "crystal"
    n, t_value = 200_000, 0.7
    gen = torch.Generator().manual_seed(3)
    x_w = torch.zeros(n, 3, dtype=torch.float64)
    x_s = path.data_scale * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    t, batch = torch.tensor([t_value], dtype=torch.float64), torch.zeros(n, dtype=torch.long)
    x_t = path.sample(x_w, x_s, t, batch).x_t
    slope = (x_t * x_s).sum() / (x_t * x_t).sum()  # E[x_s | x_t] is linear in x_t here
    spread = (x_s - slope * x_t).std()
    seen = {}

    def model(numbers, x_in, x_w_in, t_in, batch_in):
        seen["x"] = x_in
        return torch.full_like(x_in, 2.0)

    v = path.field(model, torch.ones(n, dtype=torch.long), x_t, x_w, t, batch)
    torch.testing.assert_close(seen["x"], slope * x_t, rtol=0.02, atol=1e-3)
    x_hat = path.crystal_from_velocity(v, x_t, x_w, t[batch])
    torch.testing.assert_close(x_hat - seen["x"], torch.full_like(x_t, 2.0 * spread.item()), rtol=0.02, atol=0)


@pytest.mark.parametrize("name", GAUSSIAN_PATHS)
def test_crystal_prediction_is_finite_at_the_ends(name):
    path = get_path(name)
    x_w, x_s, eps, batch = _cluster(seed=9)
    output = torch.randn(x_w.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    numbers = torch.ones(len(batch), dtype=torch.long)
    for t_end in (0.0, 1.0):
        t = torch.full((2,), t_end, dtype=torch.float64)
        x_t = path.sample(x_w, x_s, t, batch, noise=eps).x_t
        assert torch.isfinite(path.field(lambda *args: output, numbers, x_t, x_w, t, batch)).all()
