"""How a curation run records its outcomes: an append-only journal per shard while it runs, ``manifest.csv`` at the end.

Layout under the output directory::

    journal/{K}-of-{N}.jsonl   shard K of N: one line per finished input, {"position", "location", "rows"}
    journal/{K}-of-{N}.done    there once shard K's last run finished
    journal/{K}-of-{N}.lock    locked (flock) by the process curating shard K, so no two runs append to one journal
    manifest.csv               written when every shard is done: every row in input order, duplicates marked

A journal line is written and flushed as soon as its input is curated, so a run killed even with SIGKILL loses
only the inputs in flight, and the file is never rewritten during a run. A line cut short by a kill (no newline at
its end, or not JSON) is dropped when the shard resumes, and its input is curated again. ``position`` is the
input's place in the whole input stream (every shard walks all of it), which is what orders ``manifest.csv``.
The journals stay after ``manifest.csv`` is written: a re-run resumes from them.
"""

from __future__ import annotations

import csv
import fcntl
import heapq
import json
import tempfile
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from ..errors import InputError
from . import codcluster17
from .shards import Shard, key_hash

MANIFEST = "manifest.csv"
JOURNAL_DIR = "journal"
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
#: Columns of ``manifest.csv`` read as numbers by :func:`read_manifest`; the others are text.
_NUMERIC = {"n_atoms": "Int64", "z": "Int64", "z_prime": "float64", "volume_per_molecule": "float64"}
#: Two curated crystals with the same molecular formula whose volumes per molecule differ by less than this
#: fraction are taken as the same crystal reported twice (e.g. a COD and a CSD entry, or two temperatures).
DUPLICATE_VOLUME_TOLERANCE = 0.03
#: Journal lines the final pass sorts in memory at a time (a few hundred bytes each); longer journals are sorted
#: in runs of this size, spilled to anonymous temporary files and merged.
SORT_CHUNK = 20_000


