"""Tests for molecule restoration and the Appendix C selection on hand-made and real crystals."""

from __future__ import annotations

import os
from pathlib import Path

import ase.db
import gemmi
import numpy as np
import pytest
import pyxtal
from ase.data import covalent_radii

from crystalflow_core.data.cif import read_cif
from crystalflow_core.data.crystal import Crystal, crystal_from_ase
from crystalflow_core.data.molecules import find_bonds, hill_formula, select_molecular_crystal
from crystalflow_core.errors import CurationError

COD = Path(__file__).parents[1].parent / "shared" / "cod"
INVERSION = (np.stack([np.eye(3), -np.eye(3)]), np.zeros((2, 3)))
IDENTITY = (np.eye(3)[None], np.zeros((1, 3)))


def make_crystal(
    cell: list[float], numbers: list[int], cart: list[list[float]], ops=IDENTITY, occupancies: list[float] | None = None
) -> Crystal:
    """Orthorhombic crystal from Cartesian asymmetric-unit positions (Å)."""
    lattice = np.diag(cell).astype(float)
    frac = np.asarray(cart, dtype=float) / np.asarray(cell)
    return Crystal(
        name="handmade",
        source="test",
        lattice=lattice,
        rotations=ops[0],
        translations=ops[1],
        numbers=np.asarray(numbers),
        frac=frac,
        occupancies=np.ones(len(numbers)) if occupancies is None else np.asarray(occupancies),
        labels=[f"X{i}" for i in range(len(numbers))],
    )


def acetylene_p1bar() -> Crystal:
    """H-C#C-H centred on the inversion centre at the origin: half a molecule in the asymmetric unit."""
    return make_crystal([6.0, 7.0, 8.0], [6, 1], [[0.6, 0.0, 0.0], [1.66, 0.0, 0.0]], INVERSION)


def test_hill_formula() -> None:
    assert hill_formula([6, 1, 1, 8, 6]) == "C2 H2 O"
    assert hill_formula([8, 1, 1]) == "H2 O"
    assert hill_formula([17, 6, 1, 1, 1]) == "C H3 Cl"
    assert hill_formula([26, 8, 8, 8]) == "Fe O3"


def test_diatomic_halves_become_whole_molecule_across_cell_boundary() -> None:
    mc = select_molecular_crystal(acetylene_p1bar())
    assert mc.formula == "C2 H2"
    assert (mc.z, mc.z_prime) == (1, 0.5)
    cart = mc.frac @ mc.crystal.lattice
    carbons = cart[mc.numbers == 6]
    assert np.linalg.norm(carbons[0] - carbons[1]) == pytest.approx(1.2)
    hydrogens = cart[mc.numbers == 1]
    assert np.linalg.norm(hydrogens[0] - hydrogens[1]) == pytest.approx(3.32)
    assert np.all((mc.frac.mean(axis=0) >= 0) & (mc.frac.mean(axis=0) < 1))


def test_periodic_bonds_include_images() -> None:
    crystal = acetylene_p1bar()
    sites = crystal.unit_cell_sites()
    bonds = find_bonds(sites.numbers, sites.frac, crystal.lattice)
    # C-C crosses the cell face x = 0: the bond is found with a lattice shift; C-H twice; both directions.
    assert len(bonds.i) == 6
    cc = (sites.numbers[bonds.i] == 6) & (sites.numbers[bonds.j] == 6)
    np.testing.assert_allclose(bonds.distance[cc], 1.2)
    assert np.all(np.abs(bonds.shift[cc]).sum(axis=1) == 1)


def test_polymeric_chain_across_cell() -> None:
    chain = make_crystal([2.6, 6.0, 6.0], [6, 6], [[0.0, 0.0, 0.0], [1.3, 0.5, 0.0]])
    with pytest.raises(CurationError) as info:
        select_molecular_crystal(chain)
    assert info.value.reason == "polymeric"


def test_two_species_cell() -> None:
    cell = make_crystal([8.0, 8.0, 8.0], [6, 8, 17], [[0.0, 0.0, 0.0], [1.13, 0.0, 0.0], [4.0, 4.0, 4.0]])
    with pytest.raises(CurationError) as info:
        select_molecular_crystal(cell)
    assert info.value.reason == "multiple_species"
    assert "C O" in info.value.detail and "Cl" in info.value.detail


def test_carbon_free_cell() -> None:
    nitrogen = make_crystal([5.0, 5.0, 5.0], [7, 7], [[0.0, 0.0, 0.0], [1.1, 0.0, 0.0]])
    with pytest.raises(CurationError) as info:
        select_molecular_crystal(nitrogen)
    assert info.value.reason == "no_carbon"


def test_partial_occupancy() -> None:
    crystal = make_crystal([5.0, 5.0, 5.0], [6, 8], [[0.0, 0.0, 0.0], [1.13, 0.0, 0.0]], occupancies=[1.0, 0.5])
    with pytest.raises(CurationError) as info:
        select_molecular_crystal(crystal)
    assert info.value.reason == "partial_occupancy"
    rounded = make_crystal([5.0, 5.0, 5.0], [6, 8], [[0.0, 0.0, 0.0], [1.13, 0.0, 0.0]], occupancies=[1.0, 0.995])
    assert select_molecular_crystal(rounded).formula == "C O"


