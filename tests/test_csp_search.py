"""Candidates, merging and the search at smoke scale: seeded, stratified over space groups, special positions for
a molecule with its own symmetry, duplicates merged, the experimental crystal recognised."""

from __future__ import annotations

import numpy as np
import oxtalign
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem
from test_csp_energy import P21C, crystal

from crystalflow_core.csp.candidates import SpaceGroupError, generate_candidates, space_group_number
from crystalflow_core.csp.cif_writer import write_cif
from crystalflow_core.csp.compare import CrystalReference, DifferentMoleculeError, IncomparableCrystalError, atom_order
from crystalflow_core.csp.merge import duplicate_of
from crystalflow_core.csp.rigid_crystal import RigidCrystal
from crystalflow_core.csp.search import SearchSettings, search_crystals
from crystalflow_core.data.crystal import Crystal
from crystalflow_core.data.molecules import MolecularCrystal


def embedded(smiles: str) -> Chem.Mol:
    molecule = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(molecule, randomSeed=1)
    AllChem.MMFFOptimizeMolecule(molecule)
    return molecule


@pytest.mark.parametrize(("text", "number"), [("14", 14), ("P21/c", 14), ("P 1 21/n 1", 14), ("Pbca", 61), ("P-1", 2)])
def test_space_groups_by_name_or_number(text, number):
    assert space_group_number(text) == number


@pytest.mark.parametrize("text", ["P2_1/q", "231", "0", "banana"])
def test_unknown_space_groups_are_refused_by_name(text):
    with pytest.raises(SpaceGroupError, match=text.replace("/", ".")):
        space_group_number(text)


def test_candidates_are_seeded_and_stratified():
    molecule = embedded("OC(=O)c1ccccc1")
    first = list(generate_candidates(molecule, 6, (14, 2, 19), seed=3))
    again = list(generate_candidates(molecule, 6, (14, 2, 19), seed=3))
    other = list(generate_candidates(molecule, 6, (14, 2, 19), seed=4))
    assert [c.space_group for c in first] == [14, 2, 19, 14, 2, 19]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_allclose(a.crystal.lattice, b.crystal.lattice)
    assert not np.allclose(first[0].crystal.lattice, other[0].crystal.lattice)
    # The candidates hold the molecule itself, rigid.
    positions = molecule.GetConformer().GetPositions()
    expected = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    for candidate in first:
        body = candidate.crystal.body
        np.testing.assert_allclose(np.linalg.norm(body[:, None] - body[None], axis=-1), expected, atol=1e-6)


def test_candidates_follow_the_group_weights_and_share_a_group_among_its_positions():
    acid = list(generate_candidates(embedded("OC(=O)c1ccccc1"), 8, (14, 2, 19), 3, group_weights={14: 3.0, 2: 1.0}))
    assert [c.space_group for c in acid].count(14) == 6 and [c.space_group for c in acid].count(2) == 2
    # benzene has a general and a special position in P2₁/c: the group's weight is shared between them
    benzene = list(generate_candidates(embedded("c1ccccc1"), 8, (14, 2), 0, group_weights={14: 1.0, 2: 1.0}))
    in_p21c = [c.crystal.z for c in benzene if c.space_group == 14]
    assert len(in_p21c) == 4 and sorted(in_p21c) == [2, 2, 4, 4]


def test_a_centrosymmetric_molecule_is_also_placed_on_inversion_centres():
    """Benzene in P2₁/c: Z = 4 on the general position and Z = 2 on an inversion centre (Z' = 0.5)."""
    candidates = list(generate_candidates(embedded("c1ccccc1"), 4, (14,), seed=0))
    assert {c.wyckoff for c in candidates} == {"4e", "2a"} or {c.crystal.z for c in candidates} == {2, 4}
    half = next(c for c in candidates if c.crystal.z == 2)
    assert half.crystal.position_basis.shape[1] == 0


def shifted(mc: MolecularCrystal, shift: np.ndarray) -> MolecularCrystal:
    """The same crystal with the origin moved: a different-looking description of one structure."""
    frac = mc.frac + shift
    base = mc.crystal
    moved = Crystal(
        base.name, base.source, base.lattice, base.rotations, base.translations, mc.numbers, frac, np.ones(len(frac))
    )
    return MolecularCrystal(moved, mc.numbers, frac, mc.formula, mc.z, mc.z_prime)


