"""MMFF94 intermolecular energy: against RDKit's own MMFF94 energy of the cluster minus its molecules alone."""

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem, rdForceFieldHelpers

from crystalflow_core import forcefield
from crystalflow_core.data import codcluster17
from crystalflow_core.data.noise import random_rotations


def _conformer(smiles: str) -> Chem.Mol:
    molecule = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(molecule, randomSeed=7)
    rdForceFieldHelpers.MMFFOptimizeMolecule(molecule)
    return molecule


def _copies(molecule: Chem.Mol, offsets: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``[M n, 3]`` and ``mol_index`` of turned copies of the conformer at ``offsets [M, 3]``."""
    body = molecule.GetConformer().GetPositions()
    body = body - body.mean(axis=0)
    turns = random_rotations(len(offsets), 180.0, torch.Generator().manual_seed(seed)).numpy()
    x = np.concatenate([body @ turn.T + offset for turn, offset in zip(turns, offsets, strict=True)])
    return x, np.repeat(np.arange(len(offsets)), len(body))


def _rdkit_interaction(molecule: Chem.Mol, x: np.ndarray, n_copies: int) -> float:
    """RDKit's MMFF94 energy of all copies together minus that of each copy alone (no cutoff)."""
    cluster = molecule
    for _ in range(n_copies - 1):
        cluster = Chem.CombineMols(cluster, molecule)
    conformer = cluster.GetConformer()
    for index, position in enumerate(x):
        conformer.SetAtomPosition(index, position.tolist())
    properties = rdForceFieldHelpers.MMFFGetMoleculeProperties(cluster)
    together = rdForceFieldHelpers.MMFFGetMoleculeForceField(
        cluster, properties, nonBondedThresh=1e4, ignoreInterfragInteractions=False
    ).CalcEnergy()
    n = molecule.GetNumAtoms()
    alone = 0.0
    for m in range(n_copies):
        single = Chem.Mol(molecule)
        for index in range(n):
            single.GetConformer().SetAtomPosition(index, x[m * n + index].tolist())
        alone += rdForceFieldHelpers.MMFFGetMoleculeForceField(
            single, rdForceFieldHelpers.MMFFGetMoleculeProperties(single), nonBondedThresh=1e4
        ).CalcEnergy()
    return together - alone


@pytest.mark.parametrize("smiles", ["O=C(O)c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"])
def test_interaction_energy_is_rdkits_mmff_energy_between_molecules(smiles):
    molecule = _conformer(smiles)
    offsets = np.array([[0.0, 0.0, 0.0], [6.5, 0.5, 0.0], [0.3, 6.0, 1.0], [3.0, 3.0, 5.5]])
    x, mol_index = _copies(molecule, offsets)
    terms = forcefield.mmff_terms(molecule)
    ours = float(forcefield.interaction_energy(torch.as_tensor(x), terms, torch.as_tensor(mol_index)))
    expected = _rdkit_interaction(molecule, x, len(offsets))
    assert abs(expected) > 0.1
    assert ours == pytest.approx(expected, rel=1e-7, abs=1e-6)


def test_energy_batches_over_samples_and_drops_far_apart_clusters_to_zero():
    molecule = _conformer("CO")
    x, mol_index = _copies(molecule, np.array([[0.0, 0, 0], [3.5, 0, 0], [0, 3.5, 0]]))
    far, _ = _copies(molecule, np.array([[0.0, 0, 0], [400.0, 0, 0], [0, 400.0, 0]]))
    energy = forcefield.ClusterEnergy(forcefield.mmff_terms(molecule), torch.as_tensor(mol_index))
    both = energy(torch.as_tensor(np.stack([x, far])))
    assert both.shape == (2,)
    assert float(both[0]) == pytest.approx(float(energy(torch.as_tensor(x))), rel=1e-12)
    assert abs(float(both[1])) < 1e-2


def test_untypable_and_charged_molecules_are_refused(small_data):
    with pytest.raises(forcefield.ForceFieldError, match="net charge of \\+1.00"):
        forcefield.mmff_terms(Chem.AddHs(Chem.MolFromSmiles("C[NH3+]")))
    cluster = codcluster17.read_cluster(small_data, codcluster17.list_cluster_ids(small_data)[0])
    numbers = cluster.numbers.copy()
    numbers[np.flatnonzero(cluster.mol_index == 1)[0]] = 9  # one atom of molecule 1 becomes fluorine
    with pytest.raises(forcefield.ForceFieldError, match="molecule 1 is not a copy of molecule 0"):
        forcefield.cluster_terms(numbers, cluster.mol_index, cluster.x_s)


def test_curated_crystals_bind(small_data):
    """Every typable curated crystal cluster is bound (negative interaction energy) and its x_w is not lower."""
    typed = 0
    for cid in codcluster17.list_cluster_ids(small_data):
        cluster = codcluster17.read_cluster(small_data, cid)
        try:
            terms = forcefield.cluster_terms(cluster.numbers, cluster.mol_index, cluster.x_s)
        except forcefield.ForceFieldError:
            continue
        typed += 1
        energy = forcefield.ClusterEnergy(terms, torch.as_tensor(cluster.mol_index))
        crystal, start = (float(energy(torch.as_tensor(x))) for x in (cluster.x_s, cluster.x_w))
        assert crystal < 0 and start > crystal
    assert typed >= 3
