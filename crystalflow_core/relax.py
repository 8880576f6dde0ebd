"""Rigid-body relaxation: move whole molecules (one translation and one rotation each) to lower an
intermolecular energy, so molecules stay exact while contacts are repaired.

Two energies, used in this order by :func:`relax_cluster`:

* a soft steric wall (:func:`relax_rigid`): every pair of atoms in different molecules closer than ``margin``
  times the sum of their covalent radii (``metrics.COVALENT_RADII``, the radii that define a clash) costs the
  squared overlap, and nothing else does. Pairs that do not clash feel no force, so it undoes interpenetration
  with the least motion;
* the MMFF94 intermolecular energy (:mod:`~crystalflow_core.forcefield`), with the wall kept on, which pulls
  molecules into van der Waals contact and hydrogen bonds.

Poses are parameterised per molecule as ``x = c + τ + exp([φ]×) (x₀ − c)`` and minimised by L-BFGS.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import so3
from .data.noise import molecule_centroids
from .forcefield import ClusterEnergy, PairTerms, pair_distances
from .metrics import COVALENT_RADII, intermolecular_clash_rate
from .nn.painn import radius_edges

#: Steric walls sit at this multiple of the covalent-radius sum: a little beyond the clash threshold, so
#: that round-off at the end of the minimisation cannot leave a pair just inside it.
DEFAULT_MARGIN = 1.1
#: Extra reach (Å) of the pair list beyond the widest wall, for the motion of one round.
_SKIN = 1.0


def contact_pairs(x: Tensor, molecule: Tensor, batch: Tensor, reach: float) -> Tensor:
    """Atom pairs ``[2, P]`` (i < j) of different molecules of one graph closer than ``reach`` Å."""
    i, j = radius_edges(x, batch, reach, num_graphs=int(batch.max()) + 1)
    keep = (i < j) & (molecule[i] != molecule[j])
    return torch.stack([i[keep], j[keep]])


def steric_energy(x: Tensor, numbers: Tensor, pairs: Tensor, margin: float = DEFAULT_MARGIN) -> Tensor:
    """Steric energy (Å²) of the atom ``pairs [2, P]`` of ``x [N, 3]``: Σ relu(margin·(r_i + r_j) − d_ij)²."""
    radius = COVALENT_RADII.to(device=x.device, dtype=x.dtype)[numbers]
    i, j = pairs
    distance = torch.sqrt(((x[i] - x[j]) ** 2).sum(dim=-1) + 1e-12)
    return 0.5 * (torch.relu(margin * (radius[i] + radius[j]) - distance) ** 2).sum()


def relax_rigid(
    x: Tensor,
    numbers: Tensor,
    molecule: Tensor,
    batch: Tensor,
    rounds: int = 10,
    iterations: int = 10,
    margin: float = DEFAULT_MARGIN,
) -> Tensor:
    """``x [N, 3]`` after rigid-body steric relaxation: up to ``rounds`` of ``iterations`` L-BFGS iterations.

    Every molecule keeps its shape to round-off (it is placed by a rotation and a translation of its input
    pose). Candidate pairs are listed anew each round within the wall distance plus a skin, so the pair list
    stays short; the run stops as soon as no pair is inside a wall. Graphs do not interact.
    """
    reach = margin * 2.0 * float(COVALENT_RADII[numbers].max()) + _SKIN
    pose = _RigidPose(x, molecule)
    for _ in range(rounds):
        with torch.no_grad():
            current = pose()
            pairs = contact_pairs(current, molecule, batch, reach)
            if float(steric_energy(current, numbers, pairs, margin)) == 0.0:
                break
        pose.minimise(lambda y, pairs=pairs: steric_energy(y, numbers, pairs, margin), iterations)
    with torch.no_grad():
        return pose().to(x.dtype)


class _RigidPose:
    """Poses of the molecules of ``x [N, 3]`` as one translation and one rotation vector each (float64)."""

    def __init__(self, x: Tensor, molecule: Tensor) -> None:
        n_molecules = int(molecule.max()) + 1
        x64 = x.detach().to(torch.float64)
        self.molecule = molecule
        self.centre = molecule_centroids(x64, molecule, n_molecules)
        self.body = x64 - self.centre[molecule]
        self.shift = torch.zeros(n_molecules, 3, dtype=torch.float64, device=x.device, requires_grad=True)
        self.turn = torch.zeros(n_molecules, 3, dtype=torch.float64, device=x.device, requires_grad=True)

    def __call__(self) -> Tensor:
        return so3.place(self.centre + self.shift, so3.exp_map(self.turn), self.body, self.molecule)

    def minimise(self, energy: Callable[[Tensor], Tensor], iterations: int) -> None:
        """Up to ``iterations`` L-BFGS iterations (strong Wolfe line search) of ``energy(positions)``."""
        optimizer = torch.optim.LBFGS([self.shift, self.turn], max_iter=iterations, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            value = energy(self())
            value.backward()
            return value

        optimizer.step(closure)


#: Weight (kcal/mol per Å²) of the steric wall beside the MMFF94 energy: large enough that no minimum keeps a
#: clash, small enough not to stiffen the search where no pair is near a wall.
WALL_WEIGHT = 100.0
#: L-BFGS iterations of the MMFF94 stage.
DEFAULT_ITERATIONS = 300
#: Largest centroid scale factor tried, and the bisection steps that find the smallest clash-free one.
MAX_EXPANSION = 4.0
_BISECTIONS = 10


def expand_until_clear(x: Tensor, numbers: Tensor, mol_index: Tensor) -> Tensor:
    """``x [N, 3]`` with molecule centroids scaled about the cluster centroid by the smallest factor ≥ 1 that
    leaves no intermolecular clash (found by bisection up to :data:`MAX_EXPANSION`); orientations are kept.

    Molecules threaded through one another cannot be untangled by a local minimisation. Scaled just apart, the
    cluster keeps its arrangement, the closest molecules touch, and the MMFF94 stage starts from there.
    """
    n_molecules = int(mol_index.max()) + 1
    centre = molecule_centroids(x, mol_index, n_molecules)
    offset = centre - centre.mean(dim=0)

    def scaled(factor: float) -> Tensor:
        return x + ((factor - 1.0) * offset)[mol_index]

    def clear(factor: float) -> bool:
        return intermolecular_clash_rate(scaled(factor), numbers, mol_index) == 0.0

    if clear(1.0) or not clear(MAX_EXPANSION):
        return scaled(1.0 if clear(1.0) else MAX_EXPANSION)
    low, high = 1.0, MAX_EXPANSION
    for _ in range(_BISECTIONS):
        middle = 0.5 * (low + high)
        low, high = (low, middle) if clear(middle) else (middle, high)
    return scaled(high)


def relax_cluster(
    x: Tensor,
    numbers: Tensor,
    mol_index: Tensor,
    terms: PairTerms | None,
    iterations: int = DEFAULT_ITERATIONS,
    margin: float = DEFAULT_MARGIN,
) -> Tensor:
    """One cluster ``x [N, 3]`` relaxed as rigid molecules.

    With ``terms`` (the molecule's MMFF94 :class:`~crystalflow_core.forcefield.PairTerms`): the steric wall
    first (:func:`relax_rigid`), then, if molecules still clash, the cluster is expanded until none do
    (:func:`expand_until_clear`); up to ``iterations`` L-BFGS iterations then minimise the MMFF94 interaction
    energy plus :data:`WALL_WEIGHT` times the wall, and a last pass of the wall clears any pair that came
    close from beyond the pair list. Every pair of atoms in different molecules counts: a pair list with a
    cutoff lets L-BFGS carry a molecule that leaves it away for nothing. Without ``terms`` (a
    molecule MMFF94 cannot type) only the wall acts (:func:`relax_rigid`). Molecules stay exact to round-off.
    """
    numbers = torch.as_tensor(numbers, device=x.device)
    mol_index = torch.as_tensor(mol_index, device=x.device)
    batch = torch.zeros(len(x), dtype=torch.long, device=x.device)
    if terms is None:
        return relax_rigid(x, numbers, mol_index, batch, margin=margin)
    unclashed = relax_rigid(x.detach().to(torch.float64), numbers, mol_index, batch, margin=margin)
    pose = _RigidPose(expand_until_clear(unclashed, numbers, mol_index), mol_index)
    mmff = ClusterEnergy(terms, mol_index)
    radius = COVALENT_RADII.to(x.device)[numbers]
    wall = margin * (radius[:, None] + radius[None, :])

    def energy(y: Tensor) -> Tensor:
        overlap = torch.relu(wall - pair_distances(y)) * mmff.between
        return mmff(y) + WALL_WEIGHT * 0.5 * (overlap**2).sum()

    pose.minimise(energy, iterations)
    with torch.no_grad():
        relaxed = pose()
    # A pair that was beyond the list's reach when it was built may have come too close since.
    return relax_rigid(relaxed, numbers, mol_index, batch, margin=margin).to(x.dtype)
