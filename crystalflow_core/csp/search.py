"""The crystal search behind ``crystalflow predict``: random symmetric candidates, each minimised in the lattice
energy (MMFF94 + D3) (in worker processes, one candidate each, under a deadline), duplicates merged, distinct crystals
ranked by lattice energy per molecule."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from rdkit import Chem
from tqdm.auto import tqdm

from crystalflow_core.data.molecules import MolecularCrystal
from crystalflow_core.data.workers import Lost, map_with_deadline
from crystalflow_core.forcefield import mmff_terms
from crystalflow_core.settings import DEFAULT_CANDIDATES

from .candidates import DEFAULT_SPACE_GROUPS, Candidate, generate_candidates
from .lattice_energy import LatticeEnergy
from .merge import duplicate_of
from .minimize import Minimized, minimize_crystal
from .rigid_crystal import RigidCrystal

#: A candidate whose minimisation takes longer is dropped (and counted).
CANDIDATE_DEADLINE = 300.0
#: Standard deviations of a restart about a found crystal (:func:`perturbed_starts`): the cell metric (a fraction of
#: its mean diagonal, about half that in lengths), the molecule's position (Å) and its orientation (radians).
PERTURBATION = (0.03, 0.3, 0.35)


@dataclass(frozen=True)
class SearchSettings:
    """How a search runs: ``candidates`` random starts over ``space_groups`` (numbers), ``seed``, and
    ``workers`` processes (default: every core); ``group_weights`` shares the candidates among the groups in
    proportion (default: each (group, Wyckoff position) alike)."""

    candidates: int = DEFAULT_CANDIDATES
    space_groups: tuple[int, ...] = DEFAULT_SPACE_GROUPS
    seed: int = 0
    workers: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    group_weights: dict[int, float] | None = None

    def to_dict(self) -> dict:
        return {"candidates": self.candidates, "space_groups": list(self.space_groups), "seed": self.seed}


@dataclass
class FoundCrystal:
    """A distinct crystal of the search: the ``candidate`` it started from, its minimisation, the crystal, how
    many candidates relaxed to it (``copies``) and any ``scores`` added later (e.g. against a reference)."""

    candidate: Candidate
    minimized: Minimized
    crystal: MolecularCrystal
    copies: int = 1
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def energy(self) -> float:
        return self.minimized.energy

    @property
    def density(self) -> float:
        return self.minimized.density


@dataclass
class SearchResult:
    """Distinct crystals, lowest energy first, and the account of the search: ``generated`` candidates,
    ``lost`` (minimisations past the deadline or whose worker died), ``unbound`` (energy not negative) and
    ``seconds`` per stage."""

    crystals: list[FoundCrystal]
    generated: int
    lost: int
    unbound: int
    seconds: dict[str, float]


def search_crystals(
    molecule: Chem.Mol,
    settings: SearchSettings | None = None,
    progress: bool = True,
) -> SearchResult:
    """Search the crystals of ``molecule`` (explicit hydrogens, one conformer taken as rigid)."""
    settings = settings or SearchSettings()
    terms = mmff_terms(molecule)
    started = time.perf_counter()
    generated = list(
        tqdm(
            generate_candidates(
                molecule, settings.candidates, settings.space_groups, settings.seed, settings.group_weights
            ),
            total=settings.candidates,
            desc="candidates",
            unit="crystal",
            disable=not progress,
        )
    )
    generating = time.perf_counter() - started

    results, lost = _minimise_all(terms, generated, settings.workers, progress)
    minimising = time.perf_counter() - started - generating
    bound = _bound(generated, results)
    found = _distinct(bound)
    seconds = {
        "generate": round(generating, 1),
        "minimise": round(minimising, 1),
        "merge": round(time.perf_counter() - started - generating - minimising, 1),
    }
    return SearchResult(found, len(generated), lost, len(results) - len(bound), seconds)


def _minimise_all(
    terms, candidates: list[Candidate], workers: int, progress: bool, desc: str = "minimise"
) -> tuple[dict[int, Minimized], int]:
    """Every candidate minimised (by index) in ``workers`` processes under :data:`CANDIDATE_DEADLINE`, and how
    many were lost."""

    def minimise(candidate: Candidate) -> Minimized:  # in a forked worker: needs no pickling
        torch.set_num_threads(1)  # one process per core
        return minimize_crystal(candidate.crystal, LatticeEnergy(terms, candidate.crystal))

    results: dict[int, Minimized] = {}
    lost = 0
    with tqdm(total=len(candidates), desc=desc, unit="crystal", disable=not progress) as bar:
        for candidate, outcome in map_with_deadline(minimise, candidates, workers, CANDIDATE_DEADLINE):
            if isinstance(outcome, Lost):
                lost += 1
            else:
                results[candidate.index] = outcome
            bar.update()
    return results, lost


def _bound(candidates: list[Candidate], results: dict[int, Minimized]) -> list[FoundCrystal]:
    """The minimised candidates whose lattice energy is negative (bound), as found crystals."""
    return [
        FoundCrystal(c, m, m.crystal.to_molecular_crystal(m.lattice, m.molecule))
        for c in candidates
        if (m := results.get(c.index)) is not None and -math.inf < m.energy < 0
    ]


def _distinct(crystals: list[FoundCrystal]) -> list[FoundCrystal]:
    """The distinct ones among ``crystals``, lowest energy first, each counting the copies merged into it."""
    copy_of = duplicate_of([f.crystal for f in crystals], [f.energy for f in crystals], [f.density for f in crystals])
    distinct = []
    for i, found in enumerate(crystals):
        if copy_of[i] == i:
            merged = [crystals[j] for j in np.flatnonzero(copy_of == i)]
            distinct.append(replace(found, copies=sum(f.copies for f in merged)))
    return sorted(distinct, key=lambda crystal: crystal.energy)


def perturbed_starts(found: FoundCrystal, starts: int, rng: np.random.Generator, first_index: int) -> list[Candidate]:
    """``starts`` new starts about a found crystal: its minimised cell metric, molecular position and orientation
    moved at random (:data:`PERTURBATION`), within its own space group and site."""
    crystal = RigidCrystal.from_molecular_crystal(found.crystal)
    n_metric, n_position = len(crystal.metric_basis), crystal.position_basis.shape[1]
    n_rotation = crystal.n_parameters - n_metric - n_position
    metric, position, angle = PERTURBATION
    candidates = []
    for k in range(starts):
        step = np.concatenate(
            [
                metric * rng.normal(size=n_metric),
                position * rng.normal(size=n_position),
                angle * rng.normal(size=n_rotation),
            ]
        )
        try:
            lattice, molecule = crystal.geometry(torch.as_tensor(step, dtype=torch.float64))
        except torch.linalg.LinAlgError:
            continue
        start = RigidCrystal.from_molecular_crystal(
            crystal.to_molecular_crystal(lattice.numpy(), molecule.numpy()), name=f"{crystal.name}-restart{k}"
        )
        parent = found.candidate
        candidates.append(Candidate(first_index + k, parent.space_group, parent.symbol, parent.wyckoff, start))
    return candidates


def refine_crystals(
    molecule: Chem.Mol,
    found: list[FoundCrystal],
    around: list[FoundCrystal],
    starts: int,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = False,
) -> list[FoundCrystal]:
    """The distinct crystals of ``found`` together with those from ``starts`` perturbed restarts about each of
    ``around`` (a few of ``found``: the search's most promising), lowest energy first. A restart that reaches a
    crystal already found counts as its copy; one lower in energy that matches a found crystal replaces it."""
    rng = np.random.default_rng(seed)
    first = 1 + max(f.candidate.index for f in found)
    candidates = []
    for found_crystal in around:
        candidates += perturbed_starts(found_crystal, starts, rng, first + len(candidates))
    results, _ = _minimise_all(
        mmff_terms(molecule), candidates, workers or len(os.sched_getaffinity(0)), progress, "refine"
    )
    return _distinct([*found, *_bound(candidates, results)])
