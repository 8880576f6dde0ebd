"""Molecular automorphisms: the atom relabellings of a molecule that leave its chemistry unchanged.

A prediction may put a molecule's symmetry-equivalent atoms (the six carbons of benzene, the three hydrogens of
a methyl group) in each other's places and still be exactly right; metrics that match atoms by index would call
it wrong. The relabellings are the automorphisms of the molecule's bond graph with elements as vertex colours,
found with RDKit's substructure search of the molecule in itself.

Convention: a permutation ``perm`` ``[n]`` is an automorphism when ``x[perm]`` (atom ``i`` takes the position of
old atom ``perm[i]``) is an equivalent labelling of ``x``: ``numbers[perm] == numbers`` and bond ``(i, j)`` exists
exactly when bond ``(perm[i], perm[j])`` does. Automorphisms ignore geometry (bond orders, chirality,
conformation), so some of them (e.g. swapping the two ends of a bent chain) are not rigid symmetries; they are
still legitimate relabellings, and :func:`closest_automorphic` simply picks the one that fits best.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from rdkit import Chem

from crystalflow_core import so3
from crystalflow_core.data.molecules import bond_lengths

#: Default cap on the number of automorphisms enumerated per molecule. Molecules with many independent
#: symmetric groups (k methyl groups alone give 3^k) can have more; beyond the cap only the first
#: ``max_count`` found are kept, so a symmetry-corrected metric becomes an upper bound of the exact one.
MAX_AUTOMORPHISMS = 512
#: Molecules of one cluster share automorphisms when their intramolecular distances agree within this (Å).
SAME_MOLECULE_TOLERANCE = 0.05


def molecule_bonds(numbers: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bonds ``[B, 2]`` (``i < j``, int64) of one molecule, ``numbers [n]``, ``coords [n, 3]`` in Å: the pairs
    closer than the curation rule's :func:`~crystalflow_core.data.molecules.bond_lengths`."""
    numbers = np.asarray(numbers, dtype=np.int64)
    coords = np.asarray(coords, dtype=np.float64)
    distance = np.linalg.norm(coords[:, None, :] - coords[None, :, :], axis=-1)
    bonded = np.triu(distance < bond_lengths(numbers[:, None], numbers[None, :]), k=1)
    return np.argwhere(bonded).astype(np.int64).reshape(-1, 2)


