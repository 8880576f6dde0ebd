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


def _methanol_cluster(spacing: float, n: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, object]:
    """``n`` turned copies of an MMFF94 methanol conformer on a cubic grid ``spacing`` Å apart, and its terms."""
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdForceFieldHelpers

    from crystalflow_core.data.noise import random_rotations
    from crystalflow_core.forcefield import mmff_terms

    molecule = Chem.AddHs(Chem.MolFromSmiles("CO"))
    AllChem.EmbedMolecule(molecule, randomSeed=3)
    rdForceFieldHelpers.MMFFOptimizeMolecule(molecule)
    body = torch.as_tensor(molecule.GetConformer().GetPositions())
    body = body - body.mean(dim=0)
    grid = torch.tensor([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], dtype=torch.float64)
    turns = random_rotations(n, 180.0, torch.Generator().manual_seed(1))
    x = torch.cat([body @ turns[m].T + spacing * grid[m] for m in range(n)])
    numbers = torch.tensor([a.GetAtomicNum() for a in molecule.GetAtoms()] * n)
    mol_index = torch.arange(n).repeat_interleave(len(body))
    return x, numbers, mol_index, mmff_terms(molecule)


def test_mmff_relaxation_binds_loose_molecules_and_keeps_them_exact():
    from crystalflow_core.forcefield import interaction_energy
    from crystalflow_core.relax import relax_cluster

    x, numbers, mol_index, terms = _methanol_cluster(spacing=6.0)
    relaxed = relax_cluster(x, numbers, mol_index, terms)
    before, after = (float(interaction_energy(y, terms, mol_index)) for y in (x, relaxed))
    assert after < before - 10.0  # kcal/mol: eight methanols form hydrogen bonds
    assert intermolecular_clash_rate(relaxed, numbers, mol_index) == 0
    for m in range(8):
        atoms = mol_index == m
        torch.testing.assert_close(_distances(relaxed[atoms]), _distances(x[atoms]), rtol=0, atol=1e-9)
    # every molecule ends in contact: its nearest atom of another molecule is within 3 Å (an O-H···O is ~1.9)
    d = torch.cdist(relaxed, relaxed)
    d[mol_index[:, None] == mol_index[None, :]] = float("inf")
    nearest = torch.stack([d[mol_index == m].min() for m in range(8)])
    assert float(nearest.max()) < 3.0 and float(nearest.min()) > 1.5


def test_separation_moves_only_clashing_molecules_outward_until_clear():
    from crystalflow_core.relax import SEPARATION_STEP, separate_clashing

    x, numbers, mol_index, _ = _methanol_cluster(spacing=6.0)
    inner = x.clone()
    inner[mol_index == 7] -= 2.2 * torch.tensor([6.0, 6.0, 6.0], dtype=x.dtype) / 6.0 * 2.9  # 7 into molecule 0
    assert intermolecular_clash_rate(inner, numbers, mol_index) > 0
    separated = separate_clashing(inner, numbers, mol_index)
    assert intermolecular_clash_rate(separated, numbers, mol_index) == 0
    moved = [m for m in range(8) if not torch.allclose(separated[mol_index == m], inner[mol_index == m])]
    assert len(moved) >= 1 and set(moved) <= {0, 7}  # only the clashing pair moves
    for m in moved:  # by whole steps, without turning
        shift = separated[mol_index == m] - inner[mol_index == m]
        torch.testing.assert_close(shift, shift[:1].expand_as(shift))
        steps = float(shift[0].norm()) / SEPARATION_STEP
        assert abs(steps - round(steps)) < 1e-9
