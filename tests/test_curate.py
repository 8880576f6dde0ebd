"""Batch curation on real CIFs shipped with the package: layout, rigid noise, centring, resume, bad files."""

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crystalflow_core.data import codcluster17
from crystalflow_core.data.crystal import Crystal
from crystalflow_core.data.curate import CurationSettings, check_formula, curate, structure_seed
from crystalflow_core.data.molecules import MolecularCrystal
from crystalflow_core.data.noise import NoiseConfig
from crystalflow_core.data.sources import bundled_cod_directory, cif_directory_refs
from crystalflow_core.errors import CurationError

#: Bundled CIFs curated by the kill-and-resume test: enough work (a few seconds) for a kill to land mid-run.
KILL_SUBSET = 48


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
    (directory / "nocarbon.cif").write_text(
        "data_nocarbon\n_cell_length_a 5\n_cell_length_b 5\n_cell_length_c 5\n_cell_angle_alpha 90\n"
        "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n"
        "_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
        "O1 O 0.1 0.1 0.1\nH1 H 0.29 0.1 0.1\nH2 H 0.05 0.28 0.1\n"
    )
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


def _curate_command(source: Path, out: Path) -> list[str]:
    cli = [sys.executable, "-m", "crystalflow_core.cli", "curate"]
    return cli + ["--source", str(source), "--out", str(out), "--workers", "2"]


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


def _manifest_rows(out: Path) -> int:
    """Rows of the manifest a run in progress has checkpointed (it is replaced atomically, so always whole)."""
    path = out / "manifest.csv"
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


def _output_files(out: Path) -> dict[str, bytes]:
    return {path.relative_to(out).as_posix(): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}


@pytest.mark.slow
def test_killed_curation_restarts_to_the_same_output(tmp_path: Path) -> None:
    """``crystalflow curate`` killed with SIGKILL twice, then re-run: same manifest, byte-identical clusters."""
    source = tmp_path / "cifs"
    source.mkdir()
    bundled = sorted(bundled_cod_directory().glob("*.cif.gz"))[:KILL_SUBSET]
    for path in bundled:
        shutil.copy(path, source)
    shutil.copy(bundled[0], source / "zz_duplicate.cif.gz")
    (source / "broken.cif").write_text("data_broken\n_cell_length_a 5\nthis is not a CIF loop\n")
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    subprocess.run(_curate_command(source, clean), check=True, capture_output=True)

    _kill_when(_curate_command(source, resumed), lambda: any((resumed / codcluster17.FINAL_DIR).glob("*.csv")))
    _kill_when(_curate_command(source, resumed), lambda: _manifest_rows(resumed) >= KILL_SUBSET // 4)
    subprocess.run(_curate_command(source, resumed), check=True, capture_output=True)

    expected = _output_files(clean)
    assert len(codcluster17.list_cluster_ids(clean)) > KILL_SUBSET // 2
    assert "duplicate_of" in expected["manifest.csv"].decode() and "parse_error" in expected["manifest.csv"].decode()
    assert _output_files(resumed) == expected
