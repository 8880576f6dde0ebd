"""A predicted crystal against a known one, as crystal structure prediction is judged: the 15 molecules around one
molecule of the known crystal matched in the prediction (OXtalign's COMPACK-style RMSD_15 on the 17-molecule
clusters both cut), a match being at least 8 of 15.

Unlike the cluster benchmark (:mod:`crystalflow_core.packing`), the comparison allows inversion: a crystal and
its mirror image have the same lattice energy, so a search cannot prefer one (COMPACK's default too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import oxtalign
from rdkit import Chem

from crystalflow_core.data.cluster import crystal_cluster
from crystalflow_core.data.molecules import MolecularCrystal
from crystalflow_core.data.symmetry import graph_molecule, molecule_bonds
from crystalflow_core.packing import PASS_MATCHED, SHELL_SIZE, Reference, prepare_reference

#: The comparison of crystals allows inversion (module docstring).
ALLOW_INVERSION = True


class DifferentMoleculeError(ValueError):
    """The reference crystal holds another molecule than the prediction."""


def cluster_of(mc: MolecularCrystal) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(numbers [N], mol_index [N], x [N, 3])`` of the 17-molecule cluster cut from ``mc``."""
    molecules = crystal_cluster(mc)
    n_molecules, n_atoms = molecules.shape[:2]
    return np.tile(mc.numbers, n_molecules), np.repeat(np.arange(n_molecules), n_atoms), molecules.reshape(-1, 3)


def atom_order(
    numbers: np.ndarray, coords: np.ndarray, other_numbers: np.ndarray, other_coords: np.ndarray
) -> np.ndarray:
    """``order [n]`` with ``other[order]`` the atoms of molecule ``other`` in the order of the molecule
    ``(numbers, coords)`` (bonds by the curation rule, matched as graphs); raises :class:`DifferentMoleculeError`
    if the two are not the same molecule."""
    if sorted(numbers) != sorted(other_numbers):
        raise DifferentMoleculeError("the molecules have different formulas")
    mine = graph_molecule(np.asarray(numbers), molecule_bonds(numbers, coords))
    theirs = graph_molecule(np.asarray(other_numbers), molecule_bonds(other_numbers, other_coords))
    params = Chem.SubstructMatchParameters()
    params.useChirality = False
    match = theirs.GetSubstructMatch(mine, params)
    if len(match) != len(numbers) or mine.GetNumBonds() != theirs.GetNumBonds():
        raise DifferentMoleculeError("the molecules are bonded differently")
    return np.asarray(match)


@dataclass
class CrystalReference:
    """A known crystal prepared for comparisons: its cluster as a :class:`~crystalflow_core.packing.Reference`,
    its atoms put in the order of the predictions' molecule, and its OXtalign structure."""

    reference: Reference
    truth: oxtalign.Structure

    @classmethod
    def build(
        cls, known: MolecularCrystal, molecule_numbers: np.ndarray, molecule_coords: np.ndarray
    ) -> CrystalReference:
        """The reference of crystal ``known`` for predictions of the molecule ``(numbers, coords [n, 3])``."""
        known_coords = known.frac @ known.crystal.lattice
        order = atom_order(molecule_numbers, molecule_coords, known.numbers, known_coords)
        return cls._in_order(known, order)

    @classmethod
    def of(cls, known: MolecularCrystal) -> CrystalReference:
        """The reference of crystal ``known`` for predictions that share its atom order (other candidates of one
        search): no graph matching."""
        return cls._in_order(known, np.arange(len(known.numbers)))

    @classmethod
    def _in_order(cls, known: MolecularCrystal, order: np.ndarray) -> CrystalReference:
        numbers, mol_index, x = cluster_of(known)
        n = len(order)
        reordered = (np.arange(len(x)) // n) * n + np.tile(order, len(x) // n)
        reference = prepare_reference(x[reordered], numbers[reordered], mol_index)
        return cls(reference, reference.structure(reference.x, "reference"))

    def compare(self, candidate: MolecularCrystal) -> dict[str, float]:
        """``matched`` (of 15), ``rmsd15`` (Å over the matched molecules, NaN if none) and ``found`` (≥ 8)."""
        _, _, x = cluster_of(candidate)
        result = oxtalign.compare(
            self.truth, self.reference.structure(x, "candidate"), n=SHELL_SIZE, allow_inversion=ALLOW_INVERSION
        )
        matched = int(result.n_matched)
        return {
            "matched": float(matched),
            "rmsd15": float(result.rmsd_n) if matched else math.nan,
            "found": float(matched >= PASS_MATCHED),
        }
