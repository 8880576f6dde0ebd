"""Batch curation on real CIFs shipped with the package: layout, rigid noise, centring, resume, bad files, shards,
and a parent whose memory stays flat however many CIFs a mirror holds."""

import json
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crystalflow_core.cli import main
from crystalflow_core.data import codcluster17
from crystalflow_core.data import curate as curate_module
from crystalflow_core.data import manifest as manifest_module
from crystalflow_core.data.crystal import Crystal
from crystalflow_core.data.curate import (
    CurationSettings,
    check_formula,
    curate,
    curated_noise,
    data_inversion,
    run_curation,
    structure_seed,
)
from crystalflow_core.data.manifest import Journal, Shard
from crystalflow_core.data.molecules import MolecularCrystal
from crystalflow_core.data.noise import NoiseConfig
from crystalflow_core.data.sources import bundled_cod_directory, cif_directory_refs
from crystalflow_core.errors import CurationError, InputError

#: Bundled CIFs curated by the kill-and-resume test: enough work (a few seconds) for a kill to land mid-run.
KILL_SUBSET = 48
#: A crystal of water: no carbon, so it is rejected at once.
WATER = (
    "data_nocarbon\n_cell_length_a 5\n_cell_length_b 5\n_cell_length_c 5\n_cell_angle_alpha 90\n"
    "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n"
    "_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
    "O1 O 0.1 0.1 0.1\nH1 H 0.29 0.1 0.1\nH2 H 0.05 0.28 0.1\n"
)


@pytest.fixture(scope="module")
def cif_dir(tmp_path_factory):
    """The first six COD CIFs of the bundle, plus one broken file and one that the selection rejects.

    The sixth, 1100811, gives C44 in ``_chemical_formula_sum`` where its model (and formula weight) has C42.
    """
    directory = tmp_path_factory.mktemp("cifs")
    bundled = {p.name.split(".")[0]: p for p in bundled_cod_directory().glob("*.cif.gz")}
    for cod_id in sorted(bundled)[:6]:
        shutil.copy(bundled[cod_id], directory)
    (directory / "broken.cif").write_text("data_broken\n_cell_length_a 5\nthis is not a CIF loop\n")
    (directory / "nocarbon.cif").write_text(WATER)
    return directory


