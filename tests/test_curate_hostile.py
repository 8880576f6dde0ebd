"""Curation never crashes or hangs on hostile input: each case ends in the manifest once, with its reason code.

One variant per case of ``hostile_cifs.MUTATIONS`` (empty, binary and truncated files, bad cells, symmetry and
coordinates, unknown elements, short rows, duplicated sites, no atoms, hydrogen only, huge fields, cells too
small or too large) is curated in one run; benign variants (CRLF, BOM, comments, blank lines, ...) must end
exactly as the original does. Hanging and dying workers, multi-block files and the size guards have their own
tests.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hostile_cifs import MUTATIONS, Mutation, huge_text_field, source_text
from threadpoolctl import threadpool_info, threadpool_limits

from crystalflow_core.data import codcluster17
from crystalflow_core.data import curate as curate_module
from crystalflow_core.data.cluster import crystal_cluster
from crystalflow_core.data.crystal import Crystal, check_lattice, lattice_shifts
from crystalflow_core.data.curate import MAX_DETAIL, WORKER_MEMORY, curate
from crystalflow_core.data.molecules import select_molecular_crystal
from crystalflow_core.data.sources import cif_directory_refs
from crystalflow_core.data.workers import Lost, map_with_deadline
from crystalflow_core.errors import REJECTION_REASONS, CurationError

#: Oxalic acid in P 21/c: an explicit symmetry loop with ids, Hall and H-M symbols, type symbols, a formula sum.
SOURCE = "4507991"
#: Manifest fields that describe the curated crystal (not where it came from).
CRYSTAL_FIELDS = ["formula", "n_atoms", "space_group", "z", "z_prime", "volume_per_molecule"]
BENIGN = [m for m in MUTATIONS if m.reasons is None]
HOSTILE = [m for m in MUTATIONS if m.reasons is not None]


def _variant_name(mutation: Mutation) -> str:
    return f"{SOURCE}_{mutation.name}"


def _write_variant(directory: Path, mutation: Mutation, stem: str) -> None:
    data = mutation.apply(source_text(SOURCE), random.Random(mutation.name))
    (directory / f"{stem}{mutation.suffix}").write_bytes(data)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> pd.DataFrame:
    """The source and one variant per mutation, curated in one run; the manifest read back from disk."""
    directory = tmp_path_factory.mktemp("hostile")
    (directory / f"{SOURCE}.cif").write_text(source_text(SOURCE))
    for mutation in MUTATIONS:
        _write_variant(directory, mutation, _variant_name(mutation))
    out = tmp_path_factory.mktemp("hostile_out")
    curate(cif_directory_refs(directory), out, workers=2, progress=False)
    return pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)


def test_every_file_is_in_the_manifest_once_and_nothing_failed(hostile_run: pd.DataFrame) -> None:
    assert len(hostile_run) == len(MUTATIONS) + 1
    assert hostile_run["location"].is_unique and hostile_run["id"].is_unique
    assert set(hostile_run["status"]) == {"curated", "duplicate", "rejected"}
    assert set(hostile_run["reason"]) - {""} - {f"duplicate_of:{SOURCE}"} <= set(REJECTION_REASONS)


@pytest.mark.parametrize("mutation", HOSTILE, ids=lambda m: m.name)
def test_hostile_file_is_rejected_with_its_reason(hostile_run: pd.DataFrame, mutation: Mutation) -> None:
    row = hostile_run.set_index("id").loc[_variant_name(mutation)]
    assert (row["status"], row["reason"] in mutation.reasons) == ("rejected", True), row["detail"]
    assert 0 < len(row["detail"]) <= MAX_DETAIL


@pytest.mark.parametrize("mutation", BENIGN, ids=lambda m: m.name)
def test_benign_variant_is_the_same_crystal(hostile_run: pd.DataFrame, mutation: Mutation) -> None:
    rows = hostile_run.set_index("id")
    row, original = rows.loc[_variant_name(mutation)], rows.loc[SOURCE]
    assert original["status"] == "curated"
    assert (row["status"], row["reason"]) == ("duplicate", f"duplicate_of:{SOURCE}"), row["detail"]
    assert row[CRYSTAL_FIELDS].to_dict() == original[CRYSTAL_FIELDS].to_dict()


def _curate_alone(tmp_path: Path, name: str, write) -> dict[str, bytes]:
    """Curate one file named like the source (so the noise seed is the same); its output files' bytes."""
    source, out = tmp_path / f"{name}_in", tmp_path / f"{name}_out"
    source.mkdir()
    write(source)
    curate(cif_directory_refs(source), out, workers=1, progress=False)
    clusters = sorted(out.glob("*Positions/*.csv"))
    return {path.relative_to(out).as_posix(): path.read_bytes() for path in clusters}


