#!/usr/bin/env python3
"""kiln vs PyTorch CPU, interleaved on one machine (issue 12).

    python3 benches/kiln-bench/side_by_side.py [--rounds 3] [--device native] [--quick]
        [--only NAME[,NAME]] [--out DIR]

Runs `target/release/kiln-bench --device D` and `benches/pytorch/bench_torch.py` (2 threads)
alternately (kiln, torch, kiln, torch, ...), keeps every JSON report in DIR (default
target/side-by-side), and prints per-workload medians over the rounds and the kiln/PyTorch
ratio (> 1 means kiln is better: throughputs divided, times inverted), with the CPU model
and its SIMD flags. Build kiln-bench first: `cargo build --release -p kiln-bench`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (label, workload, extractor from kiln's JSON, extractor from torch's, higher is better)
def _mm(n, key):
    def f(w):
        for s in w["sizes"]:
            if s["n"] == n:
                return s[key]
        return None
    return f


METRICS = [
    ("unit_circle epoch ms", "unit_circle", lambda w: w["epoch_ms_mean"], lambda w: w["epoch_ms_mean"], False),
    ("mlp samples/s", "mlp", lambda w: w["samples_per_s"], lambda w: w["samples_per_s"], True),
    ("matmul 1024 GFLOP/s", "matmul", _mm(1024, "gflops_e2e"), _mm(1024, "gflops"), True),
    ("matmul 2048 GFLOP/s", "matmul", _mm(2048, "gflops_e2e"), _mm(2048, "gflops"), True),
    ("a*b+c 16M GB/s (kiln resident)", "elementwise", lambda w: w["gbps_resident"], lambda w: w["gbps"], True),
    ("char_lstm samples/s", "char_lstm", lambda w: w["samples_per_s"], lambda w: w["samples_per_s"], True),
    ("imdb_lstm samples/s", "imdb_lstm", lambda w: w["samples_per_s"], lambda w: w["samples_per_s"], True),
]


def cpu_info():
    model, flags = "?", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    simd = [x for x in flags if x.startswith(("avx", "fma", "sse4"))]
    return model, " ".join(sorted(set(simd)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="native")
    ap.add_argument("--only", default="unit_circle,mlp,matmul,elementwise,char_lstm,imdb_lstm")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "side-by-side"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    kiln_bin = os.path.join(ROOT, "target", "release", "kiln-bench")
    quick = ["--quick"] if args.quick else []
    runs = {"kiln": [], "torch": []}
    for r in range(args.rounds):
        kj = os.path.join(args.out, f"kiln-{r}.json")
        tj = os.path.join(args.out, f"torch-{r}.json")
        print(f"round {r + 1}/{args.rounds}: kiln ({args.device}) ...", file=sys.stderr)
        subprocess.run([kiln_bin, "--device", args.device, "--only", args.only, "--json", kj] + quick,
                       check=True, stdout=subprocess.DEVNULL)
        print(f"round {r + 1}/{args.rounds}: torch ...", file=sys.stderr)
        subprocess.run([sys.executable, os.path.join(ROOT, "benches", "pytorch", "bench_torch.py"),
                        "--only", args.only, "--json", tj] + quick,
                       check=True, stdout=subprocess.DEVNULL)
        for who, path in (("kiln", kj), ("torch", tj)):
            with open(path) as f:
                runs[who].append(json.load(f)["workloads"])
    model, simd = cpu_info()
    print(f"CPU: {model}\nSIMD: {simd}\nkiln device: {args.device}; PyTorch 2 threads; "
          f"{args.rounds} interleaved rounds; medians\n")
    print(f"| {'workload':<32} | {'kiln':>10} | {'PyTorch':>10} | {'kiln/PyTorch':>12} |")
    print(f"|{'-' * 34}|{'-' * 12}|{'-' * 12}|{'-' * 14}|")
    for label, name, kf, tf, higher in METRICS:
        def med(who, f):
            vals = []
            for w in runs[who]:
                try:
                    v = f(w[name])
                except (KeyError, TypeError):
                    v = None
                if v is not None:
                    vals.append(v)
            return statistics.median(vals) if vals else None
        k, t = med("kiln", kf), med("torch", tf)
        if k is None or t is None:
            continue
        ratio = k / t if higher else t / k
        print(f"| {label:<32} | {k:>10.2f} | {t:>10.2f} | {ratio:>11.2f}x |")


if __name__ == "__main__":
    main()
