"""A crystal as its asymmetric unit plus space-group operations, and its expansion to the unit cell."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import ase
import numpy as np
import spglib
from scipy.spatial import cKDTree

from crystalflow_core.errors import CurationError

#: Two images of one asymmetric-unit atom closer than this (Å) are one atom on a special position.
SPECIAL_POSITION_TOLERANCE = 0.1
#: No molecular crystal has lattice planes closer than this (Å) or a cell edge longer than this (Å); outside
#: these bounds a neighbour search would need absurdly many lattice images.
MIN_PLANE_SPACING = 1.0
MAX_CELL_LENGTH = 1000.0
#: The most periodic image points a neighbour search may build (~120 MB of coordinates); real crystals need
#: well under a million.
MAX_IMAGE_POINTS = 5_000_000


def plane_spacings(lattice: np.ndarray) -> np.ndarray:
    """Distances [3] between adjacent lattice planes (100), (010), (001) of ``lattice`` [3, 3] (rows a, b, c)."""
    return 1.0 / np.linalg.norm(np.linalg.inv(lattice), axis=0)


def check_lattice(lattice: np.ndarray, where: str = "") -> None:
    """Refuse (``bad_cell``) a lattice that is not finite, has an edge over ``MAX_CELL_LENGTH`` or lattice planes
    closer than ``MIN_PLANE_SPACING`` (a degenerate or near-flat cell)."""
    if not np.isfinite(lattice).all():
        raise CurationError("bad_cell", "lattice is not finite", where)
    longest = float(np.linalg.norm(lattice, axis=1).max())
    if longest > MAX_CELL_LENGTH:
        raise CurationError("bad_cell", f"cell edge {longest:g} Å is longer than {MAX_CELL_LENGTH:g} Å", where)
    closest = float(plane_spacings(lattice).min()) if abs(np.linalg.det(lattice)) > 0 else 0.0
    if not closest >= MIN_PLANE_SPACING:
        detail = f"lattice planes {closest:.3g} Å apart, less than {MIN_PLANE_SPACING:g} Å (degenerate cell)"
        raise CurationError("bad_cell", detail, where)


def lattice_shifts(n_layers: np.ndarray, points_per_shift: int) -> np.ndarray:
    """Integer lattice shifts [S, 3] with ``|shift[i]| <= n_layers[i]``, for a periodic search over
    ``points_per_shift`` points per shift; refuses (``too_large``) a search over more than ``MAX_IMAGE_POINTS``."""
    counts = 2.0 * np.asarray(n_layers, dtype=np.float64) + 1.0
    n_points = float(np.prod(counts)) * points_per_shift
    if not n_points <= MAX_IMAGE_POINTS:
        detail = f"a neighbour search over {n_points:.3g} periodic images (limit {MAX_IMAGE_POINTS:.0e})"
        raise CurationError("too_large", detail)
    layers = [int(n) for n in np.asarray(n_layers)]
    return np.array(list(itertools.product(*(range(-n, n + 1) for n in layers))), dtype=np.int64)


@dataclass
class UnitCellSites:
    """The unit-cell atoms and where each comes from: ``asym_index`` [P] and ``op_index`` [P].

    ``coincident`` [D, 2] lists pairs of distinct asymmetric-unit atoms that landed on one site.
    """

    numbers: np.ndarray
    frac: np.ndarray
    asym_index: np.ndarray
    op_index: np.ndarray
    coincident: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))


@dataclass
class Crystal:
    """Asymmetric unit, lattice and space-group operations of one crystal structure.

    ``lattice`` [3, 3] holds the a, b, c vectors as rows (Cartesian = ``frac @ lattice``);
    ``rotations`` [K, 3, 3] and ``translations`` [K, 3] act on fractional column vectors and include
    centring translations; ``numbers``, ``frac`` [M, 3], ``occupancies`` and ``labels`` describe the M
    atoms of the asymmetric unit.
    """

    name: str
    source: str
    lattice: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray
    numbers: np.ndarray
    frac: np.ndarray
    occupancies: np.ndarray
    labels: list[str] = field(default_factory=list)
    spacegroup: str = ""
    formula_sum: str = ""

    def unit_cell_sites(self) -> UnitCellSites:
        """Apply every operation to every asymmetric atom, wrap into [0, 1) and merge coincident copies.

        Atoms of the same element closer than ``SPECIAL_POSITION_TOLERANCE`` (periodically) are one atom:
        images of an atom on a special position, or an atom listed twice in the asymmetric unit (reported in
        ``coincident``). The copy with the lowest (asymmetric atom, operation) index is kept.
        """
        n_ops = len(self.rotations)
        shifts = lattice_shifts(np.ones(3), len(self.frac) * n_ops).astype(np.float64) @ self.lattice
        images = np.einsum("kij,mj->mki", self.rotations, self.frac) + self.translations[None]  # [M, K, 3]
        images = images.reshape(-1, 3)
        images -= np.floor(images)
        images[images >= 1.0] -= 1.0
        numbers = np.repeat(self.numbers, n_ops)
        cart = images @ self.lattice
        padded = (cart[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
        pairs = cKDTree(cart).sparse_distance_matrix(cKDTree(padded), SPECIAL_POSITION_TOLERANCE, output_type="ndarray")
        first, second = pairs["i"], pairs["j"] % len(cart)
        duplicate = (second > first) & (numbers[first] == numbers[second])
        keep = np.ones(len(cart), dtype=bool)
        keep[second[duplicate]] = False
        index = np.nonzero(keep)[0]
        pairs = np.stack([first[duplicate], second[duplicate]], axis=1) // n_ops
        return UnitCellSites(
            numbers=numbers[index],
            frac=images[index],
            asym_index=index // n_ops,
            op_index=index % n_ops,
            coincident=np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0),
        )

    def unit_cell(self) -> tuple[np.ndarray, np.ndarray]:
        """Atomic numbers [P] and fractional coordinates [P, 3] in [0, 1) of every atom in the unit cell."""
        sites = self.unit_cell_sites()
        return sites.numbers, sites.frac


def crystal_from_ase(atoms: ase.Atoms, name: str, source: str, symprec: float | None = 0.01) -> Crystal:
    """Wrap a periodic ``ase.Atoms`` structure as a Crystal.

    With ``symprec=None`` the structure is taken as P1 (identity operation only, every atom in the
    asymmetric unit). Otherwise spglib finds the space group within ``symprec`` (Å) and the asymmetric unit
    keeps one atom per symmetry orbit, so that the Z' selection sees the true symmetry.
    """
    frac = np.asarray(atoms.get_scaled_positions(wrap=True), dtype=np.float64)
    numbers = np.asarray(atoms.numbers, dtype=np.int64)
    lattice = np.array(atoms.cell[:], dtype=np.float64)
    rotations, translations, spacegroup = np.eye(3)[None], np.zeros((1, 3)), "P 1"
    representatives = np.arange(len(atoms))
    if symprec is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = spglib.get_symmetry_dataset((lattice, frac, numbers), symprec=symprec)
        if dataset is not None:
            rotations = np.asarray(dataset.rotations, dtype=np.float64)
            translations = np.asarray(dataset.translations, dtype=np.float64) % 1.0
            spacegroup = dataset.international
            representatives = np.unique(dataset.equivalent_atoms)
    symbols = atoms.get_chemical_symbols()
    return Crystal(
        name=name,
        source=source,
        lattice=lattice,
        rotations=rotations,
        translations=translations,
        numbers=numbers[representatives],
        frac=frac[representatives],
        occupancies=np.ones(len(representatives)),
        labels=[f"{symbols[i]}{i + 1}" for i in representatives],
        spacegroup=spacegroup,
    )
