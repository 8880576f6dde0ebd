"""The command-line contract: curate → train → sample → evaluate on real bundled CIFs, and clear errors."""

import subprocess
import sys

import pandas as pd
import pytest
from conftest import SMALL_MOLECULES

from crystalflow_core.cli import build_parser, main
from crystalflow_core.data import codcluster17


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
    printed = capsys.readouterr().out
    assert "identity (x_w)" in printed and "pm_atom" in printed
    per_cluster = pd.read_csv(scores / "per_cluster.csv", dtype={"cluster_id": str})
    assert {"cluster_id", "pm_atom", "pm_center", "collision", "separation", "pm_atom_best"} <= set(per_cluster)
    assert sorted(per_cluster["cluster_id"]) == sorted(predictions)
    summary = pd.read_csv(scores / "summary.csv", index_col="method")
    assert summary.loc["prediction", "pm_atom"] == pytest.approx(per_cluster["pm_atom"].mean())


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
