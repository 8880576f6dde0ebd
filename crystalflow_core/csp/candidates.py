"""Random symmetric crystals of a rigid molecule (pyxtal), stratified over space groups, as starts of the search.

pyxtal places the molecule on a Wyckoff position of the group in a random cell at a density from the molecule's
volume (its ``factor``), turned at random but with no two molecules overlapping. Besides the general position
(Z' = 1), a molecule with its own symmetry is also tried on the special positions that symmetry allows
(Z' = 0.5: benzene on an inversion centre), as often as the general one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import gemmi
import numpy as np
from rdkit import Chem

from crystalflow_core.data.crystal import Crystal
from crystalflow_core.data.molecules import MolecularCrystal, hill_formula
from crystalflow_core.settings import DEFAULT_SPACE_GROUPS

from .rigid_crystal import RigidCrystal

#: pyxtal's volume factor: the start's cell holds this many times the molecules' own volume.
VOLUME_FACTOR = 1.1
#: Tries per candidate before a (space group, Wyckoff) stratum counts as impossible for the molecule.
_TRIES = 3


class SpaceGroupError(ValueError):
    """A space group name or number that names no space group."""


def space_group_number(text: str | int) -> int:
    """The number (1-230) of a space group given by number or Hermann-Mauguin name (``P21/c``, ``P 1 21/n 1``)."""
    text = str(text).strip()
    if text.isdigit():
        if not 1 <= int(text) <= 230:
            raise SpaceGroupError(f"space group {text}: numbers run from 1 to 230")
        return int(text)
    group = gemmi.find_spacegroup_by_name(text)
    if group is None:
        raise SpaceGroupError(f"unknown space group {text!r} (give a number or a name such as P21/c)")
    return group.number


@dataclass
class Candidate:
    """A random start: its index, space group number and symbol, Wyckoff position (``4e``), and the crystal."""

    index: int
    space_group: int
    symbol: str
    wyckoff: str
    crystal: RigidCrystal


def _pyxtal_molecule(molecule: Chem.Mol, rng: np.random.Generator):
    from pymatgen.core import Molecule
    from pyxtal.molecule import pyxtal_molecule

    symbols = [atom.GetSymbol() for atom in molecule.GetAtoms()]
    positions = molecule.GetConformer().GetPositions()
    # Centred: pyxtal takes the molecule's radius about the origin.
    centred = Molecule(symbols, positions - positions.mean(axis=0))
    return pyxtal_molecule(centred, symmetrize=False, fix=True, random_state=rng)


def _random_crystal(species, group: int, z: int, rng: np.random.Generator):
    """pyxtal's random crystal of ``z`` molecules per cell in ``group``, or None if it placed none."""
    from pyxtal import pyxtal

    crystal = pyxtal(molecular=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            crystal.from_random(3, group, [species], [z], factor=VOLUME_FACTOR, random_state=rng)
        except Exception:  # noqa: BLE001 - pyxtal signals an impossible placement by many exception types
            return None
    return crystal if crystal.valid else None


def _as_rigid_crystal(generated, numbers: np.ndarray, name: str) -> tuple[RigidCrystal, str]:
    site = generated.mol_sites[0]
    coords, _ = site._get_coords_and_species(absolute=True, first=True)
    lattice = np.asarray(generated.lattice.matrix, dtype=np.float64)
    affine = np.array([op.affine_matrix for op in generated.group[0].ops])
    frac = coords @ np.linalg.inv(lattice)
    crystal = Crystal(
        name=name,
        source="pyxtal",
        lattice=lattice,
        rotations=affine[:, :3, :3],
        translations=affine[:, :3, 3] % 1.0,
        numbers=numbers,
        frac=frac,
        occupancies=np.ones(len(numbers)),
        spacegroup=generated.group.symbol,
    )
    z = int(site.wp.multiplicity)
    mc = MolecularCrystal(crystal, numbers, frac, hill_formula(numbers), z, z / len(affine))
    return RigidCrystal.from_molecular_crystal(mc, name), f"{z}{site.wp.letter}"


def _strata(species, groups: Sequence[int], rng: np.random.Generator) -> list[tuple[int, int]]:
    """(space group, Z) pairs to draw from: the general position of each group, and half its multiplicity
    where pyxtal can place the molecule on a special position."""
    from pyxtal.symmetry import Group

    strata = []
    for group in groups:
        general = len(Group(group)[0])
        strata.append((group, general))
        if general % 2 == 0 and any(_random_crystal(species, group, general // 2, rng) for _ in range(_TRIES)):
            strata.append((group, general // 2))
    return strata


def _next_stratum(counts: dict[tuple[int, int], int], weights: dict[tuple[int, int], float]) -> tuple[int, int]:
    """The stratum furthest behind its share of the candidates so far (weighted round robin, first on ties)."""
    total = sum(counts.values()) + 1
    weight = sum(weights[stratum] for stratum in counts)
    return max(counts, key=lambda stratum: weights[stratum] / weight * total - counts[stratum])


def generate_candidates(
    molecule: Chem.Mol,
    n: int,
    space_groups: Sequence[int] = DEFAULT_SPACE_GROUPS,
    seed: int = 0,
    group_weights: Mapping[int, float] | None = None,
) -> Iterator[Candidate]:
    """Up to ``n`` random crystals of ``molecule`` (explicit hydrogens and a conformer), taken in turn from each
    (space group, Wyckoff) stratum, or in proportion to ``group_weights`` (a group's weight shared by its
    strata, none for a group left out); seeded: the same arguments give the same crystals."""
    numbers = np.array([atom.GetAtomicNum() for atom in molecule.GetAtoms()])
    rng = np.random.default_rng(seed)
    species = _pyxtal_molecule(molecule, rng)
    strata = _strata(species, space_groups, rng)
    weights = dict.fromkeys(strata, 1.0)
    if group_weights is not None:
        per_group = {group: sum(g == group for g, _ in strata) for group, _ in strata}
        weights = {(g, z): group_weights.get(g, 0.0) / per_group[g] for g, z in strata}
    counts = dict.fromkeys(strata, 0)
    failures = dict.fromkeys(strata, 0)
    index = 0
    while index < n and counts:
        group, z = _next_stratum(counts, weights)
        generated = _random_crystal(species, group, z, rng)
        if generated is None:
            failures[(group, z)] += 1
            if failures[(group, z)] >= _TRIES:
                del counts[(group, z)]
            continue
        counts[(group, z)] += 1
        crystal, wyckoff = _as_rigid_crystal(generated, numbers, f"candidate{index}")
        yield Candidate(index, group, generated.group.symbol, wyckoff, crystal)
        index += 1
