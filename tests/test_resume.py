"""Exact resume: `crystalflow train` killed with SIGKILL mid-epoch and restarted with the same command ends with the
loss history and weights of an uninterrupted run, bit for bit."""

import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from crystalflow_core.data.dataset import ClusterDataset
from crystalflow_core.train import CHECKPOINT, HISTORY

EPOCHS = 30
CHECKPOINT_EVERY = 3  # with 4 training clusters and batch size 1, most checkpoints fall inside an epoch


def _command(data, out) -> list[str]:
    return [
        sys.executable,
        "-m",
        "crystalflow_core.cli",
        "train",
        "--data",
        str(data),
        "--path",
        "lerp",
        "--out",
        str(out),
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "1",
        "--hidden",
        "8",
        "--layers",
        "1",
        "--cutoff",
        "3.5",
        "--checkpoint-every",
        str(CHECKPOINT_EVERY),
        "--device",
        "cpu",
        "--augment",
        "--pair-layout",  # two runs compared bit for bit: timed, each could keep another layout
        "edges",
    ]


#: One thread per run: the arithmetic is then reproducible bit for bit (several threads sum scatters in varying
#: order), and the two concurrent runs share the cores.
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture
def launch():
    """``launch(data, out, log)`` starts a run in the background, its output going to the file ``log``; runs
    still going when the test ends (it failed) are killed."""
    started = []

    def start(data, out, log) -> subprocess.Popen:
        with open(log, "w") as handle:
            started.append(
                subprocess.Popen(_command(data, out), env=ENVIRONMENT, stdout=handle, stderr=subprocess.STDOUT)
            )
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _checkpoint(out) -> dict:
    return torch.load(out / CHECKPOINT, weights_only=True)


def _kill_mid_epoch(process: subprocess.Popen, out, log, n_train: int, timeout: float = 120.0) -> dict:
    """SIGKILL ``process`` at a moment when its latest checkpoint lies inside an epoch; returns that checkpoint.

    The process is frozen (SIGSTOP) before its checkpoint is read, so nothing is written between the read and the
    kill; a checkpoint at an epoch's end lets it run on.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended before it could be killed mid-epoch:\n{log.read_text()}"
        time.sleep(0.02)
        if not (out / CHECKPOINT).exists():
            continue
        process.send_signal(signal.SIGSTOP)
        state = _checkpoint(out)
        if 0 < state["progress"]["position"] < n_train:
            process.kill()
            process.wait()
            return state
        process.send_signal(signal.SIGCONT)
    raise AssertionError("no mid-epoch checkpoint appeared")


def test_killed_training_resumes_exactly(small_data, tmp_path, launch):
    n_train = len(ClusterDataset(small_data, split="train", progress=False))  # also fills the tensor cache
    assert n_train == 4
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference = launch(small_data, reference_dir, tmp_path / "reference.log")
    killed = launch(small_data, killed_dir, tmp_path / "killed.log")
    at_kill = _kill_mid_epoch(killed, killed_dir, tmp_path / "killed.log", n_train)
    assert at_kill["progress"]["step"] < EPOCHS * n_train
    assert len(at_kill["history"]) == at_kill["progress"]["epoch"] < EPOCHS

    resumed = subprocess.run(_command(small_data, killed_dir), env=ENVIRONMENT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    progress = at_kill["progress"]
    assert re.search(rf"resuming .* at step {progress['step']}: epoch {progress['epoch'] + 1}, ", resumed.stderr)
    assert reference.wait() == 0, (tmp_path / "reference.log").read_text()

    expected, final = _checkpoint(reference_dir), _checkpoint(killed_dir)
    pd.testing.assert_frame_equal(
        pd.read_csv(killed_dir / HISTORY), pd.read_csv(reference_dir / HISTORY), rtol=0, atol=0
    )
    assert len(final["history"]) == EPOCHS and final["progress"] == expected["progress"]
    for name, tensor in expected["model"].items():
        torch.testing.assert_close(final["model"][name], tensor, rtol=0, atol=0, msg=name)
