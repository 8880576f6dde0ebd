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
from .metrics import COVALENT_RADII
from .nn.painn import radius_edges
from .settings import RELAX_ITERATIONS as DEFAULT_ITERATIONS

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
#: Outward step (Å) of a molecule still in a clash after the steric wall, and the most steps.
SEPARATION_STEP = 0.5
_MAX_SEPARATION_STEPS = 200


def separate_clashing(x: Tensor, numbers: Tensor, mol_index: Tensor) -> Tensor:
    """``x [N, 3]`` with molecules that still clash stepped outward, one :data:`SEPARATION_STEP` at a time, until
    none clash: of each clashing pair of molecules the one farther from the cluster's centre moves, along the
    line from that centre through its centroid; orientations are kept.

    Molecules threaded through one another cannot be untangled by a local minimisation; this moves only them,
    by as little as frees them, and the MMFF94 stage draws them back into contact.
    """
    n_molecules = int(mol_index.max()) + 1
    x = x.clone()
    centre = molecule_centroids(x, mol_index, n_molecules).mean(dim=0)
    radius = COVALENT_RADII.to(x.device)[numbers]
    touching = radius[:, None] + radius[None, :]
    for _ in range(_MAX_SEPARATION_STEPS):
        clash = (torch.cdist(x, x) < touching) & (mol_index[:, None] != mol_index[None, :])
        if not bool(clash.any()):
            break
        i, j = clash.nonzero(as_tuple=True)
        offset = molecule_centroids(x, mol_index, n_molecules) - centre
        reach = offset.norm(dim=1)
        a, b = mol_index[i], mol_index[j]
        movers = torch.unique(torch.where(reach[a] >= reach[b], a, b))
        direction = offset[movers] / reach[movers, None].clamp_min(1e-9)
        direction[reach[movers] < 1e-9] = torch.tensor([1.0, 0.0, 0.0], dtype=x.dtype, device=x.device)
        shift = torch.zeros(n_molecules, 3, dtype=x.dtype, device=x.device)
        shift[movers] = SEPARATION_STEP * direction
        x = x + shift[mol_index]
    return x


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
    first (:func:`relax_rigid`), then molecules that still clash are stepped apart (:func:`separate_clashing`);
    up to ``iterations`` L-BFGS iterations then minimise the MMFF94 interaction energy plus :data:`WALL_WEIGHT`
    times the wall, over every pair of atoms in different molecules (a pair list with a cutoff would let L-BFGS
    carry a molecule that leaves it away for nothing), and a last pass of the wall alone, then of
    :func:`separate_clashing`, clears anything left inside a wall, so that no clash remains. Without
    ``terms`` (a molecule MMFF94 cannot type) only the wall and the separation act. Molecules stay exact to round-off.
    """
    numbers = torch.as_tensor(numbers, device=x.device)
    mol_index = torch.as_tensor(mol_index, device=x.device)
    batch = torch.zeros(len(x), dtype=torch.long, device=x.device)
    if terms is None:
        return separate_clashing(relax_rigid(x, numbers, mol_index, batch, margin=margin), numbers, mol_index)
    unclashed = relax_rigid(x.detach().to(torch.float64), numbers, mol_index, batch, margin=margin)
    pose = _RigidPose(separate_clashing(unclashed, numbers, mol_index), mol_index)
    mmff = ClusterEnergy(terms, mol_index)
    radius = COVALENT_RADII.to(x.device)[numbers]
    wall = margin * (radius[:, None] + radius[None, :])

    def energy(y: Tensor) -> Tensor:
        overlap = torch.relu(wall - pair_distances(y)) * mmff.between
        return mmff(y) + WALL_WEIGHT * 0.5 * (overlap**2).sum()

    pose.minimise(energy, iterations)
    with torch.no_grad():
        relaxed = pose()
    polished = relax_rigid(relaxed, numbers, mol_index, batch, margin=margin)
    return separate_clashing(polished, numbers, mol_index).to(x.dtype)
