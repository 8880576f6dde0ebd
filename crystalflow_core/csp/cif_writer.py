"""A :class:`MolecularCrystal` as a CIF that crystallographic viewers (Mercury, VESTA) and :func:`read_cif` open.

The file lists every symmetry operation and the asymmetric unit only: a molecule on a special position (e.g. on
an inversion centre, Z' = 0.5) contributes one atom per orbit of the operations that map it onto itself, so that
a reader expanding the operations sees each atom once.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import gemmi
import numpy as np
import spglib
from ase.data import chemical_symbols
from scipy.optimize import linear_sum_assignment

from crystalflow_core.data.molecules import MolecularCrystal
from crystalflow_core.files import atomic_open

from .rigid_crystal import SAME_SITE_TOLERANCE

#: A pairing cost that no pairing of atoms of one element reaches.
_NEVER = 1e9
#: A translation component further than this from a multiple of 1/24 is not a crystallographic operation.
TRANSLATION_TOLERANCE = 1e-3


def operations(mc: MolecularCrystal) -> list[gemmi.Op]:
    """The crystal's operations as gemmi operations (rotation and translation in units of 1/24)."""
    ops = []
    for rotation, translation in zip(mc.crystal.rotations, mc.crystal.translations, strict=True):
        scaled = np.asarray(translation) * gemmi.Op.DEN
        if np.abs(scaled - np.rint(scaled)).max() > TRANSLATION_TOLERANCE * gemmi.Op.DEN:
            raise ValueError(f"{mc.crystal.name}: translation {translation} is not a multiple of 1/{gemmi.Op.DEN}")
        op = gemmi.Op()
        op.rot = np.rint(np.asarray(rotation) * gemmi.Op.DEN).astype(int).tolist()
        op.tran = np.rint(scaled).astype(int).tolist()
        ops.append(op.wrap())
    return ops


def space_group(mc: MolecularCrystal) -> tuple[int, str]:
    """International number and H-M symbol (``"?"`` when the setting is not a tabulated one) of the operations.

    gemmi knows the tabulated settings (``P 1 21/a 1``, ``C 1 2/c 1`` …); spglib gives the number of any other
    (a non-standard centring such as ``X c``), whose operations then stand without a symbol.
    """
    found = gemmi.find_spacegroup_by_ops(gemmi.GroupOps(operations(mc)))
    if found is not None:
        return found.number, found.hm
    crystal = mc.crystal
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spglib's notice about its error handling
        spacegroup_type = spglib.get_spacegroup_type_from_symmetry(
            np.rint(crystal.rotations).astype(np.int32), crystal.translations, crystal.lattice
        )
    if spacegroup_type is None:
        raise ValueError(f"{crystal.name}: the symmetry operations are not a space group")
    return int(spacegroup_type.number), "?"


def asymmetric_unit(mc: MolecularCrystal) -> tuple[np.ndarray, np.ndarray]:
    """Indices [A] of the reference molecule's atoms that form the asymmetric unit, and their fractional positions
    [A, 3], made exactly symmetric under the operations that map the molecule onto itself.

    An operation maps the molecule onto itself when it maps its centroid onto itself (within
    :data:`~.rigid_crystal.SAME_SITE_TOLERANCE`, as :class:`~.rigid_crystal.RigidCrystal` counts molecules); it then
    permutes the atoms (each image atom paired with one of its element, nearest overall), the atoms fall into orbits
    and the lowest index of each is kept, at the mean of the images that land on it. A molecule that only nearly has
    its site's symmetry (the search takes it within that tolerance) is thus written as the one molecule the crystal
    counts, not as two copies a few tenths of an ångström apart. On a general position only the identity maps the
    molecule onto itself, and every atom is kept where it is.
    """
    crystal = mc.crystal
    lattice, numbers = crystal.lattice, np.asarray(mc.numbers)
    centroid = mc.frac.mean(axis=0)
    images = np.einsum("kij,nj->kni", crystal.rotations, mc.frac) + crystal.translations[:, None, :]  # [K, n, 3]
    images -= np.round(images.mean(axis=1) - centroid)[:, None, :]
    site_images = images[np.linalg.norm((images.mean(axis=1) - centroid) @ lattice, axis=1) < SAME_SITE_TOLERANCE]
    other_element = numbers[:, None] != numbers[None, :]
    parent = np.arange(len(numbers))  # union-find forest over the atoms
    landed = np.zeros_like(mc.frac)  # per atom: the sum of the image atoms that land on it, one per operation
    for image in site_images:
        distance = np.linalg.norm((image[:, None, :] - mc.frac[None, :, :]) @ lattice, axis=-1)  # image i to atom j
        lands_on = linear_sum_assignment(np.where(other_element, _NEVER, distance))[1]  # a permutation of the atoms
        landed[lands_on] += image
        for i, j in enumerate(lands_on):
            root_i, root_j = _root(parent, i), _root(parent, int(j))
            parent[max(root_i, root_j)] = min(root_i, root_j)
    kept = np.array([i for i in range(len(numbers)) if _root(parent, i) == i], dtype=np.int64)
    return kept, landed[kept] / len(site_images)


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        i = parent[i]
    return int(i)


