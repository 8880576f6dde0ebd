"""The notebooks are committed in their normal form, and what JupyterLab adds when it opens or runs one is
filtered out again, so that git shows only real edits."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crystalflow_reports.execute import NOTEBOOKS
from crystalflow_reports.notebook_format import METADATA, normalised_text

ROOT = Path(__file__).parents[1]
NOTEBOOK_PATHS = [ROOT / "notebooks" / f"{name}.ipynb" for name in NOTEBOOKS]


def as_jupyterlab_leaves_it(text: str) -> str:
    """A committed notebook after JupyterLab ran it and saved it: outputs, execution counts and times, the
    kernel's display name and the full language entry."""
    notebook = json.loads(text)
    notebook["metadata"]["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    notebook["metadata"]["language_info"] = {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": "3.11.7",
    }
    for count, cell in enumerate(c for c in notebook["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = count + 1
        cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["ran\n"]}]
        cell["metadata"]["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
    return json.dumps(notebook, indent=1)


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=NOTEBOOKS)
def test_committed_notebooks_are_in_normal_form(path):
    text = path.read_text(encoding="utf-8")
    notebook = json.loads(text)
    assert notebook["metadata"] == METADATA
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
    assert all(set(cell["metadata"]) <= {"tags"} for cell in notebook["cells"])
    assert text == normalised_text(text)


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=NOTEBOOKS)
def test_what_jupyterlab_adds_is_normalised_away(path):
    committed = path.read_text(encoding="utf-8")
    assert as_jupyterlab_leaves_it(committed) != committed
    assert normalised_text(as_jupyterlab_leaves_it(committed)) == committed


def test_the_git_filter_shows_only_real_edits_of_a_notebook_opened_in_jupyterlab(tmp_path):
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / ".gitattributes", repo / ".gitattributes")
    notebook = repo / "notebooks" / NOTEBOOK_PATHS[0].name
    shutil.copy(NOTEBOOK_PATHS[0], notebook)

    def run(*arguments: str) -> str:
        command = [git, "-c", "user.name=t", "-c", "user.email=t@t", *arguments]
        return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True).stdout

    run("init", "-q")
    run("config", "filter.notebook.clean", f"{sys.executable} -m crystalflow_reports.notebook_format")
    run("add", ".")
    run("commit", "-q", "-m", "notebooks")
    notebook.write_text(as_jupyterlab_leaves_it(notebook.read_text(encoding="utf-8")), encoding="utf-8")
    assert run("diff") == ""
    run("add", ".")
    assert run("status", "--porcelain") == ""  # nothing to commit
    notebook.write_text(notebook.read_text(encoding="utf-8").replace("# 01", "# 01 edited"), encoding="utf-8")
    diff = run("diff")
    assert "# 01 edited" in diff and "execution_count" not in diff and "3.11.7" not in diff  # the edit alone
