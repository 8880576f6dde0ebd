"""CIFs written by ``csp.cif_writer`` read back, by gemmi and by our own reader, as the crystal that was written."""

import dataclasses
import warnings

import gemmi
import numpy as np
import pytest
import spglib
from scipy.spatial import cKDTree

from crystalflow_core.csp.cif_writer import write_cif
from crystalflow_core.data.cif import read_cif
from crystalflow_core.data.cluster import crystal_cluster
from crystalflow_core.data.crystal import Crystal
from crystalflow_core.data.molecules import MolecularCrystal, select_molecular_crystal
from crystalflow_core.data.sources import bundled_cod_directory

#: Bundled COD crystals: general positions (P 1 21/c 1; "X c", a setting gemmi does not tabulate) and molecules on
#: special positions (Z' = 0.5: naphthalene on an inversion centre in P 1 21/a 1, one in P -1, one on a mirror
#: plane in P m n 21).
GENERAL = ["2018597", "2105506"]
INVERSION_CENTRE = ["2100603", "2000642"]
MIRROR = ["1100688"]


def load(cod_id: str) -> MolecularCrystal:
    return select_molecular_crystal(read_cif(bundled_cod_directory() / f"{cod_id}.cif.gz")[0])


def cell_parameters(cell: gemmi.UnitCell) -> np.ndarray:
    return np.array([cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma])


def lattice_parameters(lattice: np.ndarray) -> np.ndarray:
    lengths = np.linalg.norm(lattice, axis=1)
    unit = lattice / lengths[:, None]
    angles = np.degrees(np.arccos([unit[1] @ unit[2], unit[0] @ unit[2], unit[0] @ unit[1]]))
    return np.concatenate([lengths, angles])


def structure_number(mc: MolecularCrystal) -> int:
    """The space group of the atoms themselves (spglib on the unit cell), not of the written operations."""
    numbers, frac = mc.crystal.unit_cell()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spglib's notice about its error handling
        return spglib.get_symmetry_dataset((mc.crystal.lattice, frac, numbers), symprec=1e-3).number


def assert_same_cluster(original: MolecularCrystal, written: MolecularCrystal) -> None:
    """The 17-molecule clusters agree: sorted centroid distances, and every atom (element and position relative to
    the central molecule's centroid) within 1e-3 Å, whatever the order of molecules and of atoms in a molecule."""
    clusters = [crystal_cluster(mc) for mc in (original, written)]
    distances = [np.sort(np.linalg.norm(c.mean(axis=1) - c[0].mean(axis=0), axis=1)) for c in clusters]
    np.testing.assert_allclose(distances[0], distances[1], atol=1e-3)
    atoms = [(c - c[0].mean(axis=0)).reshape(-1, 3) for c in clusters]
    numbers = [np.tile(mc.numbers, 17) for mc in (original, written)]
    for a, b in ((0, 1), (1, 0)):
        distance, nearest = cKDTree(atoms[b]).query(atoms[a])
        assert distance.max() < 1e-3
        np.testing.assert_array_equal(numbers[a], numbers[b][nearest])


@pytest.mark.parametrize("cod_id", GENERAL + INVERSION_CENTRE + MIRROR)
def test_round_trip(cod_id, tmp_path):
    original = load(cod_id)
    path = write_cif(tmp_path / f"{cod_id}.cif", original, f"crystalflow {cod_id}")

    small = gemmi.read_small_structure(str(path))
    assert small.spacegroup_number == structure_number(original)
    np.testing.assert_allclose(cell_parameters(small.cell), lattice_parameters(original.crystal.lattice), atol=1e-4)
    assert len(small.symops) == len(original.crystal.rotations)
    assert len(small.get_all_unit_cell_sites()) == original.z * len(original.numbers)

    written = select_molecular_crystal(read_cif(path)[0])
    assert written.z == original.z and written.z_prime == original.z_prime
    assert written.formula == original.formula
    assert_same_cluster(original, written)


@pytest.mark.parametrize("cod_id", INVERSION_CENTRE)
def test_inversion_centre_writes_half_the_molecule(cod_id, tmp_path):
    original = load(cod_id)
    assert original.z_prime == 0.5
    block = gemmi.cif.read(str(write_cif(tmp_path / "half.cif", original, cod_id))).sole_block()
    labels = list(block.find_values("_atom_site_label"))
    assert len(labels) == len(original.numbers) // 2
    assert len(set(labels)) == len(labels)
    assert set(block.find_values("_atom_site_occupancy")) == {"1"}
    assert block.find_value("_cell_formula_units_Z") == str(original.z)