@pytest.fixture(scope="module")
def curated(cif_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("curated")
    manifest = curate(cif_directory_refs(cif_dir), out, CurationSettings(seed=7), workers=2, progress=False)
    return out, manifest


def test_manifest_records_every_input(curated, cif_dir):
    out, manifest = curated
    on_disk = pd.read_csv(out / "manifest.csv", dtype={"id": str}, keep_default_na=False)
    assert len(on_disk) == len(manifest) == 8
    assert set(on_disk["status"]) <= {"curated", "rejected", "duplicate"}
    rows = on_disk.set_index("id")
    assert rows.loc["broken", "status"] == "rejected" and rows.loc["broken", "reason"] == "parse_error"
    assert rows.loc["nocarbon", "reason"] == "no_carbon"
    assert rows.loc["1100811", "reason"] == "formula_mismatch" and "C44" in rows.loc["1100811", "detail"]
    assert rows.loc["1100811", "formula"] == "C42 H66 N6 O2 Si2 Ti2"  # the molecule found is still recorded
    curated_ids = sorted(rows.index[rows["status"] == "curated"])
    assert len(curated_ids) == 5
    assert codcluster17.list_cluster_ids(out) == curated_ids
    for cid in curated_ids:
        assert rows.loc[cid, "formula"] and int(rows.loc[cid, "n_atoms"]) > 0 and rows.loc[cid, "space_group"]


def test_clusters_are_17_whole_rigidly_moved_molecules(curated):
    out, manifest = curated
    for cid in codcluster17.list_cluster_ids(out):
        cluster = codcluster17.read_cluster(out, cid)
        n_atoms = int(manifest.set_index("id").loc[cid, "n_atoms"])
        assert cluster.n_molecules == 17 and len(cluster.numbers) == 17 * n_atoms
        x_w = cluster.x_w.reshape(17, n_atoms, 3)
        x_s = cluster.x_s.reshape(17, n_atoms, 3)
        d_w = np.linalg.norm(x_w[:, :, None] - x_w[:, None], axis=-1)
        d_s = np.linalg.norm(x_s[:, :, None] - x_s[:, None], axis=-1)
        np.testing.assert_allclose(d_w, d_s, atol=1e-9)  # rigid noise keeps every molecule's geometry
        np.testing.assert_allclose(cluster.x_w.mean(axis=0), 0.0, atol=1e-9)  # centred on x_w's centroid
        assert np.sqrt(((x_w - x_s) ** 2).sum(-1).mean()) > 1.0  # genuinely moved


def test_noise_is_reproducible_per_structure(curated, cif_dir, tmp_path):
    out, _ = curated
    one = sorted(cif_dir.glob("*.cif.gz"))[:2]
    for path in one:
        shutil.copy(path, tmp_path)
    again = tmp_path / "again"
    curate(cif_directory_refs(tmp_path), again, CurationSettings(seed=7), workers=1, progress=False)
    for cid in codcluster17.list_cluster_ids(again):
        a, b = codcluster17.read_cluster(out, cid), codcluster17.read_cluster(again, cid)
        assert np.array_equal(a.x_w, b.x_w) and np.array_equal(a.x_s, b.x_s)
    assert structure_seed(7, "x") != structure_seed(8, "x")


def test_inversion_variant_keeps_distances_up_to_mirror(cif_dir, tmp_path):
    settings = CurationSettings(seed=1, noise=NoiseConfig(inversion=True))
    manifest = curate(cif_directory_refs(cif_dir), tmp_path, settings, workers=1, progress=False)
    cid = manifest.loc[manifest["status"] == "curated", "id"].iloc[0]
    cluster = codcluster17.read_cluster(tmp_path, cid)
    for m in range(17):
        w, s = cluster.x_w[cluster.mol_index == m], cluster.x_s[cluster.mol_index == m]
        np.testing.assert_allclose(
            np.linalg.norm(w[:, None] - w[None], axis=-1), np.linalg.norm(s[:, None] - s[None], axis=-1), atol=1e-9
        )


def test_rerun_resumes_without_redoing_or_losing(curated, cif_dir):
    out, manifest = curated
    victim = sorted(codcluster17.list_cluster_ids(out))[0]
    keep = sorted(codcluster17.list_cluster_ids(out))[1]
    kept_file = codcluster17.final_path(out, keep)
    stamp = kept_file.stat().st_mtime_ns
    codcluster17.initial_path(out, victim).unlink()  # an interrupted write: the cluster must be redone
    again = curate(cif_directory_refs(cif_dir), out, CurationSettings(seed=7), workers=1, progress=False)
    assert kept_file.stat().st_mtime_ns == stamp  # not redone
    assert sorted(again["id"]) == sorted(manifest["id"])
    assert victim in codcluster17.list_cluster_ids(out)
    np.testing.assert_array_equal(
        codcluster17.read_cluster(out, victim).x_w.shape, codcluster17.read_cluster(out, victim).x_s.shape
    )


def test_other_settings_on_the_same_output_are_refused(curated, cif_dir):
    out, _ = curated
    with pytest.raises(ValueError, match="already curated"):
        curate(cif_directory_refs(cif_dir), out, CurationSettings(seed=8), workers=1, progress=False)


def test_duplicates_across_sources_are_dropped(cif_dir, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    first = sorted(cif_dir.glob("*.cif.gz"))[0]
    shutil.copy(first, source / "a_copy.cif.gz")
    shutil.copy(first, source / "b_copy.cif.gz")
    manifest = curate(cif_directory_refs(source), tmp_path / "out", workers=1, progress=False).set_index("id")
    assert manifest.loc["a_copy", "status"] == "curated"
    assert manifest.loc["b_copy", "status"] == "duplicate"
    assert manifest.loc["b_copy", "reason"] == "duplicate_of:a_copy"
    assert codcluster17.list_cluster_ids(tmp_path / "out") == ["a_copy"]


def _molecule(numbers: list[int], formula_sum: str) -> MolecularCrystal:
    crystal = Crystal("m", "test", np.eye(3), np.eye(3)[None], np.zeros((1, 3)), np.array(numbers), np.zeros((0, 3)),
                      np.ones(0), formula_sum=formula_sum)  # fmt: skip
    return MolecularCrystal(crystal, np.array(numbers), np.zeros((len(numbers), 3)), "", 1, 1.0)


@pytest.mark.parametrize(
    "formula_sum",
    ["C2 H2 O4", "C H O2", "C4 H4 O8", "C2.00 H2.00 O4.00", "C2 D2 O4", " C2 H2 O4 ", "?", "C2 H2 O4 . 2(H2 O)", ""],
)
def test_formula_check_accepts_multiples_and_skips_unreadable_formulas(formula_sum: str) -> None:
    """Oxalic acid C2H2O4: the formula unit may be the molecule, half of it, or a dimer; unreadable is unchecked."""
    check_formula(_molecule([6, 6, 1, 1, 8, 8, 8, 8], formula_sum))


@pytest.mark.parametrize("formula_sum", ["C2 H4 O4", "C2 O4", "C2 H2 O4 N", "C2 H2 O3", "C4 H2 O8"])
def test_formula_check_rejects_lost_or_extra_atoms(formula_sum: str) -> None:
    with pytest.raises(CurationError) as info:
        check_formula(_molecule([6, 6, 1, 1, 8, 8, 8, 8], formula_sum))
    assert info.value.reason == "formula_mismatch" and formula_sum in info.value.detail


def _curate_command(source: Path, out: Path, *options: str) -> list[str]:
    cli = [sys.executable, "-m", "crystalflow_core.cli", "curate"]
    return cli + ["--source", str(source), "--out", str(out), "--workers", "2", *options]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _running(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _kill_when(command: list[str], ready: Callable[[], bool]) -> None:
    """Run ``command`` and SIGKILL it as soon as ``ready()``; its orphaned workers must then exit by themselves."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline, "no output within 120 s"
        time.sleep(0.005)
    workers = _children(process.pid)
    process.kill()
    process.wait()
    assert process.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while any(_running(worker) for worker in workers):
        assert time.monotonic() < deadline, "workers outlived their killed parent"
        time.sleep(0.05)


def _journal_lines(out: Path, shard: str = "1-of-1") -> int:
    """Inputs a run in progress has recorded in its shard's journal (the last line may be cut short)."""
    path = out / "journal" / f"{shard}.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _output_files(out: Path) -> dict[str, bytes]:
    """The manifest and the cluster files (not the journals, whose lines are in the order inputs finished)."""
    paths = [out / "manifest.csv", *sorted(out.glob("*Positions/*"))]
    return {path.relative_to(out).as_posix(): path.read_bytes() for path in paths if path.is_file()}


@pytest.fixture(scope="module")
def kill_source(tmp_path_factory) -> Path:
    """:data:`KILL_SUBSET` bundled CIFs, a copy of the first (a duplicate) and a broken file."""
    source = tmp_path_factory.mktemp("kill_cifs")
    bundled = sorted(bundled_cod_directory().glob("*.cif.gz"))[:KILL_SUBSET]
    for path in bundled:
        shutil.copy(path, source)
    shutil.copy(bundled[0], source / "zz_duplicate.cif.gz")
    (source / "broken.cif").write_text("data_broken\n_cell_length_a 5\nthis is not a CIF loop\n")
    return source


@pytest.fixture(scope="module")
def uninterrupted(kill_source: Path, tmp_path_factory) -> dict[str, bytes]:
    """The output files of ``crystalflow curate`` on :func:`kill_source`, run once without a kill."""
    clean = tmp_path_factory.mktemp("clean")
    subprocess.run(_curate_command(kill_source, clean), check=True, capture_output=True)
    expected = _output_files(clean)
    assert len(codcluster17.list_cluster_ids(clean)) > KILL_SUBSET // 2
    assert "duplicate_of" in expected["manifest.csv"].decode() and "parse_error" in expected["manifest.csv"].decode()
    return expected


@pytest.mark.slow
def test_killed_curation_restarts_to_the_same_output(kill_source: Path, uninterrupted, tmp_path: Path) -> None:
    """``crystalflow curate`` killed with SIGKILL twice, then re-run: same manifest, byte-identical clusters."""
    resumed = tmp_path / "resumed"
    _kill_when(_curate_command(kill_source, resumed), lambda: any((resumed / codcluster17.FINAL_DIR).glob("*.csv")))
    _kill_when(_curate_command(kill_source, resumed), lambda: _journal_lines(resumed) >= KILL_SUBSET // 4)
    subprocess.run(_curate_command(kill_source, resumed), check=True, capture_output=True)
    assert _output_files(resumed) == uninterrupted


@pytest.mark.slow
def test_killed_shards_restart_to_the_same_output(kill_source: Path, uninterrupted, tmp_path: Path) -> None:
    """Two shards curated into one directory, each killed mid-way and re-run: the manifest appears when the last
    one finishes, the same as one uninterrupted run's, with byte-identical clusters."""
    out = tmp_path / "sharded"
    first, second = (
        _curate_command(kill_source, out, "--shard", "1/2"),
        _curate_command(kill_source, out, "--shard", "2/2"),
    )
    _kill_when(first, lambda: _journal_lines(out, "1-of-2") >= 1)
    _kill_when(second, lambda: _journal_lines(out, "2-of-2") >= 1)
    _kill_when(first, lambda: _journal_lines(out, "1-of-2") >= KILL_SUBSET // 4)
    subprocess.run(second, check=True, capture_output=True)
    assert not (out / "manifest.csv").exists()  # shard 1/2 is not finished
    subprocess.run(first, check=True, capture_output=True)
    assert _output_files(out) == uninterrupted


def test_shards_curated_apart_merge_to_the_whole_run(curated, cif_dir, tmp_path, capsys) -> None:
    """Shards curated into separate directories, copied together and finished with ``--merge``: the manifest and
    clusters of one whole run. Until every shard is there, ``--merge`` names the missing one."""
    whole, _ = curated
    parts = [tmp_path / "part1", tmp_path / "part2"]
    for k, part in enumerate(parts, start=1):
        arguments = ["curate", "--source", str(cif_dir), "--out", str(part), "--seed", "7", "--shard", f"{k}/2"]
        assert main([*arguments, "--workers", "1"]) == 0
        assert (
            f"shard {k}/2 finished; manifest.csv is written when shard(s) {3 - k}/2 finish" in capsys.readouterr().out
        )
    assert 0 < len(codcluster17.list_cluster_ids(parts[0])) < len(codcluster17.list_cluster_ids(whole))
    assert main(["curate", "--merge", "--out", str(parts[0])]) == 2
    assert "shard(s) 2/2 not finished" in capsys.readouterr().err
    shutil.copytree(parts[1], parts[0], dirs_exist_ok=True)
    assert main(["curate", "--merge", "--out", str(parts[0])]) == 0
    assert "8 structures: 5 curated, 3 rejected" in capsys.readouterr().out
    assert _output_files(parts[0]) == _output_files(whole)
    assert main(["curate", "--source", str(cif_dir), "--out", str(parts[0]), "--seed", "7"]) == 2
    assert "curated with --shard K/2 by an earlier run" in capsys.readouterr().err


def test_a_line_cut_short_by_a_kill_is_redone(cif_dir, tmp_path) -> None:
    """A journal whose last line a kill cut short (and no manifest yet): the input is curated again, nothing is lost
    and nothing is recorded twice."""
    out = tmp_path / "out"
    settings = CurationSettings(seed=7)
    manifest = curate(cif_directory_refs(cif_dir), out, settings, workers=1, progress=False)
    expected = _output_files(out)
    journal = out / "journal" / "1-of-1.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    (out / "manifest.csv").unlink()
    again = curate(cif_directory_refs(cif_dir), out, settings, workers=1, progress=False)
    assert again.equals(manifest) and _output_files(out) == expected
    assert _journal_lines(out) == len(lines)


def test_one_shard_is_curated_by_one_process_at_a_time(tmp_path) -> None:
    with Journal(tmp_path, Shard(2, 3)), pytest.raises(InputError, match="shard 2/3 is being curated by another"):
        Journal(tmp_path, Shard(2, 3)).__enter__()
    with Journal(tmp_path, Shard(2, 3)):  # the lock went with the first
        pass


def test_cif_files_are_walked_in_sorted_path_order(tmp_path) -> None:
    """The streamed walk gives the order of sorting every path, so input order (which decides duplicates) is
    unchanged; files that are not CIFs, and links to directories, are not listed."""
    for name in ("b.cif", "a/x.cif.gz", "a/y.txt", "a-b/c.cif", "a.cif", "a/b/z.cif", "Z.cif", "1/00/00/1000000.cif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "loop").symlink_to(tmp_path)
    listed = [ref.location for ref in cif_directory_refs(tmp_path)]
    expected = sorted(p for p in tmp_path.rglob("*") if p.name.endswith((".cif", ".cif.gz")) and "loop" not in p.parts)
    assert listed == [str(p) for p in expected] and len(listed) == 7


def _synthetic_mirror(root: Path, count: int) -> Path:
    """``count`` CIFs in a COD mirror's layout (``1/00/00/1000000.cif``): every 250th is a real bundled crystal
    (curated once, then duplicates), every 7th a broken file, the rest water."""
    real = (bundled_cod_directory() / "4507991.cif.gz").read_bytes()
    for k in range(count):
        name = str(1_000_000 + k)
        path = root / name[0] / name[1:3] / name[3:5] / f"{name}.cif"
        path.parent.mkdir(parents=True, exist_ok=True)
        if k % 250 == 0:
            path.with_suffix(".cif.gz").write_bytes(real)
        else:
            path.write_text("data_broken\n_cell_length_a 5\nnot a loop\n" if k % 7 == 0 else WATER)
    return root


def _parent_peak(mirror: Path, out: Path) -> int:
    """Peak bytes the parent process allocated above its start while curating ``mirror`` (tracemalloc)."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        counts = run_curation(cif_directory_refs(mirror), out, workers=2, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counts is not None and counts["curated", ""] == 1 and counts.total() == _journal_lines(out)
    return peak - start


@pytest.mark.slow
def test_parent_memory_does_not_grow_with_the_number_of_cifs(tmp_path: Path, monkeypatch) -> None:
    """Curating 4x more CIFs leaves the parent's peak allocation where it was: the inputs are streamed, the rows
    journaled and the final pass sorts in bounded runs (small here, so that the runs matter at these sizes).
    Keeping anything per input (a list of paths or references, the rows, a set of ids) would add well over
    ``3 * N * PER_INPUT`` bytes between the two runs."""
    n, per_input = 2000, 64
    original = curate_module._prepare_worker
    monkeypatch.setattr(curate_module, "_prepare_worker", lambda: (tracemalloc.stop(), original()))
    monkeypatch.setattr(manifest_module, "SORT_CHUNK", 1000)
    small = _parent_peak(_synthetic_mirror(tmp_path / "small", n), tmp_path / "small_out")
    large = _parent_peak(_synthetic_mirror(tmp_path / "large", 4 * n), tmp_path / "large_out")
    print(f"parent peak above start: {small / 1e3:.0f} kB for {n} CIFs, {large / 1e3:.0f} kB for {4 * n}")
    assert large - small < 3 * n * per_input


def _curation_json(tmp_path, noise: dict):
    """A directory whose ``curation.json`` holds ``noise``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "curation.json").write_text(json.dumps({"seed": 0, "noise": noise}))
    return tmp_path


def test_data_inversion_reads_curation_json(tmp_path):
    assert data_inversion(_curation_json(tmp_path / "a", {"inversion": True})) is True
    assert data_inversion(_curation_json(tmp_path / "b", {"inversion": False})) is False
    assert data_inversion(tmp_path / "nowhere") is None


def test_curated_noise_reads_curation_json_and_names_a_bad_one(tmp_path):
    data = _curation_json(tmp_path, {"inversion": True})
    assert curated_noise(data) == NoiseConfig(inversion=True)
    assert curated_noise(tmp_path / "nowhere") is None
    _curation_json(tmp_path, {"rotation_deg": 720})
    with pytest.raises(InputError, match=r"curation.json: unreadable noise settings \(rotation_deg must lie"):
        curated_noise(data)
