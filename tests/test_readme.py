"""The README's tour runs as printed (at a smaller training scale) on the bundled CIFs, and the README sends a
user nowhere outside the repository."""

import os
import re
import runpy
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _tour_code() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A tour of the API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_tour_runs_and_prints_all_three_methods(tmp_path, capsys):
    code = _tour_code()
    assert "epochs=10" in code
    code = code.replace("epochs=10", "epochs=1, subset=12, hidden=8, layers=1")
    work = tmp_path / "main"
    work.mkdir()
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


def test_torch_is_a_range_and_the_readme_says_which_and_where_the_cpu_wheel_is():
    torch = re.search(r'^\s*"(torch[<>=!~][^"]*)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    assert "==" not in torch and ">=" in torch and "<" in torch
    readme = (ROOT / "README.md").read_text()
    assert f"`{torch}`" in readme and "pip install torch --index-url https://download.pytorch.org/whl/cpu" in readme


def test_the_docs_name_no_path_outside_the_repository():
    for doc in ("README.md", "benchmarks/README.md"):
        assert "../" not in (ROOT / doc).read_text(), doc
