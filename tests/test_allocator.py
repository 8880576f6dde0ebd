"""jemalloc for CPU training: when `crystalflow train` restarts under it, and that it really runs under it."""

import os
import subprocess
import sys

import pytest

from crystalflow_core.allocator import (
    JEMALLOC_CONF,
    SWITCH,
    find_jemalloc,
    jemalloc_environment,
    loaded_allocator,
)


def test_find_jemalloc_takes_the_first_library_that_exists(tmp_path):
    present = tmp_path / "libjemalloc.so.2"
    present.write_bytes(b"")
    assert find_jemalloc([str(tmp_path / "missing.so"), str(present)]) == str(present)
    assert find_jemalloc([str(tmp_path / "missing.so")]) is None


def test_restart_environment_preloads_jemalloc_once_and_keeps_other_preloads():
    environment = jemalloc_environment({"PATH": "/bin", "LD_PRELOAD": "/lib/other.so"}, "/lib/libjemalloc.so.2")
    assert environment["LD_PRELOAD"] == "/lib/libjemalloc.so.2 /lib/other.so"
    assert environment["MALLOC_CONF"] == JEMALLOC_CONF
    assert environment["PATH"] == "/bin"
    assert jemalloc_environment(environment, "/lib/libjemalloc.so.2") is None  # already under jemalloc
    assert jemalloc_environment({"MALLOC_CONF": "narenas:2"}, "/lib/libjemalloc.so.2")["MALLOC_CONF"] == "narenas:2"


def test_no_restart_without_the_library_or_when_the_system_allocator_is_asked_for():
    assert jemalloc_environment({}, None) is None
    assert jemalloc_environment({SWITCH: "system"}, "/lib/libjemalloc.so.2") is None


def test_this_test_process_runs_on_the_system_allocator():
    assert loaded_allocator() == ("jemalloc" if "libjemalloc" in os.environ.get("LD_PRELOAD", "") else "system")


@pytest.mark.skipif(find_jemalloc() is None, reason="jemalloc is not installed (apt-get install libjemalloc2)")
@pytest.mark.parametrize("switch", ["", "system"])
def test_crystalflow_train_on_the_cpu_restarts_under_jemalloc(small_data, tmp_path, switch):
    environment = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", SWITCH)}
    if switch:
        environment[SWITCH] = switch
    command = [sys.executable, "-m", "crystalflow_core.cli", "train", "--data", str(small_data), "--path", "gnn_md"]
    command += ["--out", str(tmp_path / "run"), "--epochs", "1", "--device", "cpu"]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = "system" if switch == "system" else "jemalloc"
    assert f"allocator: {expected}" in done.stderr
