"""Rigid-body steric relaxation: clashes go, molecules stay exact, clash-free clusters stay put."""

import torch

from crystalflow_core.metrics import intermolecular_clash_rate
from crystalflow_core.relax import contact_pairs, relax_rigid, steric_energy


def _pair_of_molecules(gap: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two bent C-C-O molecules ``gap`` Å apart along x, in one graph, plus a clash-free second graph."""
    shape = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [2.0, 1.2, 0.3]], dtype=torch.float64)
    first = torch.cat([shape, shape + torch.tensor([gap, 0.2, 0.1], dtype=torch.float64)])
    second = torch.cat([shape, shape + torch.tensor([8.0, 0.0, 0.0], dtype=torch.float64)]) + 50.0
    x = torch.cat([first, second])
    numbers = torch.tensor([6, 6, 8] * 4)
    molecule = torch.arange(4).repeat_interleave(3)
    batch = torch.tensor([0] * 6 + [1] * 6)
    return x, numbers, molecule, batch


def _distances(x: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, x)


def test_relaxation_removes_clashes_and_keeps_molecules_exact():
    x, numbers, molecule, batch = _pair_of_molecules(gap=1.0)
    first = batch == 0
    assert intermolecular_clash_rate(x[first], numbers[first], molecule[first]) > 0
    relaxed = relax_rigid(x, numbers, molecule, batch)
    assert intermolecular_clash_rate(relaxed[first], numbers[first], molecule[first]) == 0
    for m in range(4):
        atoms = molecule == m
        torch.testing.assert_close(_distances(relaxed[atoms]), _distances(x[atoms]), rtol=0, atol=1e-9)
    # the clash-free graph feels no force and does not move
    torch.testing.assert_close(relaxed[~first], x[~first], rtol=0, atol=1e-12)


def test_steric_energy_is_the_squared_overlap_of_close_pairs_only():
    x, numbers, molecule, batch = _pair_of_molecules(gap=2.4)
    pairs = contact_pairs(x, molecule, batch, reach=6.0)
    assert bool((molecule[pairs[0]] != molecule[pairs[1]]).all())
    radius = {6: 0.76, 8: 0.66}  # Cordero covalent radii, Å
    expected = 0.0
    for i in range(6):
        for j in range(i + 1, 6):
            if molecule[i] != molecule[j]:
                wall = 1.1 * (radius[int(numbers[i])] + radius[int(numbers[j])])
                expected += 0.5 * max(0.0, wall - float((x[i] - x[j]).norm())) ** 2
    assert expected > 0
    torch.testing.assert_close(float(steric_energy(x, numbers, pairs)), expected, rtol=1e-9, atol=0)
