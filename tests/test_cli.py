"""The command-line contract: curate → train → sample → evaluate on real bundled CIFs, and clear errors."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_MOLECULES

from crystalflow_core import params
from crystalflow_core.cli import TRAIN_OPTIONS, build_parser, main
from crystalflow_core.data import codcluster17
from crystalflow_core.metrics import METRIC_KEYS, intermolecular_clash_rate, pm_atom
from crystalflow_core.records import RECORD, SAMPLING, evaluate_run, load_run_records
from crystalflow_reports.tables import benchmark_table


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
    chosen = ["prediction, chosen of k (fewest clashes, lowest energy)"] if "pm_atom_chosen" in per_cluster else []
    coverage = [line for line in printed if " is the mean of " in line]
    rows = [
        line.split("  ")[0].strip() for line in printed[2:] if not line.startswith("wrote") and line not in coverage
    ]
    assert rows == [
        "prediction",
        "prediction, best of k (oracle)",
        *chosen,
        "Identity (x_w)",
        "Collapse (x_w centroids)",
        "Crystal (x_s, the answer)",
    ]
    # collapse matches no shell molecule, so rmsd15 has no value: the summary says what its mean rests on
    assert "Collapse (x_w centroids): rmsd15 is the mean of 0 of 1 clusters (no shell molecule matched (1))" in coverage
    summary = pd.read_csv(scores / "summary.csv", index_col="method")
    baselines = ["Identity (x_w)", "Collapse (x_w centroids)", "Crystal (x_s, the answer)"]
    assert list(summary.index) == ["prediction", *baselines]
    assert summary.loc["Crystal (x_s, the answer)", "pm_atom"] == 0.0
    assert summary.loc["prediction", "pm_atom"] == pytest.approx(per_cluster["pm_atom"].mean())
    collapse = np.mean([_collapse_pm_atom(data, cid) for cid in per_cluster["cluster_id"]])
    assert summary.loc["Collapse (x_w centroids)", "pm_atom"] == pytest.approx(collapse)
    printed_collapse = next(line for line in printed if line.startswith("Collapse (x_w centroids)"))
    assert f"{collapse:.3f}" in printed_collapse


def test_errors_name_the_input_and_exit_nonzero(small_data, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["curate", "--source", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert f"--source='{missing}'" in capsys.readouterr().err
    assert main(["train", "--data", str(missing), "--path", "lerp", "--out", str(tmp_path / "r")]) == 2
    assert f"--data='{missing}': directory does not exist" in capsys.readouterr().err
    bad = codcluster17.prediction_path(tmp_path / "bad", codcluster17.list_cluster_ids(small_data)[0], 0)
    bad.parent.mkdir(parents=True)
    bad.write_text("not,a,cluster\n")
    assert main(["evaluate", "--truth", str(small_data), "--pred", str(tmp_path / "bad")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("crystalflow evaluate: error: ") and f"{bad}: header must be" in error


def test_evaluate_names_bad_input(small_data, tmp_path, capsys):
    assert main(["evaluate", "--truth", str(small_data), "--pred", str(tmp_path / "nowhere")]) == 2
    assert f"--pred='{tmp_path / 'nowhere'}': no PredictedPositions/" in capsys.readouterr().err
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


def _command_parsers() -> dict:
    """Every subcommand's parser, its options added."""
    subparsers = next(a for a in build_parser()._actions if a.dest == "command").choices
    return {name: sub.configured() for name, sub in subparsers.items()}


def test_help_documents_every_option():
    subparsers = _command_parsers()
    assert {"curate", "train", "sample", "evaluate", "relax", "predict", "report"} <= set(subparsers)
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help text"
    result = subprocess.run(
        [sys.executable, "-m", "crystalflow_core.cli", "train", "--help"], capture_output=True, text=True, check=True
    )
    assert "--path" in result.stdout and "gnn_md" in result.stdout


#: Run in a fresh interpreter: the help and the version of ``crystalflow``, then the libraries that got imported.
HELP_SCRIPT = """
import contextlib, io, sys
from crystalflow_core.cli import main
for argv in (["--help"], ["--version"], ["curate", "--help"], ["evaluate", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
        main(argv)
    print(out.getvalue())
print("LOADED", sorted({name.split(".")[0] for name in sys.modules} & {"torch", "pandas", "rdkit", "scipy", "numpy"}))
"""