class KeySet:
    """A set of strings held as sorted 64-bit hashes, 8 bytes a key (a Python set of 500K paths takes ~60 MB).

    Two different keys share a hash with probability ~n²/2⁶⁵ (10⁻⁸ for a million keys).
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._hashes = np.sort(np.frombuffer(array("Q", map(key_hash, keys)), dtype=np.uint64))

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, key: str) -> bool:
        value = np.uint64(key_hash(key))
        index = int(np.searchsorted(self._hashes, value))
        return index < len(self._hashes) and self._hashes[index] == value


def _journal_path(out_dir: Path, shard: Shard, suffix: str) -> Path:
    return Path(out_dir) / JOURNAL_DIR / f"{shard.name}.{suffix}"


def journal_shards(out_dir: Path) -> list[Shard]:
    """The shards that have a journal in ``out_dir``, in order."""
    shards = set()
    for path in (Path(out_dir) / JOURNAL_DIR).glob("*-of-*.jsonl"):
        index, _, count = path.name.removesuffix(".jsonl").partition("-of-")
        shards.add(Shard(int(index), int(count)))
    return sorted(shards, key=lambda shard: (shard.count, shard.index))


def unfinished_shards(out_dir: Path) -> list[Shard]:
    """Shards of the split used in ``out_dir`` whose run has not finished (or not started)."""
    counts = {shard.count for shard in journal_shards(out_dir)}
    return [
        Shard(index, count)
        for count in sorted(counts)
        for index in range(1, count + 1)
        if not _journal_path(out_dir, Shard(index, count), "done").exists()
    ]


def _read_lines(handle: IO[bytes]) -> Iterator[tuple[int, dict, bytes]]:
    """``(position, group, line)`` of each whole line of a journal; a line cut short by a kill is skipped."""
    for line in handle:
        if not line.endswith(b"\n"):
            continue
        try:
            group = json.loads(line)
            position = int(group["position"])
            whole = isinstance(group["location"], str) and isinstance(group["rows"], list)
        except (ValueError, TypeError, KeyError):
            continue
        if whole:
            yield position, group, line


class Journal:
    """The journal of one shard, open for a run (a context manager): holds the shard's lock, resumes, appends."""

    def __init__(self, out_dir: Path, shard: Shard) -> None:
        self.shard = shard
        self.path = _journal_path(out_dir, shard, "jsonl")
        self._done = _journal_path(out_dir, shard, "done")
        self._lock: IO[bytes] | None = None
        self._file: IO[bytes] | None = None

    def __enter__(self) -> Journal:
        out_dir = self.path.parent.parent
        other = {shard.count for shard in journal_shards(out_dir)} - {self.shard.count}
        if other:
            count = min(other)
            how = "without --shard" if count == 1 else f"with --shard K/{count}"
            raise InputError(f"{out_dir}: curated {how} by an earlier run; run it the same way, or use another --out")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(_journal_path(out_dir, self.shard, "lock"), "wb")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise InputError(f"{out_dir}: shard {self.shard} is being curated by another process") from None
        self._done.unlink(missing_ok=True)
        return self

    def resume(self, stands: Callable[[list[dict]], bool]) -> KeySet:
        """Keep the lines whose rows ``stand`` (rewriting the journal once, before the run), drop the others and any
        line cut short; returns the locations kept, which the run skips. Then opens the journal for appending."""
        kept = KeySet(())
        if self.path.exists():
            tmp = codcluster17.temporary_path(self.path)
            with open(self.path, "rb") as old, open(tmp, "wb") as new:
                kept = KeySet(_copy_standing(old, new, stands))
            tmp.replace(self.path)
        self._file = open(self.path, "ab")
        return kept

    def append(self, position: int, location: str, rows: list[dict]) -> None:
        """Record one input's rows as one line, flushed at once."""
        line = json.dumps({"position": position, "location": location, "rows": rows}) + "\n"
        self._file.write(line.encode())
        self._file.flush()

    def finish(self) -> None:
        """Mark the shard done: its every input is in the journal."""
        self._done.touch()

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()
        self._lock.close()  # releases the flock


def _copy_standing(old: IO[bytes], new: IO[bytes], stands: Callable[[list[dict]], bool]) -> Iterator[str]:
    """Copy the lines of ``old`` whose rows stand to ``new``; yields their locations."""
    for _, group, line in _read_lines(old):
        if stands(group["rows"]):
            new.write(line)
            yield group["location"]


def _spill(lines: list[tuple[int, bytes]]) -> IO[bytes]:
    """One sorted run in an anonymous temporary file (nothing is left behind if the process is killed)."""
    run = tempfile.TemporaryFile()
    lines.sort()
    for position, line in lines:
        run.write(b"%d\t%s" % (position, line))
    run.seek(0)
    return run


