"""Dataset statistics: hand-checkable geometry first, then a small curated directory written here."""

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist
from scipy.spatial.transform import Rotation

from crystalflow_core import dataset_statistics
from crystalflow_core.data import codcluster17
from crystalflow_core.data.cluster import Cluster
from crystalflow_core.data.dataset import split_ids


def test_pairwise_distances_right_triangle():
    x = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    assert dataset_statistics.pairwise_distances(x).tolist() == [3.0, 4.0, 5.0]


def test_correlation_is_one_for_a_rigid_motion_of_the_whole_cluster():
    rng = np.random.default_rng(0)
    x_s = rng.normal(size=(30, 3)) * 4
    x_w = x_s @ Rotation.random(random_state=1).as_matrix().T + np.array([1.0, -2.0, 0.5])
    assert dataset_statistics.distance_correlation(x_w, x_s) == pytest.approx(1.0)


def test_correlation_matches_scipy_and_intermolecular_drops_intramolecular_pairs():
    rng = np.random.default_rng(2)
    x_s, x_w = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
    mol_index = np.repeat([0, 1], 4)
    expected = np.corrcoef(pdist(x_w), pdist(x_s))[0, 1]
    assert dataset_statistics.distance_correlation(x_w, x_s) == pytest.approx(expected)
    i, j = np.triu_indices(8, k=1)
    inter = mol_index[i] != mol_index[j]
    expected_inter = np.corrcoef(pdist(x_w)[inter], pdist(x_s)[inter])[0, 1]
    assert dataset_statistics.distance_correlation(x_w, x_s, mol_index, intermolecular=True) == pytest.approx(
        expected_inter
    )
    with pytest.raises(ValueError, match="mol_index"):
        dataset_statistics.distance_correlation(x_w, x_s, intermolecular=True)


def test_cluster_radius_is_farthest_centroid_from_the_central_molecule():
    offsets = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    molecule = np.array([[0.5, 0.0, 0.0], [-0.5, 0.0, 0.0]])
    x_s = np.concatenate([molecule + o for o in offsets])
    assert dataset_statistics.cluster_radius(x_s, np.repeat([0, 1, 2], 2)) == pytest.approx(4.0)


def _write_cluster(root, cluster_id, numbers_per_molecule, n_mol, spacing, shift):
    numbers = np.tile(numbers_per_molecule, n_mol)
    mol_index = np.repeat(np.arange(n_mol), len(numbers_per_molecule))
    base = np.stack(
        [
            np.arange(len(numbers_per_molecule)) * 1.1,
            np.zeros(len(numbers_per_molecule)),
            np.zeros(len(numbers_per_molecule)),
        ],
        axis=1,
    )
    x_s = np.concatenate([base + np.array([0.0, m * spacing, 0.0]) for m in range(n_mol)])
    x_w = x_s + shift * mol_index[:, None] * np.array([0.0, 0.0, 1.0])
    codcluster17.write_cluster(root, Cluster(cluster_id, numbers, mol_index, x_w, x_s))
    return x_w, x_s


@pytest.fixture
def curated(tmp_path):
    root = tmp_path / "data"
    _write_cluster(root, "A", [6, 1, 1], n_mol=3, spacing=4.0, shift=1.0)
    _write_cluster(root, "B", [6, 8, 7, 1], n_mol=3, spacing=5.0, shift=0.0)
    pd.DataFrame(
        {
            "id": ["A", "B", "C", "D", "E"],
            "status": ["curated", "curated", "rejected", "duplicate", "duplicate"],
            "reason": ["", "", "polymeric", "duplicate_of:A", "duplicate_of:B"],
            "space_group": ["P-1", "P2_1/c", "", "", ""],
        }
    ).to_csv(root / "manifest.csv", index=False)
    return root


def test_cluster_table(curated):
    table = dataset_statistics.cluster_table(curated).set_index("cluster_id")
    assert table.loc["A", "atoms_per_molecule"] == 3 and table.loc["B", "atoms_per_molecule"] == 4
    assert table.loc["A", "elements"] == "H C" and table.loc["B", "elements"] == "H C N O"
    assert table.loc["B", "radius"] == pytest.approx(10.0)
    assert table.loc["B", "correlation"] == pytest.approx(1.0)  # x_w == x_s
    assert table.loc["A", "correlation_inter"] < 1.0
    assert table.loc["A", "space_group"] == "P-1"
    assert len(dataset_statistics.cluster_table(curated, max_clusters=1)) == 1


def test_distance_histogram_pools_clusters_and_normalises(curated):
    edges = np.arange(0.0, 16.0, 0.5)
    hist = dataset_statistics.distance_histogram(curated, bins=edges)
    width = np.diff(edges)
    assert (hist["x_s"] * width).sum() == pytest.approx(1.0)
    assert (hist["x_w"] * width).sum() == pytest.approx(1.0)
    pooled = np.concatenate([pdist(codcluster17.read_cluster(curated, c).x_s) for c in ("A", "B")])
    expected, _ = np.histogram(pooled, bins=edges, density=True)
    np.testing.assert_allclose(hist["x_s"], expected)


def test_summary_and_element_counts(curated):
    table = dataset_statistics.cluster_table(curated)
    counts = dataset_statistics.element_counts(table)
    assert counts.to_dict() == {"H": 2, "C": 2, "N": 1, "O": 1}
    summary = dataset_statistics.summary_table(table).set_index("statistic")["value"]
    assert summary["clusters"] == "2"
    assert summary["atoms per molecule (min / median / max)"] == "3 / 4 / 4"
    assert "P-1 1" in summary.filter(like="space groups").iloc[0]


def test_rejection_and_status_tables(curated):
    manifest = pd.read_csv(curated / "manifest.csv", keep_default_na=False)
    rejections = dataset_statistics.rejection_table(manifest)
    assert rejections.iloc[0][["status", "reason", "structures", "examples"]].tolist() == [
        "duplicate",
        "duplicate",
        2,
        "D, E",
    ]
    assert rejections.iloc[1][["reason", "structures"]].tolist() == ["polymeric", 1]
    status = dataset_statistics.status_table({"a": manifest, "b": manifest.iloc[:2]})
    assert status.loc["duplicate", "a"] == 2 and status.loc["duplicate", "b"] == 0


def test_subset_table_matches_split_ids(tmp_path, curated):
    for k in range(8):
        _write_cluster(curated, f"X{k}", [6, 1], n_mol=2, spacing=3.0, shift=0.5)
    table = dataset_statistics.subset_table(curated, [5, None, 100]).set_index("subset")
    splits = split_ids(codcluster17.list_cluster_ids(curated), subset=5)
    assert table.loc[5, ["train", "val", "test"]].tolist() == [len(splits[s]) for s in ("train", "val", "test")]
    assert table.loc["all", ["train", "val", "test"]].sum() == 10
    assert not table.loc[100, "available"]
