"""The command-line contract: curate → train → sample → evaluate on real bundled CIFs, and clear errors."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_MOLECULES

from crystalflow_core.cli import build_parser, main
from crystalflow_core.data import codcluster17
from crystalflow_core.metrics import METRIC_KEYS, pm_atom


def _collapse_pm_atom(truth, cluster_id):
    """PM(atom) of the collapse baseline worked out here: every atom at its molecule's x_w centroid."""
    cluster = codcluster17.read_cluster(truth, cluster_id)
    centroids = np.stack([cluster.x_w[cluster.mol_index == m].mean(axis=0) for m in np.unique(cluster.mol_index)])
    return pm_atom(centroids[cluster.mol_index], cluster.x_s)


def test_end_to_end_commands(small_cifs, tmp_path, capsys):
    data, run, pred, scores = tmp_path / "data", tmp_path / "run", tmp_path / "pred", tmp_path / "scores"
    assert main(["curate", "--source", str(small_cifs), "--out", str(data), "--workers", "1"]) == 0
    assert len(codcluster17.list_cluster_ids(data)) == len(SMALL_MOLECULES)
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--path",
                "gnn_md",
                "--out",
                str(run),
                "--epochs",
                "2",
                "--hidden",
                "8",
                "--layers",
                "1",
                "--cutoff",
                "3.5",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    assert (run / "checkpoint.pt").exists() and (run / "history.csv").exists()
    assert (
        main(
            [
                "sample",
                "--run",
                str(run),
                "--data",
                str(data),
                "--split",
                "test",
                "--samples",
                "2",
                "--out",
                str(pred),
                "--trajectories",
            ]
        )
        == 0
    )
    predictions = codcluster17.list_predictions(pred)
    assert predictions and all(len(paths) == 2 for paths in predictions.values())
    times, positions = codcluster17.read_trajectory(pred, next(iter(predictions)), 0)
    assert positions.shape[0] == len(times) == 2  # GNN-MD: x_w and the one-step prediction
    capsys.readouterr()
    assert main(["evaluate", "--truth", str(data), "--pred", str(pred), "--out", str(scores)]) == 0
    printed = capsys.readouterr().out.splitlines()
    header = printed[1].split()
    assert header == list(METRIC_KEYS)  # every metric, one column each
    per_cluster = pd.read_csv(scores / "per_cluster.csv", dtype={"cluster_id": str})
    assert {"cluster_id", *METRIC_KEYS, "pm_atom_best"} <= set(per_cluster)
    assert sorted(per_cluster["cluster_id"]) == sorted(predictions)
    chosen = ["prediction, chosen of k (fewest clashes)"] if "pm_atom_chosen" in per_cluster else []
    rows = [line.split("  ")[0].strip() for line in printed[2:] if not line.startswith("wrote")]
    assert rows == [
        "prediction",
        "prediction, best of k (oracle)",
        *chosen,
        "Identity (x_w)",
        "Collapse (x_w centroids)",
    ]
    summary = pd.read_csv(scores / "summary.csv", index_col="method")
    assert list(summary.index) == ["prediction", "Identity (x_w)", "Collapse (x_w centroids)"]
    assert summary.loc["prediction", "pm_atom"] == pytest.approx(per_cluster["pm_atom"].mean())
    collapse = np.mean([_collapse_pm_atom(data, cid) for cid in per_cluster["cluster_id"]])
    assert summary.loc["Collapse (x_w centroids)", "pm_atom"] == pytest.approx(collapse)
    printed_collapse = next(line for line in printed if line.startswith("Collapse (x_w centroids)"))
    assert f"{collapse:.3f}" in printed_collapse


def test_errors_name_the_input_and_exit_nonzero(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["curate", "--source", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["train", "--data", str(missing), "--path", "lerp", "--out", str(tmp_path / "r")]) == 2
    assert str(missing) in capsys.readouterr().err
    bad = tmp_path / "bad" / "PredictedPositions"
    bad.mkdir(parents=True)
    (bad / "x_cluster16_pred0.csv").write_text("not,a,cluster\n")
    truth = tmp_path / "truth"
    (truth / "FinalPositions").mkdir(parents=True)
    assert main(["evaluate", "--truth", str(truth), "--pred", str(tmp_path / "bad")]) == 2
    assert "x_cluster16" in capsys.readouterr().err


def test_evaluate_names_bad_input(small_data, tmp_path, capsys):
    assert main(["evaluate", "--truth", str(small_data), "--pred", str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere'}: no PredictedPositions/" in capsys.readouterr().err
    cluster = codcluster17.read_cluster(small_data, codcluster17.list_cluster_ids(small_data)[0])
    stray = codcluster17.prediction_path(tmp_path / "pred", "not_curated", 0)
    codcluster17.write_positions_csv(stray, cluster.numbers, cluster.mol_index, cluster.x_w)
    assert main(["evaluate", "--truth", str(small_data), "--pred", str(tmp_path / "pred")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("crystalflow evaluate: error: ") and str(stray) in error and "not curated" in error
    good = tmp_path / "good"
    codcluster17.write_positions_csv(
        codcluster17.prediction_path(good, cluster.cluster_id, 0), cluster.numbers, cluster.mol_index, cluster.x_w
    )
    bad = codcluster17.prediction_path(good, cluster.cluster_id, 1)
    first_atoms = np.r_[True, np.diff(cluster.mol_index) != 0]
    codcluster17.write_positions_csv(bad, np.where(first_atoms, 54, cluster.numbers), cluster.mol_index, cluster.x_w)
    assert main(["evaluate", "--truth", str(small_data), "--pred", str(good)]) == 2
    assert f"{bad}: atoms differ" in capsys.readouterr().err


def test_help_documents_every_option():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    assert {"curate", "train", "sample", "evaluate"} <= set(subparsers)
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help text"
    result = subprocess.run(
        [sys.executable, "-m", "crystalflow_core.cli", "train", "--help"], capture_output=True, text=True, check=True
    )
    assert "--path" in result.stdout and "gnn_md" in result.stdout
