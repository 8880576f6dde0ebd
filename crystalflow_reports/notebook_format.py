"""The form in which the notebooks are committed: no outputs, no execution counts, one fixed kernel and language
entry, and no cell metadata but the ``parameters`` tag, so that a diff shows only real edits.

Running or opening a notebook (JupyterLab records the Python version, the kernel's display name, execution
times) changes none of it once the notebooks pass through :func:`normalised_text` as a git "clean" filter, as
``.gitattributes`` asks for ``notebooks/*.ipynb``; one command per clone switches it on::

    git config filter.notebook.clean "python3 -m crystalflow_reports.notebook_format"

The filter reads a notebook on standard input and writes its normal form; the tests hold the committed
notebooks to it.
"""

from __future__ import annotations

import json
import sys

#: The notebook metadata every committed notebook has: the kernel JupyterLab itself names, ipykernel's
#: ``python3``, and only the language's name (JupyterLab adds its version, which differs between machines).
METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
#: Cell metadata kept: papermill's ``tags`` (the ``parameters`` cell).
CELL_METADATA = ("tags",)


def normalise_cell(cell: dict) -> dict:
    """``cell`` with only its kept metadata, and a code cell without outputs or execution count."""
    cell = {**cell, "metadata": {key: cell["metadata"][key] for key in CELL_METADATA if key in cell["metadata"]}}
    if cell["cell_type"] == "code":
        cell.update(outputs=[], execution_count=None)
    return cell


def normalise(notebook: dict) -> dict:
    """A notebook (as ``json.loads`` reads it) in the committed form."""
    return {**notebook, "metadata": METADATA, "cells": [normalise_cell(cell) for cell in notebook["cells"]]}


def normalised_text(text: str) -> str:
    """The committed text of the notebook ``text``: :func:`normalise`\\ d and laid out as ``nbformat`` writes it
    (one-space indents, sorted keys, UTF-8), with a final newline."""
    return json.dumps(normalise(json.loads(text)), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(normalised_text(sys.stdin.read()))
