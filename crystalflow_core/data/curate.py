"""Batch curation: structures → selected molecular crystals → 17-molecule clusters in the COD-Cluster17 layout.

What a run promises, whatever the input:

- **Every input ends in ``manifest.csv`` exactly once**: one row per data block with atom sites, or one row for
  a file that cannot be read. Its status is ``curated``, ``duplicate`` (``duplicate_of:<id>``) or ``rejected``
  with a reason code from :data:`~crystalflow_core.errors.REJECTION_REASONS` and a detail naming the file,
  block and value at fault; ``failed`` is left for unexpected errors (bugs), with the exception and its line.
- **No file can stop, crash or hang the run**: each is curated in a forked worker process with ``timeout``
  seconds to finish and ``WORKER_MEMORY`` bytes to allocate. A worker past its deadline is killed (``timeout``),
  one that dies (``worker_died``: killed, a crash in native code) is replaced, a file that needs more memory is
  ``too_large``; each costs only its file.
- **The molecule is checked against the file's own formula**: when the CIF gives ``_chemical_formula_sum``, the
  restored molecule must be a multiple of it (element ratios, so the formula unit may be half a molecule on a
  special position, or a dimer), else ``formula_mismatch``. Such crystals are rejected, not kept with a flag:
  a molecule without its hydrogens, or a crystal whose solvent was left out of the model, is wrong training
  data. The check rejects 5 of the 272 bundled COD crystals (two with solvent left out, one without hydrogens,
  two whose formula disagrees by two atoms).
- **Resume is exact**: files are written under a temporary name and renamed, so a killed run never leaves a
  half-written file under a final name, and each input's rows are journaled as soon as it is done
  (:mod:`~crystalflow_core.data.manifest`). Re-running the same command on the same ``out_dir`` keeps the rows
  that stand, redoes ``failed`` rows, ``timeout`` and ``worker_died`` rows (they depend on the run, not the file),
  curated rows whose cluster files are missing and inputs whose journal line a kill cut short, and ends with the
  same manifest and byte-identical cluster files as an uninterrupted run.
- **Input order decides which duplicate is kept**, whatever order workers, shards or resumed runs finished in.
- **Memory does not grow with the source** (a full COD mirror, ~500K CIFs): the inputs are streamed, at most one
  per worker is in flight, and the parent journals each result instead of keeping it.
- **A run can be split** into shards by a hash of the structure id (:class:`~.manifest.Shard`), run as separate
  processes or on separate machines; each curates its inputs one at a time in its own workers, so every file
  keeps its own deadline and the workers stay busy however uneven the files are. ``manifest.csv`` is written
  when the last shard finishes (or by :func:`~.manifest.write_manifest` once their directories are copied into
  one).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..errors import CurationError, InputError
from . import codcluster17
from .cif import formula_counts
from .cluster import Cluster, crystal_cluster
from .crystal import Crystal
from .manifest import Journal, KeySet, Shard, duplicate_ids, read_manifest, unfinished_shards, write_manifest
from .molecules import MolecularCrystal, select_molecular_crystal
from .noise import NoiseConfig, centre_on_weak, rigid_noise
from .sources import StructureRef, load_crystals
from .workers import Lost, map_with_deadline

SETTINGS = "curation.json"
#: Seconds one input file may take: far beyond what a valid CIF needs (the README gives the slowest reference file),
#: so only a pathological file meets it.
FILE_TIMEOUT = 120.0
#: Rejections that a re-run tries again: they depend on the run (machine load, memory), not on the file.
RETRIED_REASONS = ("timeout", "worker_died")
#: Memory (bytes) a worker may allocate beyond what it inherits; real files need well under 1 GiB.
WORKER_MEMORY = 4 * 2**30
#: Longest ``detail`` kept in the manifest (characters).
MAX_DETAIL = 300
#: Counts of ``_chemical_formula_sum`` may differ from k × the molecule's by this much (rounded decimals).
FORMULA_TOLERANCE = 0.05


@dataclass(frozen=True)
class CurationSettings:
    """Everything that decides the content of a curated directory (stored in ``curation.json``)."""

    seed: int = 0
    n_molecules: int = 17
    noise: NoiseConfig = field(default_factory=NoiseConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def structure_seed(seed: int, cluster_id: str) -> int:
    """A per-structure seed, so noise is reproducible whatever the worker count or processing order."""
    digest = hashlib.sha256(f"{seed}:{cluster_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def make_cluster(mc: MolecularCrystal, cluster_id: str, settings: CurationSettings) -> Cluster:
    """Crystal cluster ``x_s`` and its seeded weakly-correlated start ``x_w``, both centred on ``x_w``'s centroid."""
    positions = crystal_cluster(mc, settings.n_molecules)  # [M, n, 3]
    n_mol, n_atoms, _ = positions.shape
    x_s = torch.from_numpy(positions.reshape(-1, 3)).double()
    mol_index = torch.arange(n_mol).repeat_interleave(n_atoms)
    generator = torch.Generator().manual_seed(structure_seed(settings.seed, cluster_id))
    x_w = rigid_noise(x_s, mol_index, settings.noise, generator)
    x_w, x_s = centre_on_weak(x_w, x_s)
    numbers = np.tile(np.asarray(mc.numbers, dtype=np.int64), n_mol)
    return Cluster(cluster_id, numbers, mol_index.numpy(), x_w.numpy(), x_s.numpy())


