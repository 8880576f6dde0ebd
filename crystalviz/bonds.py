"""Distance-based bonds inside each molecule of a cluster."""

from __future__ import annotations

import numpy as np
from ase.data import covalent_radii

DEFAULT_BOND_TOLERANCE = 0.45


def detect_bonds(
    numbers: np.ndarray,
    mol_index: np.ndarray,
    positions: np.ndarray,
    tolerance: float = DEFAULT_BOND_TOLERANCE,
) -> np.ndarray:
    """Bonds between atoms of the same molecule closer than the sum of covalent radii plus `tolerance`.

    numbers [N], mol_index [N], positions [N, 3] (Å). Returns [B, 2] int atom index pairs with i < j, sorted.
    Bonds never cross molecules, so a trajectory keeps the bonds found on its reference frame.
    """
    numbers = np.asarray(numbers)
    mol_index = np.asarray(mol_index)
    positions = np.asarray(positions, dtype=float)
    radii = covalent_radii[numbers]
    pairs = []
    for molecule in np.unique(mol_index):
        atoms = np.flatnonzero(mol_index == molecule)
        delta = positions[atoms, None, :] - positions[None, atoms, :]
        distance = np.linalg.norm(delta, axis=-1)
        cutoff = radii[atoms, None] + radii[None, atoms] + tolerance
        first, second = np.nonzero(np.triu(distance < cutoff, k=1))
        pairs.append(np.stack([atoms[first], atoms[second]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=int)
    bonds = np.concatenate(pairs, axis=0)
    return bonds[np.lexsort((bonds[:, 1], bonds[:, 0]))]