def cell_parameters(lattice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths a, b, c (Å) and angles alpha, beta, gamma (degrees) of ``lattice`` [3, 3] (rows a, b, c)."""
    lengths = np.linalg.norm(lattice, axis=1)
    unit = lattice / lengths[:, None]
    cosines = [unit[1] @ unit[2], unit[0] @ unit[2], unit[0] @ unit[1]]
    return lengths, np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))


def _block_name(name: str) -> str:
    """A CIF data block name: no whitespace, quotes or CIF specials (``data_`` names are one bare token)."""
    return re.sub(r"[^A-Za-z0-9._+\-]", "_", name) or "crystal"


def write_cif(path: str | Path, mc: MolecularCrystal, name: str, extra: dict[str, str] | None = None) -> Path:
    """Write ``mc`` as the CIF data block ``data_<name>`` to ``path`` and return the path.

    ``extra`` adds data items, e.g. ``{"_crystalflow_energy": "-123.4"}``; each key must be a CIF tag (a leading
    underscore, no whitespace). The file is written to a temporary file beside ``path`` and renamed, so an
    interrupted write never leaves a truncated CIF under the final name.
    """
    path = Path(path)
    extra = extra or {}
    for key in extra:
        if not re.fullmatch(r"_\S+", key):
            raise ValueError(f"extra key {key!r} is not a CIF tag (an underscore, then no whitespace)")
    number, hm = space_group(mc)
    lengths, angles = cell_parameters(mc.crystal.lattice)

    document = gemmi.cif.Document()
    block = document.add_new_block(_block_name(name))
    block.set_pair("_audit_creation_method", gemmi.cif.quote("crystalflow"))
    block.set_pair("_chemical_formula_sum", gemmi.cif.quote(mc.formula))
    for axis, length in zip("abc", lengths, strict=True):
        block.set_pair(f"_cell_length_{axis}", f"{length:.6f}")
    for axis, angle in zip(("alpha", "beta", "gamma"), angles, strict=True):
        block.set_pair(f"_cell_angle_{axis}", f"{angle:.6f}")
    block.set_pair("_cell_volume", f"{abs(np.linalg.det(mc.crystal.lattice)):.4f}")
    block.set_pair("_cell_formula_units_Z", str(mc.z))
    block.set_pair("_space_group_IT_number", str(number))
    block.set_pair("_space_group_name_H-M_alt", hm if hm == "?" else gemmi.cif.quote(hm))
    for key, value in extra.items():
        block.set_pair(key, gemmi.cif.quote(str(value)))

    symops = block.init_loop("_space_group_symop_", ["id", "operation_xyz"])
    for index, op in enumerate(operations(mc), start=1):
        symops.add_row([str(index), gemmi.cif.quote(op.triplet())])

    sites = block.init_loop("_atom_site_", ["label", "type_symbol", "fract_x", "fract_y", "fract_z", "occupancy"])
    counts: dict[str, int] = {}
    for i, position in zip(*asymmetric_unit(mc), strict=True):
        symbol = chemical_symbols[int(mc.numbers[i])]
        counts[symbol] = counts.get(symbol, 0) + 1
        sites.add_row([f"{symbol}{counts[symbol]}", symbol, *(f"{x:.6f}" for x in position), "1"])

    with atomic_open(path) as stream:
        stream.write(document.as_string())
    return path