def _read_run(run: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for text in run:
        position, _, line = text.partition(b"\t")
        yield int(position), line


def _groups_in_input_order(paths: list[Path]) -> Iterator[dict]:
    """Every journal line of ``paths``, sorted by position: an external merge sort in runs of :data:`SORT_CHUNK`."""
    runs: list[IO[bytes]] = []
    chunk: list[tuple[int, bytes]] = []
    try:
        for path in paths:
            with open(path, "rb") as handle:
                for position, _, line in _read_lines(handle):
                    chunk.append((position, line))
                    if len(chunk) >= SORT_CHUNK:
                        runs.append(_spill(chunk))
                        chunk = []
        chunk.sort()
        for _, line in heapq.merge(*map(_read_run, runs), chunk):
            yield json.loads(line)
    finally:
        for run in runs:
            run.close()


class _Kept:
    """The curated crystals kept so far, by formula: volume per molecule and id of each."""

    def __init__(self) -> None:
        self._by_formula: dict[str, list[tuple[float, str]]] = {}

    def twin(self, formula: str, volume: float, cluster_id: str) -> str | None:
        """The id of a kept crystal with this formula and a volume within :data:`DUPLICATE_VOLUME_TOLERANCE`;
        ``None`` (and the crystal is kept) if there is none."""
        kept = self._by_formula.setdefault(formula, [])
        twin = next((cid for v, cid in kept if abs(volume - v) <= DUPLICATE_VOLUME_TOLERANCE * v), None)
        if twin is None:
            kept.append((volume, cluster_id))
        return twin


def write_manifest(out_dir: str | Path) -> Counter[tuple[str, str]]:
    """Write ``manifest.csv`` from the journals of every shard, in input order, and mark duplicates; returns the
    rows by ``(status, reason code)``. Refuses (:class:`InputError`) while a shard is unfinished.

    Of each group of curated crystals with one formula and matching volume per molecule the first in input order
    is kept, whatever order the workers or shards finished in; later ones become ``status='duplicate'``,
    ``reason='duplicate_of:<id>'``, and their cluster files are removed (after the manifest is in place, so a
    kill in between leaves nothing to redo).

    Memory, whatever the number of rows: :data:`SORT_CHUNK` journal lines (~550 bytes each, one line per input)
    and one line per sorted run; nothing else per row but, for each curated crystal kept, its formula, volume per
    molecule and id (~150 bytes). Disk: a copy of the journals, in anonymous temporary files.
    """
    out_dir = Path(out_dir)
    shards = journal_shards(out_dir)
    if not shards:
        raise InputError(f"{out_dir}: nothing curated here (no {JOURNAL_DIR}/*.jsonl)")
    unfinished = unfinished_shards(out_dir)
    if unfinished:
        names = ", ".join(map(str, unfinished))
        raise InputError(f"{out_dir}: shard(s) {names} not finished; curate them into {out_dir} first")
    codcluster17.remove_partial_writes(out_dir)
    path = out_dir / MANIFEST
    tmp = codcluster17.temporary_path(path)
    counts: Counter[tuple[str, str]] = Counter()
    kept = _Kept()
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for group in _groups_in_input_order([_journal_path(out_dir, shard, "jsonl") for shard in shards]):
            for row in group["rows"]:
                if row["status"] == "curated":
                    twin = kept.twin(row["formula"], float(row["volume_per_molecule"]), row["id"])
                    if twin is not None:
                        row = {**row, "status": "duplicate", "reason": f"duplicate_of:{twin}"}
                writer.writerow([row.get(column) for column in MANIFEST_COLUMNS])
                counts[row["status"], (row.get("reason") or "").split(":")[0]] += 1
    tmp.replace(path)
    _remove_duplicate_clusters(out_dir)
    return counts


def _manifest_rows(out_dir: Path) -> Iterator[dict[str, str]]:
    path = Path(out_dir) / MANIFEST
    if path.exists():
        with open(path, newline="") as handle:
            yield from csv.DictReader(handle)


def _remove_duplicate_clusters(out_dir: Path) -> None:
    for row in _manifest_rows(out_dir):
        if row["status"] == "duplicate":
            codcluster17.final_path(out_dir, row["id"]).unlink(missing_ok=True)
            codcluster17.initial_path(out_dir, row["id"]).unlink(missing_ok=True)


def duplicate_ids(out_dir: Path) -> KeySet:
    """Ids marked ``duplicate`` in the ``manifest.csv`` of an earlier run: curated rows whose files were removed
    on purpose."""
    return KeySet(row["id"] for row in _manifest_rows(out_dir) if row["status"] == "duplicate")


def read_manifest(out_dir: str | Path) -> pd.DataFrame:
    """``manifest.csv`` as a table: text columns as strings (``""`` where empty), counts as ``Int64``."""
    dtype = {column: _NUMERIC.get(column, str) for column in MANIFEST_COLUMNS}
    na_values = {column: [""] for column in _NUMERIC}
    return pd.read_csv(Path(out_dir) / MANIFEST, dtype=dtype, keep_default_na=False, na_values=na_values)
