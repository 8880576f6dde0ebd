"""Round trips of cluster exports (crystalflow_core.export) through independent readers (ASE, RDKit, gemmi)."""

import ase.io
import gemmi
import numpy as np
import pytest
from ase.data import chemical_symbols
from rdkit import Chem
from rdkit.Chem import AllChem

from crystalflow_core.data.symmetry import cluster_bonds
from crystalflow_core.export import (
    pdb_string,
    write_cluster_pdb,
    write_cluster_sdf,
    write_cluster_xyz,
    write_trajectory_pdb,
    write_trajectory_xyz,
)
from crystalviz.demo import demo_cluster_view

PDB_PRECISION = 5e-4 + 1e-9
SDF_PRECISION = 5e-5 + 1e-9
XYZ_PRECISION = 5e-7 + 1e-12


@pytest.fixture
def cluster():
    """A 17-molecule cluster (swap for a curated cluster when available)."""
    return demo_cluster_view(n_samples=1, n_frames=5, seed=5)


@pytest.fixture
def trajectory(cluster):
    """(times [T], frames [T, N, 3]) of one sample."""
    return cluster.trajectory(0)


def test_trajectory_pdb_round_trip_with_ase(tmp_path, cluster, trajectory):
    times, frames = trajectory
    path = write_trajectory_pdb(tmp_path / "trajectory.pdb", cluster.numbers, cluster.mol_index, frames)
    images = ase.io.read(path, index=":")
    assert len(images) == len(frames)
    for image, frame in zip(images, frames, strict=True):
        np.testing.assert_array_equal(image.numbers, cluster.numbers)
        np.testing.assert_allclose(image.positions, frame, atol=PDB_PRECISION)


def test_trajectory_pdb_round_trip_with_gemmi(tmp_path, cluster, trajectory):
    _, frames = trajectory
    path = write_trajectory_pdb(tmp_path / "trajectory.pdb", cluster.numbers, cluster.mol_index, frames)
    structure = gemmi.read_structure(str(path))
    assert len(structure) == len(frames)
    for model, frame in zip(structure, frames, strict=True):
        atoms = [atom for residue in model["A"] for atom in residue]
        residues = [residue.seqid.num for residue in model["A"] for _ in residue]
        assert [atom.element.atomic_number for atom in atoms] == cluster.numbers.tolist()
        assert residues == (cluster.mol_index + 1).tolist()
        positions = np.array([[atom.pos.x, atom.pos.y, atom.pos.z] for atom in atoms])
        np.testing.assert_allclose(positions, frame, atol=PDB_PRECISION)
    expected = cluster_bonds(cluster.numbers, cluster.mol_index, frames[0])
    written = {(i - 1, j - 1) for i, partners in structure.conect_map.items() for j in partners if i < j}
    assert written == {tuple(bond) for bond in expected.tolist()}


def test_cluster_pdb_bonds_read_by_rdkit(tmp_path, cluster):
    path = write_cluster_pdb(tmp_path / "cluster.pdb", cluster.numbers, cluster.mol_index, cluster.x_s)
    molecule = Chem.MolFromPDBFile(str(path), removeHs=False, sanitize=False, proximityBonding=False)
    assert [atom.GetAtomicNum() for atom in molecule.GetAtoms()] == cluster.numbers.tolist()
    bonds = {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in molecule.GetBonds()}
    expected = cluster_bonds(cluster.numbers, cluster.mol_index, cluster.x_s)
    assert bonds == {tuple(bond) for bond in expected.tolist()}
    np.testing.assert_allclose(molecule.GetConformer().GetPositions(), cluster.x_s, atol=PDB_PRECISION)
    assert len(ase.io.read(path, index=":")) == 1


