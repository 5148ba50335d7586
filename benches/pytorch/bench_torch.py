#!/usr/bin/env python3
"""PyTorch CPU reference figures for kiln-bench's workloads (issue 3), 2 threads.

Not run in CI. Needs `pip install torch` (the PyPI wheel for the CPU figures):

    python3 benches/pytorch/bench_torch.py [--only NAME[,NAME]] [--json FILE] [--quick]
                                           [--device cpu|cuda]

With `--device cuda` (a lent GPU, beside kiln-bench on the same GPU: benches/gpu/run.sh) the
tensors and models live on the GPU, every timed repetition ends with
`torch.cuda.synchronize()`, f32 products stay f32 (TF32 off, as kiln's f32 kernels), and the
LSTMs run cuDNN's fused kernels.

Workloads, as close as eager PyTorch gets to what kiln-bench times:
  unit_circle  MLP 2-3-3-2 (tanh, tanh, softmax), Keras binary crossentropy on the softmax
               probabilities, SGD lr 0.01, batch 5, 1000 samples shuffled every epoch:
               ms per epoch (200 steps) and mean step latency. Every step reads the loss
               and the accuracy count back (`.item()`), as kiln's fit does.
  mlp          MLP 784-512-512-10 (relu, relu, softmax), Keras categorical crossentropy on
               the probabilities, Adam (Keras defaults, epsilon 1e-7), batch 128, 2048
               random samples: training samples/s.
  matmul       torch.mm of square f32 matrices 256..2048: GFLOP/s.
  elementwise  a * b + c over 16M f32 (eager: two kernels and a temporary): GB/s counting
               16 bytes per element, like kiln-bench.
  char_lstm    one-hot(57) -> LSTM(128) -> Linear(57) + softmax, 40 steps, RMSprop (Keras
               defaults: rho 0.9, eps 1e-7, lr 0.01), batch 128, 1024 random sequences:
               training samples/s (issue 4).
  imdb_lstm    Embedding(5000, 32) -> LSTM(100) -> Linear(1) + sigmoid, 500 steps, Adam,
               batch 64, 128 random sequences: training samples/s (issue 4).
Each workload runs once as warm-up, then is repeated for a small time budget; means are
reported. Prints a table on stderr and the JSON report on stdout (and to --json FILE).
"""

import argparse
import datetime
import json
import platform
import sys
import time

import torch

EPS = 1e-7  # Keras backend epsilon (clipping of probabilities)
WORKLOADS = ["unit_circle", "mlp", "matmul", "elementwise", "char_lstm", "imdb_lstm"]


DEVICE = torch.device("cpu")


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def timed(budget, lo, hi, f):
    t = time.perf_counter()
    f()
    sync()
    warm = time.perf_counter() - t
    reps = max(lo, min(hi, int(budget / max(warm, 1e-9))))
    runs = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        sync()
        runs.append(time.perf_counter() - t)
    return warm, runs


def mean(v):
    return sum(v) / len(v)


def keras_binary_crossentropy(p, y):
    p = p.clamp(EPS, 1 - EPS)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def keras_categorical_crossentropy(p, y):
    p = p / p.sum(dim=1, keepdim=True)
    p = p.clamp(EPS, 1 - EPS)
    return -(y * torch.log(p)).sum(dim=1).mean()


def fit_epoch(model, opt, loss_fn, x, y, batch, gen):
    n = x.shape[0]
    order = torch.randperm(n, generator=gen).to(DEVICE)
    loss_sum = 0.0
    correct = 0.0
    for i in range(0, n, batch):
        idx = order[i : i + batch]
        xb, yb = x[idx], y[idx]
        opt.zero_grad(set_to_none=True)
        p = model(xb)
        loss = loss_fn(p, yb)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(idx)
        correct += (p.argmax(1) == yb.argmax(1)).sum().item()
    return loss_sum / n, correct / n


