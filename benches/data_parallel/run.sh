#!/usr/bin/env bash
# Data-parallel steps/s on this machine: one process with the fused training step, then the
# split step (gradient plan, all-reduce, update plan) on 1, 2 and 4 MPI ranks, interleaved
# over ROUNDS rounds; each rank gets cores/ranks rayon threads (the ranks share the machine;
# `--bind-to none`: OpenMPI otherwise pins each rank to one core, whatever its threads).
# Usage: benches/data_parallel/run.sh [ROUNDS] [DEVICE]   (needs: cargo build --release
# --features mpi -p kiln --bin kiln-dp; OpenMPI)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
DEVICE=${2:-native}
BIN=target/release/kiln-dp
CORES=$(nproc)
lscpu | grep -E 'Model name|^CPU\(s\)|Flags' | sed 's/Flags:.*\(avx512f\).*/Flags: ... avx512f .../; s/Flags:.*\(avx2\).*/Flags: ... avx2 .../'
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # model steps batch ranks|single
  local model=$1 steps=$2 batch=$3 np=$4
  if [ "$np" = single ]; then
    RAYON_NUM_THREADS=$CORES $BIN --device "$DEVICE" bench --model "$model" --steps "$steps" --batch "$batch" --single
  else
    local t=$(( CORES / np )); [ "$t" -ge 1 ] || t=1
    mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$np" -x RAYON_NUM_THREADS=$t \
      $BIN --device "$DEVICE" bench --model "$model" --steps "$steps" --batch "$batch"
  fi
}
for r in $(seq 1 "$ROUNDS"); do
  for np in single 1 2 4; do
    run mlp 200 128 $np
    run imdb 20 64 $np
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
