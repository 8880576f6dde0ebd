"""Placing a crystal on its weak cluster: given the *true* crystal, does ``solve`` put every molecule of its cut in
the place of its ``x_w`` molecule?

PM(atom) compares labelled distances, so a right crystal scores well only with each molecule in its own place of
``x_w``, and ``x_w`` tells those places by its noisy centroids and the molecules' handedness alone. For every
training and validation cluster of a curation (never the test split), the true crystal is read again from its
source (with ``--relaxed``, minimised in the lattice energy first, as every crystal the search finds is), turned to
a random frame and placed on ``x_w`` three ways:

- ``pool, cut preferred`` (:func:`~crystalflow_core.csp.cluster_fit.place_cut`, what ``solve`` does): 27 molecules
  superposed on ``x_w``'s centroids by least squares, a molecule beyond the crystal's own 17-molecule cut paired at
  a cost;
- ``cut alone`` (what ``solve`` did at e3fc18c): the crystal's own cut superposed by least squares;
- ``pool, capped`` (how ``solve`` scores a crystal, and how it placed one before e3fc18c): 27 molecules superposed
  with each squared distance capped at 9 sigma², the cut then given the places of the ``x_w`` molecules nearest.

It prints, per way, the share of clusters with every centroid in its place (PM(center) < 0.05 Å), with every atom
in its place (PM(atom) < 0.05 Å; a minimised crystal is strained, so these count exact crystals only), and the mean
PM(atom): what ``solve``'s PM(atom) would be if the search found every crystal.

With ``--solved RUN`` it places, instead, the crystals a ``solve`` run chose (``RUN/CIF``), on any split: the ways
on the same crystals (a diagnosis; nothing is chosen). The crystal is read back from its CIF, whose atom order
can differ from the run's by a symmetry of the molecule's graph; where the molecule is nearly symmetric under it,
its PM(atom) then differs from the run's prediction's (CSD-VEWSIC01 at 40 candidates: 0.12 Å read back, 1.88 Å in
the run, both matching 15 of 15 within 0.09 Å): ``x_w``'s random orientations cannot tell the two apart.

    python3 benchmarks/solve_placement.py --data data_out/default [--relaxed] [--out placement.csv]
    python3 benchmarks/solve_placement.py --data data_out/default --solved runs/solve_default_s0 [--out ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from crystal_search import split_crystals
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation
from tqdm.auto import tqdm

from crystalflow_core.csp import cluster_fit
from crystalflow_core.csp.cluster_fit import POOL_SIZE, fit_cut, forbidden_pairs, place_cut
from crystalflow_core.csp.cluster_lattice import WeakClusterCues, read_weak_cluster
from crystalflow_core.csp.lattice_energy import LatticeEnergy
from crystalflow_core.csp.minimize import minimize_crystal
from crystalflow_core.csp.rigid_crystal import RigidCrystal
from crystalflow_core.data import codcluster17
from crystalflow_core.data.cluster import crystal_cluster
from crystalflow_core.data.curate import data_inversion
from crystalflow_core.data.molecules import MolecularCrystal
from crystalflow_core.forcefield import mmff_terms
from crystalflow_core.metrics import pm_atom, pm_center
from crystalflow_core.molecule_input import from_molecular_crystal, read_crystal
from crystalflow_core.solve import CANDIDATES_DIR

#: Below this (Å), a placement counts as every centroid (or atom) in its place.
IN_PLACE = 0.05


def pool_capped(molecules: np.ndarray, pool: WeakClusterCues, weak: WeakClusterCues, informative: bool) -> np.ndarray:
    """The cut placed by the pool's capped fit, each molecule in the place of the nearest ``x_w`` molecule."""
    n = len(weak.centroids)
    fit = fit_cut(pool.centroids, weak.centroids, forbidden_pairs(weak, pool, informative))
    cut = molecules[:n] @ fit.rotation.T + fit.shift
    distance = ((weak.centroids[:, None, :] - cut.mean(axis=1)[None, :, :]) ** 2).sum(axis=-1)
    distance[0, 1:] = distance[1:, 0] = np.inf
    return cut[linear_sum_assignment(distance)[1]]


def relaxed(cluster_id: str, mc: MolecularCrystal) -> MolecularCrystal | None:
    """``mc`` minimised in the lattice energy as the search minimises its candidates (None where MMFF94 cannot
    type its molecule or the crystal is not one rigid molecule per asymmetric unit)."""
    try:
        terms = mmff_terms(from_molecular_crystal(mc, cluster_id))
        crystal = RigidCrystal.from_molecular_crystal(mc)
    except ValueError:  # an InputError, a ForceFieldError or a crystal of several molecules
        return None
    minimised = minimize_crystal(crystal, LatticeEnergy(terms, crystal))
    return crystal.to_molecular_crystal(minimised.lattice, minimised.molecule)


