"""Rigid-body flow on SE(3)^M: every molecule keeps its shape, its centroid moves on a straight line and its
orientation on the SO(3) geodesic from a random start to its crystal pose.

Why the start orientation is drawn afresh: ``x_w`` draws every molecule's orientation uniformly from SO(3) and
keeps only its centroid (within 1 Å per axis) from the crystal, so its orientations are one sample of the
uniform prior and carry no information. The path therefore starts at the ``x_w`` centroids with uniformly
random orientations (a new draw at every training step and for every sample: unlimited starts per crystal),
and the network is conditioned on the ``x_w`` centroids only, never on the ``x_w`` orientations. Were it shown
both ``x_w`` and ``x_t``, then for any t > 0 the pair would reveal the geodesic, and hence the crystal pose,
exactly; the network would learn to extrapolate, and only its blurred guess at t = 0 would matter when sampling.

The network predicts the crystal: its per-atom output o is read as x̂_s = x_t + o, and the loss is the mean
squared error of x̂_s against the crystal pose, relabelled by the molecular automorphism closest to the
prediction (a ring flipped by 180° is the same crystal). The sampler projects x̂_s on each molecule's rigid
motions (proper Kabsch fit of its current pose), and steps along the geodesic towards that pose:

    ω = log(R̂ R_t^T) / (1 − t),   v = (ĉ − c_t) / (1 − t),   R ← exp([ω]× dt) R,   c ← c + v dt,

so intramolecular distances stay exact at every step and the last step lands on the predicted pose.

Where the training times fall. At t = 0 the start says nothing about the crystal, and the network must read
every orientation off the centroids; for t > 0 the pose x_t already lies part of the way along the geodesic
and "the crystal is near x_t" lowers the loss without any packing knowledge. Drawn uniformly, the easy late
times take the network's capacity and the one prediction that decides the sample, the first, stays a random
orientation. A fraction ``start_fraction`` of the training clusters is therefore drawn at t = 0 exactly.

Equivariance of the angular velocity. PaiNN's output is an O(3)-equivariant polar vector field: rotating or
reflecting the input by Q ∈ O(3) maps x̂_s to Q x̂_s (about the same origin). The proper Kabsch fit of the
body Q r onto Q x̂_s is then Q R̂ Qᵀ (a proper rotation for det Q = ±1), so ω = log(R̂ R_tᵀ) / (1 − t) maps to
log(Q ΔR Qᵀ) = det(Q) · Q ω: under rotations ω turns with the frame, and under a reflection it picks up the
extra sign of an axial (pseudo-)vector, like an angular momentum r × p. `tests/test_rigid.py` checks both.

Inversion. A proper motion cannot undo an inversion: when ``x_w`` was curated with inversion noise, a
molecule whose start is the mirror image of its crystal copy (and is not itself superimposable on its mirror
image) cannot reach the crystal. The rigid objective keeps each molecule's handedness as ``x_w`` gives it and
targets the closest proper pose (the Kabsch fit of the start onto the crystal copy); scores on inverted data
therefore include that unreachable part, which Table 2 shows as it is.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import so3
from ..data.noise import molecule_centroids, random_rotations
from ..data.symmetry import closest_automorphic
from .base import Objective, VelocityModel


def random_orientations(x_w: Tensor, molecule: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``x_w [N, 3]`` with every molecule rotated about its centroid by a uniform random rotation."""
    n_molecules = int(molecule.max()) + 1
    rotation = random_rotations(n_molecules, 180.0, generator=_cpu(generator)).to(x_w)
    centre = molecule_centroids(x_w, molecule, n_molecules)
    return so3.place(centre, rotation, x_w - centre[molecule], molecule)


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    """``random_rotations`` draws on the CPU; a CUDA generator is reseeded into a CPU one."""
    if generator is None or generator.device.type == "cpu":
        return generator
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator, device="cuda")))