@pytest.fixture(scope="module")
def original_clusters(tmp_path_factory) -> dict[str, bytes]:
    return _curate_alone(tmp_path_factory.mktemp("original"), "original", _write_original)


def _write_original(directory: Path) -> None:
    (directory / f"{SOURCE}.cif").write_text(source_text(SOURCE))


@pytest.mark.parametrize("mutation", [m for m in BENIGN if m.exact], ids=lambda m: m.name)
def test_benign_variant_gives_byte_identical_clusters(
    tmp_path: Path, original_clusters: dict[str, bytes], mutation: Mutation
) -> None:
    clusters = _curate_alone(tmp_path, mutation.name, functools.partial(_write_variant, mutation=mutation, stem=SOURCE))
    assert len(original_clusters) == 2 and clusters == original_clusters


def test_megabytes_of_text_curate_as_the_original(tmp_path: Path, original_clusters: dict[str, bytes]) -> None:
    five_megabytes = Mutation("huge", functools.partial(huge_text_field, size=5_000_000))
    clusters = _curate_alone(tmp_path, "huge", functools.partial(_write_variant, mutation=five_megabytes, stem=SOURCE))
    assert clusters == original_clusters


def test_one_broken_data_block_costs_only_itself(tmp_path: Path) -> None:
    text = source_text(SOURCE)
    broken = text.replace(f"data_{SOURCE}", "data_broken").replace("_cell_length_a", "_cell_length_a 0 #", 1)
    (tmp_path / "two.cif").write_text(text + "\n" + broken)
    manifest = curate(cif_directory_refs(tmp_path), tmp_path / "out", workers=1, progress=False).set_index("id")
    assert list(manifest.index) == ["two_b1", "two_b2"]
    assert manifest.loc["two_b1", "status"] == "curated"
    assert (manifest.loc["two_b2", "status"], manifest.loc["two_b2", "reason"]) == ("rejected", "bad_cell")
    assert "must be positive" in manifest.loc["two_b2", "detail"]

    codcluster17.initial_path(tmp_path / "out", "two_b1").unlink()  # as if killed while writing: the file is redone
    again = curate(cif_directory_refs(tmp_path), tmp_path / "out", workers=1, progress=False).set_index("id")
    assert again[["status", "reason"]].equals(manifest[["status", "reason"]])
    assert codcluster17.list_cluster_ids(tmp_path / "out") == ["two_b1"]


def _hostile_loader(original):
    """``load_crystals`` that hangs on files named ``hang*``, kills its own process on ``die*`` and asks for more
    memory than a worker may have on ``oom*`` (address space only: nothing is touched, so it is harmless even
    where the limit is missing)."""

    def load(ref):
        name = Path(ref.location).name
        if name.startswith("hang"):
            time.sleep(600)
        if name.startswith("die"):
            os.kill(os.getpid(), signal.SIGKILL)
        if name.startswith("oom"):
            np.empty(WORKER_MEMORY + 2**30, dtype=np.uint8)
        return original(ref)

    return load


def test_hanging_dying_or_bloated_worker_costs_only_its_file(tmp_path: Path, monkeypatch) -> None:
    sources = tmp_path / "cifs"
    sources.mkdir()
    for name in ("a_fine", "die", "hang", "oom", "z_fine"):
        (sources / f"{name}.cif").write_text(source_text(SOURCE))
    monkeypatch.setattr(curate_module, "load_crystals", _hostile_loader(curate_module.load_crystals))
    start = time.monotonic()
    manifest = curate(cif_directory_refs(sources), tmp_path / "out", workers=1, progress=False, timeout=5.0)
    assert time.monotonic() - start < 60
    rows = manifest.set_index("id")
    assert (rows.loc["hang", "status"], rows.loc["hang", "reason"]) == ("rejected", "timeout")
    assert (rows.loc["die", "status"], rows.loc["die", "reason"]) == ("rejected", "worker_died")
    assert "SIGKILL" in rows.loc["die", "detail"] and "die.cif" in rows.loc["die", "detail"]
    assert (rows.loc["oom", "status"], rows.loc["oom", "reason"]) == ("rejected", "too_large")
    assert rows.loc["a_fine", "status"] == "curated" and rows.loc["z_fine", "status"] == "duplicate"

    monkeypatch.undo()  # the files themselves are fine: a re-run retries the lost ones
    again = curate(cif_directory_refs(sources), tmp_path / "out", workers=1, progress=False).set_index("id")
    assert list(again.loc[["die", "hang"], "reason"]) == ["duplicate_of:a_fine"] * 2
    assert again.loc["oom", "reason"] == "too_large"  # a rejection for the file itself is not retried


