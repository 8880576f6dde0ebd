"""RDKit molecules of clusters: connectivity from the curation's bond rule and, where RDKit can assign them, bond
orders, which force-field typing (:mod:`~crystalflow_core.forcefield`) and SDF export need."""

from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds
from rdkit.Geometry import Point3D

from .data.symmetry import cluster_bonds


def cluster_to_rdkit(
    numbers: np.ndarray,
    mol_index: np.ndarray,
    positions: np.ndarray,
    bonds: np.ndarray | None = None,
    bond_orders: bool = True,
) -> Chem.Mol:
    """RDKit molecule of the whole cluster (one fragment per molecule) with a 3D conformer.

    Connectivity comes from `bonds` [B, 2] (default: the curation's bond rule); with `bond_orders`, RDKit's
    DetermineBondOrders assigns double/aromatic bonds for neutral molecules, keeping single bonds otherwise.
    Atom property `mol_index` records the molecule of each atom.
    """
    numbers = np.asarray(numbers, dtype=int)
    mol_index = np.asarray(mol_index, dtype=int)
    positions = np.asarray(positions, dtype=float)
    if bonds is None:
        bonds = cluster_bonds(numbers, mol_index, positions)
    editable = Chem.RWMol()
    for number, molecule in zip(numbers, mol_index, strict=True):
        atom = Chem.Atom(int(number))
        atom.SetNoImplicit(True)
        atom.SetIntProp("mol_index", int(molecule))
        editable.AddAtom(atom)
    for i, j in np.asarray(bonds, dtype=int):
        editable.AddBond(int(i), int(j), Chem.BondType.SINGLE)
    conformer = Chem.Conformer(len(numbers))
    for index, (x, y, z) in enumerate(positions):
        conformer.SetAtomPosition(index, Point3D(float(x), float(y), float(z)))
    editable.AddConformer(conformer, assignId=True)
    molecule = editable.GetMol()
    if bond_orders:
        with_orders = Chem.Mol(molecule)
        try:
            rdDetermineBonds.DetermineBondOrders(with_orders, charge=0)
        except (ValueError, RuntimeError):
            return molecule
        return with_orders
    return molecule