def _rows(cluster_id: str, mc: MolecularCrystal, data: Path, inversion: bool, turn: np.ndarray) -> list[dict]:
    """PM(center) and PM(atom) against ``x_s`` of the crystal ``mc``, turned by ``turn``, placed every way
    (handedness used unless the data were curated with ``inversion``)."""
    cluster = codcluster17.read_cluster(data, cluster_id)
    numbers, mol_index = np.asarray(cluster.numbers), np.asarray(cluster.mol_index)
    weak = read_weak_cluster(numbers, mol_index, cluster.x_w)
    informative = weak.chirality_informative and not inversion
    molecules = crystal_cluster(mc, POOL_SIZE) @ turn.T
    n_pool, n_atoms = molecules.shape[:2]
    pool = read_weak_cluster(np.tile(mc.numbers, n_pool), np.repeat(np.arange(n_pool), n_atoms), molecules)
    n = cluster.n_molecules
    cut = molecules[:n]
    cut_cues = read_weak_cluster(np.tile(mc.numbers, n), np.repeat(np.arange(n), n_atoms), cut)
    ways = {
        "pool, cut preferred": place_cut(molecules, pool, weak, informative),
        "cut alone": place_cut(cut, cut_cues, weak, informative),
        "pool, capped": pool_capped(molecules, pool, weak, informative),
    }
    return [
        {
            "id": cluster_id,
            "way": way,
            "space_group": mc.crystal.spacegroup,
            "z_prime": mc.z_prime,
            "pm_center": pm_center(placed.reshape(-1, 3), cluster.x_s, mol_index),
            "pm_atom": pm_atom(placed.reshape(-1, 3), cluster.x_s),
        }
        for way, placed in ways.items()
    ]


def true_placements(data: Path, seed: int, relax: bool = False) -> pd.DataFrame:
    """The true crystals of the training and validation clusters (minimised in the lattice energy first with
    ``relax``, as a crystal the search finds is), each turned to a random frame."""
    crystals = {**split_crystals(data, seed, "train"), **split_crystals(data, seed, "val")}
    rng, inversion = np.random.default_rng(seed), bool(data_inversion(data))
    rows = []
    for cluster_id, mc in tqdm(sorted(crystals.items()), desc="placements", unit="cluster"):
        turn = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
        if relax and (mc := relaxed(cluster_id, mc)) is None:
            continue
        rows += _rows(cluster_id, mc, data, inversion, turn)
    return pd.DataFrame(rows)


def chosen_placements(data: Path, solved: Path) -> pd.DataFrame:
    """The crystals a ``solve`` run chose, read back from their CIFs, placed every way."""
    rows, inversion = [], bool(data_inversion(data))
    for done in tqdm(sorted((solved / CANDIDATES_DIR).glob("*.json")), desc="placements", unit="cluster"):
        summary = json.loads(done.read_text())
        if not summary.get("cif"):
            continue
        cluster_id = summary["id"]
        rows += _rows(cluster_id, read_crystal(solved / summary["cif"]), data, inversion, np.eye(3))
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data_out/default"))
    parser.add_argument("--seed", type=int, default=0, help="the split's seed, and the random frames'")
    parser.add_argument("--solved", type=Path, help="a solve run: place the crystals it chose, not the true ones")
    parser.add_argument("--out", type=Path, help="CSV of every cluster and way")
    parser.add_argument("--relaxed", action="store_true", help="minimise the true crystals first")
    parser.add_argument(
        "--beyond-cut-cost",
        type=float,
        default=cluster_fit.BEYOND_CUT_COST,
        help="Å² of pairing a pool molecule beyond the cut (how the default was chosen; default: solve's)",
    )
    args = parser.parse_args()
    cluster_fit.BEYOND_CUT_COST = args.beyond_cut_cost
    started = time.perf_counter()
    table = (
        chosen_placements(args.data, args.solved)
        if args.solved
        else true_placements(args.data, args.seed, args.relaxed)
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
    summary = table.groupby("way", sort=False).agg(
        clusters=("id", "size"),
        centroids_in_place=("pm_center", lambda pm: float((pm < IN_PLACE).mean())),
        atoms_in_place=("pm_atom", lambda pm: float((pm < IN_PLACE).mean())),
        pm_atom=("pm_atom", "mean"),
    )
    what = (
        f"the crystals {args.solved} chose"
        if args.solved
        else f"the true crystals of the training and validation clusters of {args.data} (seed {args.seed})"
    )
    print(f"# placed on x_w: {what}")
    print(summary.to_markdown(floatfmt=".3f"))
    print(f"# {platform.processor() or platform.machine()}, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
