"""The crystal search behind ``crystalflow predict``: random symmetric candidates, each minimised in the MMFF94 + D3
lattice energy (in worker processes, one candidate each, under a deadline), duplicates merged, distinct crystals
ranked by lattice energy per molecule."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from functools import partial

from rdkit import Chem
from tqdm.auto import tqdm

from crystalflow_core.data.molecules import MolecularCrystal
from crystalflow_core.data.workers import Lost, map_with_deadline
from crystalflow_core.forcefield import PairTerms, mmff_terms
from crystalflow_core.settings import DEFAULT_CANDIDATES

from .candidates import DEFAULT_SPACE_GROUPS, Candidate, generate_candidates
from .lattice_energy import LatticeEnergy
from .merge import duplicate_of
from .minimize import Minimized, minimize_crystal

#: A candidate whose minimisation takes longer is dropped (and counted).
CANDIDATE_DEADLINE = 300.0


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


def minimise_candidate(candidate: Candidate, terms: PairTerms) -> Minimized:
    """``candidate`` minimised in the lattice energy of its molecule's force-field ``terms`` (the search runs it in
    one single-threaded worker process per core)."""
    return minimize_crystal(candidate.crystal, LatticeEnergy(terms, candidate.crystal))


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

    minimise = partial(minimise_candidate, terms=terms)  # in forked workers: needs no pickling
    results: dict[int, Minimized] = {}
    lost = 0
    with tqdm(total=len(generated), desc="minimise", unit="crystal", disable=not progress) as bar:
        for candidate, outcome in map_with_deadline(minimise, generated, settings.workers, CANDIDATE_DEADLINE):
            if isinstance(outcome, Lost):
                lost += 1
            else:
                results[candidate.index] = outcome
            bar.update()
    minimising = time.perf_counter() - started - generating
    bound = [c for c in generated if c.index in results and -math.inf < results[c.index].energy < 0]
    crystals = [results[c.index].molecular_crystal() for c in bound]
    energies = [results[c.index].energy for c in bound]
    densities = [results[c.index].density for c in bound]
    copy_of = duplicate_of(crystals, energies, densities)
    found = [
        FoundCrystal(c, results[c.index], crystals[i], copies=int((copy_of == i).sum()))
        for i, c in enumerate(bound)
        if copy_of[i] == i
    ]
    found.sort(key=lambda crystal: crystal.energy)
    seconds = {
        "generate": round(generating, 1),
        "minimise": round(minimising, 1),
        "merge": round(time.perf_counter() - started - generating - minimising, 1),
    }
    return SearchResult(found, len(generated), lost, len(results) - len(bound), seconds)