def closest_relabelling(
    reference: Tensor, target: Tensor, batch_ptr: list[int], molecule_counts: list[int], automorphisms: list[Tensor]
) -> Tensor:
    """``target [N, 3]`` with each molecule's atoms relabelled by the automorphism that brings it closest to
    ``reference [N, 3]`` (least squared distance over the molecule's atoms).

    Graph g spans atoms ``batch_ptr[g]:batch_ptr[g + 1]``, holds ``molecule_counts[g]`` molecules of equal size
    stored one after another, and ``automorphisms[g] [P, n]`` are permutations of one molecule's atoms.
    """
    pieces = []
    for g, perms in enumerate(automorphisms):
        start, stop, n_mol = batch_ptr[g], batch_ptr[g + 1], molecule_counts[g]
        if perms.shape[0] == 1:
            pieces.append(target[start:stop])
            continue
        shape = (n_mol, (stop - start) // n_mol, 3)
        relabelled = closest_automorphic(reference[start:stop].reshape(shape), target[start:stop].reshape(shape), perms)
        pieces.append(relabelled.reshape(-1, 3))
    return torch.cat(pieces)


class RigidPath(Objective):
    """Flow matching of 17 rigid bodies on SE(3): straight centroids, SO(3)-geodesic orientations.

    ``default_steps`` geodesic Euler steps of the sampler (``sample_rigid``); one step returns the rigid
    projection of the network's crystal from the random start.
    """

    name = "rigid"
    default_sampler = "rigid"
    default_steps = 10
    uses_automorphisms = True
    network_options = {"molecular_frame": True, "axis_readout": True}
    training_defaults = {"epochs": 60, "molecule_cutoff": 20.0}

    def __init__(self, start_fraction: float = 0.5) -> None:
        if not 0.0 <= start_fraction <= 1.0:
            raise ValueError(f"start_fraction must lie in [0, 1], got {start_fraction}")
        self.start_fraction = start_fraction

    def time_quantile(self, u: Tensor) -> Tensor:
        """0 for the first ``start_fraction`` of quantiles, then uniform on [0, 1)."""
        f = self.start_fraction
        later = (u - f) / (1.0 - f) if f < 1.0 else torch.zeros_like(u)
        return torch.where(u < f, torch.zeros_like(u), later)

    def prior(self, x_w: Tensor, molecule: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Start ``[N, 3]``: the ``x_w`` molecules, each turned to a uniformly random orientation."""
        return random_orientations(x_w, molecule, generator)

    def condition(self, x: Tensor, x_w: Tensor, molecule: Tensor) -> Tensor:
        """What the network is given in place of ``x_w``: ``x`` shifted by each molecule's centroid offset
        c_w − c_t, so the network's displacement input x_w − x_t is that offset (the ``x_w`` orientations, which
        are noise, are hidden)."""
        n_molecules = int(molecule.max()) + 1
        offset = molecule_centroids(x_w, molecule, n_molecules) - molecule_centroids(x, molecule, n_molecules)
        return x + offset[molecule]

    def predict_crystal(
        self, model: VelocityModel, numbers: Tensor, x: Tensor, x_w: Tensor, t: Tensor, batch: Tensor, molecule: Tensor
    ) -> Tensor:
        """The network's crystal x̂_s = x + o `[N, 3]` at the current poses `x [N, 3]` and per-graph times `t [B]`.

        The network runs in the dtype of `x_w` (its own); `x` and `t` may be float64 poses of the sampler.
        """
        x_in, t_in = x.to(x_w.dtype), t.to(x_w.dtype)
        return x_in + model(numbers, x_in, self.condition(x_in, x_w, molecule), t_in, batch, molecule=molecule)

    def velocities(
        self,
        model: VelocityModel,
        numbers: Tensor,
        x: Tensor,
        x_w: Tensor,
        t: Tensor,
        batch: Tensor,
        molecule: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Translation and angular velocity per molecule, ``(v [M, 3], ω [M, 3])``, at poses ``x [N, 3]``, t < 1.

        The network's crystal is projected on the molecule's rigid motions (proper Kabsch fit of its current
        atoms, rotation R̂ relative to now, centre ĉ), and the velocities follow the geodesic that reaches that
        pose at t = 1: v = (ĉ − c_t) / (1 − t), ω = log(R̂) / (1 − t) (ω in the space frame, rad per unit t).
        """
        n_molecules = int(molecule.max()) + 1
        crystal = self.predict_crystal(model, numbers, x, x_w, t, batch, molecule).to(x.dtype)
        centre = molecule_centroids(x, molecule, n_molecules)
        turn, target_centre = so3.kabsch(x - centre[molecule], crystal, molecule, n_molecules)
        remaining = 1.0 - molecule_centroids(t[batch][:, None].to(x.dtype), molecule, n_molecules)
        return (target_centre - centre) / remaining, so3.log_map(turn) / remaining

    def interpolate(self, start: Tensor, target: Tensor, t_atom: Tensor, molecule: Tensor) -> tuple[Tensor, Tensor]:
        """Poses on the path at per-atom times ``t_atom [N]``: ``(x_t [N, 3], end [N, 3])``.

        ``end`` is the proper rigid pose of the start's molecules closest to ``target`` (the crystal itself
        unless an inversion made it unreachable); x_t lies on the geodesic from ``start`` to ``end``.
        """
        n_molecules = int(molecule.max()) + 1
        centre_0 = molecule_centroids(start, molecule, n_molecules)
        body = start - centre_0[molecule]
        rotation, centre_1 = so3.kabsch(body, target, molecule, n_molecules)
        t_mol = molecule_centroids(t_atom[:, None], molecule, n_molecules)  # [M, 1], one time per molecule
        rotation_t = so3.exp_map(t_mol * so3.log_map(rotation))
        centre_t = (1.0 - t_mol) * centre_0 + t_mol * centre_1
        return so3.place(centre_t, rotation_t, body, molecule), so3.place(centre_1, rotation, body, molecule)

    def loss(
        self,
        model: VelocityModel,
        numbers: Tensor,
        x_w: Tensor,
        x_s: Tensor,
        batch: Tensor,
        generator: torch.Generator | None = None,
        molecule: Tensor | None = None,
        automorphisms: list[Tensor] | None = None,
        t: Tensor | None = None,
    ) -> Tensor:
        """Mean squared error (Å² per coordinate) of x̂_s at a random time on the path from a random start.

        The crystal copy of each molecule is relabelled twice by its automorphisms: towards the start before the
        path is drawn (the shortest geodesic among equivalent poses), and towards the prediction for the loss.
        """
        if molecule is None:
            raise ValueError("the rigid objective needs molecule ids")
        n_graphs = int(batch.max()) + 1
        n_molecules = int(molecule.max()) + 1
        start = self.prior(x_w, molecule, generator)
        if automorphisms is not None:
            ptr, counts = _graph_layout(batch, molecule, n_graphs)
            start_centre = molecule_centroids(start, molecule, n_molecules)[molecule]
            crystal_centre = molecule_centroids(x_s, molecule, n_molecules)[molecule]
            towards_start = closest_relabelling(start - start_centre, x_s - crystal_centre, ptr, counts, automorphisms)
            x_s = towards_start + crystal_centre
        if t is None:  # the distribution of time_quantile, drawn as the training runs always drew it
            t = torch.rand(n_graphs, generator=generator, device=x_w.device, dtype=x_w.dtype)
            at_start = (
                torch.rand(n_graphs, generator=generator, device=x_w.device, dtype=x_w.dtype) < self.start_fraction
            )
            t = torch.where(at_start, torch.zeros_like(t), t)
        t = t.to(device=x_w.device, dtype=x_w.dtype)
        x_t, end = self.interpolate(start, x_s, t[batch], molecule)
        prediction = self.predict_crystal(model, numbers, x_t, x_w, t, batch, molecule)
        if automorphisms is not None:
            end = closest_relabelling(prediction.detach(), end, ptr, counts, automorphisms)
        return ((prediction - end) ** 2).mean()


def _graph_layout(batch: Tensor, molecule: Tensor, n_graphs: int) -> tuple[list[int], list[int]]:
    """Atom offsets ``[B + 1]`` of the graphs of a sorted batch and their molecule counts ``[B]``."""
    atoms = torch.bincount(batch, minlength=n_graphs)
    molecule_graph = torch.zeros(int(molecule.max()) + 1, dtype=torch.long, device=batch.device)
    molecule_graph[molecule] = batch
    return [0, *torch.cumsum(atoms, 0).tolist()], torch.bincount(molecule_graph, minlength=n_graphs).tolist()
