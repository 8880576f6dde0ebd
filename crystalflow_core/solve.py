"""``crystalflow solve``: the crystal behind each weak cluster ``x_w``, found with ``x_w`` as data.

A curated crystal is Z' = 1 (or 0.5): one molecule's pose, a cell and a space group. ``x_w`` gives the molecule
exactly (its molecules are rigid copies of the crystal's), the crystal's centroids within ``sigma`` Å per axis,
and each molecule's handedness. So, for each cluster:

1. the molecule is ``x_w``'s central one, as it is (its conformation is the crystal's);
2. the space groups searched follow the handedness (:func:`space_groups_for`): a chiral molecule whose 16
   neighbours all keep its handedness crystallised in a group without improper operations, one with mirror-image
   neighbours in a group with them;
3. the crystal search of ``predict`` (:func:`~.csp.search.search_crystals`) gives distinct minimised crystals,
   its candidates shared among those groups as organic crystals are (:data:`~.csp.cluster_lattice.SPACE_GROUP_PRIOR`:
   P2₁/c about a third, P-1 a fifth, ...);
4. each is cut into a pool of molecules superposed on ``x_w``'s centroids (:mod:`.csp.cluster_fit`); it is
   scored by ``misfit / (2 sigma^2) + (E - E_min) / T``: how unlikely ``x_w``'s centroids are given the crystal, plus
   its lattice energy above the lowest found, at a temperature ``T`` (kcal/mol) chosen on the validation split
   (``benchmarks/solve_ranking.py``);
5. the best crystal's pool, superposed on ``x_w`` by an uncapped fit that prefers the crystal's own cut (as the
   curated clusters are cut: the central molecule and its 16 nearest; :func:`~.csp.cluster_fit.place_cut`), gives
   the prediction: the 17 molecules paired with ``x_w``'s, in ``x_w``'s molecule order.

A cluster whose molecule the search cannot take (MMFF94 cannot type it, or it carries a charge) gets ``x_w``
itself, with the reason recorded.

:func:`solve_clusters` writes, per cluster, the prediction in the COD-Cluster17 layout, the chosen crystal as
``CIF/{id}.cif``, and ``Candidates/{id}.csv`` (every distinct crystal: its table row) with
``Candidates/{id}/rank{k}.cif`` (the crystals, which :func:`found_cuts` places on ``x_w`` for the ranking
benchmarks); ``Candidates/{id}.json``, written last, marks the cluster done, so a killed run restarted with the same
command keeps finished clusters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem
from tqdm.auto import tqdm

from .csp.cif_writer import write_cif
from .csp.cluster_fit import POOL_SIZE, fit_cut, forbidden_pairs, place_cut
from .csp.cluster_lattice import SPACE_GROUP_PRIOR, SPACE_GROUPS, WeakClusterCues, read_weak_cluster
from .csp.search import FoundCrystal, SearchSettings, search_crystals
from .data.cluster import Cluster, crystal_cluster
from .data.codcluster17 import prediction_path, read_cluster, temporary_path, write_positions_csv
from .data.molecules import MolecularCrystal
from .molecule_input import MoleculeInputError, from_positions, read_crystal
from .settings import DEFAULT_SPACE_GROUPS, SOLVE_CANDIDATE_ATOMS, SOLVE_CANDIDATES, SOLVE_TEMPERATURE

#: Centroid noise of x_w (Å per axis) assumed for data curated elsewhere (no curation.json).
DEFAULT_SIGMA = 1.0
#: Where a run writes every crystal found per cluster, and the chosen crystals.
CANDIDATES_DIR = "Candidates"
CIF_DIR = "CIF"


@dataclass(frozen=True)
class SolveSettings:
    """``candidates`` random starts per cluster (None: :func:`candidates_for` the molecule's size), ``seed``,
    ``temperature`` of the energy term, ``sigma`` of ``x_w``'s centroid noise, whether ``x_w`` was curated with
    ``inversion`` (then handedness says nothing), and ``workers`` processes (default: every core)."""

    candidates: int | None = None
    seed: int = 0
    temperature: float = SOLVE_TEMPERATURE
    sigma: float = DEFAULT_SIGMA
    inversion: bool = False
    workers: int | None = None

    def to_dict(self) -> dict:
        return {
            "candidates": self.candidates,
            "seed": self.seed,
            "temperature": self.temperature,
            "sigma": self.sigma,
            "inversion": self.inversion,
        }


@dataclass
class Solution:
    """One cluster solved: ``x`` ``[N, 3]`` the prediction in ``x_w``'s layout, ``crystal`` the chosen crystal
    (None when ``x_w`` was returned, ``reason`` saying why), ``table`` one row per distinct crystal found (space
    group, density, energy, misfit, score; ``chosen`` marks the prediction), the ``seconds`` taken and the
    random ``candidates`` searched."""

    cluster_id: str
    x: np.ndarray
    crystal: MolecularCrystal | None
    table: pd.DataFrame
    space_groups: tuple[int, ...]
    seconds: float
    reason: str = ""
    candidates: int = 0
    crystals: list[MolecularCrystal] = field(default_factory=list, repr=False)


def space_groups_for(handedness: np.ndarray, informative: bool) -> tuple[int, ...]:
    """The default space groups that the neighbours' ``handedness`` (+1 as the central molecule, -1 its mirror
    image, 0 unread) allows: all of them when it is not ``informative`` (achiral or planar molecule, or
    inversion noise)."""
    if not informative:
        return DEFAULT_SPACE_GROUPS
    improper = bool((np.asarray(handedness) < 0).any())
    return tuple(g for g in DEFAULT_SPACE_GROUPS if g not in SPACE_GROUPS or SPACE_GROUPS[g].improper == improper)


def candidates_for(n_atoms: int) -> int:
    """The default number of random starts for a molecule of ``n_atoms`` atoms: as many as the 5-minute budget of
    a cluster allows, ``SOLVE_CANDIDATE_ATOMS / n_atoms`` within ``SOLVE_CANDIDATES`` (the search's time grows
    about as candidates times atoms, and more starts find the crystal more often)."""
    low, high = SOLVE_CANDIDATES
    return int(np.clip(round(SOLVE_CANDIDATE_ATOMS / n_atoms), low, high))


def _fallback(cluster: Cluster, groups: tuple[int, ...], started: float, reason: str, candidates: int = 0) -> Solution:
    """``x_w`` itself, with the ``reason`` and the ``candidates`` searched before giving up (0: no search)."""
    return Solution(
        cluster.cluster_id,
        cluster.x_w.copy(),
        None,
        pd.DataFrame(),
        groups,
        time.perf_counter() - started,
        reason,
        candidates,
    )


def score_crystals(table: pd.DataFrame, sigma: float, temperature: float) -> pd.Series:
    """``misfit / (2 sigma^2) + (E - E_min) / T`` of every row (``misfit``: the centroids' SSE and handedness
    costs, Å²; ``energy``)."""
    return table["misfit"] / (2.0 * sigma**2) + (table["energy"] - table["energy"].min()) / temperature


def read_x_w(cluster: Cluster, inversion: bool) -> tuple[WeakClusterCues, bool, tuple[int, ...]]:
    """What ``cluster``'s ``x_w`` says of its crystal: its cues, whether their handedness is informative (not for
    data curated with ``inversion``), and the space groups to search."""
    weak = read_weak_cluster(np.asarray(cluster.numbers), np.asarray(cluster.mol_index), cluster.x_w)
    informative = weak.chirality_informative and not inversion
    return weak, informative, space_groups_for(weak.handedness, informative)


def central_molecule(cluster: Cluster) -> Chem.Mol:
    """``x_w``'s central molecule as it is, the molecule searched (:class:`MoleculeInputError` if it cannot be)."""
    central = np.asarray(cluster.mol_index) == 0
    return from_positions(np.asarray(cluster.numbers)[central], cluster.x_w[central], cluster.cluster_id)


