"""Fuzz: over 1,000 seeded hostile and benign variants of real CIFs, curated in one run, each end as they must.

Every mutation of ``hostile_cifs.MUTATIONS`` is applied many times to each source, with its random choices (which
atom, value, cut, ...) drawn from one seeded generator; a third of the variants are then also re-encoded
(CRLF, BOM, gzip, trailing blank lines), which must not change how they end.
"""

from __future__ import annotations

import gzip
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from hostile_cifs import MUTATIONS, SOURCES, Mutation, source_text

from crystalflow_core.data.curate import curate
from crystalflow_core.data.sources import cif_directory_refs

SEED = 11
VARIANTS_PER_SOURCE = 264  # 6 rounds of the 44 mutations
BOM = b"\xef\xbb\xbf"
CRYSTAL_FIELDS = ["formula", "n_atoms", "space_group", "z", "z_prime", "volume_per_molecule"]

#: Byte-level re-encodings that no file may notice: (name, function, suffix it needs). A second BOM is not one.
ENCODINGS: tuple[tuple[str, Callable[[bytes], bytes], str], ...] = (
    ("crlf", lambda data: data.replace(b"\n", b"\r\n"), ""),
    ("bom", lambda data: BOM + data, ""),
    ("gzip", lambda data: gzip.compress(data, mtime=0), ".gz"),
    ("blank_tail", lambda data: data + b"\n\n  \n", ""),
)


@dataclass(frozen=True)
class Variant:
    source: str
    mutation: Mutation
    encoding: str


def _encodings_for(data: bytes) -> list[tuple[str, Callable[[bytes], bytes], str]]:
    return [encoding for encoding in ENCODINGS if not (encoding[0] == "bom" and data.startswith(BOM))]


def _write_variants(directory: Path) -> dict[str, Variant]:
    """The sources and their variants, named ``{source}_{k}_{mutation}[_{encoding}]``; returns name → variant."""
    rng = random.Random(SEED)
    variants = {}
    for source in SOURCES:
        text = source_text(source)
        (directory / f"{source}.cif").write_text(text)
        for k in range(VARIANTS_PER_SOURCE):
            mutation = MUTATIONS[k % len(MUTATIONS)]
            data = mutation.apply(text, random.Random(rng.random()))
            name, suffix, encoding = f"{source}_{k:03d}_{mutation.name}", mutation.suffix, ""
            if rng.random() < 1 / 3 and not suffix.endswith(".gz"):
                encoding, encode, extra = rng.choice(_encodings_for(data))
                data, name, suffix = encode(data), f"{name}_{encoding}", suffix + extra
            (directory / f"{name}{suffix}").write_bytes(data)
            variants[name] = Variant(source, mutation, encoding)
    return variants


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory) -> tuple[list, dict[str, Variant], pd.DataFrame]:
    """All files curated in one run; the refs, the variants and the manifest as written to disk."""
    directory = tmp_path_factory.mktemp("fuzz")
    variants = _write_variants(directory)
    refs = list(cif_directory_refs(directory))  # a stream: listed once here, to be compared after the run
    out = tmp_path_factory.mktemp("fuzz_out")
    curate(refs, out, workers=2, progress=False)
    return refs, variants, pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)


def test_at_least_a_thousand_files_of_every_kind(fuzz_run) -> None:
    _, variants, _ = fuzz_run
    assert len(variants) >= 1000
    per_mutation = Counter(v.mutation.name for v in variants.values())
    assert set(per_mutation) == {m.name for m in MUTATIONS} and min(per_mutation.values()) >= 20
    assert len({v.encoding for v in variants.values()}) == len(ENCODINGS) + 1


def test_every_file_is_in_the_manifest_exactly_once(fuzz_run) -> None:
    refs, _, manifest = fuzz_run
    assert Counter(manifest["location"]) == Counter(ref.location for ref in refs)
    assert manifest["id"].is_unique


def test_nothing_fails(fuzz_run) -> None:
    _, _, manifest = fuzz_run
    failed = manifest[manifest["status"] == "failed"]
    assert failed.empty, failed[["id", "reason", "detail"]].to_string()


def test_originals_are_curated(fuzz_run) -> None:
    _, _, manifest = fuzz_run
    rows = manifest.set_index("id")
    assert list(rows.loc[list(SOURCES), "status"]) == ["curated"] * len(SOURCES)


def test_benign_variants_are_their_original(fuzz_run) -> None:
    _, variants, manifest = fuzz_run
    rows = manifest.set_index("id")
    wrong = {}
    for name, variant in variants.items():
        if variant.mutation.reasons is not None:
            continue
        row, original = rows.loc[name], rows.loc[variant.source]
        same = row[CRYSTAL_FIELDS].to_dict() == original[CRYSTAL_FIELDS].to_dict()
        if (row["status"], row["reason"], same) != ("duplicate", f"duplicate_of:{variant.source}", True):
            wrong[name] = (row["status"], row["reason"], row["detail"])
    assert wrong == {}


def test_hostile_variants_are_rejected_with_the_expected_reason(fuzz_run) -> None:
    _, variants, manifest = fuzz_run
    rows = manifest.set_index("id")
    wrong = {}
    for name, variant in variants.items():
        row = rows.loc[name]
        if variant.mutation.reasons is not None and not (
            row["status"] == "rejected" and row["reason"] in variant.mutation.reasons
        ):
            wrong[name] = (row["status"], row["reason"], row["detail"])
    assert wrong == {}
