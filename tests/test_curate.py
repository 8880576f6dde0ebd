"""Batch curation on real CIFs shipped with the package: layout, rigid noise, centring, resume, bad files."""

import shutil

import numpy as np
import pandas as pd
import pytest

from crystalflow_core.data import codcluster17
from crystalflow_core.data.curate import CurationSettings, curate, structure_seed
from crystalflow_core.data.noise import NoiseConfig
from crystalflow_core.data.sources import bundled_cod_directory, cif_directory_refs


@pytest.fixture(scope="module")
def cif_dir(tmp_path_factory):
    """A few real COD CIFs from the bundle, plus one broken file and one that the selection rejects."""
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
    curated_ids = sorted(rows.index[rows["status"] == "curated"])
    assert len(curated_ids) == 6
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
