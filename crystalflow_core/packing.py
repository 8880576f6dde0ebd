"""Label-free comparisons of a predicted cluster with the crystal cluster: packing similarity, RMSD, integrity.

The packing-matching metrics of :mod:`crystalflow_core.metrics` match atoms by index and compare distance
matrices only. The metrics here do not trust the prediction's labels and are hard to satisfy without the right
structure:

- ``matched``, ``rmsd15``, ``pass_rate``: OXtalign's RMSD_n (a COMPACK-style packing similarity) of the
  prediction against the 15-molecule shell around the crystal cluster's central molecule. ``matched`` (0–15)
  counts shell molecules that found a predicted molecule within 1 Å RMSD under one rigid superposition,
  ``rmsd15`` is the RMSD (Å) over the atoms of the matched molecules (NaN when none matched), ``pass_rate`` is
  100 when at least 8 of 15 matched (OXtal's criterion) and 0 otherwise, so its mean over clusters is the pass
  rate in %. Molecules and atoms are matched by geometry, and the bonds are the crystal's, so a prediction
  cannot merge or split molecules. Hydrogens are ignored (OXtalign's and COMPACK's default) unless a molecule
  has fewer than :data:`MIN_HEAVY_ATOMS` other atoms: OXtalign seeds its superposition on the central molecule,
  whose orientation two or three (collinear or coplanar) heavy atoms do not fix; with heavy atoms only, the
  crystal cluster of formaldehyde matches only 7 of 15 molecules of itself. A cluster that OXtalign cannot match
  fully to itself (acetylene: linear even with its hydrogens) gets NaN, as does any cluster it fails on.
  *Inversion is not allowed*: both clusters are bare 17-molecule clusters in one frame, the start ``x_w`` has the
  crystal's handedness unless inversion noise was applied, and the mirror image of a cluster is a different
  cluster (in general not the same crystal seen around another molecule), so only proper rotations may
  superpose the prediction on the truth.
- ``rmsd``: permutation-invariant all-atom RMSD (Å), see :func:`cluster_rmsd`.
- ``integrity``: the largest change (Å) of an intramolecular distance, see :func:`integrity`.

Everything that depends only on the truth (bonds, automorphisms, OXtalign's structure of the truth) is built
once per cluster in a :class:`Reference` and reused for every sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import oxtalign
import torch
from ase.data import chemical_symbols
from scipy.optimize import linear_sum_assignment

from crystalflow_core import so3
from crystalflow_core.data.noise import molecule_centroids
from crystalflow_core.data.symmetry import closest_automorphic, cluster_automorphisms, cluster_bonds

#: Molecules in OXtalign's packing shell, as in COMPACK and OXtal.
SHELL_SIZE = 15
#: A cluster passes when at least this many shell molecules match (OXtal: 8 of 15).
PASS_MATCHED = 8
#: The OXtalign option used throughout (see the module docstring).
ALLOW_INVERSION = False
#: Molecules with fewer non-hydrogen atoms are compared by OXtalign with their hydrogens (module docstring).
MIN_HEAVY_ATOMS = 4
#: Keys of :func:`packing_metrics`, in table order.
PACKING_KEYS = ("matched", "rmsd15", "pass_rate", "rmsd", "integrity")
#: Keys of :func:`packing_similarity`: OXtalign gives all three or none.
SIMILARITY_KEYS = ("matched", "rmsd15", "pass_rate")

_ICP_ITERATIONS = 20
_INCOMPATIBLE = 1e12


@dataclass
class Reference:
    """The crystal cluster prepared for comparisons: ``x [N, 3]``, ``numbers [N]``, ``mol_index [N]``.

    ``members[m]`` are molecule ``m``'s atom indices, ``perms[m]`` its automorphisms ``[P_m, n_m]`` in local
    indices, ``bonds [B, 2]`` the cluster's bonds in global indices.
    """

    x: np.ndarray
    numbers: np.ndarray
    mol_index: np.ndarray
    members: list[np.ndarray]
    perms: list[np.ndarray]
    bonds: np.ndarray
    _oxtal: oxtalign.Structure | None = field(default=None, repr=False)
    _oxtal_checked: bool = field(default=False, repr=False)

    @property
    def symbols(self) -> list[str]:
        return [chemical_symbols[int(z)] for z in self.numbers]

    @property
    def include_hydrogens(self) -> bool:
        """Whether OXtalign compares hydrogens too: when some molecule has fewer than MIN_HEAVY_ATOMS others."""
        return min(int((self.numbers[atoms] != 1).sum()) for atoms in self.members) < MIN_HEAVY_ATOMS

    def structure(self, x: np.ndarray, source: str) -> oxtalign.Structure:
        """OXtalign's view of positions ``x [N, 3]`` of this cluster's atoms, with the truth's bonds."""
        return oxtalign.from_arrays(
            self.symbols, x, bonds=self.bonds, include_hydrogens=self.include_hydrogens, source=source
        )

    def oxtal(self) -> oxtalign.Structure | None:
        """OXtalign's structure of the truth, or None if OXtalign does not match the truth fully to itself.

        Built and checked on first use; the structure caches its shells, which every sample reuses.
        """
        if not self._oxtal_checked:
            self._oxtal_checked = True
            truth = self.structure(self.x, "truth")
            itself = oxtalign.compare(truth, truth, n=SHELL_SIZE, allow_inversion=ALLOW_INVERSION)
            self._oxtal = truth if itself.n_matched >= SHELL_SIZE else None
        return self._oxtal


