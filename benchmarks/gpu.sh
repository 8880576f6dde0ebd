#!/usr/bin/env bash
# Everything measured on a GPU, in one run of BUDGET seconds (default 540, for one H200):
#   1. the CUDA tests (tests/test_gpu.py: pairs on the device, pinned batches, precision modes, training, sampling);
#   2. one training step of ours beside schnetpack 2.1.1's PaiNN (128 features, 3 layers, 20 RBF; cutoffs 5/10/20 Å,
#      batches 1/8; the two real 493-atom clusters of benchmarks/vs_schnetpack.sh), ours in float32, TF32, bf16
#      and compiled, all in one process per setting (--no-isolate: CUDA peaks are reset per configuration);
#   3. sampling throughput of the shipped rigid model;
#   4. the rigid objective trained at GPU scale (wider, deeper, longer, fresh x_w every step), sampled on the
#      test split; its predictions are written to OUT for scoring (crystalflow evaluate).
#   bash benchmarks/gpu.sh OUT_DIR
# Needs a curated bundle in data_out/default, schnetpack 2.1.1 importable (the peer benchmark's setup.sh, in PEER) and
# crystalflow_core importable (pip install -e ., or PYTHONPATH=.). Each part has a time limit, so one that fails
# or runs long leaves the others' figures.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bash benchmarks/gpu.sh OUT_DIR}"
mkdir -p "$OUT"
PEER="${PEER:?set PEER to the directory of the schnetpack peer benchmark (bench_schnetpack.py, setup.sh)}"
DATA=data_out/default
export PYTHONUNBUFFERED=1
BUDGET="${BUDGET:-540}"  # seconds for the whole run; training gets what the other parts leave
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"

echo "== 1. CUDA tests (at ${SECONDS} s)"
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/tests.log" | tail -5

echo "== 2. training step against schnetpack (at ${SECONDS} s)"
FILES="$DATA/FinalPositions/1100994_cluster16.csv $DATA/FinalPositions/2105506_cluster16.csv"
A="$PWD/benchmarks/schnetpack_adapter.py"
COMMON="--features 128 --interactions 3 --rbf 20 --dtype float32 --device cuda --no-isolate --warmup 3 --repeats 10"
CSV="$OUT/vs_schnetpack_gpu.csv"
timeout 200 python3 "$PEER/bench_schnetpack.py" $FILES --cutoff 5,10,20 --batch 1,8 $COMMON --out "$CSV" \
  --model "spk_painn,$A:make_edge_model,$A:make_tf32_model,$A:make_bf16_model,$A:make_model" 2>&1 |
  grep -v "^\s*$" | tail -20
timeout 100 python3 "$PEER/bench_schnetpack.py" $FILES --cutoff 10 --batch 1,8 $COMMON --out "$CSV" --append \
  --model "$A:make_compiled_model" 2>&1 | tail -4
python3 benchmarks/speedup_table.py "$CSV" | tee "$OUT/vs_schnetpack_gpu.md"

echo "== 3. sampling throughput (at ${SECONDS} s)"
timeout 60 python3 benchmarks/sampling_throughput.py --data "$DATA" --device cuda --clusters 1,64,1024 \
  --steps 1,10 --batch-size 64 2>&1 | tee "$OUT/sampling_gpu.md" | tail -8

echo "== 4. rigid at GPU scale (at ${SECONDS} s)"
RUN=/tmp/rigid_gpu
rm -rf "$RUN"
LEFT=$((BUDGET - SECONDS - 50))
echo "training for at most $LEFT s"
START=$SECONDS
TRAIN="python3 -m crystalflow_core.cli train --data $DATA --path rigid --out $RUN --device cuda --hidden 64 --layers 3
  --batch-size 16 --lr 1e-3 --augment --checkpoint-every 25"
# Two epochs give the pace; the run then resumes with as many epochs as the time left allows (its cosine schedule
# spans them all).
timeout "$LEFT" $TRAIN --epochs 2 2>&1 | tr '\r' '\n' | grep -v "^train rigid" | tail -1
PACE=$((SECONDS - START))
EPOCHS=$(( (LEFT - PACE) * 2 / (PACE > 1 ? PACE : 1) ))
echo "2 epochs took $PACE s (start-up included); training on to $EPOCHS epochs"
timeout $((LEFT - PACE)) $TRAIN --epochs "$EPOCHS" 2>&1 | tr '\r' '\n' | grep -v "^train rigid" | tail -3
echo "trained for $((SECONDS - START)) s"
timeout 45 python3 -m crystalflow_core.cli sample --run "$RUN" --data "$DATA" --split test --samples 4 \
  --out "$RUN/test" --device cuda 2>&1 | tail -2 &&
  tar czf "$OUT/rigid_gpu_test.tgz" -C "$RUN" test config.json history.csv checkpoint.pt
tail -3 "$RUN/history.csv"; ls -la "$OUT"