def cluster_bonds(numbers: np.ndarray, mol_index: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bonds ``[B, 2]`` (``i < j``, int64, sorted) of every molecule of a cluster, ``numbers [N]``, ``mol_index [N]``,
    ``coords [N, 3]`` in Å: :func:`molecule_bonds` per molecule, so no bond crosses two molecules however they
    overlap (a trajectory keeps the bonds of the frame they were found on)."""
    numbers, mol_index = np.asarray(numbers, dtype=np.int64), np.asarray(mol_index)
    coords = np.asarray(coords, dtype=np.float64)
    members = [np.flatnonzero(mol_index == m) for m in np.unique(mol_index)]
    bonds = np.concatenate([atoms[molecule_bonds(numbers[atoms], coords[atoms])] for atoms in members]).reshape(-1, 2)
    return bonds[np.lexsort((bonds[:, 1], bonds[:, 0]))]


def graph_molecule(numbers: np.ndarray, bonds: np.ndarray, labels: np.ndarray | None = None) -> Chem.Mol:
    """An unsanitised RDKit molecule with the given atoms and single bonds.

    Nothing is perceived (no valences, aromaticity or implicit hydrogens), so metals and hypervalent atoms are
    accepted as they are; the substructure search then compares only elements, bond topology and, when given,
    the positive integer ``labels`` (stored as isotopes, which atom matching compares).
    """
    mol = Chem.RWMol()
    for k, z in enumerate(numbers):
        atom = Chem.Atom(int(z))
        atom.SetNoImplicit(True)
        if labels is not None:
            atom.SetIsotope(int(labels[k]))
        mol.AddAtom(atom)
    for i, j in bonds:
        mol.AddBond(int(i), int(j), Chem.BondType.SINGLE)
    mol = mol.GetMol()
    mol.UpdatePropertyCache(strict=False)
    return mol


def _terminal_hydrogens(numbers: np.ndarray, bonds: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Skeleton atoms (everything but terminal hydrogens) and, per skeleton atom, its terminal hydrogens.

    A terminal hydrogen has exactly one bond, to a non-hydrogen atom. The hydrogens of one skeleton atom can be
    permuted freely, independently of everything else, so they are a direct factor of the automorphism group.
    """
    n = len(numbers)
    degree = np.bincount(bonds.reshape(-1), minlength=n)
    neighbour = np.full(n, -1, dtype=np.int64)
    neighbour[bonds[:, 0]], neighbour[bonds[:, 1]] = bonds[:, 1], bonds[:, 0]  # exact for degree-1 atoms
    terminal = (numbers == 1) & (degree == 1) & (numbers[np.maximum(neighbour, 0)] != 1)
    skeleton = np.flatnonzero(~terminal)
    groups = [np.flatnonzero(terminal & (neighbour == atom)) for atom in skeleton]
    return skeleton, groups


def automorphisms(numbers: np.ndarray, coords: np.ndarray, max_count: int = MAX_AUTOMORPHISMS) -> np.ndarray:
    """Atom permutations ``[P, n]`` (int64) of one molecule preserving elements and bonds, identity first.

    Bonds come from :func:`molecule_bonds` on ``coords [n, 3]``. At most ``max_count`` permutations are returned
    (see :data:`MAX_AUTOMORPHISMS`); the identity is always among them.

    Terminal hydrogens on one atom (the three of a methyl group) can be permuted independently of the rest, so
    they alone would multiply the count by ``3! = 6`` per methyl group and, under the cap, crowd out the
    symmetries of the heavier atoms (a phenyl ring flip) that RDKit's depth-first search would reach last. The
    search therefore runs on the skeleton without terminal hydrogens, each atom labelled with its hydrogen count
    (RDKit ``GetSubstructMatches(mol, mol, uniquify=False, useChirality=False, maxMatches=max_count)``); every
    skeleton automorphism is listed first with its hydrogens carried along in order, then the same ones combined
    with the permutations of geminal hydrogens while the cap allows. Below the cap the result is the complete
    automorphism group of the bond graph with hydrogens.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    n = len(numbers)
    identity = np.arange(n, dtype=np.int64)
    if n == 0 or max_count < 1:
        return identity[None]
    bonds = molecule_bonds(numbers, coords)
    skeleton, groups = _terminal_hydrogens(numbers, bonds)
    local = np.full(n, -1, dtype=np.int64)
    local[skeleton] = np.arange(len(skeleton))
    inner = bonds[np.isin(bonds, skeleton).all(axis=1)]
    mol = graph_molecule(numbers[skeleton], local[inner], labels=np.array([1 + len(g) for g in groups]))
    matches = mol.GetSubstructMatches(mol, uniquify=False, useChirality=False, maxMatches=max_count)
    bases = []
    for match in matches:
        perm = identity.copy()
        perm[skeleton] = skeleton[list(match)]
        for atom, image in zip(range(len(skeleton)), match, strict=True):
            perm[groups[atom]] = groups[image]
        bases.append(perm)
    perms = [identity] + [p for p in bases if not np.array_equal(p, identity)]
    movable = [g for g in groups if len(g) > 1]
    arrangements = itertools.product(*(itertools.permutations(g.tolist()) for g in movable))
    next(arrangements, None)  # the identity arrangement: already combined with every skeleton permutation
    for arrangement in arrangements:
        if len(perms) >= max_count:
            break
        shuffle = identity.copy()
        for group, order in zip(movable, arrangement, strict=True):
            shuffle[group] = order
        perms.extend(base[shuffle] for base in bases[: max_count - len(perms)])
    return np.stack(perms[:max_count])


def _distance_matrix(coords: np.ndarray) -> np.ndarray:
    return np.linalg.norm(coords[:, None, :] - coords[None, :, :], axis=-1)


def cluster_automorphisms(numbers: np.ndarray, mol_index: np.ndarray, coords: np.ndarray) -> list[np.ndarray]:
    """One ``[P_m, n_m]`` array of :func:`automorphisms` per molecule, in within-molecule atom indices.

    ``numbers [N]``, ``mol_index [N]`` (molecules ``0..M-1``), ``coords [N, 3]``. The molecules of a cluster are
    symmetry images of one molecule with one atom order, so molecule 0's result is reused (the same array) for
    every molecule with its element sequence and intramolecular distances (within
    :data:`SAME_MOLECULE_TOLERANCE`); any other molecule gets its own.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    mol_index = np.asarray(mol_index, dtype=np.int64)
    coords = np.asarray(coords, dtype=np.float64)
    members = [np.flatnonzero(mol_index == m) for m in range(int(mol_index.max()) + 1)]
    first = members[0]
    first_distances = _distance_matrix(coords[first])
    shared = automorphisms(numbers[first], coords[first])
    result = [shared]
    for atoms in members[1:]:
        same = np.array_equal(numbers[atoms], numbers[first]) and np.allclose(
            _distance_matrix(coords[atoms]), first_distances, rtol=0.0, atol=SAME_MOLECULE_TOLERANCE
        )
        result.append(shared if same else automorphisms(numbers[atoms], coords[atoms]))
    return result


def _best_overlap(overlap: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per row of ``overlap [..., P]``, the first index within rounding (``1e-9 * scale``) of the row's maximum.

    Equivalent relabellings of a symmetric geometry fit equally well up to the order of summation, so an exact
    ``argmax`` would pick among them by rounding noise and an iterative fit using it might never settle.
    """
    threshold = overlap.max(axis=-1, keepdims=True) - 1e-9 * (scale[..., None] + 1e-12)
    return np.argmax(overlap >= threshold, axis=-1)


def closest_automorphic(
    pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, perms: np.ndarray | torch.Tensor
) -> np.ndarray | torch.Tensor:
    """``target[perms[best]]``: the relabelling of ``target [n, 3]`` closest to ``pred [n, 3]`` (squared distance).

    ``perms [P, n]`` from :func:`automorphisms`; ties (within rounding) go to the earliest permutation, the
    identity first. Leading batch dimensions are allowed (``pred``, ``target`` ``[..., n, 3]``: molecules with
    the same automorphisms, each relabelled on its own). The result has the type (NumPy array or torch tensor)
    of ``target``.

    ``|pred - target[p]|^2`` is the same for every ``p`` up to ``-2 sum_i pred_i . target_{p_i}``, so the search
    gathers entries of the ``[n, n]`` overlap matrix instead of ``P`` copies of the coordinates (centred on the
    target's centroid, which changes no difference, to keep rounding small).
    """
    is_torch = isinstance(target, torch.Tensor)
    target_np = target.detach().cpu().double().numpy() if is_torch else np.asarray(target, dtype=np.float64)
    pred_np = pred.detach().cpu().double().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    perms_np = perms.detach().cpu().numpy() if isinstance(perms, torch.Tensor) else np.asarray(perms)
    centre = target_np.mean(axis=-2, keepdims=True)
    a, b = pred_np - centre, target_np - centre
    overlap_matrix = a @ np.swapaxes(b, -1, -2)  # [..., n, n]: pred_i . target_j
    rows = np.arange(perms_np.shape[-1])[None, :]
    overlap = overlap_matrix[..., rows, perms_np].sum(axis=-1)  # [..., P]
    scale = (a**2).sum(axis=(-2, -1)) + (b**2).sum(axis=(-2, -1))
    index = perms_np[_best_overlap(overlap, scale)]  # [..., n]
    if is_torch:
        gather = torch.as_tensor(index, device=target.device)[..., None].expand(*target.shape)
        return torch.gather(target, -2, gather)
    return np.take_along_axis(np.asarray(target), index[..., None], axis=-2)


#: Largest RMSD (Å) of a molecule and its relabelled, best-rotated copy for the relabelling to count as a
#: rotation of the rigid molecule: loose enough for the geometry of a real crystal's symmetric molecule.
PROPER_SYMMETRY_TOLERANCE = 0.25


def proper_symmetries(
    coords: torch.Tensor, perms: torch.Tensor, tolerance: float = PROPER_SYMMETRY_TOLERANCE
) -> torch.Tensor:
    """The automorphisms ``perms [P, n]`` of one molecule at ``coords [n, 3]`` that a proper rotation realises.

    A rigid molecule can only reach relabellings that are rotations of itself (a C2 axis, a symmetric top), not
    mirror images or conformational changes (a ring flip about a single bond of an asymmetric molecule); these
    are the relabelled copies ``coords[p]`` that a proper Kabsch fit superimposes within ``tolerance`` Å RMSD.
    The identity is always kept, first.
    """
    coords = coords.double()
    body = coords - coords.mean(dim=0)
    n_perm, n = perms.shape
    molecule = torch.arange(n_perm).repeat_interleave(n)
    relabelled = body[perms.reshape(-1)]
    rotation, centre = so3.kabsch(body.repeat(n_perm, 1), relabelled, molecule, n_perm)
    residual = so3.place(centre, rotation, body.repeat(n_perm, 1), molecule) - relabelled
    rmsd = residual.pow(2).sum(dim=-1).reshape(n_perm, n).mean(dim=1).sqrt()
    keep = rmsd <= tolerance
    keep[0] = True
    return perms[keep]
