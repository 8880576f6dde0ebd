"""Tests for crystalflow_core.data.symmetry, checked against RDKit's chemistry and networkx's graph matcher."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch
from ase.data import covalent_radii
from networkx.algorithms.isomorphism import GraphMatcher
from rdkit import Chem
from rdkit.Chem import AllChem
from scipy.spatial.transform import Rotation

from crystalflow_core.data.molecules import find_bonds
from crystalflow_core.data.symmetry import (
    automorphisms,
    closest_automorphic,
    cluster_automorphisms,
    cluster_bonds,
    molecule_bonds,
)


def embedded(smiles: str) -> tuple[np.ndarray, np.ndarray, set[tuple[int, int]]]:
    """Atomic numbers, 3-D coordinates (RDKit ETKDG, fixed seed) and RDKit's bonds of a molecule with hydrogens."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
    numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()])
    bonds = {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()}
    return numbers, mol.GetConformer().GetPositions(), bonds


def graph_automorphisms(numbers: np.ndarray, bonds) -> set[tuple[int, ...]]:
    """Every element-preserving automorphism of a bond graph, by networkx's VF2 (independent of RDKit)."""
    graph = nx.Graph()
    graph.add_nodes_from((i, {"z": int(z)}) for i, z in enumerate(numbers))
    graph.add_edges_from(tuple(map(int, b)) for b in bonds)
    matcher = GraphMatcher(graph, graph, node_match=lambda a, b: a["z"] == b["z"])
    return {tuple(m[i] for i in range(len(numbers))) for m in matcher.isomorphisms_iter()}


def assert_valid(perms: np.ndarray, numbers: np.ndarray, bonds: np.ndarray) -> None:
    """Every row relabels elements onto themselves and bonds onto bonds; rows distinct; identity first."""
    bond_set = {tuple(b) for b in np.sort(bonds, axis=1).tolist()}
    assert perms.dtype == np.int64
    assert np.array_equal(perms[0], np.arange(len(numbers)))
    assert len({tuple(p) for p in perms.tolist()}) == len(perms)
    for perm in perms:
        assert np.array_equal(numbers[perm], numbers)
        assert {tuple(sorted((int(perm[i]), int(perm[j])))) for i, j in bond_set} == bond_set


# --- bonds ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smiles", ["c1ccccc1", "CCO", "CC(=O)O", "FC(Cl)Br", "C1CC2CCC1C2", "c1ccc(cc1)C#N"])
def test_molecule_bonds_reproduce_chemical_bonds(smiles):
    numbers, coords, chemical = embedded(smiles)
    bonds = molecule_bonds(numbers, coords)
    assert bonds.shape[1] == 2 and (bonds[:, 0] < bonds[:, 1]).all()
    assert {tuple(b) for b in bonds.tolist()} == chemical


def test_molecule_bonds_follow_the_curation_rule():
    rng = np.random.default_rng(0)
    numbers = rng.choice([1, 6, 7, 8, 16], size=30)
    coords = rng.uniform(0.0, 6.0, size=(30, 3))
    lattice = np.eye(3) * 100.0  # one molecule in a huge cell: no periodic images within bonding range
    periodic = find_bonds(numbers, coords / 100.0, lattice)
    expected = {(int(i), int(j)) for i, j in zip(periodic.i, periodic.j, strict=True) if i < j}
    assert {tuple(b) for b in molecule_bonds(numbers, coords).tolist()} == expected
    assert len(expected) > 5


def test_hydrogen_pairs_use_the_tighter_tolerance():
    gap = 0.3  # between the hydrogen (0.2 Å) and the general (0.4 Å) tolerance
    c_h = covalent_radii[6] + covalent_radii[1] + gap
    c_c = covalent_radii[6] + covalent_radii[6] + gap
    numbers = np.array([1, 6, 6])
    coords = np.array([[-c_h, 0.0, 0.0], [0.0, 0.0, 0.0], [c_c, 0.0, 0.0]])
    assert molecule_bonds(numbers, coords).tolist() == [[1, 2]]


def test_cluster_bonds_are_each_molecules_and_never_cross_molecules():
    """Two ethanol molecules overlapping (0.3 Å apart) with interleaved atoms: only each molecule's own bonds."""
    numbers, coords, chemical = embedded("CCO")
    n = len(numbers)
    mol_index = np.tile([0, 1], n)  # atom k of molecule m is atom 2k + m of the cluster
    both = np.empty((2 * n, 3))
    both[0::2], both[1::2] = coords, coords + 0.3
    bonds = cluster_bonds(np.repeat(numbers, 2), mol_index, both)
    expected = sorted((2 * i + m, 2 * j + m) for m in (0, 1) for i, j in chemical)
    assert bonds.tolist() == [list(b) for b in expected]
    assert bonds.dtype == np.int64 and (mol_index[bonds[:, 0]] == mol_index[bonds[:, 1]]).all()


# --- automorphisms ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("smiles", "count"),
    [
        ("c1ccccc1", 12),  # the dihedral group of the hexagon, hydrogens carried along
        ("CC", 2 * math.factorial(3) ** 2),  # swap the carbons, permute each methyl's hydrogens
        ("FC(Cl)Br", 1),  # every atom distinguishable
        ("N[C@@H](C)C(=O)O", math.factorial(3) * 2),  # a chiral centre: only methyl and amino hydrogens move
        ("O", 2),
    ],
)
def test_automorphisms_are_the_graph_automorphisms(smiles, count):
    numbers, coords, _ = embedded(smiles)
    perms = automorphisms(numbers, coords)
    bonds = molecule_bonds(numbers, coords)
    assert_valid(perms, numbers, bonds)
    assert {tuple(p) for p in perms.tolist()} == graph_automorphisms(numbers, bonds)
    assert len(perms) == count


