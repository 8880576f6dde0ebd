"""Reading the weak cluster: candidate cells and space groups from ``x_w`` alone, as structure solution reads data.

``x_w`` keeps two things of the crystal that its noise does not erase:

- the **centroids**: each is the crystal's centroid displaced by Gaussian noise (``sigma`` Å per axis), so the
  centroid cloud is a few cosets ``o_k + L`` of the crystal's translation lattice ``L``, blurred;
- the **handedness** of each molecule: the noise is a proper rotation, so a molecule that a proper operation made
  from the central one (a translate, a screw image) is a rotated copy of it with the same atom order, and one that
  an improper operation made (inversion, glide, mirror) is a rotated copy of its mirror image. A Kabsch fit of
  each molecule onto the central one (molecule 0) with ``det = +1`` and with ``det = -1`` tells which (planar
  molecules excepted: both fit).

From these, :func:`read_weak_cluster` collects the cues and :func:`guess_cells` returns the top-k cells:

1. difference vectors between centroids of molecules of one handedness (pure-translate candidates), merged when
   they agree within the noise; triples of the shortest give trial bases;
2. each trial basis is Niggli-reduced, the centroids are grouped into cosets modulo it (average linkage on the
   periodic distance, molecules of different handedness never together), and the lattice and the coset offsets
   are fitted to the centroids by least squares, a few rounds;
3. every (lattice, number of cosets) is scored: the centroid misfit ``-SSE / 2 sigma^2``, a penalty per fitted
   parameter, and the volume per molecule ``V / Z`` against the molecule's volume estimated from its atoms;
4. distinct reduced cells are ranked by score, and each gets ordered space-group guesses among the common ones
   (:data:`COMMON_SPACE_GROUPS`) from Z, the handedness of the molecules, the lattice's 2-fold axes (gemmi's
   obliquity) and the groups' frequencies.

Cells are primitive and Niggli-reduced (spglib); :func:`same_cell` compares two cells by their metric, over the
equivalent bases of one of them, so a reduction that falls on the other side of a boundary does not matter.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import gemmi
import numpy as np
import spglib
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

#: Space groups guessed, most common first in the CSD (Z' = 1 molecular crystals).
COMMON_SPACE_GROUPS = (14, 2, 19, 15, 4, 61, 33, 9, 29, 5, 60, 1)


@dataclass(frozen=True)
class SpaceGroupFacts:
    """What the weak cluster can see of a space group: molecules per primitive cell at Z' = 1, whether it has
    improper operations, its crystal family (``a`` triclinic, ``m`` monoclinic, ``o`` orthorhombic) and whether it
    is centrosymmetric."""

    z_primitive: int
    improper: bool
    family: str
    centrosymmetric: bool


SPACE_GROUPS = {
    14: SpaceGroupFacts(4, True, "m", True),
    2: SpaceGroupFacts(2, True, "a", True),
    19: SpaceGroupFacts(4, False, "o", False),
    15: SpaceGroupFacts(4, True, "m", True),
    4: SpaceGroupFacts(2, False, "m", False),
    61: SpaceGroupFacts(8, True, "o", True),
    33: SpaceGroupFacts(4, True, "o", False),
    9: SpaceGroupFacts(2, True, "m", False),
    29: SpaceGroupFacts(4, True, "o", False),
    5: SpaceGroupFacts(2, False, "m", False),
    60: SpaceGroupFacts(8, True, "o", True),
    1: SpaceGroupFacts(1, False, "a", False),
}

#: Relative frequencies of the common groups among Z' <= 1 organic crystals (CSD-like; the weak cluster's prior).
SPACE_GROUP_PRIOR = {14: 0.36, 2: 0.22, 19: 0.09, 15: 0.07, 4: 0.06, 61: 0.04, 33: 0.03, 9: 0.02, 29: 0.01,
                     5: 0.02, 60: 0.02, 1: 0.01}  # fmt: skip

#: Volume of an atom in an organic crystal (Å^3; Hofmann, Acta Cryst. B58, 489 (2002)), other elements 20 Å^3.
ATOMIC_VOLUME = {1: 5.08, 5: 7.48, 6: 13.87, 7: 11.8, 8: 11.39, 9: 11.17, 14: 27.77, 15: 23.45, 16: 24.08,
                 17: 25.5, 35: 31.81, 53: 44.89}  # fmt: skip
#: Scale of the Hofmann sum that matches the training crystals' volume per molecule (median ratio, train split).
VOLUME_SCALE = 1.0
#: Relative spread of the true volume per molecule about the estimate (log scale, train split).
VOLUME_SPREAD = 0.08
#: Handedness is read only when the proper and improper fits differ by more than this (Å).
HANDEDNESS_TOLERANCE = 0.02
#: The molecule is achiral when an element- and bond-preserving relabelling of its mirror image fits it this well
#: (Å); then the curated crystal may label an image proper or improper, and handedness says nothing of the group.
ACHIRAL_TOLERANCE = 0.1
#: No two molecules' centroids are closer than this (Å), so no lattice vector is shorter.
MIN_LATTICE_LENGTH = 3.0
#: Difference vectors closer than this (Å) are one noisy lattice vector.
MERGE_RADIUS = 1.5
#: Shortest merged difference vectors whose triples become trial bases.
N_SHORTEST = 12
#: Penalty (log-likelihood units) per fitted parameter of a cell: 3 per coset offset.
PARAMETER_PENALTY = 1.0
#: Rounds of coset assignment and least-squares fit per trial basis.
REFINE_ROUNDS = 3


@dataclass
class WeakClusterCues:
    """What :func:`read_weak_cluster` reads off ``x_w``.

    ``centroids`` ``[M, 3]`` (molecule 0 central), ``proper_rmsd``/``improper_rmsd`` ``[M]`` (Å, Kabsch fit onto
    molecule 0), ``handedness`` ``[M]`` (+1 proper image of the central molecule, -1 improper, 0 unknown),
    ``planar`` and ``achiral`` (the molecule's own symmetry; either makes handedness say nothing of the space
    group), ``molecule_volume`` (Å^3, estimated from the atoms).
    """

    centroids: np.ndarray
    proper_rmsd: np.ndarray
    improper_rmsd: np.ndarray
    handedness: np.ndarray
    planar: bool
    achiral: bool
    molecule_volume: float

    @property
    def chirality_informative(self) -> bool:
        """Whether the handedness of the molecules tells proper from improper operations of the space group."""
        return not (self.planar or self.achiral)


@dataclass
class CellGuess:
    """One candidate cell: ``lattice`` ``[3, 3]`` (rows a, b, c; primitive, Niggli-reduced, Cartesian in ``x_w``'s
    frame), its ``score`` (log-likelihood units), ``z`` molecules per primitive cell (cosets), ``coset`` ``[M]``
    (each molecule's coset), ``rms`` (Å, the centroid misfit) and ``space_groups``: ``(number, log score)`` best
    first."""

    lattice: np.ndarray
    score: float
    z: int
    coset: np.ndarray
    rms: float
    space_groups: list[tuple[int, float]] = field(default_factory=list)

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.lattice)))

    def cell_parameters(self) -> tuple[float, float, float, float, float, float]:
        return cell_parameters(self.lattice)


# --- handedness ---------------------------------------------------------------------------------------------


def kabsch_rmsd(mobile: np.ndarray, target: np.ndarray, improper: bool = False) -> np.ndarray:
    """RMSD (Å) ``[M]`` of the best fit of each centred molecule ``mobile`` ``[M, n, 3]`` onto the centred
    ``target`` ``[n, 3]`` by an orthogonal map of determinant +1 (``improper=False``) or -1, atoms matched by index."""
    mobile = np.asarray(mobile, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mobile = mobile - mobile.mean(axis=1, keepdims=True)
    target = target - target.mean(axis=0)
    covariance = np.einsum("mni,nj->mij", mobile, target)
    singular = np.linalg.svd(covariance, compute_uv=False)  # descending
    sign = np.sign(np.linalg.det(covariance))
    sign[sign == 0] = 1.0
    want = -1.0 if improper else 1.0
    # the best map of the wanted determinant: flip the smallest singular value when det(covariance) disagrees
    trace = singular[:, 0] + singular[:, 1] + np.where(sign == want, 1.0, -1.0) * singular[:, 2]
    squared = (mobile**2).sum(axis=(1, 2)) + (target**2).sum() - 2.0 * trace
    return np.sqrt(np.maximum(squared, 0.0) / target.shape[0])


def is_achiral(numbers: np.ndarray, coords: np.ndarray, tolerance: float = ACHIRAL_TOLERANCE) -> bool:
    """Whether the molecule ``coords`` ``[n, 3]`` is superposable on its mirror image by a proper rotation after a
    relabelling that keeps elements and bonds (an automorphism): a mirror plane, an inversion centre or an S4."""
    from crystalflow_core.data.symmetry import automorphisms

    perms = automorphisms(numbers, coords)
    mirrored = -(coords - coords.mean(axis=0))
    return bool(kabsch_rmsd(mirrored[perms], coords).min() < tolerance)


def molecule_volume(numbers: np.ndarray) -> float:
    """The volume one molecule takes in a crystal (Å^3): Hofmann's atomic volumes, scaled by :data:`VOLUME_SCALE`."""
    return VOLUME_SCALE * float(sum(ATOMIC_VOLUME.get(int(z), 20.0) for z in numbers))


def read_weak_cluster(numbers: np.ndarray, mol_index: np.ndarray, x: np.ndarray) -> WeakClusterCues:
    """The centroids and handedness cues of a cluster ``x`` ``[N, 3]`` whose molecules (``mol_index`` ``[N]``,
    contiguous, one atom order) are rigid copies of molecule 0 (the central one)."""
    numbers = np.asarray(numbers)
    mol_index = np.asarray(mol_index)
    n_molecules = int(mol_index.max()) + 1
    coords = np.asarray(x, dtype=np.float64).reshape(n_molecules, -1, 3)
    centroids = coords.mean(axis=1)
    proper = kabsch_rmsd(coords, coords[0])
    improper = kabsch_rmsd(coords, coords[0], improper=True)
    handedness = np.where(improper - proper > HANDEDNESS_TOLERANCE, 1, 0)
    handedness = np.where(proper - improper > HANDEDNESS_TOLERANCE, -1, handedness)
    first = numbers[mol_index == 0]
    planar = bool(improper[0] < HANDEDNESS_TOLERANCE)
    return WeakClusterCues(
        centroids=centroids,
        proper_rmsd=proper,
        improper_rmsd=improper,
        handedness=handedness.astype(np.int64),
        planar=planar,
        achiral=planar or is_achiral(first, coords[0]),
        molecule_volume=molecule_volume(first),
    )


# --- cells --------------------------------------------------------------------------------------------------


def cell_parameters(lattice: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """``(a, b, c, alpha, beta, gamma)`` (Å, degrees) of ``lattice`` ``[3, 3]`` (rows a, b, c)."""
    lattice = np.asarray(lattice, dtype=np.float64)
    lengths = np.linalg.norm(lattice, axis=1)
    angles = [
        np.degrees(np.arccos(np.clip(lattice[j] @ lattice[k] / (lengths[j] * lengths[k]), -1.0, 1.0)))
        for j, k in ((1, 2), (0, 2), (0, 1))
    ]
    return (*map(float, lengths), *map(float, angles))


def niggli_reduce(lattice: np.ndarray) -> np.ndarray:
    """The Niggli-reduced basis ``[3, 3]`` of ``lattice`` (spglib), right-handed, in the same Cartesian frame."""
    reduced = spglib.niggli_reduce(np.asarray(lattice, dtype=np.float64), eps=1e-5)
    if reduced is None:
        raise ValueError("Niggli reduction failed (degenerate lattice)")
    reduced = np.asarray(reduced, dtype=np.float64)
    if np.linalg.det(reduced) < 0:
        reduced = -reduced
    return reduced


def _unimodular_matrices() -> np.ndarray:
    """Integer matrices ``[K, 3, 3]`` with entries in {-1, 0, 1} and determinant ±1: the bases near a reduced one."""
    entries = np.array(list(itertools.product((-1, 0, 1), repeat=9)), dtype=np.int64).reshape(-1, 3, 3)
    det = np.rint(np.linalg.det(entries.astype(np.float64))).astype(np.int64)
    return entries[np.abs(det) == 1]


_UNIMODULAR = _unimodular_matrices()


def _metric(lattice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths ``[..., 3]`` and angles ``[..., 3]`` (alpha, beta, gamma in degrees) of bases ``[..., 3, 3]``."""
    lengths = np.linalg.norm(lattice, axis=-1)
    pairs = ((1, 2), (0, 2), (0, 1))
    cosines = np.stack(
        [(lattice[..., j, :] * lattice[..., k, :]).sum(-1) / (lengths[..., j] * lengths[..., k]) for j, k in pairs],
        axis=-1,
    )
    return lengths, np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))


def same_cell(
    guess: np.ndarray, truth: np.ndarray, length_tolerance: float = 0.05, angle_tolerance: float = 3.0
) -> bool:
    """Whether two lattices are one up to the tolerances: the Niggli-reduced basis of ``guess`` matches, edge by
    edge (relative ``length_tolerance``) and angle by angle (``angle_tolerance`` degrees), some basis ``U T`` of the
    reduced ``truth`` with ``U`` unimodular in {-1, 0, 1}^{3x3}; orientation is not compared."""
    lengths, angles = _metric(niggli_reduce(guess))
    bases = np.einsum("kij,jl->kil", _UNIMODULAR.astype(np.float64), niggli_reduce(truth))
    true_lengths, true_angles = _metric(bases)
    ok = (np.abs(true_lengths - lengths) <= length_tolerance * true_lengths).all(axis=1)
    ok &= (np.abs(true_angles - angles) <= angle_tolerance).all(axis=1)
    return bool(ok.any())


def primitive_lattice(lattice: np.ndarray, rotations: np.ndarray, translations: np.ndarray) -> np.ndarray:
    """The Niggli-reduced primitive lattice of a crystal given by its ``lattice`` and operations: the lattice
    spanned by ``a, b, c`` and the centring translations (operations whose rotation is the identity)."""
    lattice = np.asarray(lattice, dtype=np.float64)
    centring = [t % 1.0 for r, t in zip(rotations, translations, strict=True) if np.allclose(r, np.eye(3))]
    centring = [t for t in centring if np.abs(t - np.rint(t)).max() > 1e-6]
    if not centring:
        return niggli_reduce(lattice)
    points = np.concatenate([np.zeros((1, 3)), np.asarray(centring)])
    numbers = np.ones(len(points), dtype=np.int64)
    primitive = spglib.find_primitive((lattice, points, numbers), symprec=1e-4)
    if primitive is None:
        return niggli_reduce(lattice)
    return niggli_reduce(np.asarray(primitive[0]))


# --- fitting centroids to a lattice ------------------------------------------------------------------------


def _periodic_distances(centroids: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """``[M, M]`` distances between centroids modulo the (reduced) ``lattice``: the shortest over the 27 nearest
    lattice translations of the rounded difference."""
    frac = centroids @ np.linalg.inv(lattice)
    delta = frac[:, None, :] - frac[None, :, :]
    delta -= np.rint(delta)
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=np.float64)
    cart = (delta[:, :, None, :] + shifts[None, None]) @ lattice
    return np.linalg.norm(cart, axis=-1).min(axis=-1)


def _fit(
    centroids: np.ndarray, lattice: np.ndarray, coset: np.ndarray, refine: bool = True
) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares lattice and coset offsets for a coset assignment: ``c_i = o_k(i) + n_i L``, with the integer
    ``n_i`` rounded from the current lattice. Returns ``(lattice, residuals [M, 3], sse)``; the lattice is kept as
    it is without ``refine`` or when the within-coset translations do not span 3D."""
    inverse = np.linalg.inv(lattice)
    n_cosets = int(coset.max()) + 1
    frac = centroids @ inverse
    shift = np.zeros_like(frac)
    for k in range(n_cosets):
        members = np.flatnonzero(coset == k)
        base = frac[members[0]]
        shift[members] = np.rint(frac[members] - base)
    onehot = np.eye(n_cosets)[coset]
    design = np.concatenate([onehot, shift], axis=1)
    if refine and np.linalg.matrix_rank(shift - onehot @ np.linalg.pinv(onehot) @ shift) == 3:
        solution = np.linalg.lstsq(design, centroids, rcond=None)[0]
        new_lattice = solution[n_cosets:]
        if abs(np.linalg.det(new_lattice)) > 0.25 * abs(np.linalg.det(lattice)):
            lattice = new_lattice
    offsets = np.stack([(centroids[coset == k] - shift[coset == k] @ lattice).mean(axis=0) for k in range(n_cosets)])
    residuals = centroids - offsets[coset] - shift @ lattice
    return lattice, residuals, float((residuals**2).sum())


def _cosets(distances: np.ndarray, handedness: np.ndarray, n_cosets: int) -> np.ndarray:
    """Average-linkage clusters (0-based ``[M]``) of the periodic distances, cut into at most ``n_cosets``; molecules
    of opposite handedness are kept apart by an infinite-like distance."""
    d = distances.copy()
    opposite = handedness[:, None] * handedness[None, :] < 0
    d[opposite] = 1e3
    np.fill_diagonal(d, 0.0)
    tree = linkage(squareform(d, checks=False), method="average")
    labels = fcluster(tree, t=n_cosets, criterion="maxclust") - 1
    # relabel in order of first appearance, so the central molecule's coset is 0
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[labels]


@dataclass
class LatticeFit:
    """A refined lattice with a given number of cosets: ``lattice`` (reduced), ``z`` cosets found, ``coset`` ``[M]``
    and ``sse`` (Å^2, the squared centroid misfit)."""

    lattice: np.ndarray
    z: int
    coset: np.ndarray
    sse: float


def fit_lattice(
    cues: WeakClusterCues, lattice: np.ndarray, z_values: tuple[int, ...] = (1, 2, 4, 8)
) -> list[LatticeFit]:
    """For each number of cosets Z, the centroids grouped into Z cosets of a trial basis (average linkage) and the
    lattice and offsets refined by least squares (:data:`REFINE_ROUNDS` rounds). Both the trial basis as it is
    (offsets fitted only) and the refined lattice are returned; degenerate fits are dropped."""
    centroids = cues.centroids
    fits = []
    for z in z_values:
        if z > len(centroids) // 2:
            continue
        current = lattice
        try:
            for round_ in range(REFINE_ROUNDS + 1):
                current = niggli_reduce(current)
                coset = _cosets(_periodic_distances(centroids, current), cues.handedness, z)
                fitted, _, sse = _fit(centroids, current, coset, refine=round_ > 0)
                if round_ in (0, REFINE_ROUNDS):  # the trial basis as it is (offsets only) and the refined one
                    reduced = niggli_reduce(fitted)
                    if np.linalg.norm(reduced, axis=1).min() >= MIN_LATTICE_LENGTH:
                        fits.append(LatticeFit(reduced, int(coset.max()) + 1, coset, sse))
                current = fitted
        except (ValueError, np.linalg.LinAlgError):
            continue
    return fits


@dataclass(frozen=True)
class CellScoring:
    """How a lattice fit is scored (log-likelihood units): centroid noise ``sigma`` (Å per axis), ``penalty`` per
    fitted coset parameter, ``volume_spread`` (log-normal spread of ``V / Z`` about the molecule's volume) and
    ``handedness_penalty`` for cosets whose handedness cannot come from a space group (improper cosets neither
    none nor half)."""

    sigma: float = 1.0
    penalty: float = PARAMETER_PENALTY
    volume_spread: float = VOLUME_SPREAD
    handedness_penalty: float = 3.0


def score_fit(cues: WeakClusterCues, fit: LatticeFit, scoring: CellScoring = CellScoring()) -> float:
    """Log score of one lattice fit: misfit, parameters, volume per molecule and the cosets' handedness."""
    volume = abs(np.linalg.det(fit.lattice))
    score = -fit.sse / (2.0 * scoring.sigma**2) - scoring.penalty * 3 * fit.z
    score -= 0.5 * (np.log(volume / fit.z / cues.molecule_volume) / scoring.volume_spread) ** 2
    if cues.chirality_informative:
        hand = np.array([cues.handedness[fit.coset == k].min() for k in range(fit.z)])
        n_improper = int((hand < 0).sum())
        if n_improper not in (0, fit.z / 2):
            score -= scoring.handedness_penalty
    return float(score)


def _difference_vectors(cues: WeakClusterCues) -> np.ndarray:
    """Centroid differences ``[D, 3]`` of same-handedness pairs (possible pure translations), longer than
    :data:`MIN_LATTICE_LENGTH`, merged within :data:`MERGE_RADIUS` (up to sign), shortest first."""
    centroids, hand = cues.centroids, cues.handedness
    i, j = np.triu_indices(len(centroids), k=1)
    keep = hand[i] * hand[j] >= 0
    vectors = centroids[j[keep]] - centroids[i[keep]]
    vectors = vectors[np.linalg.norm(vectors, axis=1) >= MIN_LATTICE_LENGTH]
    vectors = vectors[np.argsort(np.linalg.norm(vectors, axis=1))]
    groups: list[list[np.ndarray]] = []
    means: list[np.ndarray] = []
    for v in vectors:
        for g, mean in enumerate(means):
            for sign in (1.0, -1.0):
                if np.linalg.norm(sign * v - mean) < MERGE_RADIUS:
                    groups[g].append(sign * v)
                    means[g] = np.mean(groups[g], axis=0)
                    break
            else:
                continue
            break
        else:
            groups.append([v])
            means.append(v)
    if not means:
        return np.zeros((0, 3))
    means_array = np.array(means)
    weight = np.array([len(g) for g in groups])
    order = np.lexsort((np.linalg.norm(means_array, axis=1), -np.minimum(weight, 2)))
    return means_array[order]


def trial_fits(cues: WeakClusterCues, n_shortest: int = N_SHORTEST) -> list[LatticeFit]:
    """Every lattice fit of every trial basis: triples of the shortest merged difference vectors."""
    vectors = _difference_vectors(cues)[:n_shortest]
    min_volume = 0.4 * cues.molecule_volume
    fits: list[LatticeFit] = []
    for a, b, c in itertools.combinations(range(len(vectors)), 3):
        basis = vectors[[a, b, c]]
        if abs(np.linalg.det(basis)) >= min_volume:
            fits.extend(fit_lattice(cues, basis))
    return fits


def rank_fits(
    cues: WeakClusterCues, fits: list[LatticeFit], k: int = 10, scoring: CellScoring = CellScoring()
) -> list[CellGuess]:
    """The ``k`` best-scoring distinct cells among ``fits``, each with its ordered space-group guesses."""
    scored = sorted(((score_fit(cues, fit, scoring), i) for i, fit in enumerate(fits)), reverse=True)
    chosen: list[CellGuess] = []
    for score, i in scored:
        fit = fits[i]
        if any(same_cell(fit.lattice, other.lattice, 0.03, 2.0) for other in chosen):
            continue
        rms = float(np.sqrt(fit.sse / len(cues.centroids)))
        chosen.append(CellGuess(fit.lattice, score, fit.z, fit.coset, rms))
        if len(chosen) == k:
            break
    for guess in chosen:
        guess.space_groups = guess_space_groups(cues, guess)
    return chosen


def guess_cells(
    cues: WeakClusterCues, k: int = 10, scoring: CellScoring = CellScoring(), n_shortest: int = N_SHORTEST
) -> list[CellGuess]:
    """The ``k`` best distinct primitive cells for the weak cluster's centroids, best first, each with its ordered
    space-group guesses."""
    return rank_fits(cues, trial_fits(cues, n_shortest), k, scoring)


# --- space groups --------------------------------------------------------------------------------------------

#: Spread of the volume-estimated Z about the group's Z (relative); obliquity scale of a true 2-fold (degrees).
Z_SPREAD = 0.15
OBLIQUITY_SCALE = 2.0
#: Probability that the molecule sits on a special position (Z' = 0.5): half the group's Z per primitive cell.
SPECIAL_POSITION_PROBABILITY = 0.25
#: Probability of handedness evidence against a group's kind (proper-only group, improper molecules seen).
HANDEDNESS_ERROR = 0.02


def twofold_obliquities(lattice: np.ndarray, max_obliquity: float = 8.0) -> np.ndarray:
    """Obliquities (degrees, ascending) of the lattice's near-2-fold axes up to ``max_obliquity`` (gemmi, Le Page)."""
    cell = gemmi.UnitCell(*cell_parameters(niggli_reduce(lattice)))
    reduced = gemmi.GruberVector(cell, "P")
    reduced.niggli_reduce()
    ops = gemmi.find_lattice_2fold_ops(reduced.get_cell(), max_obliquity)
    return np.sort(np.array([obliquity for _, obliquity in ops], dtype=np.float64))


def guess_space_groups(cues: WeakClusterCues, guess: CellGuess, max_obliquity: float = 8.0) -> list[tuple[int, float]]:
    """The common space groups ordered by log score for one cell guess: prior frequency, Z (volume per molecule and
    number of cosets), the molecules' handedness and the lattice's 2-fold axes."""
    z_volume = guess.volume / cues.molecule_volume
    obliquities = twofold_obliquities(guess.lattice, max_obliquity)
    n_improper = int((cues.handedness < 0).sum())
    scores = []
    for number in COMMON_SPACE_GROUPS:
        facts = SPACE_GROUPS[number]
        score = np.log(SPACE_GROUP_PRIOR[number])
        options = [(facts.z_primitive, 1.0 - SPECIAL_POSITION_PROBABILITY)]
        if facts.z_primitive > 1:
            options.append((facts.z_primitive // 2, SPECIAL_POSITION_PROBABILITY))
        likelihood = sum(weight * np.exp(-0.5 * (np.log(z_volume / z) / Z_SPREAD) ** 2) for z, weight in options)
        score += np.log(max(likelihood, 1e-12))
        if cues.chirality_informative:
            contradicted = (n_improper > 0) != facts.improper
            score += np.log(HANDEDNESS_ERROR if contradicted else 1.0 - HANDEDNESS_ERROR)
        needed = {"a": 0, "m": 1, "o": 3}[facts.family]
        if not needed:  # a triclinic lattice's near-2-folds, if any, are chance: uniform obliquity
            score += np.log(1.0 / max_obliquity)
        elif len(obliquities) < needed:
            score += np.log(1e-3)
        else:  # half-normal density of the needed axis' obliquity
            delta = obliquities[needed - 1]
            score += np.log(np.sqrt(2.0 / np.pi) / OBLIQUITY_SCALE) - 0.5 * (delta / OBLIQUITY_SCALE) ** 2
        scores.append((number, float(score)))
    scores.sort(key=lambda item: -item[1])
    return scores
