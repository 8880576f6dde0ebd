"""Rigid per-molecule noise: rigidity, reproducibility, rotation statistics, inversion, centring."""

import numpy as np
import pytest
import torch

from crystalflow_core.data.noise import NoiseConfig, centre_on_weak, random_rotations, rigid_noise


def _toy_cluster(n_mol: int = 17, n_atoms: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    molecule = rng.normal(size=(n_atoms, 3)) * 1.5
    centres = rng.normal(size=(n_mol, 3)) * 6.0
    x_s = torch.from_numpy((centres[:, None, :] + molecule[None]).reshape(-1, 3))
    return x_s, torch.arange(n_mol).repeat_interleave(n_atoms)


def _intramolecular_distances(x: torch.Tensor, molecule: torch.Tensor) -> list[torch.Tensor]:
    return [torch.cdist(x[molecule == m], x[molecule == m]) for m in range(int(molecule.max()) + 1)]


@pytest.mark.parametrize("inversion", [False, True])
def test_noise_is_rigid_per_molecule(inversion):
    x_s, molecule = _toy_cluster()
    x_w = rigid_noise(x_s, molecule, NoiseConfig(inversion=inversion), torch.Generator().manual_seed(1))
    for d_w, d_s in zip(
        _intramolecular_distances(x_w, molecule), _intramolecular_distances(x_s, molecule), strict=True
    ):
        torch.testing.assert_close(d_w, d_s, atol=1e-10, rtol=0)
    assert (x_w - x_s).abs().max() > 0.5


def test_noise_is_reproducible_and_seed_dependent():
    x_s, molecule = _toy_cluster()
    a = rigid_noise(x_s, molecule, NoiseConfig(), torch.Generator().manual_seed(3))
    b = rigid_noise(x_s, molecule, NoiseConfig(), torch.Generator().manual_seed(3))
    c = rigid_noise(x_s, molecule, NoiseConfig(), torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_rotations_are_proper_and_uniform():
    rotations = random_rotations(20000, 180.0, torch.Generator().manual_seed(0))
    eye = torch.eye(3, dtype=rotations.dtype).expand_as(rotations)
    torch.testing.assert_close(rotations @ rotations.transpose(1, 2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(20000, dtype=rotations.dtype))
    # Haar measure: E[R] = 0 and the rotation angle has density (1 - cos θ)/π, whose mean is π/2 + 2/π.
    assert rotations.mean(dim=0).abs().max() < 0.02
    angle = torch.arccos(((rotations.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1))
    assert abs(float(angle.mean()) - (np.pi / 2 + 2 / np.pi)) < 0.02


def test_small_rotation_scale_bounds_the_angle():
    rotations = random_rotations(2000, 30.0, torch.Generator().manual_seed(0))
    angle = torch.rad2deg(torch.arccos(((rotations.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)))
    assert float(angle.max()) <= 30.0 + 1e-6
    assert float(angle.max()) > 25.0


def test_centroid_translation_scale():
    x_s, molecule = _toy_cluster(n_mol=4000, n_atoms=3)
    config = NoiseConfig(rotation_deg=0.0, translation_sigma=0.7)
    x_w = rigid_noise(x_s, molecule, config, torch.Generator().manual_seed(2))
    shift = (x_w - x_s).reshape(4000, 3, 3)[:, 0]
    assert abs(float(shift.std()) - 0.7) < 0.02


def test_inversion_flips_about_half_the_molecules():
    x_s, molecule = _toy_cluster(n_mol=2000, n_atoms=4)
    config = NoiseConfig(rotation_deg=0.0, translation_sigma=0.0, inversion=True)
    x_w = rigid_noise(x_s, molecule, config, torch.Generator().manual_seed(5))
    local_s = x_s.reshape(2000, 4, 3) - x_s.reshape(2000, 4, 3).mean(1, keepdim=True)
    local_w = x_w.reshape(2000, 4, 3) - x_w.reshape(2000, 4, 3).mean(1, keepdim=True)
    inverted = torch.isclose(local_w, -local_s, atol=1e-12).all(dim=(1, 2))
    kept = torch.isclose(local_w, local_s, atol=1e-12).all(dim=(1, 2))
    assert bool((inverted | kept).all())
    assert abs(float(inverted.double().mean()) - 0.5) < 0.05


def test_centre_on_weak_per_graph():
    x_w = torch.randn(10, 3, dtype=torch.float64) + 5
    x_s = torch.randn(10, 3, dtype=torch.float64)
    batch = torch.tensor([0] * 4 + [1] * 6)
    cw, cs = centre_on_weak(x_w, x_s, batch)
    for g in (0, 1):
        torch.testing.assert_close(cw[batch == g].mean(0), torch.zeros(3, dtype=torch.float64))
        torch.testing.assert_close(cs[batch == g] - cw[batch == g], x_s[batch == g] - x_w[batch == g])


def test_bad_noise_scales_are_refused():
    with pytest.raises(ValueError, match="rotation_deg"):
        NoiseConfig(rotation_deg=200)
    with pytest.raises(ValueError, match="translation_sigma"):
        NoiseConfig(translation_sigma=-1)