def bench_unit_circle(budget):
    n, batch = 1000, 5
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, 2, generator=gen) * 4 - 2
    inside = (x * x).sum(1) < 1
    y = torch.stack([(~inside).float(), inside.float()], 1)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 3),
        torch.nn.Tanh(),
        torch.nn.Linear(3, 3),
        torch.nn.Tanh(),
        torch.nn.Linear(3, 2),
        torch.nn.Softmax(dim=1),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    last = {}

    def epoch():
        last["loss"], last["acc"] = fit_epoch(
            model, opt, keras_binary_crossentropy, x, y, batch, gen
        )

    warm, runs = timed(budget, 2, 20, epoch)
    steps = n // batch
    return {
        "samples": n,
        "batch": batch,
        "steps_per_epoch": steps,
        "warmup_epoch_ms": warm * 1e3,
        "epochs_timed": len(runs),
        "epoch_ms_mean": mean(runs) * 1e3,
        "epoch_ms_best": min(runs) * 1e3,
        "step_us_mean": mean(runs) * 1e6 / steps,
        "last_loss": last["loss"],
    }


def bench_mlp(budget):
    n, batch = 2048, 128
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(n, 784, generator=gen).to(DEVICE)
    y = torch.nn.functional.one_hot(
        torch.randint(0, 10, (n,), generator=gen), 10
    ).float().to(DEVICE)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
        torch.nn.Softmax(dim=1),
    ).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)

    def epoch():
        fit_epoch(model, opt, keras_categorical_crossentropy, x, y, batch, gen)

    warm, runs = timed(budget, 2, 20, epoch)
    return {
        "samples": n,
        "batch": batch,
        "warmup_epoch_ms": warm * 1e3,
        "epochs_timed": len(runs),
        "epoch_ms_mean": mean(runs) * 1e3,
        "step_ms_mean": mean(runs) * 1e3 / (n // batch),
        "samples_per_s": n / mean(runs),
    }


def bench_matmul(budget, sizes):
    out = []
    for n in sizes:
        gen = torch.Generator().manual_seed(n)
        a = (torch.rand(n, n, generator=gen) * 2 - 1).to(DEVICE)
        b = (torch.rand(n, n, generator=gen) * 2 - 1).to(DEVICE)
        c = torch.empty(n, n, device=DEVICE)
        warm, runs = timed(budget, 3, 200, lambda: torch.mm(a, b, out=c))
        flop = 2.0 * n**3
        out.append(
            {
                "n": n,
                "gflops": flop / mean(runs) / 1e9,
                "gflops_best": flop / min(runs) / 1e9,
                "ms_mean": mean(runs) * 1e3,
                "runs": len(runs),
            }
        )
    return {"sizes": out}


def bench_elementwise(budget):
    n = 16 << 20
    gen = torch.Generator().manual_seed(3)
    a, b, c = (torch.rand(n, generator=gen).to(DEVICE) for _ in range(3))
    warm, runs = timed(budget, 3, 100, lambda: a * b + c)
    return {
        "elements": n,
        "gbps": 16.0 * n / mean(runs) / 1e9,
        "ms_mean": mean(runs) * 1e3,
        "runs": len(runs),
        "note": "eager a * b + c: two kernels and a temporary; bytes counted as 16 per element",
    }


class SeqModel(torch.nn.Module):
    """Keras's Sequential(Embedding|one-hot, LSTM(units), Dense(out, activation))."""

    def __init__(self, vocab, embed, units, out, onehot):
        super().__init__()
        self.onehot, self.vocab = onehot, vocab
        self.embed = None if onehot else torch.nn.Embedding(vocab, embed)
        self.lstm = torch.nn.LSTM(vocab if onehot else embed, units, batch_first=True)
        self.dense = torch.nn.Linear(units, out)

    def forward(self, x):
        if self.onehot:
            h = torch.nn.functional.one_hot(x, self.vocab).float()
        else:
            h = self.embed(x)
        _, (hn, _) = self.lstm(h)
        z = self.dense(hn[-1])
        return torch.softmax(z, 1) if z.shape[1] > 1 else torch.sigmoid(z)


def bench_recurrent(budget, vocab, steps, embed, units, out, batch, n, onehot, opt_name):
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(0, vocab, (n, steps), generator=gen)
    if out > 1:
        y = torch.nn.functional.one_hot(torch.randint(0, out, (n,), generator=gen), out).float()
        loss_fn = keras_categorical_crossentropy
    else:
        y = torch.randint(0, 2, (n, 1), generator=gen).float()
        loss_fn = keras_binary_crossentropy
    x, y = x.to(DEVICE), y.to(DEVICE)
    model = SeqModel(vocab, embed, units, out, onehot).to(DEVICE)
    if opt_name == "rmsprop":
        opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1e-7)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)

    def epoch():
        order = torch.randperm(n, generator=gen).to(DEVICE)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            loss.item()

    warm, runs = timed(budget, 1, 10, epoch)
    return {
        "samples": n,
        "batch": batch,
        "warmup_epoch_ms": warm * 1e3,
        "epochs_timed": len(runs),
        "epoch_ms_mean": mean(runs) * 1e3,
        "step_ms_mean": mean(runs) * 1e3 / (n // batch),
        "samples_per_s": n / mean(runs),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated workloads: " + ", ".join(WORKLOADS))
    ap.add_argument("--json", help="also write the JSON report to this file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small budgets (a smoke run)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda":
        # f32 products in f32, as kiln's kernels (no TF32 tensor-core rounding)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    only = args.only.split(",") if args.only else WORKLOADS
    for name in only:
        if name not in WORKLOADS:
            ap.error(f"unknown workload {name!r}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    budget = 1.0 if args.quick else 5.0
    sizes = [256, 512, 1024] if args.quick else [256, 512, 1024, 2048]
    results = {}
    try:
        with open("/proc/loadavg") as f:
            load = f.read().strip()
    except OSError:
        load = ""
    for name in WORKLOADS:
        if name not in only:
            continue
        print(f"bench_torch: running {name} ...", file=sys.stderr)
        try:
            if name == "unit_circle":
                results[name] = bench_unit_circle(budget)
            elif name == "mlp":
                results[name] = bench_mlp(3 * budget)
            elif name == "char_lstm":
                results[name] = bench_recurrent(3 * budget, 57, 40, 0, 128, 57, 128, 1024, True, "rmsprop")
            elif name == "imdb_lstm":
                results[name] = bench_recurrent(3 * budget, 5000, 500, 32, 100, 1, 64, 128, False, "adam")
            elif name == "matmul":
                with torch.no_grad():
                    results[name] = bench_matmul(budget, sizes)
            else:
                with torch.no_grad():
                    results[name] = bench_elementwise(budget)
        except Exception as e:  # report and go on with the next workload
            print(f"bench_torch: {name} failed: {e}", file=sys.stderr)
            results[name] = {"error": str(e)}
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(DEVICE)
        + (f" ({torch.cuda.get_device_name(DEVICE)})" if DEVICE.type == "cuda" else ""),
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "loadavg_at_start": load,
        "timing": "wall clock, one warm-up, means over the timed repetitions",
        "workloads": results,
    }
    r = results
    if "unit_circle" in r and "error" not in r["unit_circle"]:
        u = r["unit_circle"]
        print(
            f"unit_circle  epoch {u['epoch_ms_mean']:.1f} ms, step {u['step_us_mean']:.0f} us",
            file=sys.stderr,
        )
    if "mlp" in r and "error" not in r["mlp"]:
        print(f"mlp          {r['mlp']['samples_per_s']:.0f} samples/s", file=sys.stderr)
    if "matmul" in r and "error" not in r["matmul"]:
        for s in r["matmul"]["sizes"]:
            print(f"matmul {s['n']:>5}  {s['gflops']:.1f} GFLOP/s", file=sys.stderr)
    for name in ["char_lstm", "imdb_lstm"]:
        if name in r and "error" not in r[name]:
            print(f"{name:<12} {r[name]['samples_per_s']:.0f} samples/s", file=sys.stderr)
    if "elementwise" in r and "error" not in r["elementwise"]:
        print(f"elementwise  {r['elementwise']['gbps']:.2f} GB/s", file=sys.stderr)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
