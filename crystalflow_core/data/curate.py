"""Batch curation: structures → selected molecular crystals → 17-molecule clusters in the COD-Cluster17 layout.

Runs over processes with a progress bar. One bad file never stops the run: it becomes a ``rejected`` (selection
rule, with its reason code) or ``failed`` (unexpected error) row in ``manifest.csv``. Re-running on the same
output directory resumes: structures already in the manifest are not redone and curated clusters are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import traceback
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..errors import CurationError
from . import codcluster17
from .cluster import crystal_cluster
from .molecules import MolecularCrystal, select_molecular_crystal
from .noise import NoiseConfig, centre_on_weak, rigid_noise
from .sources import StructureRef, load_crystals

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


def make_cluster(mc: MolecularCrystal, cluster_id: str, settings: CurationSettings) -> codcluster17.Cluster:
    """Crystal cluster ``x_s`` and its seeded weakly-correlated start ``x_w``, both centred on ``x_w``'s centroid."""
    positions = crystal_cluster(mc, settings.n_molecules)  # [M, n, 3]
    n_mol, n_atoms, _ = positions.shape
    x_s = torch.from_numpy(positions.reshape(-1, 3)).double()
    mol_index = torch.arange(n_mol).repeat_interleave(n_atoms)
    generator = torch.Generator().manual_seed(structure_seed(settings.seed, cluster_id))
    x_w = rigid_noise(x_s, mol_index, settings.noise, generator)
    x_w, x_s = centre_on_weak(x_w, x_s)
    numbers = np.tile(np.asarray(mc.numbers, dtype=np.int64), n_mol)
    return codcluster17.Cluster(cluster_id, numbers, mol_index.numpy(), x_w.numpy(), x_s.numpy())


def _single_threaded_worker() -> None:
    """Forked workers run torch single-threaded: a child must not enter the OpenMP pool it inherited from a parent
    that already used it (the same precaution torch's DataLoader workers take); it also avoids oversubscription."""
    torch.set_num_threads(1)


def location_key(ref: StructureRef) -> str:
    """Where a structure was read from; database rows share one file, so theirs carries the row (``db#row``)."""
    return ref.location if ref.row is None else f"{ref.location}#{ref.row}"


def _crystal_ids(ref: StructureRef, n_crystals: int) -> list[str]:
    return [ref.id] if n_crystals == 1 else [f"{ref.id}_b{i + 1}" for i in range(n_crystals)]


def curate_structure(ref: StructureRef, out_dir: Path, settings: CurationSettings) -> list[dict]:
    """Curate one input structure (all its data blocks); returns one manifest row per crystal. Never raises."""
    base = {"source": ref.source, "location": location_key(ref)}
    try:
        crystals = load_crystals(ref)
    except CurationError as error:
        return [{**base, "id": ref.id, "status": "rejected", "reason": error.reason, "detail": error.detail}]
    except Exception as error:  # noqa: BLE001 - a batch job records every failure and goes on
        return [{**base, "id": ref.id, "status": "failed", "reason": type(error).__name__, "detail": str(error)}]
    rows = []
    for cluster_id, crystal in zip(_crystal_ids(ref, len(crystals)), crystals, strict=True):
        row = {**base, "id": cluster_id, "space_group": crystal.spacegroup}
        try:
            mc = select_molecular_crystal(crystal)
            row.update(
                formula=mc.formula,
                n_atoms=len(mc.numbers),
                z=mc.z,
                z_prime=mc.z_prime,
                volume_per_molecule=abs(np.linalg.det(crystal.lattice)) / mc.z,
            )
            codcluster17.write_cluster(out_dir, make_cluster(mc, cluster_id, settings))
            row.update(status="curated", reason="", detail="")
        except CurationError as error:
            row.update(status="rejected", reason=error.reason, detail=error.detail)
        except Exception as error:  # noqa: BLE001
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            row.update(status="failed", reason=type(error).__name__, detail=detail)
        rows.append(row)
    return rows


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
    """Manifest rows of an earlier run on ``out_dir`` whose outputs are intact; refuses other settings."""
    settings_path = out_dir / SETTINGS
    if settings_path.exists():
        previous = json.loads(settings_path.read_text())
        if previous != settings.to_dict():
            raise ValueError(
                f"{out_dir}: already curated with settings {previous}; use another --out or the same settings"
            )
    manifest_path = out_dir / MANIFEST
    if not manifest_path.exists():
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    manifest = pd.read_csv(manifest_path, dtype={"id": str}, keep_default_na=False)
    have = set(codcluster17.list_cluster_ids(out_dir))
    broken = (manifest["status"] == "curated") & ~manifest["id"].isin(have)
    return manifest[~broken & (manifest["status"] != "failed")]


def write_manifest(manifest: pd.DataFrame, out_dir: Path) -> Path:
    path = out_dir / MANIFEST
    tmp = path.with_suffix(".csv.tmp")
    frame = manifest.reindex(columns=MANIFEST_COLUMNS)
    frame = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce").astype("Int64") for c in ("n_atoms", "z")})
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def curate(
    refs: Iterable[StructureRef],
    out_dir: str | Path,
    settings: CurationSettings | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Curate ``refs`` into ``out_dir`` (COD-Cluster17 layout + ``manifest.csv``); returns the manifest.

    ``workers`` defaults to the number of CPU cores; ``workers=1`` runs in this process. Failed structures of
    an earlier run are retried; everything else already in the manifest is kept as it is.
    """
    settings = settings or CurationSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = _load_previous(out_dir, settings)
    (out_dir / SETTINGS).write_text(json.dumps(settings.to_dict(), indent=2))
    refs = list(refs)
    done_locations = set(previous["location"])
    todo = [ref for ref in refs if location_key(ref) not in done_locations]
    rows: list[dict] = previous.to_dict("records")
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(todo), desc="curate", unit="structure", disable=not progress)
    if workers == 1:
        for ref in todo:
            rows.extend(curate_structure(ref, out_dir, settings))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_single_threaded_worker) as pool:
            futures = {pool.submit(curate_structure, ref, out_dir, settings): ref for ref in todo}
            for count, future in enumerate(as_completed(futures), start=1):
                rows.extend(future.result())
                bar.update()
                if count % 50 == 0:
                    write_manifest(pd.DataFrame(rows), out_dir)
    bar.close()
    # Input order decides which of two duplicates is kept, whatever order the workers finished in.
    position = {location_key(ref): index for index, ref in enumerate(refs)}
    rows.sort(key=lambda row: (position.get(row["location"], len(position)), row["id"]))
    manifest = mark_duplicates(pd.DataFrame(rows, columns=MANIFEST_COLUMNS), out_dir)
    write_manifest(manifest, out_dir)
    return manifest