def similarity_problem(reference: Reference) -> str | None:
    """Why OXtalign can score no prediction of this cluster (its truth unreadable, or not matched fully to
    itself); ``None`` when it can."""
    try:
        truth = reference.oxtal()
    except Exception as error:  # noqa: BLE001 - reported as the cause of the cluster's missing values
        return f"OXtalign cannot read the crystal cluster ({type(error).__name__})"
    return None if truth is not None else "OXtalign cannot match the crystal cluster to itself"


def _numpy(x: np.ndarray | torch.Tensor, dtype: type = np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def prepare_reference(x_true: np.ndarray | torch.Tensor, numbers: np.ndarray, mol_index: np.ndarray) -> Reference:
    """A :class:`Reference` of the crystal cluster ``x_true [N, 3]`` (bonds and automorphisms from its geometry)."""
    x = _numpy(x_true)
    numbers = _numpy(numbers, np.int64)
    mol_index = _numpy(mol_index, np.int64)
    members = [np.flatnonzero(mol_index == m) for m in range(int(mol_index.max()) + 1)]
    return Reference(
        x=x,
        numbers=numbers,
        mol_index=mol_index,
        members=members,
        perms=cluster_automorphisms(numbers, mol_index, x),
        bonds=cluster_bonds(numbers, mol_index, x),
    )


# --- OXtalign packing similarity ----------------------------------------------------------------------------


def packing_similarity(x_pred: np.ndarray | torch.Tensor, reference: Reference) -> dict[str, float]:
    """``matched``, ``rmsd15`` and ``pass_rate`` of OXtalign's comparison of ``x_pred [N, 3]`` with the truth.

    All NaN if OXtalign fails or cannot match the truth to itself (see :meth:`Reference.oxtal`), or if ``x_pred``
    is not finite.
    """
    failed = {"matched": math.nan, "rmsd15": math.nan, "pass_rate": math.nan}
    try:
        x_pred = _numpy(x_pred)
        truth = reference.oxtal()
        if truth is None or not np.isfinite(x_pred).all():
            return failed
        predicted = reference.structure(x_pred, "prediction")
        result = oxtalign.compare(truth, predicted, n=SHELL_SIZE, allow_inversion=ALLOW_INVERSION)
    except Exception:  # noqa: BLE001 - one cluster OXtalign cannot read must not abort a whole table
        return failed
    matched = int(result.n_matched)
    return {
        "matched": float(matched),
        "rmsd15": float(result.rmsd_n) if matched else math.nan,
        "pass_rate": 100.0 if matched >= PASS_MATCHED else 0.0,
    }


# --- permutation-invariant RMSD -----------------------------------------------------------------------------


def kabsch(mobile: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The proper rotation ``R`` and translation ``t`` minimising ``|mobile @ R.T + t - target|``, both ``[n, 3]``
    (`so3.kabsch` on one body)."""
    mobile_mean = mobile.mean(axis=0)
    one_body = torch.zeros(len(mobile), dtype=torch.long)
    rotation, centre = so3.kabsch(torch.from_numpy(mobile - mobile_mean), torch.from_numpy(target), one_body, 1)
    rotation = rotation[0].numpy()
    return rotation, centre[0].numpy() - mobile_mean @ rotation.T


def _principal_rotations(mobile: np.ndarray, target: np.ndarray) -> list[np.ndarray]:
    """The four proper rotations that map ``mobile``'s principal axes onto ``target``'s (alignment seeds)."""

    def axes(x: np.ndarray) -> np.ndarray:
        centred = x - x.mean(axis=0)
        return np.linalg.eigh(centred.T @ centred)[1]

    a, b = axes(mobile), axes(target)
    rotations = []
    for signs in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)):
        rotation = b @ np.diag(signs) @ a.T
        if np.linalg.det(rotation) < 0:
            rotation = b @ np.diag(np.negative(signs)) @ a.T
        rotations.append(rotation)
    return rotations


def _assign(pred_c: np.ndarray, true_c: np.ndarray, incompatible: np.ndarray, rotation, shift) -> np.ndarray:
    """``order[j]``: the predicted molecule assigned to true molecule ``j`` (Hungarian, squared distances)."""
    moved = pred_c @ rotation.T + shift
    cost = ((true_c[:, None, :] - moved[None, :, :]) ** 2).sum(axis=-1) + incompatible
    return linear_sum_assignment(cost)[1]


def match_molecules(pred_c: np.ndarray, true_c: np.ndarray, incompatible: np.ndarray) -> list[np.ndarray]:
    """Candidate molecule assignments from alternating Kabsch fits and Hungarian assignments of centroids.

    ``pred_c``, ``true_c`` ``[M, 3]``; ``incompatible [M, M]`` is added to the cost (true ``j``, predicted
    ``k``) to forbid pairing different molecules. The alternation starts from index order and, so that a
    prediction with its molecules relabelled is matched too, from the four principal-axis superpositions; the
    distinct converged assignments are returned, index order's first.
    """
    starts = [np.arange(len(true_c))]
    for rotation in _principal_rotations(pred_c, true_c):
        shift = true_c.mean(axis=0) - pred_c.mean(axis=0) @ rotation.T
        starts.append(_assign(pred_c, true_c, incompatible, rotation, shift))
    found: list[np.ndarray] = []
    for order in starts:
        for _ in range(_ICP_ITERATIONS):
            rotation, shift = kabsch(pred_c[order], true_c)
            new = _assign(pred_c, true_c, incompatible, rotation, shift)
            if np.array_equal(new, order):
                break
            order = new
        if not any(np.array_equal(order, seen) for seen in found):
            found.append(order)
    return found


def _symmetry_groups(reference: Reference) -> list[np.ndarray]:
    """Molecules sharing one automorphism array (the same molecule), so they can be relabelled together."""
    groups: dict[int, list[int]] = {}
    for m, perms in enumerate(reference.perms):
        groups.setdefault(id(perms), []).append(m)
    return [np.array(group) for group in groups.values()]


def _relabelled_truth(moved: np.ndarray, reference: Reference, starts: np.ndarray) -> np.ndarray:
    """The truth with each molecule's atoms relabelled to its closest automorphic copy of ``moved [N, 3]``.

    ``moved`` holds the predicted molecules in truth-molecule order; ``starts[m]`` is where molecule ``m``
    begins in it.
    """
    target = np.empty_like(reference.x)
    for group in _symmetry_groups(reference):
        size = len(reference.members[group[0]])
        rows = starts[group][:, None] + np.arange(size)  # [G, n] positions in the concatenation
        truth = reference.x[np.stack([reference.members[m] for m in group])]  # [G, n, 3]
        target[rows] = closest_automorphic(moved[rows], truth, reference.perms[group[0]])
    return target


def _centroids(x: np.ndarray, reference: Reference) -> np.ndarray:
    """Molecule centroids ``[M, 3]`` of positions ``x [N, 3]`` of the reference's atoms."""
    mol_index = torch.from_numpy(reference.mol_index)
    return molecule_centroids(torch.from_numpy(x), mol_index, len(reference.members)).numpy()


def _matched_rmsd(x_pred: np.ndarray, reference: Reference, order: np.ndarray) -> float:
    """All-atom RMSD for one molecule assignment, with every molecule's atoms symmetry-corrected.

    Starting from the superposition of the molecule centroids, each true molecule is relabelled to its closest
    automorphic copy and the prediction is refitted on all atoms, until the relabelling stops changing (each
    step can only lower the RMSD).
    """
    sizes = np.array([len(atoms) for atoms in reference.members])
    starts = np.cumsum(sizes) - sizes
    mobile = np.concatenate([x_pred[reference.members[k]] for k in order])
    rotation, shift = kabsch(_centroids(x_pred, reference)[order], _centroids(reference.x, reference))
    target = None
    for _ in range(_ICP_ITERATIONS):
        new_target = _relabelled_truth(mobile @ rotation.T + shift, reference, starts)
        if target is not None and np.array_equal(new_target, target):
            break
        target = new_target
        rotation, shift = kabsch(mobile, target)
    return float(np.sqrt(((mobile @ rotation.T + shift - target) ** 2).sum(axis=1).mean()))


def _incompatible(reference: Reference) -> np.ndarray:
    """``[M, M]`` cost penalty: molecules whose element sequences differ cannot be matched."""
    sequences = [reference.numbers[atoms].tobytes() for atoms in reference.members]
    same = np.array([[a == b for b in sequences] for a in sequences])
    return np.where(same, 0.0, _INCOMPATIBLE)


def cluster_rmsd(x_pred: np.ndarray | torch.Tensor, reference: Reference) -> float:
    """All-atom RMSD (Å) of ``x_pred [N, 3]`` to the truth after optimal matching of molecules and atoms.

    Molecules are paired by the Hungarian algorithm on centroids after a Kabsch fit of the prediction onto the
    truth (alternated to convergence, see :func:`match_molecules`); the atoms of each pair are relabelled
    within the molecule's automorphisms (:func:`~crystalflow_core.data.symmetry.closest_automorphic`); a final
    Kabsch fit on all atoms gives the RMSD. Rotations are proper (no reflection). The lowest RMSD over the
    candidate assignments is returned, so relabelling molecules or symmetric atoms never changes the value.
    NaN for a prediction with non-finite coordinates.
    """
    x_pred = _numpy(x_pred)
    if x_pred.shape != reference.x.shape:
        raise ValueError(f"x_pred {x_pred.shape} and the truth {reference.x.shape} differ in shape")
    if not np.isfinite(x_pred).all():
        return math.nan
    true_c = _centroids(reference.x, reference)
    orders = match_molecules(_centroids(x_pred, reference), true_c, _incompatible(reference))
    return min(_matched_rmsd(x_pred, reference, order) for order in orders)


# --- molecular integrity ------------------------------------------------------------------------------------


def _distance_matrix(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)


def _least_distortion(d_pred: np.ndarray, d_true: np.ndarray, perms: np.ndarray, rows: int = 8) -> float:
    """``min_p max_ij |d_pred[i, j] - d_true[p[i], p[j]]|`` over automorphisms ``perms [P, n]`` (exact).

    The identity's value bounds the minimum; the other permutations are scanned a few rows at a time, rows with
    the identity's largest deviations first, and dropped as soon as their running maximum reaches that bound,
    which keeps large molecules cheap.
    """
    deviation = np.abs(d_pred - d_true)
    best = float(deviation.max(initial=0.0))
    alive = perms[1:]
    running = np.zeros(len(alive))
    row_order = np.argsort(-deviation.max(axis=1, initial=0.0))  # likely decisive rows first
    for start in range(0, len(d_pred), rows):
        if not len(alive):
            break
        block = row_order[start : start + rows]
        permuted = d_true[alive[:, block, None], alive[:, None, :]]
        running = np.maximum(running, np.abs(permuted - d_pred[block]).max(axis=(1, 2)))
        keep = running < best
        alive, running = alive[keep], running[keep]
    return min(best, float(running.min(initial=math.inf)))


def integrity(x_pred: np.ndarray | torch.Tensor, reference: Reference) -> float:
    """Largest absolute change (Å) of any intramolecular interatomic distance from the truth to ``x_pred``.

    Molecule ``m`` of the prediction is compared with molecule ``m`` of the truth (all molecules of a cluster
    share one geometry), under the automorphism of the molecule that distorts it least, so relabelled
    symmetric atoms do not count as distortion. 0 for any rigid motion of each molecule; NaN for non-finite
    coordinates.
    """
    x_pred = _numpy(x_pred)
    if not np.isfinite(x_pred).all():
        return math.nan
    worst = 0.0
    for atoms, perms in zip(reference.members, reference.perms, strict=True):
        d_pred, d_true = _distance_matrix(x_pred[atoms]), _distance_matrix(reference.x[atoms])
        worst = max(worst, _least_distortion(d_pred, d_true, perms))
    return worst


def packing_metrics(x_pred: np.ndarray | torch.Tensor, reference: Reference) -> dict[str, float]:
    """The :data:`PACKING_KEYS` of one predicted cluster ``x_pred [N, 3]`` against a :class:`Reference`."""
    return {
        **packing_similarity(x_pred, reference),
        "rmsd": cluster_rmsd(x_pred, reference),
        "integrity": integrity(x_pred, reference),
    }
