#!/usr/bin/env bash
# One device call that checks and measures kiln on a lent GPU, after benches/gpu/prepare.sh
# (which says how to call it). In the repository root of the device machine, with .gl/ and
# .gpu/ carried. Every part has its own time limit, so that one hang costs only its part; the
# whole run ends in about 8 minutes. Writes, under $OUT (at most 8 files come back):
#   run.log          everything below, in order (adapter, tests, matmul kernels, summaries)
#   kiln-1.json, kiln-2.json     kiln-bench --device wgpu, two rounds (persistent recurrence)
#   torch-1.json, torch-2.json   bench_torch.py --device cuda, interleaved with kiln's rounds
#   kiln-unroll.json             kiln-bench --unroll (the unrolled recurrences: the before)
# run.log also holds the per-kernel times of the fused train steps (kiln-bench --profile).
# KILN_GPU_QUICK=1: a rehearsal (smaller sizes, kiln-bench --quick, no PyTorch unless it is
# importable), e.g. on lavapipe here.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
quick=${KILN_GPU_QUICK:-}
start=$(date +%s)
part() { echo; echo "=== $1 ($(($(date +%s) - start)) s) ==="; }

part "machine"
# the loaders go into / only on the device machine (a rehearsal here keeps its own)
if command -v nvidia-smi >/dev/null && ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null \
    || echo "no nvidia-smi"
lscpu | grep -E "Model name|^CPU\(s\)" || true
cat /proc/loadavg
git log -1 --format='kiln at %h %s' 2>/dev/null || true

work=$(mktemp -d)
tar -C "$work" -xJf .gpu/bin.tar.xz
bin=$work/bin
# the test binaries find their fixtures below the path they were built in
built_in=$(cat .gpu/built_in)
if [ "$built_in" != "$PWD" ] && [ ! -e "$built_in" ]; then
    mkdir -p "$(dirname "$built_in")" && ln -s "$PWD" "$built_in"
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp} KILN_REQUIRE_GPU=1 KILN_CACHE=off

part "tests on the GPU (WGSL kernels vs host references; LSTM/GRU goldens, persistent vs unrolled)"
for t in "$work"/tests/*; do
    name=$(basename "$t")
    # recurrent_paths trains three kinds on every device: give it the longest limit
    limit=60
    [ "$name" = recurrent_paths ] && limit=120
    if timeout "$limit" "$t" --test-threads 4 -q >"$work/$name.log" 2>&1; then
        echo "PASS $name: $(grep -E '^test result' "$work/$name.log" | tail -1)"
    else
        echo "FAIL $name (exit $?); last lines:"
        tail -40 "$work/$name.log"
    fi
done

part "matmul kernels, resident: 64x64 tiles vs 128x128 tiles"
sizes="1024 2048 4096"
[ -n "$quick" ] && sizes="256 512"
for v in tiled wide tiled wide; do
    KILN_BENCH_VARIANT=$v KILN_BENCH_EXTRA=${KILN_BENCH_EXTRA:-16} timeout 60 "$bin/matmul_bench" $sizes \
        | grep -v '^device' || echo "matmul_bench $v failed"
done

have_torch=$(python3 -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
kq=""
[ -n "$quick" ] && kq="--quick"
torch_round() {
    if [ "$have_torch" = 1 ]; then
        part "PyTorch CUDA, round $1"
        PYTHONUNBUFFERED=1 timeout 120 python3 benches/pytorch/bench_torch.py --device cuda \
            --only matmul,char_lstm,imdb_lstm --json "$OUT/torch-$1.json" $kq >/dev/null \
            || echo "bench_torch round $1 failed"
    else
        part "PyTorch CUDA, round $1: skipped (torch with CUDA not importable)"
    fi
}
kiln_round() {
    part "kiln-bench --device wgpu, round $1"
    timeout 150 "$bin/kiln-bench" --device wgpu --only matmul,char_lstm,imdb_lstm \
        --json "$OUT/kiln-$1.json" $kq || echo "kiln-bench round $1 failed"
}
kiln_round 1
torch_round 1
part "kiln-bench --device wgpu --unroll (the unrolled recurrences)"
timeout 120 "$bin/kiln-bench" --device wgpu --unroll --only char_lstm,imdb_lstm \
    --json "$OUT/kiln-unroll.json" $kq || echo "kiln-bench --unroll failed"
part "per-kernel times of the fused train steps (kiln-bench --profile: one submit and wait each)"
timeout 90 "$bin/kiln-bench" --device wgpu --quick --only char_lstm,imdb_lstm --profile \
    --json "$work/profile.json" | grep -v '^kiln-bench: running' || echo "kiln-bench --profile failed"
if [ $(($(date +%s) - start)) -lt 330 ]; then
    kiln_round 2
    torch_round 2
else
    part "second round skipped: $(($(date +%s) - start)) s used"
fi
part "done"
