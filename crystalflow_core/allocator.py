"""jemalloc for CPU training, where the system allocator costs page faults at every step.

glibc's malloc hands every allocation over 32 MiB to ``mmap`` and gives it back at ``free``, so each training step
maps fresh pages for its large message tensors and the kernel zero-fills them on first touch: on 2 CPU cores
that is much of a step's time (``benchmarks/allocator.py`` measures it). jemalloc with its decay switched off keeps
the pages it has. ``crystalflow train`` on the CPU therefore restarts itself once with jemalloc preloaded when the
library is installed (Debian: ``apt-get install libjemalloc2``) and ``CRYSTALFLOW_MALLOC`` is not ``system``;
without the library nothing changes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Where Debian, Ubuntu, Fedora and conda put the shared library.
JEMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    f"{sys.prefix}/lib/libjemalloc.so.2",
)
#: Keep freed pages for reuse instead of returning them to the kernel (plain jemalloc decays them and is no faster).
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true"
#: ``system`` keeps the system allocator; anything else (or unset) lets ``train`` use jemalloc when present.
SWITCH = "CRYSTALFLOW_MALLOC"


def find_jemalloc(candidates: Sequence[str] = JEMALLOC_CANDIDATES) -> str | None:
    """The first jemalloc shared library of ``candidates`` that exists."""
    return next((path for path in candidates if Path(path).is_file()), None)


def loaded_allocator() -> str:
    """``jemalloc`` when this process runs with jemalloc loaded (read from ``/proc/self/maps``), else ``system``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "jemalloc" if "libjemalloc" in maps else "system"


def jemalloc_environment(environ: Mapping[str, str], library: str | None) -> dict[str, str] | None:
    """The environment to restart with under jemalloc, or ``None`` to stay: no ``library``, the user chose the
    system allocator, or jemalloc is preloaded already."""
    if library is None or environ.get(SWITCH) == "system" or "libjemalloc" in environ.get("LD_PRELOAD", ""):
        return None
    preload = " ".join(filter(None, [library, environ.get("LD_PRELOAD", "")]))
    return {**environ, "LD_PRELOAD": preload, "MALLOC_CONF": environ.get("MALLOC_CONF", JEMALLOC_CONF)}


def restart_with_jemalloc(argv: Sequence[str]) -> None:
    """Replace this process by ``python -m crystalflow_core.cli argv`` under jemalloc, when
    :func:`jemalloc_environment` says to (same pid, so ``torchrun`` keeps tracking it); else return."""
    environment = jemalloc_environment(os.environ, find_jemalloc())
    if environment is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "crystalflow_core.cli", *argv], environment)