def test_two_independent_molecules_in_p1() -> None:
    crystal = make_crystal(
        [10.0, 6.0, 6.0], [6, 8, 6, 8], [[0.0, 0.0, 0.0], [1.13, 0.0, 0.0], [5.0, 3.0, 3.0], [6.13, 3.0, 3.0]]
    )
    with pytest.raises(CurationError) as info:
        select_molecular_crystal(crystal)
    assert info.value.reason == "z_prime_gt_1"


def test_molecules_on_two_different_inversion_centres_are_not_one_orbit() -> None:
    """Z = 2 in P-1 (Z' = 1 by count) but the two half-molecules are independent: two environments."""
    crystal = make_crystal(
        [8.0, 8.0, 8.0], [6, 1, 6, 1], [[0.6, 0.0, 0.0], [1.66, 0.0, 0.0], [4.0, 4.6, 4.0], [4.0, 5.66, 4.0]], INVERSION
    )
    with pytest.raises(CurationError) as info:
        select_molecular_crystal(crystal)
    assert info.value.reason == "z_prime_gt_1"
    assert "symmetry-equivalent" in info.value.detail


def test_atoms_on_top_of_each_other_are_bad_geometry() -> None:
    crystal = make_crystal([6.0, 6.0, 6.0], [6, 6], [[0.0, 0.0, 0.0], [0.3, 0.0, 0.0]])
    with pytest.raises(CurationError) as info:
        select_molecular_crystal(crystal)
    assert info.value.reason == "bad_geometry"


def test_unknown_element_is_rejected_by_name() -> None:
    crystal = make_crystal([6.0, 6.0, 6.0], [6, 0], [[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    with pytest.raises(CurationError) as info:
        select_molecular_crystal(crystal)
    assert info.value.reason == "unknown_element"


@pytest.mark.skipif(not COD.is_dir(), reason="COD test files not present")
def test_real_molecule_is_whole_and_connected() -> None:
    """0000102 (C14 H22 O9, P 21): the restored molecule is one bonded piece; Z agrees with the file."""
    mc = select_molecular_crystal(read_cif(COD / "0000102.cif")[0])
    assert mc.formula == "C14 H22 O9"
    z_in_file = gemmi.cif.read_file(str(COD / "0000102.cif")).sole_block().find_value("_cell_formula_units_Z")
    assert mc.z == int(z_in_file) and mc.z_prime == 1.0
    cart = mc.frac @ mc.crystal.lattice
    distance = np.linalg.norm(cart[:, None] - cart[None], axis=-1)
    radii = covalent_radii[mc.numbers]
    adjacency = distance < radii[:, None] + radii[None] + 0.4
    reached = np.zeros(len(cart), dtype=bool)
    reached[0] = True
    for _ in range(len(cart)):
        reached = reached | adjacency[reached].any(axis=0)
    assert reached.all()


def _pyxtal_rows() -> list:
    path = os.path.join(os.path.dirname(pyxtal.__file__), "database", "test.db")
    return list(ase.db.connect(path).select())


def test_crystal_from_ase_p1_keeps_every_atom() -> None:
    row = next(r for r in _pyxtal_rows() if r.key_value_pairs["csd_code"] == "NAPHTA15")
    atoms = row.toatoms()
    crystal = crystal_from_ase(atoms, "NAPHTA15", "pyxtal", symprec=None)
    assert len(crystal.rotations) == 1 and len(crystal.numbers) == len(atoms)
    np.testing.assert_allclose(crystal.frac @ crystal.lattice, atoms.get_positions(wrap=True), atol=1e-8)
    with pytest.raises(CurationError, match="z_prime_gt_1"):
        select_molecular_crystal(crystal)


def test_crystal_from_ase_with_symmetry_passes_selection() -> None:
    """Naphthalene in P21/c (Z = 2, on inversion centres): spglib restores the symmetry, Z' = 0.5."""
    row = next(r for r in _pyxtal_rows() if r.key_value_pairs["csd_code"] == "NAPHTA15")
    crystal = crystal_from_ase(row.toatoms(), "NAPHTA15", "pyxtal")
    numbers, frac = crystal.unit_cell()
    assert len(numbers) == len(row.toatoms())
    mc = select_molecular_crystal(crystal)
    assert mc.formula == "C10 H8"
    assert (mc.z, mc.z_prime) == (2, 0.5)


def test_pyxtal_database_selection() -> None:
    """Which pyxtal entries pass: co-crystals, hydrates and salts (a '.' in the SMILES) never do."""
    accepted, rejected = [], []
    for row in _pyxtal_rows():
        kv = row.key_value_pairs
        try:
            mc = select_molecular_crystal(crystal_from_ase(row.toatoms(), kv["csd_code"], "pyxtal"))
            accepted.append(kv["csd_code"])
            assert mc.z_prime <= 1
        except CurationError as error:
            rejected.append(kv["csd_code"])
            if "." in kv["mol_smi"]:
                assert error.reason == "multiple_species"
    multi_component = {r.key_value_pairs["csd_code"] for r in _pyxtal_rows() if "." in r.key_value_pairs["mol_smi"]}
    assert multi_component <= set(rejected)
    assert len(accepted) >= 80