def _prepare_worker() -> None:
    """Each worker's address space is capped at its size now plus ``WORKER_MEMORY`` (where ``/proc`` tells the size),
    so a file that would exhaust memory fails in its own worker instead of inviting the kernel's OOM killer to pick
    any process on the machine.
    """
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = pages * resource.getpagesize() + WORKER_MEMORY
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def location_key(ref: StructureRef) -> str:
    """Where a structure was read from; database rows share one file, so theirs carries the row (``db#row``)."""
    return ref.location if ref.row is None else f"{ref.location}#{ref.row}"


def _crystal_ids(ref: StructureRef, n_crystals: int) -> list[str]:
    return [ref.id] if n_crystals == 1 else [f"{ref.id}_b{i + 1}" for i in range(n_crystals)]


def _clip(text: str) -> str:
    """A manifest detail of bounded length: a hostile file can put megabytes into one value."""
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _rejected(error: CurationError) -> dict:
    return {"status": "rejected", "reason": error.reason, "detail": _clip(error.detail)}


def _unexpected(error: Exception) -> dict:
    """An unexpected error (a bug): its type as the reason, the message and the line that raised it as detail.

    Running out of the worker's memory is not a bug but a structure too large to curate (``too_large``).
    """
    if isinstance(error, MemoryError):
        detail = f"needs more than the {WORKER_MEMORY / 2**30:g} GiB of memory a worker may use"
        return {"status": "rejected", "reason": "too_large", "detail": detail}
    message = "".join(traceback.format_exception_only(type(error), error)).strip()
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return {"status": "failed", "reason": type(error).__name__, "detail": _clip(message + where)}


def check_formula(mc: MolecularCrystal) -> None:
    """Refuse (``formula_mismatch``) a molecule whose composition is not a multiple of ``_chemical_formula_sum``.

    The formula unit need not be the molecule (half of it on an inversion centre, a dimer), so the file's counts
    are compared with the molecule's scaled by k = atoms in the formula / atoms in the molecule. A formula that
    cannot be read (``?``, moiety notation) is not checked.
    """
    expected = formula_counts(mc.crystal.formula_sum)
    if expected is None:
        return
    found = Counter(int(z) for z in mc.numbers)
    scale = sum(expected.values()) / sum(found.values())
    if set(expected) != set(found) or any(abs(expected[z] - scale * n) > FORMULA_TOLERANCE for z, n in found.items()):
        detail = f"molecule {mc.formula}, _chemical_formula_sum {mc.crystal.formula_sum!r}"
        raise CurationError("formula_mismatch", _clip(detail), mc.crystal.name)


def _curate_crystal(crystal: Crystal, cluster_id: str, out_dir: Path, settings: CurationSettings) -> dict:
    """Manifest fields of one crystal; writes its cluster files when it is curated."""
    row = {"space_group": crystal.spacegroup}
    try:
        mc = select_molecular_crystal(crystal)
        row.update(
            formula=mc.formula,
            n_atoms=len(mc.numbers),
            z=int(mc.z),
            z_prime=float(mc.z_prime),
            volume_per_molecule=float(abs(np.linalg.det(crystal.lattice)) / mc.z),
        )
        check_formula(mc)
        codcluster17.write_cluster(out_dir, make_cluster(mc, cluster_id, settings))
        row.update(status="curated", reason="", detail="")
    except CurationError as error:
        row.update(_rejected(error))
    except Exception as error:  # noqa: BLE001 - a batch job records every failure and goes on
        row.update(_unexpected(error))
    return row


def curate_structure(ref: StructureRef, out_dir: Path, settings: CurationSettings) -> list[dict]:
    """Curate one input structure (all its data blocks); returns one manifest row per crystal. Never raises."""
    base = {"source": ref.source, "location": location_key(ref)}
    try:
        outcomes = load_crystals(ref)
    except CurationError as error:
        return [{**base, "id": ref.id, **_rejected(error)}]
    except Exception as error:  # noqa: BLE001
        return [{**base, "id": ref.id, **_unexpected(error)}]
    rows = []
    for cluster_id, outcome in zip(_crystal_ids(ref, len(outcomes)), outcomes, strict=True):
        if isinstance(outcome, CurationError):
            rows.append({**base, "id": cluster_id, **_rejected(outcome)})
        else:
            rows.append({**base, "id": cluster_id, **_curate_crystal(outcome, cluster_id, out_dir, settings)})
    return rows


