#!/usr/bin/env bash
# The README's physics table: the rigid flow and MMFF94 relaxation on the COD-100 test split (seed 0).
# About 35 minutes on 2 CPU cores (training 17 of them); every row is a `crystalflow evaluate` summary.
set -euo pipefail
cd "$(dirname "$0")/.."
D=data_out/default
R=runs/rigid_COD-100_s0
[ -d $D ] || crystalflow curate --source default --out $D
[ -f $R/record.json ] || {
  crystalflow train --data $D --path rigid --subset 100 --out $R
  crystalflow sample --run $R --data $D --samples 4 --out $R/predictions
  crystalflow evaluate --truth $D --pred $R/predictions --out $R/scores
}
rm -rf runs/relax_COD-100_s0 runs/relax4_COD-100_s0 $R/relaxed $R/relaxed_scores
crystalflow relax --data $D --subset 100 --out runs/relax_COD-100_s0
crystalflow evaluate --truth $D --pred runs/relax_COD-100_s0 --out runs/relax_COD-100_s0/scores
crystalflow sample --run $R --data $D --samples 4 --relax --out $R/relaxed
crystalflow evaluate --truth $D --pred $R/relaxed --out $R/relaxed_scores --no-record
crystalflow relax --data $D --subset 100 --starts 4 --out runs/relax4_COD-100_s0
crystalflow evaluate --truth $D --pred runs/relax4_COD-100_s0 --out runs/relax4_COD-100_s0/scores --no-record
