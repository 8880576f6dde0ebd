"""COD-Cluster17 CSV layout: exact round trip, layout checks with errors naming the file, prediction listing."""

import numpy as np
import pytest

from crystalflow_core.data import codcluster17
from crystalflow_core.data.cluster import Cluster
from crystalflow_core.data.codcluster17 import ClusterFileError


def make_cluster(cluster_id: str = "1000034", n_mol: int = 17, seed: int = 0) -> Cluster:
    rng = np.random.default_rng(seed)
    molecule = np.array([6, 6, 8, 1, 1, 1])
    numbers = np.tile(molecule, n_mol)
    mol_index = np.repeat(np.arange(n_mol), len(molecule))
    x_s = rng.normal(size=(len(numbers), 3)) * 7.3
    x_w = x_s + rng.normal(size=x_s.shape) / 3
    return Cluster(cluster_id, numbers, mol_index, x_w, x_s)


def test_round_trip_is_exact(tmp_path):
    cluster = make_cluster()
    codcluster17.write_cluster(tmp_path, cluster)
    back = codcluster17.read_cluster(tmp_path, cluster.cluster_id)
    assert np.array_equal(back.x_s, cluster.x_s)  # bit-for-bit
    assert np.array_equal(back.x_w, cluster.x_w)
    assert np.array_equal(back.numbers, cluster.numbers)
    assert np.array_equal(back.mol_index, cluster.mol_index)
    assert back.n_molecules == 17


def test_published_file_names_and_header(tmp_path):
    cluster = make_cluster("7000001")
    codcluster17.write_cluster(tmp_path, cluster)
    final = tmp_path / "FinalPositions" / "7000001_cluster16.csv"
    initial = tmp_path / "InitialPositions" / "7000001_cluster16_noised.csv"
    lines = final.read_text().splitlines()
    assert lines[0] == "mol_idx,atom_type,x,y,z"
    assert lines[1].startswith("0,C,")
    assert lines[4].startswith("0,H,")
    assert len(lines) == 1 + 17 * 6
    assert initial.exists()
    assert codcluster17.list_cluster_ids(tmp_path) == ["7000001"]


def test_reads_a_hand_written_file(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("mol_idx,atom_type,x,y,z\n0,O,0.0,0.0,0.1\n0,H,0.9,0,0\n1,O,3,0,0.5\n1,H,3.9,0,0\n")
    numbers, mol_index, x = codcluster17.read_positions_csv(path)
    assert numbers.tolist() == [8, 1, 8, 1]
    assert mol_index.tolist() == [0, 0, 1, 1]
    assert x[2].tolist() == [3.0, 0.0, 0.5]


@pytest.mark.parametrize(
    "body, message",
    [
        ("mol,atom_type,x,y,z\n0,C,0,0,0\n", "header"),
        ("mol_idx,atom_type,x,y,z\n0,Qq,0,0,0\n", "unknown element"),
        ("mol_idx,atom_type,x,y,z\n0,C,0,0,0\n1,O,1,1,1\n", "atom order"),
        ("mol_idx,atom_type,x,y,z\n0,C,0,0,0\n0,C,1,1,1\n1,C,1,1,2\n", "equal molecules"),
        ("mol_idx,atom_type,x,y,z\n1,C,0,0,0\n0,C,1,1,1\n", "contiguous"),
        ("mol_idx,atom_type,x,y,z\n0,C,nan,0,0\n", "non-finite"),
        ("mol_idx,atom_type,x,y,z\n", "no atoms"),
    ],
)
def test_bad_files_name_file_and_reason(tmp_path, body, message):
    path = tmp_path / "bad_cluster16.csv"
    path.write_text(body)
    with pytest.raises(ClusterFileError, match=message) as info:
        codcluster17.read_positions_csv(path)
    assert str(path) in str(info.value)


def test_mismatched_initial_file_is_reported(tmp_path):
    cluster = make_cluster()
    codcluster17.write_cluster(tmp_path, cluster)
    other = make_cluster()
    other.numbers = np.tile(np.array([6, 6, 7, 1, 1, 1]), 17)
    codcluster17.write_positions_csv(
        codcluster17.initial_path(tmp_path, cluster.cluster_id), other.numbers, other.mol_index, other.x_w
    )
    with pytest.raises(ClusterFileError, match="atoms differ"):
        codcluster17.read_cluster(tmp_path, cluster.cluster_id)


def test_predictions_and_trajectories(tmp_path):
    cluster = make_cluster("42")
    for k in (0, 2, 1, 10):
        codcluster17.write_positions_csv(
            codcluster17.prediction_path(tmp_path, "42", k), cluster.numbers, cluster.mol_index, cluster.x_s + k
        )
    found = codcluster17.list_predictions(tmp_path)
    assert [p.name for p in found["42"]] == [f"42_cluster16_pred{k}.csv" for k in (0, 1, 2, 10)]
    times = np.linspace(0, 1, 5)
    positions = np.stack([cluster.x_w * (1 - t) + cluster.x_s * t for t in times])
    codcluster17.write_trajectory(tmp_path, "42", 0, times, positions)
    t_back, p_back = codcluster17.read_trajectory(tmp_path, "42", 0)
    assert np.array_equal(t_back, times) and np.array_equal(p_back, positions)
