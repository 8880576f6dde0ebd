"""Restore whole molecules in the unit cell and apply the paper's crystal selection (Appendix C).

Atoms are bonded when their distance, over all periodic images, is below the sum of their covalent radii
(Cordero et al., as tabulated in ``ase.data``) plus ``BOND_TOLERANCE``. The connected components of this
periodic bond graph are the molecules; a component that bonds to its own lattice-translated image is a
polymer.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
from ase.data import chemical_symbols, covalent_radii
from scipy.spatial import cKDTree

from crystalflow_core.data.crystal import Crystal, lattice_shifts, plane_spacings
from crystalflow_core.errors import CurationError

#: Added to the sum of covalent radii to decide that two atoms are bonded (Å).
BOND_TOLERANCE = 0.4
#: The tolerance for pairs with a hydrogen atom: X-H bonds are short and tightly distributed, so a hydrogen much
#: further away than the radii sum is a misplaced or unbonded atom (COD's cif_molecule draws the line similarly).
HYDROGEN_BOND_TOLERANCE = 0.2
#: Atoms with occupancy below this are disordered (CIF occupancies carry rounding, e.g. ``0.995``).
OCCUPANCY_THRESHOLD = 0.99
#: Two distinct atoms closer than this fraction of their covalent-radii sum, or closer than
#: ``MIN_DISTANCE`` (Å), are a modelling error (unmarked disorder, misplaced hydrogen).
BUMP_FACTOR = 0.5
MIN_DISTANCE = 0.7


@dataclass
class PeriodicBonds:
    """Bonds between unit-cell atoms: atom ``i`` [B] bonds to atom ``j`` [B] shifted by lattice vector
    ``shift`` [B, 3]; every bond is listed in both directions. ``distance`` [B] in Å."""

    i: np.ndarray
    j: np.ndarray
    shift: np.ndarray
    distance: np.ndarray


@dataclass
class MolecularCrystal:
    """A crystal that passed the selection, with one whole reference molecule.

    ``numbers`` [n] and ``frac`` [n, 3] (unwrapped, centroid inside the cell) describe the reference
    molecule; ``z`` molecules per cell; ``z_prime`` = z / number of symmetry operations.
    """

    crystal: Crystal
    numbers: np.ndarray
    frac: np.ndarray
    formula: str
    z: int
    z_prime: float


def hill_formula(numbers) -> str:
    """Hill formula with spaces, as cod-tools writes it: ``C14 H22 O9``; counts of one are omitted.

    Carbon first and hydrogen second when carbon is present, then the rest alphabetically.
    """
    counts = Counter(chemical_symbols[int(z)] for z in numbers)
    if "C" in counts:
        order = ["C"] + (["H"] if "H" in counts else []) + sorted(s for s in counts if s not in ("C", "H"))
    else:
        order = sorted(counts)
    return " ".join(f"{s}{counts[s]}" if counts[s] > 1 else s for s in order)


def bond_lengths(a: np.ndarray, b: np.ndarray, tolerance: float = BOND_TOLERANCE) -> np.ndarray:
    """The bond rule: the longest bond between atoms of atomic numbers ``a`` and ``b`` (broadcast), in Å.

    The sum of their covalent radii plus ``tolerance``, or plus ``HYDROGEN_BOND_TOLERANCE`` when that is the smaller
    and one of them is a hydrogen atom. Curation, the symmetry and packing metrics and the viewers all bond by it.
    """
    pair_tolerance = np.where((a == 1) | (b == 1), min(tolerance, HYDROGEN_BOND_TOLERANCE), tolerance)
    return covalent_radii[a] + covalent_radii[b] + pair_tolerance


def find_bonds(
    numbers: np.ndarray, frac: np.ndarray, lattice: np.ndarray, tolerance: float = BOND_TOLERANCE
) -> PeriodicBonds:
    """All atom pairs closer than :func:`bond_lengths` (with ``tolerance``), over periodic images.

    ``numbers`` [P], ``frac`` [P, 3] in the cell, ``lattice`` [3, 3] rows a, b, c. Uses a k-d tree of the
    cell padded with as many image layers as the longest possible bond needs.
    """
    radii = covalent_radii[numbers]
    cutoff = 2.0 * radii.max() + tolerance
    shifts = lattice_shifts(np.ceil(cutoff / plane_spacings(lattice)), len(numbers))
    cart = frac @ lattice
    images = (cart[None, :, :] + (shifts @ lattice)[:, None, :]).reshape(-1, 3)
    pairs = cKDTree(cart).sparse_distance_matrix(cKDTree(images), cutoff, output_type="ndarray")
    n_atoms = len(numbers)
    i = pairs["i"].astype(np.int64)
    j = pairs["j"].astype(np.int64) % n_atoms
    shift = shifts[pairs["j"] // n_atoms]
    distance = pairs["v"]
    is_bond = (distance < bond_lengths(numbers[i], numbers[j], tolerance)) & ~((i == j) & ~shift.any(axis=1))
    return PeriodicBonds(i=i[is_bond], j=j[is_bond], shift=shift[is_bond], distance=distance[is_bond])


def periodic_components(n_atoms: int, bonds: PeriodicBonds) -> tuple[np.ndarray, np.ndarray, bool]:
    """Connected components of the periodic bond graph.

    Returns ``component`` [P] (component id per atom), ``offset`` [P, 3] (integer lattice shift that makes
    each component whole: atom positions ``frac + offset``) and whether any component is polymeric, i.e.
    a cycle of bonds adds up to a non-zero lattice translation.
    """
    order = np.argsort(bonds.i, kind="stable")
    starts = np.searchsorted(bonds.i[order], np.arange(n_atoms + 1))
    neighbours, shifts = bonds.j[order].tolist(), bonds.shift[order].tolist()
    component = np.full(n_atoms, -1, dtype=np.int64)
    offset = np.zeros((n_atoms, 3), dtype=np.int64)
    n_components = 0
    for seed in range(n_atoms):
        if component[seed] >= 0:
            continue
        component[seed] = n_components
        queue = deque([seed])
        while queue:
            atom = queue.popleft()
            base = offset[atom]
            for e in range(starts[atom], starts[atom + 1]):
                other = neighbours[e]
                if component[other] < 0:
                    component[other] = n_components
                    offset[other] = base + shifts[e]
                    queue.append(other)
        n_components += 1
    mismatch = offset[bonds.i] + bonds.shift - offset[bonds.j]
    return component, offset, bool(mismatch.any())


def check_molecule(numbers: np.ndarray, where: str = "") -> None:
    """Curation's rule for the molecule itself, which ``crystalflow predict`` applies to its input too: an
    organic molecule, with at least one carbon atom (``no_carbon``)."""
    if not (np.asarray(numbers) == 6).any():
        raise CurationError("no_carbon", f"molecule {hill_formula(numbers)} has no carbon", where)


def select_molecular_crystal(crystal: Crystal) -> MolecularCrystal:
    """Apply the paper's selection and restore one whole reference molecule.

    Rejections (``CurationError``): ``no_atoms``, ``hydrogen_only``, ``partial_occupancy`` (any occupancy <
    ``OCCUPANCY_THRESHOLD``), ``no_carbon``, ``unknown_element`` (an atom of unknown element), ``duplicate_site``
    (two asymmetric-unit atoms of one element on one site), ``bad_geometry`` (two atoms closer than
    ``BUMP_FACTOR`` of their radii sum or than ``MIN_DISTANCE``), ``polymeric``, ``multiple_species``
    (more than one molecular formula in the cell), ``z_prime_gt_1`` (more molecules than symmetry
    operations, or molecules not all related by symmetry to the reference molecule), ``too_large`` (a
    neighbour search over too many periodic images).
    """
    name = crystal.name
    if len(crystal.numbers) == 0:
        raise CurationError("no_atoms", "no atoms", name)
    if (crystal.numbers == 1).all():
        raise CurationError("hydrogen_only", f"all {len(crystal.numbers)} atoms are hydrogen", name)
    low = crystal.occupancies < OCCUPANCY_THRESHOLD
    if low.any():
        first = int(np.argmax(low))
        detail = f"{int(low.sum())} atoms with occupancy < 1, e.g. {crystal.labels[first]} "
        raise CurationError("partial_occupancy", detail + f"{crystal.occupancies[first]:g}", name)
    if not (crystal.numbers == 6).any():
        raise CurationError("no_carbon", "no carbon atom", name)
    unknown = crystal.numbers == 0
    if unknown.any():
        label = crystal.labels[int(np.argmax(unknown))]
        raise CurationError(
            "unknown_element", f"atom {label[:40]!r}: neither type symbol nor label names an element", name
        )

    sites = crystal.unit_cell_sites()
    if len(sites.coincident):
        a, b = sites.coincident[0]
        detail = f"atoms {crystal.labels[a]} and {crystal.labels[b]} are on one site"
        raise CurationError("duplicate_site", detail, name)
    bonds = find_bonds(sites.numbers, sites.frac, crystal.lattice)
    radii = covalent_radii[sites.numbers]
    bump = (bonds.distance < BUMP_FACTOR * (radii[bonds.i] + radii[bonds.j])) | (bonds.distance < MIN_DISTANCE)
    if bump.any():
        a, b = sites.asym_index[bonds.i[bump][0]], sites.asym_index[bonds.j[bump][0]]
        detail = f"atoms {crystal.labels[a]} and {crystal.labels[b]} {bonds.distance[bump][0]:.3f} Å apart"
        raise CurationError("bad_geometry", detail, name)
    component, offset, polymeric = periodic_components(len(sites.numbers), bonds)
    if polymeric:
        raise CurationError("polymeric", "a bonded network bonds to its own lattice image", name)

    n_molecules = int(component.max()) + 1
    formulas = sorted({hill_formula(sites.numbers[component == c]) for c in range(n_molecules)})
    if len(formulas) > 1:
        raise CurationError("multiple_species", "; ".join(formulas), name)
    formula = formulas[0]
    check_molecule(sites.numbers[component == 0], name)
    n_ops = len(crystal.rotations)
    if n_molecules > n_ops:
        raise CurationError("z_prime_gt_1", f"{n_molecules} molecules per cell, {n_ops} operations", name)
    asym_sets = {frozenset(sites.asym_index[component == c].tolist()) for c in range(n_molecules)}
    if len(asym_sets) > 1:
        raise CurationError("z_prime_gt_1", "molecules in the cell are not all symmetry-equivalent", name)

    reference = np.nonzero(component == component[0])[0]
    reference = reference[np.lexsort((sites.op_index[reference], sites.asym_index[reference]))]
    frac = sites.frac[reference] + offset[reference]
    frac -= np.floor(frac.mean(axis=0))
    return MolecularCrystal(
        crystal=crystal,
        numbers=sites.numbers[reference],
        frac=frac,
        formula=formula,
        z=n_molecules,
        z_prime=n_molecules / n_ops,
    )
