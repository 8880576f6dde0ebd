#!/usr/bin/env bash
# One training step of our PaiNN velocity model beside schnetpack 2.1.1's PaiNN, in one run, on two real
# 493-atom COD-Cluster17 clusters of the bundled data (128 features, 3 layers, 20 RBF, float32, Adam), at
# cutoffs 5/10 Å and batches 1/4, with the same allocator for every model: ours as it trains (the pair layout
# chosen by timing each layout on its first 4 steps, hence 4 warm-up steps), ours on edge lists (eager and compiled)
# and ours on dense blocks.
#   bash benchmarks/vs_schnetpack.sh [OUT_DIR]      (default benchmarks/records/vs_schnetpack)
# Needs the schnetpack peer benchmark (bench_schnetpack.py and setup.sh, which makes its venv; not part of this
# repository) in PEER, and a curated bundle (crystalflow curate).
# Extra arguments for the peer script go in BENCH_ARGS, e.g. BENCH_ARGS="--device cuda" on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/records/vs_schnetpack}"
PEER="${PEER:?set PEER to the directory of the schnetpack peer benchmark (bench_schnetpack.py, setup.sh)}"
PY="${PY:-$(python3 -c 'import tempfile;print(tempfile.gettempdir())')/spk-venv/bin/python}"
[ -x "$PY" ] || bash "$PEER/setup.sh"
"$PY" -c "import torch_geometric" 2>/dev/null || "$PY" -m pip install -q torch_geometric
DATA=data_out/default
[ -d "$DATA/FinalPositions" ] || crystalflow curate --source default --out "$DATA"
mkdir -p "$OUT"
FILES="$DATA/FinalPositions/1100994_cluster16.csv $DATA/FinalPositions/2105506_cluster16.csv"
A="$PWD/benchmarks/schnetpack_adapter.py"
MALLOC="${MALLOC:-jemalloc}"
COMMON="--features 128 --interactions 3 --rbf 20 --threads 2 --dtype float32 --malloc $MALLOC --warmup 4 ${BENCH_ARGS:-}"
CSV="$OUT/results.csv"
export CRYSTALFLOW_LAYOUT_LOG="$(cd "$OUT" && pwd)/layouts.csv"
rm -f "$CRYSTALFLOW_LAYOUT_LOG"
ALL="spk_painn,$A:make_model,$A:make_edge_model,$A:make_compiled_edge_model,$A:make_dense_model"
"$PY" "$PEER/bench_schnetpack.py" $FILES --model "$ALL" $COMMON --cutoff 5,10 --batch 1,4 --repeats 3 --out "$CSV"
python3 benchmarks/speedup_table.py "$CSV" "$CRYSTALFLOW_LAYOUT_LOG" | tee "$OUT/table.md"