def solve_cluster(cluster: Cluster, settings: SolveSettings = SolveSettings(), progress: bool = False) -> Solution:
    """The crystal of ``cluster``'s ``x_w`` (never its ``x_s``) and its cut as the prediction."""
    started = time.perf_counter()
    weak, informative, groups = read_x_w(cluster, settings.inversion)
    try:
        molecule = central_molecule(cluster)
    except MoleculeInputError as error:
        return _fallback(cluster, groups, started, str(error))
    candidates = settings.candidates or candidates_for(molecule.GetNumAtoms())
    search = SearchSettings(candidates, groups, settings.seed, group_weights=SPACE_GROUP_PRIOR)
    if settings.workers:
        search = replace(search, workers=settings.workers)
    found = search_crystals(molecule, search, progress=progress).crystals
    if not found:
        return _fallback(cluster, groups, started, "no bound crystal among the candidates", candidates)
    table = pd.DataFrame(
        [
            {"rank_energy": rank + 1, **fit_crystal(crystal, weak, informative, settings.sigma, settings.seed)}
            for rank, crystal in enumerate(found)
        ]
    )
    table["score"] = score_crystals(table, settings.sigma, settings.temperature)
    chosen = int(table["score"].idxmin())
    table["chosen"] = table.index == chosen
    x = place_crystal(found[chosen].crystal, weak, informative, settings.seed).reshape(-1, 3)
    return Solution(
        cluster.cluster_id,
        x,
        found[chosen].crystal,
        table,
        groups,
        time.perf_counter() - started,
        candidates=candidates,
        crystals=[f.crystal for f in found],
    )


def crystal_pool(mc: MolecularCrystal) -> tuple[np.ndarray, WeakClusterCues]:
    """The ``POOL_SIZE`` molecules of ``mc`` nearest its central one ``[n_pool, n_atoms, 3]``, and their cues."""
    molecules = crystal_cluster(mc, POOL_SIZE)
    n_pool, n_atoms = molecules.shape[:2]
    return molecules, read_weak_cluster(np.tile(mc.numbers, n_pool), np.repeat(np.arange(n_pool), n_atoms), molecules)


