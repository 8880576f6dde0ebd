"""Splits by crystal id and the tensor dataset built once from the CSV layout."""

import pytest
import torch
from test_codcluster17 import make_cluster
from torch_geometric.loader import DataLoader

from crystalflow_core.data import codcluster17
from crystalflow_core.data.dataset import ClusterDataset, hash_order, load_cluster_tensors, split_ids


def test_splits_are_disjoint_complete_and_seeded():
    ids = [f"{1000000 + i}" for i in range(250)]
    splits = split_ids(ids, seed=0)
    parts = [set(splits[s]) for s in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(ids)
    assert (len(parts[0]), len(parts[1]), len(parts[2])) == (200, 25, 25)
    assert split_ids(ids, seed=0) == splits
    assert split_ids(ids, seed=1)["test"] != splits["test"]


def test_subsets_are_nested_and_checked():
    ids = [f"x{i}" for i in range(100)]
    small = split_ids(ids, seed=3, subset=20)
    large = split_ids(ids, seed=3, subset=60)
    union = lambda s: set(s["train"]) | set(s["val"]) | set(s["test"])  # noqa: E731
    assert len(union(small)) == 20 and union(small) <= union(large)
    with pytest.raises(ValueError, match="subset=101"):
        split_ids(ids, subset=101)


def test_hash_order_does_not_depend_on_other_ids():
    small = [f"c{i}" for i in range(40)]
    large = small + [f"d{i}" for i in range(40)]
    in_large = [cid for cid in hash_order(large, seed=0) if cid in set(small)]
    assert in_large == hash_order(small, seed=0)
    assert hash_order(small, seed=0) != sorted(small)


def test_dataset_yields_data_and_uses_the_cache(tmp_path):
    for i in range(10):
        codcluster17.write_cluster(tmp_path, make_cluster(f"{i:07d}", seed=i))
    dataset = ClusterDataset(tmp_path, progress=False)
    assert len(dataset) == 10
    item = dataset[3]
    assert item.cluster_id == "0000003"
    assert item.z.dtype == torch.long and item.x_w.shape == (102, 3) and item.mol_index.max() == 16
    truth = codcluster17.read_cluster(tmp_path, "0000003")
    torch.testing.assert_close(item.x_s, torch.from_numpy(truth.x_s).float())
    assert (tmp_path / "processed" / "clusters.pt").exists()
    # a cached read must not touch the CSVs
    for path in (tmp_path / "FinalPositions").glob("*.csv"):
        path.write_text("corrupted")
    for path in (tmp_path / "InitialPositions").glob("*.csv"):
        path.write_text("corrupted")
    assert sorted(load_cluster_tensors(tmp_path, progress=False)) == dataset.ids


def test_dataset_splits_and_batches(tmp_path):
    for i in range(12):
        codcluster17.write_cluster(tmp_path, make_cluster(f"id{i}", seed=i))
    splits = {s: ClusterDataset(tmp_path, split=s, progress=False) for s in ("train", "val", "test")}
    all_ids = sum((d.ids for d in splits.values()), [])
    assert sorted(all_ids) == sorted(f"id{i}" for i in range(12))
    batch = next(iter(DataLoader(splits["train"], batch_size=4)))
    assert batch.num_graphs == 4 and batch.x_w.shape == (4 * 102, 3)
    assert batch.batch.max() == 3 and len(batch.cluster_id) == 4


def test_empty_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no clusters"):
        ClusterDataset(tmp_path)


def test_select_restricts_without_rereading(tmp_path):
    for i in range(5):
        codcluster17.write_cluster(tmp_path, make_cluster(f"s{i}", seed=i))
    dataset = ClusterDataset(tmp_path, progress=False)
    chosen = dataset.select(["s3", "s1"])
    assert chosen.ids == ["s3", "s1"] and len(chosen) == 2
    assert chosen[0] is dataset[3]
    with pytest.raises(KeyError, match="s9"):
        dataset.select(["s9"])
