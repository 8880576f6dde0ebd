"""A predicted crystal against a known one, as crystal structure prediction is judged: the 15 molecules around one
molecule of the known crystal matched in the prediction (OXtalign's COMPACK-style RMSD_15 on the two periodic
crystals, each a unit cell and its space group's operations, as from their CIFs), a match being at least 8 of 15.

Periodic, not on 17-molecule cuts: a cut keeps a crystal's 16 nearest molecules, and when two neighbours lie at
nearly the same distance a small change of the cell swaps which one is cut, so that a crystal hardly moved matches
fewer of its own shell molecules (4500369 relaxed in MMFF94: 11 of 15 periodic, 7 on the cuts). Periodic, the
central molecules are overlaid exactly before their neighbours are matched; on two bare cuts OXtalign may instead
fit all molecules at once and count a molecule 0.8 Å off as matched, which flatters the smallest molecules (a
chloroethane candidate: 9 of 15 on the cuts with its central molecule 0.78 Å off, 1 periodic).

Unlike the cluster benchmark (:mod:`crystalflow_core.packing`), the comparison allows inversion: a crystal and
its mirror image have the same lattice energy, so a search cannot prefer one (COMPACK's default too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import oxtalign
from ase.data import chemical_symbols
from rdkit import Chem

from crystalflow_core.data.cluster import crystal_cluster
from crystalflow_core.data.molecules import MolecularCrystal
from crystalflow_core.data.symmetry import graph_molecule, molecule_bonds
from crystalflow_core.packing import PASS_MATCHED, SHELL_SIZE

from .cif_writer import asymmetric_unit, operations

#: The comparison of crystals allows inversion (module docstring).
ALLOW_INVERSION = True


class DifferentMoleculeError(ValueError):
    """The reference crystal holds another molecule than the prediction."""


class IncomparableCrystalError(ValueError):
    """OXtalign cannot assemble a crystal's whole molecules: one spans more cells than it searches (a cell far
    thinner than the molecule)."""


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


def periodic_structure(mc: MolecularCrystal) -> oxtalign.Structure:
    """``mc`` as OXtalign reads a CIF of it: the asymmetric atoms, the cell and the operations."""
    atoms, positions = asymmetric_unit(mc)
    try:
        return oxtalign.from_arrays(
            [chemical_symbols[z] for z in mc.numbers[atoms]],
            positions,
            cell=mc.crystal.lattice,
            fractional=True,
            symops=[op.triplet() for op in operations(mc)],
            source=mc.crystal.name,
        )
    except ValueError as error:
        raise IncomparableCrystalError(f"{mc.crystal.name}: {error}") from error


@dataclass
class CrystalReference:
    """A known crystal prepared for comparisons: its periodic OXtalign structure."""

    truth: oxtalign.Structure

    @classmethod
    def build(
        cls, known: MolecularCrystal, molecule_numbers: np.ndarray, molecule_coords: np.ndarray
    ) -> CrystalReference:
        """The reference of crystal ``known`` for predictions of the molecule ``(numbers, coords [n, 3])``; raises
        :class:`DifferentMoleculeError` if ``known`` holds another molecule."""
        atom_order(molecule_numbers, molecule_coords, known.numbers, known.frac @ known.crystal.lattice)
        return cls.of(known)

    @classmethod
    def of(cls, known: MolecularCrystal) -> CrystalReference:
        """The reference of crystal ``known``, whose molecule the caller knows to be the predictions' one."""
        return cls(periodic_structure(known))

    def compare(self, candidate: MolecularCrystal) -> dict[str, float]:
        """``matched`` (of 15), ``rmsd15`` (Å over the matched molecules, NaN if none) and ``found`` (≥ 8); both
        NaN, and not found, for a candidate whose molecules OXtalign cannot assemble."""
        try:
            structure = periodic_structure(candidate)
        except IncomparableCrystalError:
            return {"matched": math.nan, "rmsd15": math.nan, "found": 0.0}
        result = oxtalign.compare(self.truth, structure, n=SHELL_SIZE, allow_inversion=ALLOW_INVERSION)
        matched = int(result.n_matched)
        return {
            "matched": float(matched),
            "rmsd15": float(result.rmsd_n) if matched else math.nan,
            "found": float(matched >= PASS_MATCHED),
        }
