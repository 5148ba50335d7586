#!/usr/bin/env bash
# Prepares one device call that measures kiln on a lent GPU (benches/gpu/run.sh): run here,
# from the repository root, on the x86-64 build machine. Builds the release binaries the
# call needs (kiln-bench, the matmul example, the GPU test binaries), strips and packs them
# into .gpu/ and downloads the Vulkan loader packages into .gl/; both folders are ignored
# through .git/info/exclude and travel with the call as `carry: [".gl", ".gpu"]`.
#
#   bash benches/gpu/prepare.sh
#   (device) run: command "bash benches/gpu/run.sh", carry [".gl", ".gpu"], timeout_s 540
#
# A local rehearsal on lavapipe: KILN_GPU_QUICK=1 OUT=/tmp/gpu-out bash benches/gpu/run.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
for d in /.gl/ /.gpu/; do
    grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >>.git/info/exclude
done
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
target=${CARGO_TARGET_DIR:-target}

# GPU test binaries: the WGSL kernels against host references, and the layers' recurrences
# (PyTorch float64 goldens; fused persistent vs unrolled paths), which take the persistent
# kernels on a GPU and not on lavapipe.
tests=(-p kiln-wgpu --test executor --test recurrence_gpu --test tree_reduce --test op_table_gpu
    --test vector_gpu --test nan_gpu)
layer_tests=(-p kiln-tests --test lstm --test gru --test recurrent_paths --test gpu_training)
json=$(mktemp)
cargo build --release -p kiln-bench
cargo build --release -p kiln-wgpu --example matmul_bench
cargo test --release "${tests[@]}" --no-run --message-format=json >"$json"
cargo test --release "${layer_tests[@]}" --no-run --message-format=json >>"$json"
rm -rf .gpu && mkdir -p .gpu/bin .gpu/tests
cp "$target/release/kiln-bench" "$target/release/examples/matmul_bench" .gpu/bin/
python3 - "$json" <<'PY'
import json, shutil, sys
seen = set()
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    if m.get("reason") == "compiler-artifact" and exe and m["target"]["kind"] == ["test"]:
        name = m["target"]["name"]
        if name not in seen:
            seen.add(name)
            shutil.copy(exe, f".gpu/tests/{name}")
print("test binaries:", ", ".join(sorted(seen)))
PY
rm -f "$json"
strip .gpu/bin/* .gpu/tests/*
tar -C .gpu -cJf .gpu/bin.tar.xz bin tests
rm -rf .gpu/bin .gpu/tests
# the test binaries read their fixtures below the absolute path they were built in
git rev-parse --show-toplevel >.gpu/built_in
du -sh .gpu

# Vulkan loader packages for the device machine (its image has NVIDIA's driver, no loader)
if [ ! -d .gl ] || ! ls .gl/*.deb >/dev/null 2>&1; then
    mkdir -p .gl /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    # shellcheck disable=SC2086
    apt-get $o update
    # shellcheck disable=SC2086
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .gl
