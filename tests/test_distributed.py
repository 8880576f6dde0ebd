"""`crystalflow train` under `torchrun`: two gloo processes on the CPU train as one process with their global batch,
rank 0 alone prints and writes, and a run interrupted mid-epoch resumes exactly, every rank's random streams
included."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from crystalflow_core.distributed import World
from crystalflow_core.errors import CheckpointError
from crystalflow_core.train import CHECKPOINT, HISTORY, TrainConfig, make_generators, train

#: The settings of every run here but the objective: a network small enough to train in seconds.
TINY = {"epochs": 3, "hidden": 8, "layers": 1, "cutoff": 3.5, "device": "cpu", "checkpoint_every": 3}
#: Every process on one thread: the two ranks share the two cores, and their arithmetic is reproducible.
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: The installed ``crystalflow`` script, as in `torchrun ... $(command -v crystalflow) train`; the module where
#: the scripts were installed elsewhere.
SCRIPT = Path(sys.executable).with_name("crystalflow")
CRYSTALFLOW = [str(SCRIPT)] if SCRIPT.is_file() else ["-m", "crystalflow_core.cli"]
#: Run by torchrun in place of the command: `crystalflow` that stops (as if killed) before optimiser step STOP.
INTERRUPTED = """
import sys
from crystalflow_core import cli, train

stop, original = int(sys.argv[1]), train._Run.step

def step(self, *args):
    if self.progress.step + 1 == stop:
        raise SystemExit(3)
    return original(self, *args)

train._Run.step = step
cli.main(sys.argv[2:])
"""

#: ``crystalflow`` with ``destroy_process_group`` counting the DDP wrappers still alive when it is called.
WRAPPERS_AT_DESTROY = """
import gc
import sys
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from crystalflow_core import cli

destroy = dist.destroy_process_group

def counted(*args, **kwargs):
    alive = sum(isinstance(item, DistributedDataParallel) for item in gc.get_objects())
    print(f"wrappers alive at destroy: {alive}", file=sys.stderr, flush=True)
    destroy(*args, **kwargs)

dist.destroy_process_group = counted
sys.exit(cli.main(sys.argv[1:]))
"""


def _options(settings: dict) -> list[str]:
    """``train``'s options for ``settings`` (``True`` as a bare flag)."""
    options = {f"--{key.replace('_', '-')}": value for key, value in settings.items()}
    return [option if value is True else f"{option}={value}" for option, value in options.items()]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(program: list[str], data, out, settings: dict) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node=2 PROGRAM train ...`` (the torchrun CLI), to its end."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}"]
    command = [*launcher, *program, "train", f"--data={data}", f"--out={out}", *_options(settings)]
    return subprocess.run(command, env=ENVIRONMENT, capture_output=True, text=True, timeout=120)


def _checkpoint(out) -> dict:
    return torch.load(Path(out) / CHECKPOINT, weights_only=True)


def test_world_shares_a_batch_in_rank_order_and_seeds_rank_zero_as_one_process():
    batch = [7, 3, 9, 1, 4]
    parts = [World(rank=rank, size=3).share(batch) for rank in range(3)]
    assert parts == [[7, 3], [9, 1], [4]]
    assert [World(rank=rank, size=3).share([5]) for rank in range(3)] == [[5], [], []]
    assert World().share(batch) == batch
    device = torch.device("cpu")
    single, first, second = make_generators(0, device), make_generators(0, device, 0), make_generators(0, device, 1)
    for name in ("shuffle", "augment", "loss"):
        assert torch.equal(single[name].get_state(), first[name].get_state())
        assert torch.equal(first[name].get_state(), second[name].get_state()) == (name == "shuffle")


def test_two_processes_train_as_one_with_their_global_batch(small_data, tmp_path):
    # Five clusters, two per process: the global batches hold four and one, so the last step leaves rank 1
    # without a cluster. gnn_md draws nothing that matters, hence the same steps exactly, up to round-off.
    settings = {**TINY, "path": "gnn_md", "training_split": "all", "subset": 5}
    two = _torchrun(CRYSTALFLOW, small_data, tmp_path / "two", {**settings, "batch_size": 2})
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count("checkpoint: ") == 1  # rank 0 alone prints

    one = train(TrainConfig(data=str(small_data), out=str(tmp_path / "one"), progress=False, batch_size=4, **settings))
    assert list(one["step"]) == [2, 4, 6]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two" / HISTORY), one, check_exact=False, rtol=1e-5)
    expected, final = _checkpoint(tmp_path / "one"), _checkpoint(tmp_path / "two")
    assert final["progress"] == expected["progress"]
    for name, tensor in expected["model"].items():
        torch.testing.assert_close(final["model"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    # Each rank checkpointed its own streams: one epoch order for both, noise of their own.
    first, second = final["rank_generators"]
    assert torch.equal(first["shuffle"], second["shuffle"]) and not torch.equal(first["loss"], second["loss"])


def test_two_processes_interrupted_mid_epoch_resume_exactly(small_data, tmp_path):
    # Four training clusters, one per process: two steps an epoch, so the checkpoint of step 3 is mid-epoch. Two
    # separate runs are compared bit for bit, so the pair layout is forced (timed, each run could keep another).
    settings = {**TINY, "path": "lerp", "augment": True, "batch_size": 1, "pair_layout": "edges"}
    whole = _torchrun(CRYSTALFLOW, small_data, tmp_path / "whole", settings)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    stopped = _torchrun([str(script), "4"], small_data, tmp_path / "pieces", settings)
    assert stopped.returncode != 0
    at_stop = _checkpoint(tmp_path / "pieces")["progress"]
    assert at_stop["step"] == 3 and at_stop["position"] == 2

    resumed = _torchrun(CRYSTALFLOW, small_data, tmp_path / "pieces", settings)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(re.findall(r"resuming .* at step 3: epoch 2, 2/4 training clusters done", resumed.stderr)) == 1
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "pieces" / HISTORY), pd.read_csv(tmp_path / "whole" / HISTORY), check_exact=True
    )
    expected, final = _checkpoint(tmp_path / "whole"), _checkpoint(tmp_path / "pieces")
    assert final["progress"] == expected["progress"] and "val_loss" in final["history"][-1]
    for name, tensor in expected["model"].items():
        assert torch.equal(final["model"][name], tensor), name
    for rank, streams in enumerate(expected["rank_generators"]):
        for name, state in streams.items():
            assert torch.equal(final["rank_generators"][rank][name], state), (rank, name)

    config = TrainConfig(data=str(small_data), out=str(tmp_path / "pieces"), progress=False, **settings)
    with pytest.raises(CheckpointError, match="written by 2 processes, this run has 1; use torchrun --nproc_per_node"):
        train(config)


def test_the_ddp_wrapper_is_gone_before_the_process_group_is_destroyed(small_data, tmp_path):
    # A wrapper that outlives the group takes it down later, in its own destructor (runs sometimes hung after
    # their last line); destroy_process_group must find nothing still using the group.
    script = tmp_path / "count.py"
    script.write_text(WRAPPERS_AT_DESTROY)
    result = _torchrun([str(script)], small_data, tmp_path / "run", {**TINY, "path": "lerp", "epochs": 1})
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.findall(r"wrappers alive at destroy: (\d+)", result.stderr) == ["0", "0"]