def test_methyl_rotation_is_an_automorphism():
    numbers, coords, _ = embedded("CC")
    perms = {tuple(p) for p in automorphisms(numbers, coords).tolist()}
    carbon = 0
    hydrogens = [i for i in range(len(numbers)) if numbers[i] == 1 and np.linalg.norm(coords[i] - coords[carbon]) < 1.3]
    assert len(hydrogens) == 3
    rotation = list(range(len(numbers)))
    for a, b in zip(hydrogens, hydrogens[1:] + hydrogens[:1], strict=True):
        rotation[a] = b
    assert tuple(rotation) in perms


def test_cap_keeps_skeleton_symmetries_first():
    numbers, coords, _ = embedded("CC(C)(C)C")  # neopentane: 4! skeleton symmetries x (3!)^4 hydrogen shuffles
    bonds = molecule_bonds(numbers, coords)
    perms = automorphisms(numbers, coords, max_count=40)
    assert perms.shape == (40, len(numbers))
    assert_valid(perms, numbers, bonds)
    carbons = np.flatnonzero(numbers == 6)
    skeleton_images = {tuple(p[carbons].tolist()) for p in automorphisms(numbers, coords, max_count=24)}
    assert len(skeleton_images) == math.factorial(4)  # every methyl permutation, not 24 hydrogen shuffles
    assert len(automorphisms(numbers, coords, max_count=1)) == 1


def test_metal_and_hypervalent_centres_do_not_fail():
    # a five-coordinate iron and a five-coordinate carbon: valences RDKit would reject when sanitising
    directions = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], dtype=float)
    for centre, ligand, length in ((26, 17, 2.3), (6, 9, 1.4)):
        numbers = np.array([centre] + [ligand] * 5)
        coords = np.vstack([[0.0, 0.0, 0.0], length * directions])
        perms = automorphisms(numbers, coords)
        assert len(perms) == math.factorial(5)  # the graph is a star: any permutation of the ligands
        assert_valid(perms, numbers, molecule_bonds(numbers, coords))


# --- clusters ---------------------------------------------------------------------------------------------


def test_cluster_automorphisms_reuse_identical_molecules():
    numbers, coords, _ = embedded("CCO")
    n = len(numbers)
    rng = np.random.default_rng(1)
    copies = [coords]
    copies.append(coords @ Rotation.random(random_state=2).as_matrix().T + 5.0)  # rigid image
    copies.append(-coords + np.array([0.0, 9.0, 0.0]))  # mirror image: same distances
    stretched = coords.copy()
    stretched[0] += 0.3 * (coords[0] - coords[1]) / np.linalg.norm(coords[0] - coords[1])
    copies.append(stretched + np.array([0.0, 0.0, 12.0]))  # a different conformation
    copies.append(coords + rng.normal(scale=0.005, size=coords.shape) + 20.0)  # within the 0.05 Å tolerance
    other_numbers, other_coords, _ = embedded("CC(=O)O")
    all_numbers = np.concatenate([numbers] * 5 + [other_numbers])
    all_coords = np.vstack(copies + [other_coords + 30.0])
    mol_index = np.repeat(np.arange(6), [n] * 5 + [len(other_numbers)])
    result = cluster_automorphisms(all_numbers, mol_index, all_coords)
    assert len(result) == 6
    assert result[1] is result[0] and result[2] is result[0] and result[4] is result[0]
    assert result[3] is not result[0]
    assert {tuple(p) for p in result[3].tolist()} == {tuple(p) for p in result[0].tolist()}
    assert {tuple(p) for p in result[5].tolist()} == graph_automorphisms(
        other_numbers, molecule_bonds(other_numbers, other_coords)
    )
    assert result[5].shape[1] == len(other_numbers)  # local indices


# --- closest automorphic copy -----------------------------------------------------------------------------


def test_closest_automorphic_recovers_the_relabelling():
    numbers, coords, _ = embedded("c1ccccc1")
    perms = automorphisms(numbers, coords)
    rng = np.random.default_rng(3)
    for k in rng.choice(len(perms), size=4, replace=False):
        pred = coords[perms[k]] + rng.normal(scale=0.05, size=coords.shape)
        got = closest_automorphic(pred, coords, perms)
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, coords[perms[k]])
        costs = [((pred - coords[p]) ** 2).sum() for p in perms]
        assert ((pred - got) ** 2).sum() == pytest.approx(min(costs))
        as_torch = closest_automorphic(torch.tensor(pred), torch.tensor(coords), torch.tensor(perms))
        assert isinstance(as_torch, torch.Tensor)
        torch.testing.assert_close(as_torch, torch.tensor(coords[perms[k]]))


def test_closest_automorphic_ties_and_batches():
    numbers, coords, _ = embedded("c1ccccc1")
    perms = automorphisms(numbers, coords)
    centre = np.broadcast_to(coords.mean(axis=0), coords.shape)
    # a point-like prediction fits every relabelling equally: the identity is kept
    np.testing.assert_array_equal(closest_automorphic(centre, coords, perms), coords)
    batch_pred = np.stack([coords[perms[3]], coords[perms[7]] + 1.0])
    batch_target = np.stack([coords, coords + 1.0])
    got = closest_automorphic(batch_pred, batch_target, perms)
    np.testing.assert_array_equal(got, batch_pred)
