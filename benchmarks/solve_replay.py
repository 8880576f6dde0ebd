"""A recorded ``solve`` run's chosen crystals, found again and placed by the current ``solve``: what its PM(atom)
would be now, without searching every candidate again.

The search is seeded and each candidate's minimisation is independent of the others, so the crystal a run chose
is the first candidate of its space group whose minimised lattice energy equals the recorded one. For every
cluster of the run's ``*_clusters.csv`` record (``benchmarks/solve_split.sh``) this regenerates the run's
candidates, minimises those of the chosen crystal's space group in order until one matches the recorded energy
(within 1e-9 relative), reports how far its misfit fit's ``rms`` is from the recorded one (0 when the crystal and
the fit are the same), and writes its cut as :func:`~crystalflow_core.solve.place_crystal` places it now, in
``solve``'s layout; clusters the run left as ``x_w`` keep ``x_w``. ``crystalflow evaluate`` then scores it like any
run. Its ``seconds`` are the replay's, not a search's. The choice among a cluster's crystals is the run's: it does
not depend on the placement.

    python3 benchmarks/solve_replay.py --data data_out/default \
        --record benchmarks/records/solve/solve_default_s0_clusters.csv --out runs/replay_default_s0
    crystalflow evaluate --truth data_out/default --pred runs/replay_default_s0 --out runs/replay_default_s0/scores
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from crystalflow_core.csp.candidates import generate_candidates
from crystalflow_core.csp.cluster_lattice import SPACE_GROUP_PRIOR
from crystalflow_core.csp.search import CANDIDATE_DEADLINE, FoundCrystal, SearchSettings, minimise_candidate
from crystalflow_core.data.cluster import Cluster
from crystalflow_core.data.codcluster17 import read_cluster
from crystalflow_core.data.curate import curated_noise
from crystalflow_core.data.workers import Lost, map_with_deadline
from crystalflow_core.forcefield import mmff_terms
from crystalflow_core.records import write_sampling
from crystalflow_core.solve import (
    DEFAULT_SIGMA,
    Solution,
    SolveSettings,
    central_molecule,
    fit_crystal,
    place_crystal,
    read_x_w,
    score_crystals,
    write_solution,
)

#: Relative difference of lattice energies that counts as the same minimisation.
SAME_ENERGY = 1e-9
#: Worker processes, as the search uses them.
WORKERS = SearchSettings().workers


def chosen_again(row: pd.Series, cluster: Cluster, settings: SolveSettings) -> tuple[Solution, float]:
    """The run's chosen crystal of ``cluster`` (its record ``row``) found again, as a one-crystal
    :class:`Solution`, and the difference of its fit's rms from the recorded one (Å)."""
    started = time.perf_counter()
    weak, informative, groups = read_x_w(cluster, settings.inversion)
    molecule = central_molecule(cluster)
    minimise = partial(minimise_candidate, terms=mmff_terms(molecule))
    generated = generate_candidates(molecule, int(row["candidates"]), groups, settings.seed, SPACE_GROUP_PRIOR)
    same_group = (c for c in generated if c.symbol == row["space_group"])
    match = None
    for candidate, outcome in map_with_deadline(minimise, same_group, WORKERS, CANDIDATE_DEADLINE):
        if not isinstance(outcome, Lost) and abs(outcome.energy - row["energy"]) <= SAME_ENERGY * abs(row["energy"]):
            match = FoundCrystal(candidate, outcome, outcome.molecular_crystal())
            break
    if match is None:
        raise RuntimeError(
            f"{row['id']}: no {row['space_group']} candidate reaches the recorded energy {row['energy']}"
        )
    fit_row = fit_crystal(match, weak, informative, settings.sigma, settings.seed)
    table = pd.DataFrame([{"rank_energy": int(row["rank_energy"]), **fit_row}])
    table["score"] = score_crystals(table, settings.sigma, settings.temperature)
    table["chosen"] = True
    solution = Solution(
        row["id"],
        place_crystal(match.crystal, weak, informative, settings.seed).reshape(-1, 3),
        match.crystal,
        table,
        groups,
        time.perf_counter() - started,
        candidates=int(row["candidates"]),
        crystals=[match.crystal],
    )
    return solution, abs(fit_row["rms"] - row["rms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the curated directory the run solved")
    parser.add_argument("--record", type=Path, required=True, help="the run's *_clusters.csv record")
    parser.add_argument("--out", type=Path, required=True, help="where to write the replayed run")
    parser.add_argument("--split", default="test", help="the split the run solved (default: test)")
    args = parser.parse_args()
    record = pd.read_csv(args.record, dtype={"id": str, "reason": str})
    noise = curated_noise(args.data)
    settings = SolveSettings(
        sigma=DEFAULT_SIGMA if noise is None else noise.translation_sigma, inversion=bool(noise and noise.inversion)
    )
    config = {"path": "solve", "seed": settings.seed, "subset": None, "data": str(args.data), **settings.to_dict()}
    write_sampling(args.out, args.out, config, args.split, 1, replay_of=str(args.record), **settings.to_dict())
    started, worst = time.perf_counter(), 0.0
    for _, row in tqdm(record.iterrows(), total=len(record), desc="replay", unit="cluster"):
        cluster = read_cluster(args.data, row["id"])
        if pd.isna(row["space_group"]):  # the run kept x_w
            solution = Solution(row["id"], cluster.x_w.copy(), None, pd.DataFrame(), (), 0.0, str(row["reason"]))
        else:
            solution, rms_difference = chosen_again(row, cluster, settings)
            worst = max(worst, rms_difference)
        write_solution(args.out, solution, cluster.numbers, cluster.mol_index)
    print(
        f"{len(record)} clusters replayed into {args.out} in {time.perf_counter() - started:.0f} s; "
        f"largest difference of the fit's rms from the record: {worst:.2e} Å"
    )


if __name__ == "__main__":
    main()