def _lost_row(ref: StructureRef, lost: Lost) -> dict:
    """The manifest row of a structure whose worker timed out or died."""
    detail = f"{location_key(ref)}: {lost.detail}"
    return {
        "source": ref.source,
        "location": location_key(ref),
        "id": ref.id,
        "status": "rejected",
        "reason": lost.reason,
        "detail": _clip(detail),
    }


def _check_settings(out_dir: Path, settings: CurationSettings) -> None:
    """Refuse to resume a directory curated with other settings."""
    path = out_dir / SETTINGS
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != settings.to_dict():
            raise InputError(
                f"{out_dir}: already curated with settings {previous}; use another --out or the same settings"
            )


def curated_noise(data_dir: str | Path) -> NoiseConfig | None:
    """The rigid noise a directory was curated with (its ``curation.json``); ``None`` when it was not curated here
    (e.g. the authors' COD-Cluster17 files)."""
    path = Path(data_dir) / SETTINGS
    if not path.is_file():
        return None
    try:
        return NoiseConfig(**json.loads(path.read_text()).get("noise", {}))
    except (AttributeError, TypeError, ValueError) as error:
        raise InputError(f"{path}: unreadable noise settings ({error})") from error


def data_inversion(data_dir: str | Path) -> bool | None:
    """``noise.inversion`` of a curated directory's ``curation.json``; ``None`` when it was not curated here."""
    noise = curated_noise(data_dir)
    return None if noise is None else noise.inversion


def _stands(rows: list[dict], out_dir: Path, duplicates: KeySet) -> bool:
    """Whether an earlier outcome of one input stands on resume: no ``failed`` or :data:`RETRIED_REASONS` row, and
    every curated row has its cluster files (or was a duplicate, whose files are removed on purpose)."""
    for row in rows:
        if row["status"] == "failed" or row.get("reason") in RETRIED_REASONS:
            return False
        if row["status"] == "curated" and not (row["id"] in duplicates or codcluster17.has_cluster(out_dir, row["id"])):
            return False
    return True


def _curate_item(item: tuple[int, StructureRef], out_dir: Path, settings: CurationSettings) -> list[dict]:
    return curate_structure(item[1], out_dir, settings)


def run_curation(
    refs: Iterable[StructureRef],
    out_dir: str | Path,
    settings: CurationSettings | None = None,
    workers: int | None = None,
    progress: bool = True,
    timeout: float = FILE_TIMEOUT,
    shard: Shard | None = None,
) -> Counter[tuple[str, str]] | None:
    """Curate the inputs of ``shard`` among ``refs`` into ``out_dir``; write ``manifest.csv`` if every shard is
    then finished and return its rows by ``(status, reason code)``, else return ``None``. No ``shard``: all inputs.

    ``refs`` is read once, lazily, in input order (a COD mirror is never held in memory). Each structure is curated
    in one of ``workers`` forked processes (default: the number of CPU cores) with ``timeout`` seconds to finish;
    its rows go to the shard's journal as soon as it is done. Rows of an earlier run on ``out_dir`` stand; see the
    module docstring for what is redone.

    The parent holds the inputs in flight (at most ``workers``), not the rows: its memory does not grow with the
    number of inputs, except 8 bytes per input that an earlier run finished (the locations it skips) and the
    final pass of :func:`~crystalflow_core.data.manifest.write_manifest`.
    """
    settings = settings or CurationSettings()
    shard = shard or Shard()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, settings)
    with Journal(out_dir, shard) as journal:
        _write_atomic(out_dir / SETTINGS, json.dumps(settings.to_dict(), indent=2))
        done = journal.resume(functools.partial(_stands, out_dir=out_dir, duplicates=duplicate_ids(out_dir)))
        todo = (
            (position, ref) for position, ref in enumerate(refs) if shard.owns(ref.id) and location_key(ref) not in done
        )
        work = functools.partial(_curate_item, out_dir=out_dir, settings=settings)
        results = map_with_deadline(work, todo, workers or os.cpu_count() or 1, timeout, _prepare_worker)
        for (position, ref), result in tqdm(results, desc="curate", unit="structure", disable=not progress):
            rows = [_lost_row(ref, result)] if isinstance(result, Lost) else result
            journal.append(position, location_key(ref), rows)
        journal.finish()
    return None if unfinished_shards(out_dir) else write_manifest(out_dir)


def _write_atomic(path: Path, text: str) -> None:
    tmp = codcluster17.temporary_path(path)
    tmp.write_text(text)
    tmp.replace(path)


def curate(
    refs: Iterable[StructureRef],
    out_dir: str | Path,
    settings: CurationSettings | None = None,
    workers: int | None = None,
    progress: bool = True,
    timeout: float = FILE_TIMEOUT,
) -> pd.DataFrame:
    """Curate ``refs`` into ``out_dir`` in one run (:func:`run_curation`) and return ``manifest.csv`` as a table.

    Handy for thousands of structures; a full COD mirror's manifest (~500K rows) is better left on disk, so
    ``crystalflow curate`` calls :func:`run_curation`.
    """
    run_curation(refs, out_dir, settings, workers, progress, timeout)
    return read_manifest(out_dir)