def test_help_is_plain_text_with_examples_and_loads_no_library():
    from importlib.metadata import version

    result = subprocess.run([sys.executable, "-c", HELP_SCRIPT], capture_output=True, text=True, check=True)
    text = result.stdout
    assert "examples:\n  crystalflow predict --smiles" in text and "crystalflow train --data" in text
    assert not any(markup in text for markup in ("``", ":mod:", ":data:", ":func:", "entry point"))
    assert f"crystalflow {version('crystalflow')}\n" in text
    assert "--source SOURCE" in text and "--pred PRED" in text
    assert text.rstrip().endswith("LOADED []")


#: Run in a fresh interpreter: each command's help and a bad option of each (alone, and after an option, so that
#: argparse also converts the defaults), printing the exit status, whether the command's usage went to stdout and
#: whether an error went to stderr; then the libraries of ``sys.argv`` that got loaded.
COMMANDS_SCRIPT = """
import contextlib, io, sys
from crystalflow_core.cli import build_parser, main
commands = next(a for a in build_parser()._actions if a.dest == "command").choices
for command in commands:
    cases = {"help": ["--help"], "bad": ["--no-such-option"], "bad-after-out": ["--out", "x", "--no-such-option"]}
    for case, arguments in cases.items():
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([command, *arguments])
            except SystemExit as exit:
                status = exit.code
        usage = out.getvalue().startswith(f"usage: crystalflow {command}")
        print(command, case, status, usage, "error:" in err.getvalue())
print("LOADED", sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[1:])))
"""
#: Libraries that only running a command may load.
LIBRARIES = ("torch", "torch_geometric", "torchdiffeq", "rdkit", "pymatgen", "pyxtal", "gemmi", "ase", "scipy", "numpy")
LIBRARIES += ("pandas", "papermill", "nbconvert")


