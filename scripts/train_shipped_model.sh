#!/usr/bin/env bash
# Rebuild the model that ships in crystalflow_core/models/rigid: the rigid-body flow (the objective whose
# packings keep every molecule exact) trained with the default settings on every bundled crystal, seed 0.
# About 30 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
crystalflow curate --source default --out data_out/default
crystalflow train --data data_out/default --path rigid --out runs/shipped_rigid --training-split all --seed 0
python3 -c "from crystalflow_core.shipped import ship_model; print(ship_model('runs/shipped_rigid'))"
