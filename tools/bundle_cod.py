"""Rebuild ``crystalflow_core/data/bundled/cod``: the COD CIFs (public domain) that the selection accepts.

Usage: ``python tools/bundle_cod.py ../shared/cod`` — curates the directory into a temporary folder and ships
every curated file gzip-compressed (a few MB), so a fresh install runs end to end offline on real crystals.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
from pathlib import Path

from crystalflow_core.data.curate import curate
from crystalflow_core.data.sources import bundled_cod_directory, cif_directory_refs


def bundle(cif_directory: Path) -> int:
    target = bundled_cod_directory()
    with tempfile.TemporaryDirectory() as work:
        manifest = curate(cif_directory_refs(cif_directory, source="cod"), work)
    accepted = sorted(set(manifest.loc[manifest["status"] == "curated", "location"]))
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for location in accepted:
        with open(location, "rb") as source, gzip.GzipFile(target / f"{Path(location).name}.gz", "wb", mtime=0) as sink:
            shutil.copyfileobj(source, sink)
    return len(accepted)


if __name__ == "__main__":
    print(f"bundled {bundle(Path(sys.argv[1]))} CIFs into {bundled_cod_directory()}")