def test_pdb_columns_follow_the_format(cluster):
    b_factors = np.linspace(0.0, 9.99, len(cluster.numbers))
    text = pdb_string(cluster.numbers, cluster.mol_index, cluster.x_s, b_factors=b_factors)
    atom_lines = [line for line in text.splitlines() if line.startswith("HETATM")]
    assert len(atom_lines) == len(cluster.numbers)
    for index, line in enumerate(atom_lines):
        assert int(line[6:11]) == index + 1
        assert int(line[22:26]) == cluster.mol_index[index] + 1
        assert line[76:78].strip() == chemical_symbols[cluster.numbers[index]].upper()
        assert float(line[60:66]) == pytest.approx(b_factors[index], abs=0.005)
        np.testing.assert_allclose(
            [float(line[30:38]), float(line[38:46]), float(line[46:54])], cluster.x_s[index], atol=PDB_PRECISION
        )
    assert text.rstrip().endswith("END")


def test_trajectory_xyz_round_trip_with_ase(tmp_path, cluster, trajectory):
    times, frames = trajectory
    path = write_trajectory_xyz(tmp_path / "trajectory.xyz", cluster.numbers, frames, times)
    images = ase.io.read(path, index=":")
    assert len(images) == len(frames)
    for index, (image, frame) in enumerate(zip(images, frames, strict=True)):
        assert image.get_chemical_symbols() == [chemical_symbols[n] for n in cluster.numbers]
        np.testing.assert_allclose(image.positions, frame, atol=XYZ_PRECISION)
        assert image.info["t"] == pytest.approx(times[index], abs=1e-6)


def test_cluster_xyz_round_trip_with_ase(tmp_path, cluster):
    path = write_cluster_xyz(tmp_path / "cluster.xyz", cluster.numbers, cluster.x_w)
    image = ase.io.read(path)
    np.testing.assert_array_equal(image.numbers, cluster.numbers)
    np.testing.assert_allclose(image.positions, cluster.x_w, atol=XYZ_PRECISION)


def test_cluster_sdf_round_trip_with_rdkit(tmp_path, cluster):
    path = write_cluster_sdf(tmp_path / "cluster.sdf", cluster.numbers, cluster.mol_index, cluster.x_s)
    molecule = next(Chem.SDMolSupplier(str(path), removeHs=False))
    assert molecule is not None
    assert [atom.GetAtomicNum() for atom in molecule.GetAtoms()] == cluster.numbers.tolist()
    np.testing.assert_allclose(molecule.GetConformer().GetPositions(), cluster.x_s, atol=SDF_PRECISION)
    bonds = {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in molecule.GetBonds()}
    expected = cluster_bonds(cluster.numbers, cluster.mol_index, cluster.x_s)
    assert bonds == {tuple(bond) for bond in expected.tolist()}
    assert [int(m) for m in molecule.GetProp("mol_index").split()] == cluster.mol_index.tolist()
    assert Chem.MolToSmiles(Chem.RemoveHs(molecule)) == ".".join(["CCO"] * 17)


def test_cluster_sdf_assigns_aromatic_bond_orders(tmp_path):
    benzene = Chem.AddHs(Chem.MolFromSmiles("c1ccccc1"))
    AllChem.EmbedMolecule(benzene, randomSeed=11)
    positions = benzene.GetConformer().GetPositions()
    numbers = np.array([atom.GetAtomicNum() for atom in benzene.GetAtoms()])
    mol_index = np.zeros(len(numbers), dtype=int)
    path = write_cluster_sdf(tmp_path / "benzene.sdf", numbers, mol_index, positions)
    molecule = next(Chem.SDMolSupplier(str(path), removeHs=False))
    assert Chem.MolToSmiles(Chem.RemoveHs(molecule)) == "c1ccccc1"
    single_bonds = write_cluster_sdf(tmp_path / "single.sdf", numbers, mol_index, positions, bond_orders=False)
    molecule = next(Chem.SDMolSupplier(str(single_bonds), removeHs=False, sanitize=False))
    assert {bond.GetBondType() for bond in molecule.GetBonds()} == {Chem.BondType.SINGLE}


def test_trajectory_pdb_rejects_single_frame(tmp_path, cluster):
    with pytest.raises(ValueError, match="trajectory"):
        write_trajectory_pdb(tmp_path / "x.pdb", cluster.numbers, cluster.mol_index, cluster.x_s)