def fit_crystal(
    found: FoundCrystal, weak: WeakClusterCues, informative: bool, sigma: float, seed: int
) -> dict[str, float | str]:
    """One crystal's row of the table: its misfit (and ``rms``) from the capped fit of its pool to ``x_w``."""
    _, pool = crystal_pool(found.crystal)
    fit = fit_cut(pool.centroids, weak.centroids, forbidden_pairs(weak, pool, informative), sigma, seed=seed)
    return {
        "space_group": found.candidate.symbol,
        "z": found.crystal.z,
        "density": found.density,
        "energy": found.energy,
        "misfit": fit.misfit,
        "rms": fit.rms,
    }


def place_crystal(mc: MolecularCrystal, weak: WeakClusterCues, informative: bool, seed: int) -> np.ndarray:
    """The molecules of ``mc``'s pool that :func:`~.csp.cluster_fit.place_cut` places on ``x_w``, in ``x_w``'s
    molecule order (atoms in the molecule's order, which the search keeps): the prediction, made for the chosen
    crystal only (the placement's fit costs as much as the scoring one)."""
    molecules, pool = crystal_pool(mc)
    return place_cut(molecules, pool, weak, informative, seed=seed)


def found_cuts(solved: Path, cluster: Cluster) -> np.ndarray:
    """Every crystal a ``solve`` run found for ``cluster`` (``Candidates/{id}/rank{k}.cif``, in its table's order),
    placed on ``x_w`` as the chosen one is: ``[crystals, molecules, atoms, 3]``, for benchmarks that score the
    ranking. The CIFs' six decimals leave them within about 1e-3 Å of the crystals placed in memory. A crystal
    whose CIF :func:`~.molecule_input.read_crystal` refuses is all NaN (CIFs written before the writer symmetrised a
    molecule that only nearly has its site's symmetry held it twice, a few tenths of an ångström apart)."""
    settings = json.loads((Path(solved) / "sampling.json").read_text())["settings"]
    weak, informative, _ = read_x_w(cluster, bool(settings["inversion"]))
    n_crystals = len(pd.read_csv(Path(solved) / CANDIDATES_DIR / f"{cluster.cluster_id}.csv"))
    cuts = np.full((n_crystals, cluster.n_molecules, len(cluster.x_w) // cluster.n_molecules, 3), np.nan)
    for rank in range(1, n_crystals + 1):
        try:
            mc = read_crystal(Path(solved) / CANDIDATES_DIR / cluster.cluster_id / f"rank{rank}.cif")
        except MoleculeInputError:
            continue
        cuts[rank - 1] = place_crystal(mc, weak, informative, int(settings["seed"]))
    return cuts


def _done_path(out: Path, cluster_id: str) -> Path:
    return out / CANDIDATES_DIR / f"{cluster_id}.json"


def write_solution(out: Path, solution: Solution, numbers: np.ndarray, mol_index: np.ndarray) -> dict:
    """Write one cluster's prediction, crystal and candidates under ``out``; returns its summary (the ``.json``)."""
    cluster_id = solution.cluster_id
    write_positions_csv(prediction_path(out, cluster_id, 0), numbers, mol_index, solution.x)
    candidates = out / CANDIDATES_DIR
    candidates.mkdir(parents=True, exist_ok=True)
    summary = {
        "id": cluster_id,
        "reason": solution.reason,
        "space_groups": list(solution.space_groups),
        "candidates": solution.candidates,
        "distinct": len(solution.table),
        "seconds": round(solution.seconds, 1),
    }
    if solution.crystal is not None:
        chosen = solution.table[solution.table["chosen"]].iloc[0]
        (out / CIF_DIR).mkdir(parents=True, exist_ok=True)
        cif = write_cif(out / CIF_DIR / f"{cluster_id}.cif", solution.crystal, cluster_id)
        summary.update(
            cif=str(cif.relative_to(out)),
            space_group=str(chosen["space_group"]),
            energy=float(chosen["energy"]),
            rms=float(chosen["rms"]),
            rank_energy=int(chosen["rank_energy"]),
        )
        solution.table.to_csv(candidates / f"{cluster_id}.csv", index=False)
        (candidates / cluster_id).mkdir(exist_ok=True)
        for rank, crystal in enumerate(solution.crystals, start=1):
            write_cif(candidates / cluster_id / f"rank{rank}.cif", crystal, f"{cluster_id}_rank{rank}")
    done = _done_path(out, cluster_id)
    tmp = temporary_path(done)
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(done)
    return summary


def solve_clusters(
    data: Path, cluster_ids: Sequence[str], out: Path, settings: SolveSettings, progress: bool = True
) -> pd.DataFrame:
    """Solve every cluster of ``data`` named in ``cluster_ids`` into ``out``, skipping those a previous run
    finished; returns one summary row per cluster."""
    out = Path(out)
    rows = []
    for cluster_id in tqdm(cluster_ids, desc="solve", unit="cluster", disable=not progress):
        done = _done_path(out, cluster_id)
        if done.is_file():
            rows.append(json.loads(done.read_text()))
            continue
        cluster = read_cluster(data, cluster_id)
        solution = solve_cluster(cluster, settings)
        rows.append(write_solution(out, solution, cluster.numbers, cluster.mol_index))
    return pd.DataFrame(rows)
