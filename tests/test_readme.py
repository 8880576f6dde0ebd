"""The README's tour runs as printed (at a smaller training scale) against the shared COD CIFs."""

import os
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared"


def _tour_code() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A tour of the API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_tour_runs_and_prints_all_three_methods(tmp_path, capsys):
    if not (SHARED / "cod").is_dir():
        pytest.skip("../shared/cod is not present")
    code = _tour_code()
    assert "epochs=10" in code
    code = code.replace("epochs=10", "epochs=1, subset=12, hidden=8, layers=1")
    work = tmp_path / "main"
    work.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)
    script = work / "tour.py"
    script.write_text(code)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    for label in ("identity", "lerp", "gnn_md"):
        line = next(line for line in printed.splitlines() if line.startswith(label + " "))
        assert all(key in line for key in ("pm_atom", "pm_center", "collision", "separation"))