def test_merging_keeps_distinct_crystals_and_merges_copies():
    mc, rigid, _, _ = crystal(P21C)
    expanded = MolecularCrystal(
        Crystal(
            "big",
            "test",
            mc.crystal.lattice * 1.15,
            mc.crystal.rotations,
            mc.crystal.translations,
            mc.numbers,
            mc.frac,
            np.ones(len(mc.numbers)),
        ),
        mc.numbers,
        mc.frac,
        mc.formula,
        mc.z,
        mc.z_prime,
    )
    # An origin shift by a lattice vector is the same crystal; a 15 % larger cell at the same energy is not.
    copies = [mc, shifted(mc, np.array([1.0, 0.0, 0.0])), expanded]
    representative = duplicate_of(copies, energies=[-10.0, -9.9, -10.1], densities=[1.5, 1.5, 1.49])
    assert list(representative) == [0, 0, 2]


def test_atom_order_matches_a_renumbered_molecule_and_refuses_another():
    mc, _, _, molecule = crystal(P21C)
    positions = mc.frac @ mc.crystal.lattice
    permutation = np.random.default_rng(0).permutation(len(mc.numbers))
    order = atom_order(mc.numbers, positions, mc.numbers[permutation], positions[permutation])
    np.testing.assert_allclose(positions[permutation][order], positions)
    other = embedded("OC(=O)c1ccccc1")
    with pytest.raises(DifferentMoleculeError):
        atom_order(
            mc.numbers,
            positions,
            np.array([a.GetAtomicNum() for a in other.GetAtoms()]),
            other.GetConformer().GetPositions(),
        )


def test_smoke_search_finds_bound_distinct_crystals_ranked_by_energy():
    """A tiny search (formaldehyde-size molecule, a few candidates); the real scale is benchmarks/crystal_search.py."""
    result = search_crystals(
        embedded("C=O"), SearchSettings(candidates=4, space_groups=(14, 2), seed=0, workers=2), progress=False
    )
    assert result.generated == 4 and result.lost == 0
    energies = [found.energy for found in result.crystals]
    assert energies == sorted(energies) and all(e < 0 for e in energies)
    assert sum(found.copies for found in result.crystals) + result.unbound == 4
    for found in result.crystals:
        assert found.crystal.crystal.spacegroup in {"P21/c", "P-1"}


def test_experimental_crystal_compares_as_found_and_a_random_one_does_not():
    mc, _, _, molecule = crystal(P21C)
    reference = CrystalReference.of(mc)
    assert reference.compare(mc) == {"matched": 15.0, "rmsd15": pytest.approx(0.0, abs=1e-6), "found": 1.0}
    random = next(generate_candidates(molecule, 1, (2,), seed=0)).crystal
    start = random.to_molecular_crystal(random.lattice, random.centroid @ random.lattice + random.body)
    assert reference.compare(start)["found"] == 0.0


def test_comparison_is_periodic_as_oxtalign_reads_the_cifs(tmp_path):
    """The comparison of two crystals equals OXtalign's on their CIFs (written by gemmi, read by OXtalign's own
    reader), and a cell strained by 3 % still matches every shell molecule."""
    mc, _, _, _ = crystal(P21C)
    strained_lattice = mc.crystal.lattice * np.array([[1.03], [1.0], [0.99]])
    rigid = RigidCrystal.from_molecular_crystal(mc)
    strained = rigid.to_molecular_crystal(strained_lattice, rigid.centroid @ strained_lattice + rigid.body)
    ours = CrystalReference.of(mc).compare(strained)
    theirs = oxtalign.compare(
        str(write_cif(tmp_path / "known.cif", mc, "known")),
        str(write_cif(tmp_path / "strained.cif", strained, "strained")),
        n=15,
    )
    assert ours["matched"] == theirs.n_matched == 15
    assert ours["rmsd15"] == pytest.approx(theirs.rmsd_n, abs=1e-6) and ours["rmsd15"] > 0.01


def test_a_crystal_whose_molecules_cannot_be_assembled_is_not_compared_and_stays_distinct():
    """A cell so thin that molecules bond across it: OXtalign cannot assemble whole molecules, so the comparison
    says so (NaN, not found) instead of failing the search, and merging keeps the crystal apart."""
    mc, _, _, _ = crystal(P21C)
    rigid = RigidCrystal.from_molecular_crystal(mc)
    lattice = mc.crystal.lattice * np.array([[0.5], [1.0], [1.0]])
    thin = rigid.to_molecular_crystal(lattice, rigid.centroid @ lattice + rigid.body)
    scores = CrystalReference.of(mc).compare(thin)
    assert np.isnan(scores["matched"]) and np.isnan(scores["rmsd15"]) and scores["found"] == 0.0
    with pytest.raises(IncomparableCrystalError, match="assemble"):
        CrystalReference.of(thin)
    assert list(duplicate_of([mc, thin, mc], [0.0, 0.1, 0.2], [1.0, 1.0, 1.0])) == [0, 1, 0]
