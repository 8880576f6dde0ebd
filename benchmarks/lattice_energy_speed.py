"""Speed of the lattice energy's pair sum: only the pairs that add anything, against every pair of the neighbours.

``LatticeEnergy.pair_sum`` evaluates only its ``contributing_pairs``: the atom pairs within the cutoff and those of
molecules whose centroid lies within it; every other pair of the neighbour molecules is switched or cut to exactly
zero. This times, in one run, the energy and its gradient with that pair sum and with the dense one (every pair of
the neighbour molecules, the reference below) at the minima of a few random starts (where a minimisation spends
most of its steps) of molecules of the validation split, and prints the ratio and the largest energy difference at
the same geometry.

    python3 benchmarks/lattice_energy_speed.py --data data_out/default [--molecules 8] [--starts 3]
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from crystalflow_core.csp.candidates import generate_candidates
from crystalflow_core.csp.lattice_energy import LatticeEnergy, buffered_vdw, switch
from crystalflow_core.csp.minimize import minimize_crystal
from crystalflow_core.data import codcluster17
from crystalflow_core.data.dataset import split_ids
from crystalflow_core.forcefield import CHARGE_BUFFER, mmff_terms
from crystalflow_core.molecule_input import MoleculeInputError, from_positions


class DenseLatticeEnergy(LatticeEnergy):
    """The reference: every atom pair of every neighbour molecule, ``[M, n, n]``."""

    def pair_sum(self, lattice: Tensor, images: Tensor) -> Tensor:
        others = self.neighbours(lattice, images)
        r = torch.linalg.vector_norm(images[0][None, :, None, :] - others[:, None, :, :], dim=-1)
        vdw = buffered_vdw(r, self.r_star.to(r.dtype), self.epsilon.to(r.dtype))
        if self.dispersion is not None:
            vdw = vdw + self.dispersion_scale * self.dispersion.energy(r)
        vdw = vdw * switch(r, self.cutoff, self.switch_width)
        qq = self.qq.to(r.dtype)
        at_cutoff = math.erfc(self.alpha * self.cutoff) / self.cutoff
        ewald = qq * (torch.erfc(self.alpha * r) / r - at_cutoff) * (r < self.cutoff)
        centroid_distance = torch.linalg.vector_norm(others.mean(dim=1) - images[0].mean(dim=0), dim=-1)
        weight = switch(centroid_distance, self.cutoff, self.switch_width)[:, None, None]
        buffer = qq * (1.0 / (r + CHARGE_BUFFER) - 1.0 / r) * weight
        return 0.5 * (vdw + ewald + buffer).sum()


def _evaluation_seconds(energy: LatticeEnergy, lattice: Tensor, molecule: Tensor, repeats: int) -> float:
    """Seconds per energy and gradient (by autograd, as the minimiser asks for them) at one geometry."""
    started = time.perf_counter()
    for _ in range(repeats):
        cell, atoms = lattice.clone().requires_grad_(), molecule.clone().requires_grad_()
        torch.autograd.grad(energy(cell, atoms), (cell, atoms))
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--molecules", type=int, default=8)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ids = split_ids(codcluster17.list_cluster_ids(args.data), seed=0)["val"]
    print(f"{platform.node()} ({platform.machine()}), torch {torch.__version__}, one thread")
    print("| molecule | atoms | pairs kept % | sparse ms | dense ms | dense / sparse | max |ΔE| kcal/mol |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for cluster_id in ids:
        if len(ratios) == args.molecules:
            break
        cluster = codcluster17.read_cluster(args.data, cluster_id)
        central = np.asarray(cluster.mol_index) == 0
        try:
            molecule = from_positions(np.asarray(cluster.numbers)[central], cluster.x_w[central], cluster_id)
        except MoleculeInputError:
            continue
        terms = mmff_terms(molecule)
        seconds, worst, kept = np.zeros(2), 0.0, []
        for candidate in generate_candidates(molecule, args.starts, (14, 2), seed=0):
            crystal = candidate.crystal
            sparse, dense = LatticeEnergy(terms, crystal), DenseLatticeEnergy(terms, crystal)
            relaxed = minimize_crystal(crystal, sparse)
            lattice, reference = torch.as_tensor(relaxed.lattice), torch.as_tensor(relaxed.molecule)
            # the two sums agree at the start (crowded neighbours) and at the minimum (relaxed ones)
            for geometry in (
                crystal.geometry(torch.zeros(crystal.n_parameters, dtype=torch.float64)),
                (lattice, reference),
            ):
                worst = max(worst, abs(float(sparse(*geometry) - dense(*geometry))))
            seconds += [_evaluation_seconds(e, lattice, reference, args.repeats) for e in (sparse, dense)]
            _, pairs = sparse.contributing_pairs(lattice, crystal.images(lattice, reference))
            kept.append(float(pairs.double().mean()))
        ratios.append(seconds[1] / seconds[0])
        print(
            f"| {cluster_id} | {molecule.GetNumAtoms()} | {100 * np.mean(kept):.0f} | "
            f"{1e3 * seconds[0] / args.starts:.1f} | {1e3 * seconds[1] / args.starts:.1f} | {ratios[-1]:.2f} | "
            f"{worst:.1e} |"
        )
    print(f"\ndense / sparse, geometric mean over {len(ratios)} molecules: {np.exp(np.mean(np.log(ratios))):.2f}")


if __name__ == "__main__":
    main()
