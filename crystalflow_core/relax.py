"""Rigid-body relaxation: move whole molecules (one translation and one rotation each) to lower an
intermolecular energy, so molecules stay exact while contacts are repaired.

The energy is a soft steric wall: every pair of atoms in different molecules closer than ``margin`` times the
sum of their covalent radii (``metrics.COVALENT_RADII``, the radii that define a clash) costs the squared
overlap, and nothing else does. Pairs that do not clash feel no force, so the relaxation removes clashes with
the least motion and leaves every other contact, hydrogen bonds included, as it was. Poses are parameterised
per molecule as ``x = c + τ + exp([φ]×) (x₀ − c)`` and minimised by L-BFGS on the whole batch at once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import so3
from .data.noise import molecule_centroids
from .metrics import COVALENT_RADII
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
    n_molecules = int(molecule.max()) + 1
    x64 = x.detach().to(torch.float64)
    centre = molecule_centroids(x64, molecule, n_molecules)
    body = x64 - centre[molecule]
    shift = torch.zeros(n_molecules, 3, dtype=torch.float64, device=x.device, requires_grad=True)
    turn = torch.zeros(n_molecules, 3, dtype=torch.float64, device=x.device, requires_grad=True)
    reach = margin * 2.0 * float(COVALENT_RADII[numbers].max()) + _SKIN

    def pose() -> Tensor:
        return so3.place(centre + shift, so3.exp_map(turn), body, molecule)

    for _ in range(rounds):
        with torch.no_grad():
            current = pose()
            pairs = contact_pairs(current, molecule, batch, reach)
            if float(steric_energy(current, numbers, pairs, margin)) == 0.0:
                break
        optimizer = torch.optim.LBFGS([shift, turn], max_iter=iterations, line_search_fn="strong_wolfe")

        def closure(pairs: Tensor = pairs, optimizer: torch.optim.LBFGS = optimizer) -> Tensor:
            optimizer.zero_grad()
            energy = steric_energy(pose(), numbers, pairs, margin)
            energy.backward()
            return energy

        optimizer.step(closure)
    with torch.no_grad():
        return pose().to(x.dtype)