def test_workers_that_die_at_start_lose_each_item_and_the_run_still_ends() -> None:
    results = dict(map_with_deadline(str, [1, 2, 3], workers=2, timeout=30.0, initializer=lambda: os._exit(3)))
    assert sorted(results) == [1, 2, 3]
    assert {(type(r), r.reason) for r in results.values()} == {(Lost, "worker_died")}


def test_items_are_drawn_only_as_workers_free_up() -> None:
    """A long stream of items is never read ahead: after k results, at most k + workers items were drawn."""
    drawn = [0]

    def stream():
        for item in range(1_000_000):
            drawn[0] += 1
            yield item

    results = map_with_deadline(str, stream(), workers=2, timeout=30.0)
    first = list(itertools.islice(results, 5))
    results.close()
    assert all(result == str(item) for item, result in first) and drawn[0] <= 5 + 2


def _thread_counts(_: object) -> tuple[int, list[int]]:
    return torch.get_num_threads(), [pool["num_threads"] for pool in threadpool_info()]


def test_workers_compute_on_one_thread_whatever_the_parent_uses() -> None:
    """One worker per core: a worker's torch, BLAS and OpenMP pools are one thread each, not the parent's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threadpool_limits(limits=2):
            [(_, (torch_threads, pools))] = map_with_deadline(_thread_counts, [0], workers=1, timeout=30.0)
    finally:
        torch.set_num_threads(threads)
    assert torch_threads == 1
    assert pools and set(pools) == {1}  # numpy is loaded, so its OpenBLAS is among them


def _one_carbon_crystal(lattice: np.ndarray) -> Crystal:
    return Crystal(
        name="handmade",
        source="test",
        lattice=lattice,
        rotations=np.eye(3)[None],
        translations=np.zeros((1, 3)),
        numbers=np.array([6]),
        frac=np.array([[0.25, 0.25, 0.25]]),
        occupancies=np.ones(1),
        labels=["C1"],
    )


def test_cluster_builder_refuses_a_search_that_would_explode() -> None:
    mc = select_molecular_crystal(_one_carbon_crystal(4.0 * np.eye(3)))
    assert crystal_cluster(mc).shape == (17, 1, 3)
    start = time.monotonic()
    with pytest.raises(CurationError) as info:
        crystal_cluster(mc, n_molecules=10**8)
    assert info.value.reason == "too_large" and time.monotonic() - start < 5
    with pytest.raises(CurationError, match="too_large"):
        lattice_shifts(np.full(3, np.inf), 1)


@pytest.mark.parametrize(
    ("lattice", "problem"),
    [
        (np.diag([5.0, 5.0, 1e-6]), "lattice planes"),
        (np.diag([5.0, 5.0, 1e6]), "longer than"),
        (np.array([[5.0, 0, 0], [5.0, 1e-9, 0], [0, 0, 5.0]]), "lattice planes"),
        (np.diag([5.0, np.nan, 5.0]), "not finite"),
    ],
)
def test_cells_too_small_flat_or_large_are_bad_cells(lattice: np.ndarray, problem: str) -> None:
    with pytest.raises(CurationError, match=problem) as info:
        check_lattice(lattice, "test.cif")
    assert info.value.reason == "bad_cell"


def test_selection_guards_every_source_not_only_cifs() -> None:
    """A crystal from another source (ase, pyxtal) with a tiny cell is refused, not searched to exhaustion."""
    with pytest.raises(CurationError) as info:
        select_molecular_crystal(_one_carbon_crystal(np.diag([4.0, 4.0, 1e-6])))
    assert info.value.reason == "too_large"
