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
  half-written file under a final name. Re-running the same command on the same ``out_dir`` keeps the rows that
  stand, redoes ``failed`` rows, ``timeout`` and ``worker_died`` rows (they depend on the run, not the file) and
  curated rows whose cluster files are missing, and ends with the same manifest and byte-identical cluster files
  as an uninterrupted run.
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
from .molecules import MolecularCrystal, select_molecular_crystal
from .noise import NoiseConfig, centre_on_weak, rigid_noise
from .sources import StructureRef, load_crystals
from .workers import Lost, map_with_deadline

MANIFEST = "manifest.csv"
SETTINGS = "curation.json"
MANIFEST_COLUMNS = [
    "id",
    "source",
    "location",
    "formula",
    "n_atoms",
    "space_group",
    "z",
    "z_prime",
    "volume_per_molecule",
    "status",
    "reason",
    "detail",
]
#: Two curated crystals with the same molecular formula whose volumes per molecule differ by less than this
#: fraction are taken as the same crystal reported twice (e.g. a COD and a CSD entry, or two temperatures).
DUPLICATE_VOLUME_TOLERANCE = 0.03
#: Seconds one input file may take: far beyond what a valid CIF needs (the README gives the slowest reference file),
#: so only a pathological file meets it.
FILE_TIMEOUT = 120.0
#: Rejections that a re-run tries again: they depend on the run (machine load, memory), not on the file.
RETRIED_REASONS = ("timeout", "worker_died")
#: A run in progress rewrites ``manifest.csv`` about this many times, so a killed run loses little work.
CHECKPOINTS = 100
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
    """Forked workers run torch single-threaded: a child must not enter the OpenMP pool it inherited from a parent
    that already used it (the same precaution torch's DataLoader workers take); it also avoids oversubscription.

    Each worker's address space is capped at its size now plus ``WORKER_MEMORY`` (where ``/proc`` tells the size),
    so a file that would exhaust memory fails in its own worker instead of inviting the kernel's OOM killer to pick
    any process on the machine.
    """
    torch.set_num_threads(1)
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
            z=mc.z,
            z_prime=mc.z_prime,
            volume_per_molecule=abs(np.linalg.det(crystal.lattice)) / mc.z,
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


def mark_duplicates(manifest: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """Keep the first of each group of curated rows with one formula and matching volume per molecule.

    Later duplicates become ``status='duplicate'``, ``reason='duplicate_of:<id>'`` and their CSVs are removed.
    """
    manifest = manifest.copy()
    curated = manifest[manifest["status"] == "curated"]
    for _, group in curated.groupby("formula", sort=False):
        kept: list[tuple[str, float]] = []
        for index, row in group.iterrows():
            volume = float(row["volume_per_molecule"])
            twin = next((cid for cid, v in kept if abs(volume - v) <= DUPLICATE_VOLUME_TOLERANCE * v), None)
            if twin is None:
                kept.append((row["id"], volume))
                continue
            manifest.loc[index, ["status", "reason"]] = ["duplicate", f"duplicate_of:{twin}"]
            for path in (codcluster17.final_path(out_dir, row["id"]), codcluster17.initial_path(out_dir, row["id"])):
                path.unlink(missing_ok=True)
    return manifest


def _load_previous(out_dir: Path, settings: CurationSettings) -> pd.DataFrame:
    """Manifest rows of an earlier run on ``out_dir`` that stand: refuses other settings, and leaves out the files
    to redo, all their rows together (a file with a ``failed``, :data:`RETRIED_REASONS` or curated row whose
    cluster files are missing)."""
    settings_path = out_dir / SETTINGS
    if settings_path.exists():
        previous = json.loads(settings_path.read_text())
        if previous != settings.to_dict():
            raise InputError(
                f"{out_dir}: already curated with settings {previous}; use another --out or the same settings"
            )
    manifest_path = out_dir / MANIFEST
    if not manifest_path.exists():
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    manifest = pd.read_csv(manifest_path, dtype=str, keep_default_na=False)
    have = set(codcluster17.list_cluster_ids(out_dir))
    broken = (manifest["status"] == "curated") & ~manifest["id"].isin(have)
    retried = (manifest["status"] == "failed") | manifest["reason"].isin(RETRIED_REASONS)
    return manifest[~manifest["location"].isin(manifest.loc[broken | retried, "location"])]


def _write_atomic(path: Path, text: str) -> None:
    tmp = codcluster17.temporary_path(path)
    tmp.write_text(text)
    tmp.replace(path)


def write_manifest(manifest: pd.DataFrame, out_dir: Path) -> Path:
    """Write ``manifest.csv`` atomically (temp file + rename)."""
    path = out_dir / MANIFEST
    frame = manifest.reindex(columns=MANIFEST_COLUMNS)
    frame = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce").astype("Int64") for c in ("n_atoms", "z")})
    _write_atomic(path, frame.to_csv(index=False))
    return path


def curate(
    refs: Iterable[StructureRef],
    out_dir: str | Path,
    settings: CurationSettings | None = None,
    workers: int | None = None,
    progress: bool = True,
    timeout: float = FILE_TIMEOUT,
) -> pd.DataFrame:
    """Curate ``refs`` into ``out_dir`` (COD-Cluster17 layout + ``manifest.csv``); returns the manifest.

    Each structure is curated in one of ``workers`` forked processes (default: the number of CPU cores) with
    ``timeout`` seconds to finish. Rows of an earlier run on ``out_dir`` are kept; see the module docstring for
    what is redone.
    """
    settings = settings or CurationSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = _load_previous(out_dir, settings)
    _write_atomic(out_dir / SETTINGS, json.dumps(settings.to_dict(), indent=2))
    codcluster17.remove_partial_writes(out_dir)
    refs = list(refs)
    done_locations = set(previous["location"])
    todo = [ref for ref in refs if location_key(ref) not in done_locations]
    rows: list[dict] = previous.to_dict("records")
    work = functools.partial(curate_structure, out_dir=out_dir, settings=settings)
    results = map_with_deadline(work, todo, workers or os.cpu_count() or 1, timeout, _prepare_worker)
    checkpoint = max(1, len(todo) // CHECKPOINTS)
    with tqdm(total=len(todo), desc="curate", unit="structure", disable=not progress) as bar:
        for count, (index, result) in enumerate(results, start=1):
            rows.extend([_lost_row(todo[index], result)] if isinstance(result, Lost) else result)
            bar.update()
            if count % checkpoint == 0 and count < len(todo):
                write_manifest(pd.DataFrame(rows), out_dir)
    # Input order decides which of two duplicates is kept, whatever order the workers finished in.
    position = {location_key(ref): index for index, ref in enumerate(refs)}
    rows.sort(key=lambda row: (position.get(row["location"], len(position)), row["id"]))
    manifest = mark_duplicates(pd.DataFrame(rows, columns=MANIFEST_COLUMNS), out_dir)
    write_manifest(manifest, out_dir)
    return manifest