def test_mirror_plane_keeps_atoms_on_the_plane_once(tmp_path):
    """Atoms on the mirror map onto themselves: the atom loop holds them and one of each mirrored pair."""
    original = load(MIRROR[0])
    on_plane = np.abs(original.frac[:, 0] - np.round(original.frac[:, 0] * 2) / 2) < 1e-3  # mirror x = 0 or 1/2
    block = gemmi.cif.read(str(write_cif(tmp_path / "mirror.cif", original, "m"))).sole_block()
    n_plane = int(on_plane.sum())
    assert 0 < n_plane < len(original.numbers)
    assert len(block.find_values("_atom_site_label")) == n_plane + (len(original.numbers) - n_plane) // 2


def test_p1_crystal_keeps_its_cell(tmp_path):
    """One molecule in a triclinic P1 cell: cell, space group and atoms survive the round trip."""
    molecule = load("2018597")
    lattice = np.array([[11.0, 0.0, 0.0], [-2.0, 12.5, 0.0], [1.5, -3.0, 13.0]])
    crystal = Crystal(
        name="p1",
        source="test",
        lattice=lattice,
        rotations=np.eye(3)[None],
        translations=np.zeros((1, 3)),
        numbers=molecule.numbers,
        frac=(molecule.frac @ molecule.crystal.lattice) @ np.linalg.inv(lattice),
        occupancies=np.ones(len(molecule.numbers)),
    )
    original = select_molecular_crystal(crystal)
    path = write_cif(tmp_path / "p1.cif", original, "p1")

    small = gemmi.read_small_structure(str(path))
    assert small.spacegroup_number == 1
    np.testing.assert_allclose(cell_parameters(small.cell), lattice_parameters(lattice), atol=1e-4)
    written = select_molecular_crystal(read_cif(path)[0])
    assert written.z == 1
    np.testing.assert_allclose(lattice_parameters(written.crystal.lattice), lattice_parameters(lattice), atol=1e-4)
    assert_same_cluster(original, written)


def test_extra_items_and_atomic_replace(tmp_path):
    mc = load("2100603")
    path = tmp_path / "out.cif"
    path.write_text("an older file\n")
    write_cif(path, mc, "naphthalene", {"_crystalflow_energy": "-81.25", "_crystalflow_note": "rank 1 of 20"})
    block = gemmi.cif.read(str(path)).sole_block()
    assert block.name == "naphthalene"
    assert gemmi.cif.as_number(block.find_value("_crystalflow_energy")) == -81.25
    assert gemmi.cif.as_string(block.find_value("_crystalflow_note")) == "rank 1 of 20"
    assert gemmi.cif.as_string(block.find_value("_space_group_name_H-M_alt")) == "P 1 21/a 1"
    assert [p.name for p in tmp_path.iterdir()] == ["out.cif"]


def test_bad_extra_key_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="not a CIF tag"):
        write_cif(tmp_path / "x.cif", load("2100603"), "x", {"energy": "1"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cod_id", INVERSION_CENTRE)
def test_a_molecule_that_only_nearly_has_its_site_symmetry_is_written_once(cod_id, tmp_path):
    """The search takes a molecule onto an inversion centre when its centroid lies within
    ``SAME_SITE_TOLERANCE``: the crystal counts one molecule there, and so must its CIF (not two copies a few
    tenths of an ångström apart, which curation refuses as atoms on one site)."""
    original = load(cod_id)
    shift = np.array([0.2, 0.0, 0.0]) @ np.linalg.inv(original.crystal.lattice)  # 0.2 Å along x, fractional
    frac = original.frac.copy()
    frac[0] += shift  # atom 0 and its image no longer coincide
    nearly = dataclasses.replace(original, frac=frac)
    path = write_cif(tmp_path / "nearly.cif", nearly, cod_id)
    labels = gemmi.cif.read(str(path)).sole_block().find_values("_atom_site_label")
    assert len(labels) == len(original.numbers) // 2
    written = select_molecular_crystal(read_cif(path)[0])
    assert written.z == original.z and written.formula == original.formula
    sites = gemmi.read_small_structure(str(path)).get_all_unit_cell_sites()
    assert len(sites) == original.z * len(original.numbers)
    # the atom and its image meet halfway, 0.1 Å from where each was; every other atom stays where it was
    cell = np.array([[site.fract.x, site.fract.y, site.fract.z] for site in sites])
    gap = frac[:, None, :] - cell[None, :, :]
    nearest = np.linalg.norm((gap - np.round(gap)) @ original.crystal.lattice, axis=-1).min(axis=1)
    assert np.isclose(nearest[0], 0.1, atol=1e-3)
    assert (nearest > 1e-3).sum() == 2 and nearest.max() < 0.1 + 1e-3