def test_no_command_loads_a_library_for_its_help_or_a_bad_option():
    result = subprocess.run([sys.executable, "-c", COMMANDS_SCRIPT, *LIBRARIES], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    *lines, loaded = result.stdout.splitlines()
    outcomes = {tuple(line.split()[:2]): line.split()[2:] for line in lines}
    commands = {command for command, _ in outcomes}
    assert {"curate", "train", "sample", "evaluate", "relax", "predict", "minimize", "report"} <= commands
    for command in commands:
        assert outcomes[command, "help"] == ["0", "True", "False"], command
        assert outcomes[command, "bad"] == outcomes[command, "bad-after-out"] == ["2", "False", "True"], command
    assert loaded == "LOADED []"


def test_train_has_an_option_for_every_training_setting_with_its_default():
    subparsers = _command_parsers()
    options = {a.dest: a.default for a in subparsers["train"]._actions if a.dest not in ("help", "data", "out")}
    settings = params.train_settings()
    assert options.keys() == settings.keys() and TRAIN_OPTIONS.keys() == settings.keys() - {"path"}
    assert {**options, "path": settings["path"]} == settings  # --path is required: no default of its own


def test_train_passes_every_option_to_trainconfig(small_data, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("crystalflow_core.train.train", lambda config: seen.append(config) or pd.DataFrame())
    chosen = {"--weight-decay": "0", "--grad-clip": "2.5", "--n-rbf": "6", "--molecule-cutoff": "0", "--seed": "3"}
    arguments = ["train", "--data", str(small_data), "--path", "rigid", "--out", str(tmp_path / "r"), "--augment"]
    assert main([*arguments, *(item for pair in chosen.items() for item in pair)]) == 0
    config = seen[0]
    assert (config.weight_decay, config.grad_clip, config.n_rbf, config.molecule_cutoff, config.seed) == (
        0,
        2.5,
        6,
        0,
        3,
    )
    assert config.augment and config.path == "rigid" and config.epochs == 60  # the objective's default


@pytest.fixture(scope="module")
def tiny_run(small_data, tmp_path_factory):
    """A lerp run of one epoch on the small data."""
    run = tmp_path_factory.mktemp("tiny_run")
    arguments = ["--data", str(small_data), "--out", str(run), "--epochs", "1", "--hidden", "8", "--layers", "1"]
    assert main(["train", "--path", "lerp", *arguments, "--device", "cpu"]) == 0
    return run


@pytest.mark.parametrize(
    "arguments, option, problem",
    [
        (["train", "--path", "lerp", "--epochs", "0"], "--epochs", "'0' is not a positive integer"),
        (["train", "--path", "lerp", "--lr", "nan"], "--lr", "'nan' is not a positive number"),
        (["train", "--path", "lerp", "--molecule-cutoff", "-1"], "--molecule-cutoff", "'-1' is not a number >= 0"),
        (["curate", "--rotation-deg", "200"], "--rotation-deg", "'200' is not an angle in [0, 180] degrees"),
        (["sample", "--samples", "two"], "--samples", "'two' is not a positive integer"),
        (["train", "--path", "sde"], "--path", "invalid choice: 'sde'"),
    ],
)
def test_a_bad_option_value_is_named_by_argparse(arguments, option, problem, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    assert f"error: argument {option}: {problem}" in capsys.readouterr().err


def test_bad_values_that_depend_on_files_name_the_option(small_cifs, small_data, tiny_run, tmp_path, capsys):
    train = ["train", "--data", str(small_data), "--path", "lerp", "--out", str(tmp_path / "r")]
    sample = ["sample", "--run", str(tiny_run), "--data", str(small_data), "--out", str(tmp_path / "p")]
    cases = {
        "--subset=99: larger than the 6 curated clusters": [*train, "--subset", "99"],
        "--device='gpu7': not a device": [*train, "--device", "gpu7"],
        "--method='rigid': does not fit path 'lerp'": [*sample, "--method", "rigid"],
        "--method='sde': path 'lerp' has no reverse-time SDE": [*sample, "--method", "sde"],
        f"--run='{tmp_path}': no checkpoint.pt there": [*sample[:1], "--run", str(tmp_path), *sample[3:]],
        f"--out='{small_data / 'curation.json'}': exists and is not a directory": [
            *["curate", "--source", str(small_cifs), "--out", str(small_data / "curation.json")]
        ],
    }
    for message, arguments in cases.items():
        assert main(arguments) == 2, arguments
        error = capsys.readouterr().err
        assert error.startswith(f"crystalflow {arguments[0]}: error: {message}") and error.count("\n") == 1, error


def test_curating_into_a_directory_curated_otherwise_names_it(small_cifs, small_data, capsys):
    arguments = ["curate", "--source", str(small_cifs), "--out", str(small_data), "--inversion"]
    assert main(arguments) == 2
    assert f"crystalflow curate: error: {small_data}: already curated with settings" in capsys.readouterr().err


def test_a_damaged_checkpoint_is_named_by_sample(small_data, tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    checkpoint = run / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    assert main(["sample", "--run", str(run), "--data", str(small_data), "--out", str(tmp_path / "p")]) == 2
    assert f"crystalflow sample: error: {checkpoint}: unreadable: truncated" in capsys.readouterr().err


def test_an_unexpected_error_keeps_its_traceback(small_data, tmp_path):
    """A bug (here a KeyError planted in training) is not an input error: traceback, exit status 1."""
    script = (
        "import sys, crystalflow_core.train as t\n"
        "def broken(config):\n"
        "    return {}['planted']\n"
        "t.train = broken\n"
        "from crystalflow_core.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    arguments = ["train", "--data", str(small_data), "--path", "lerp", "--out", str(tmp_path / "r")]
    result = subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "KeyError: 'planted'" in result.stderr


def test_sample_relax_removes_clashes_and_keeps_each_predicted_molecule(small_data, tiny_run, tmp_path):
    plain, relaxed = tmp_path / "plain", tmp_path / "relaxed"
    sample = ["sample", "--run", str(tiny_run), "--data", str(small_data), "--split", "train", "--trajectories"]
    assert main([*sample, "--out", str(plain)]) == 0
    assert main([*sample, "--out", str(relaxed), "--relax"]) == 0
    clashing = 0
    for cid, paths in codcluster17.list_predictions(plain).items():
        numbers, mol_index, before = codcluster17.read_positions_csv(paths[0])
        _, _, after = codcluster17.read_positions_csv(codcluster17.list_predictions(relaxed)[cid][0])
        clashing += intermolecular_clash_rate(before, numbers, mol_index) > 0
        assert intermolecular_clash_rate(after, numbers, mol_index) <= intermolecular_clash_rate(
            before, numbers, mol_index
        )
        for m in np.unique(mol_index):
            atoms = mol_index == m
            inner = np.linalg.norm(before[atoms][:, None] - before[atoms][None], axis=-1)
            moved = np.linalg.norm(after[atoms][:, None] - after[atoms][None], axis=-1)
            np.testing.assert_allclose(moved, inner, atol=1e-4)
        times, frames = codcluster17.read_trajectory(relaxed, cid, 0)
        assert times[-1] == times[-2] == 1.0 and np.allclose(frames[-1], after, atol=1e-4)
    assert clashing > 0  # the untrained model's predictions clash, so the test can fail


def test_a_command_line_run_gets_the_record_of_notebook_03_and_joins_the_benchmark(
    small_data, tiny_run, tmp_path, capsys
):
    """train → sample → evaluate writes the files that notebook 03's evaluation writes, so notebook 04's collector
    (``load_run_records`` of its ``runs_dir``) and tables list the run, however it was made."""
    cli_run, notebook_run = tmp_path / "runs" / "lerp_cli", tmp_path / "runs" / "lerp_notebook"
    shutil.copytree(tiny_run, cli_run)
    shutil.copytree(tiny_run, notebook_run)
    pred = cli_run / "test"
    assert main(["sample", "--run", str(cli_run), "--data", str(small_data), "--out", str(pred)]) == 0
    assert (pred / SAMPLING).is_file()
    assert main(["evaluate", "--truth", str(small_data), "--pred", str(pred), "--no-record"]) == 0
    assert "run record" not in capsys.readouterr().out and not (cli_run / RECORD).exists()
    assert main(["evaluate", "--truth", str(small_data), "--pred", str(pred)]) == 0
    assert f"wrote the run record {cli_run.resolve() / RECORD}" in capsys.readouterr().out
    by_cli = json.loads((cli_run / RECORD).read_text())
    by_notebook = json.loads(evaluate_run(notebook_run, device="cpu").read_text())
    assert by_cli.keys() == by_notebook.keys() and by_cli["metrics"] == pytest.approx(
        by_notebook["metrics"], nan_ok=True
    )
    assert {p.name for p in cli_run.iterdir()} - {"test"} == {p.name for p in notebook_run.iterdir()} - {"predictions"}
    run_records = load_run_records(tmp_path / "runs")
    assert sorted(run_records["run_dir"]) == [str(cli_run.resolve()), str(notebook_run.resolve())]
    assert run_records[["method", "split", "samples", "inversion"]].values.tolist() == [["lerp", "test", 1, False]] * 2
    assert benchmark_table(run_records, inversion=False).loc["CrystalFlow-LERP"].iloc[0] != "—"


def test_relax_baseline_is_recorded_as_a_method_with_energies_beside_pm(small_data, tmp_path, capsys):
    out = tmp_path / "relax"
    assert main(["relax", "--data", str(small_data), "--out", str(out), "--split", "train", "--iterations", "60"]) == 0
    predictions = codcluster17.list_predictions(out)
    assert predictions and all(len(paths) == 1 for paths in predictions.values())
    assert main(["evaluate", "--truth", str(small_data), "--pred", str(out)]) == 0
    assert "wrote the run record" in capsys.readouterr().out
    record = json.loads((out / "record.json").read_text())
    assert record["method"] == "relax" and record["config"]["iterations"] == 60
    relaxed, identity, crystal = record["metrics"], record["identity"], record["crystal"]
    assert relaxed["clash"] == 0 and relaxed["integrity"] < 1e-4
    assert relaxed["energy"] < identity["energy"]  # x_w overlaps; relaxed it binds
    assert crystal["pm_atom"] == 0 and crystal["matched"] == 15 and crystal["energy"] < 0
    for cid, paths in predictions.items():
        cluster = codcluster17.read_cluster(small_data, cid)
        _, _, x = codcluster17.read_positions_csv(paths[0])
        for m in range(cluster.n_molecules):
            atoms = cluster.mol_index == m
            inner = np.linalg.norm(cluster.x_w[atoms][:, None] - cluster.x_w[atoms][None], axis=-1)
            np.testing.assert_allclose(np.linalg.norm(x[atoms][:, None] - x[atoms][None], axis=-1), inner, atol=1e-4)
