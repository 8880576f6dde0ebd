"""``crystalflow report``: the notebook layer's subcommand of the ``crystalflow`` command line.

The core command line finds it through the ``crystalflow.commands`` entry point (see ``pyproject.toml``), so the
core never imports this layer. The report machinery (and with it torch, papermill and nbconvert) loads only when
the command runs: ``crystalflow --help`` lists it and ``crystalflow report --help`` shows its options without.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .scales import SCALES


def add_report_command(sub: argparse._SubParsersAction) -> None:
    """Add ``report`` to the subcommands ``sub`` of ``crystalflow`` (the ``crystalflow.commands`` entry point);
    its options are added when it is used (``configure``, see ``crystalflow_core.cli.CommandParser``)."""
    p = sub.add_parser(
        "report",
        help="run the notebook series with papermill and render reports/*.html",
        description="Executes the notebooks 01_curate … 06_crystal_prediction at the chosen scale and writes "
        "self-contained HTML reports plus OUT/index.html.",
        configure=_add_report_options,
    )
    p.set_defaults(handler=report_command)


def _add_report_options(p: argparse.ArgumentParser) -> None:
    """The options of ``report``."""
    p.add_argument(
        "--scale",
        choices=SCALES,
        default="smoke",
        help="smoke: a few structures, a tiny model and a short crystal search, to check the whole series; default: "
        "the notebooks' full defaults, every objective (default: %(default)s)",
    )
    p.add_argument("--out", type=Path, default=Path("reports"), help="HTML output (default: %(default)s)")
    p.add_argument(
        "--work", type=Path, default=None, help="curated data, runs and executed notebooks (default: OUT/work)"
    )
    p.add_argument(
        "--source",
        default="default",
        help="structures to curate: 'default', 'pyxtal' or a CIF directory (default: %(default)s)",
    )
    p.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="directory holding the notebooks to run, e.g. edited copies (default: the ones installed with "
        "crystalflow, which are notebooks/ in a checkout)",
    )


def report_command(args: argparse.Namespace) -> int:
    """Check the options, build the reports and print one line per notebook; exit status 1 when one failed."""
    from crystalflow_core.checks import check_out_dir, check_source

    from .build import build_reports
    from .execute import check_notebook_dir

    check_source("--source", args.source)
    check_out_dir("--out", args.out)
    if args.work is not None:
        check_out_dir("--work", args.work)
    notebook_dir = check_notebook_dir("--notebooks", args.notebooks)
    results = build_reports(args.scale, args.out, args.work, source=args.source, notebook_dir=notebook_dir)
    for row in results.itertuples(index=False):
        print(f"{row.notebook:24s} {row.status:7s} {row.seconds:7.1f} s  {row.error}")
    print(f"wrote {args.out}/index.html")
    return 0 if (results["status"] == "ok").all() else 1
