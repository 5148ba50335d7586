#!/usr/bin/env python3
"""Generates golden.rs: inputs and hand-derived expected outputs of the op table.

Independent of kiln: plain Python floats (IEEE f64) and the math module.
Run from this folder:  python3 gen_golden.py > golden.rs
"""
import math

A = [0.5, -1.2, 2.0, 0.3, 1.5, -0.7]          # [2, 3]
P = [0.5, 1.2, 2.0, 0.3, 1.5, 0.7]            # [2, 3], positive
B = [1.5, 0.4, -2.0, 0.7, 2.5, 1.1]           # [2, 3], no ties with A
C = [1.5, -1.2, -2.0, 0.3, 2.5, -0.9]         # [2, 3], ties with A at 1 and 3
COND = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
X12 = [0.1 * i - 0.55 for i in range(12)]     # [2, 3, 2]
M1 = [0.2, -0.5, 1.0, 0.7, 0.3, -1.1]         # [2, 3]
M2 = [0.4, 1.3, -0.6, 0.9, 0.25, -0.8]        # [3, 2]
BM1 = [0.1 * ((i * 7) % 11) - 0.5 for i in range(12)]  # [2, 2, 3]
BM2 = [0.1 * ((i * 5) % 13) - 0.6 for i in range(12)]  # [2, 3, 2]


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def sign(x):
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


UNARY = {
    "neg": (A, lambda x: -x),
    "exp": (A, math.exp),
    "log": (P, math.log),
    "sqrt": (P, math.sqrt),
    "recip": (A, lambda x: 1.0 / x),
    "tanh": (A, math.tanh),
    "sigmoid": (A, sigmoid),
    "relu": (A, lambda x: max(x, 0.0)),
    "abs": (A, abs),
    "sign": (A, sign),
}
BINARY = {
    "add": (A, B, lambda a, b: a + b),
    "sub": (A, B, lambda a, b: a - b),
    "mul": (A, B, lambda a, b: a * b),
    "div": (A, B, lambda a, b: a / b),
    "max": (A, B, max),
    "min": (A, B, min),
    "pow": (P, B, lambda a, b: a ** b),
    "lt": (A, C, lambda a, b: float(a < b)),
    "le": (A, C, lambda a, b: float(a <= b)),
    "gt": (A, C, lambda a, b: float(a > b)),
    "ge": (A, C, lambda a, b: float(a >= b)),
    "eq": (A, C, lambda a, b: float(a == b)),
    "ne": (A, C, lambda a, b: float(a != b)),
}


def matmul(a, b, batch, m, k, n):
    out = []
    for bi in range(batch):
        for i in range(m):
            for j in range(n):
                out.append(sum(a[bi * m * k + i * k + p] * b[bi * k * n + p * n + j] for p in range(k)))
    return out


cases = []  # (name, [(input name, shape, values)], out shape, expected)
for name, (x, f) in UNARY.items():
    cases.append((name, [("a", [2, 3], x)], [2, 3], [f(v) for v in x]))
for name, (x, y, f) in BINARY.items():
    cases.append((name, [("a", [2, 3], x), ("b", [2, 3], y)], [2, 3], [f(u, v) for u, v in zip(x, y)]))
cases.append(("input", [("a", [2, 3], A)], [2, 3], A))
cases.append(("param", [("a", [2, 3], A)], [2, 3], A))
cases.append(("constant", [], [2, 3], M1))
cases.append(("where", [("c", [2, 3], COND), ("a", [2, 3], A), ("b", [2, 3], B)], [2, 3],
              [u if c != 0 else v for c, u, v in zip(COND, A, B)]))
cases.append(("sum", [("a", [2, 3], A)], [2, 1], [A[0] + A[1] + A[2], A[3] + A[4] + A[5]]))
cases.append(("mean", [("a", [2, 3], A)], [1, 3], [(A[i] + A[i + 3]) / 2 for i in range(3)]))
cases.append(("max_reduce", [("a", [2, 3], A)], [2, 1], [max(A[:3]), max(A[3:])]))
cases.append(("reshape", [("a", [2, 3], A)], [3, 2], A))
# permute [2,3,2] by [2,0,1] -> [2,2,3]: out[i,j,k] = x[j,k,i]
cases.append(("permute", [("a", [2, 3, 2], X12)], [2, 2, 3],
              [X12[j * 6 + k * 2 + i] for i in range(2) for j in range(2) for k in range(3)]))
# expand [2,1] -> [2,3]
cases.append(("expand", [("a", [2, 1], [0.5, -1.2])], [2, 3], [0.5] * 3 + [-1.2] * 3))
cases.append(("matmul", [("a", [2, 3], M1), ("b", [3, 2], M2)], [2, 2], matmul(M1, M2, 1, 2, 3, 2)))
cases.append(("matmul_batched", [("a", [2, 2, 3], BM1), ("b", [2, 3, 2], BM2)], [2, 2, 2],
              matmul(BM1, BM2, 2, 2, 3, 2)))
cases.append(("stop_gradient", [("a", [2, 3], A)], [2, 3], A))
cases.append(("cast", [("a", [2, 3], A)], [2, 3], [float(math.trunc(v)) for v in A]))
# slice [2,3] axis 1, from 1, length 2 -> [2,2]
cases.append(("slice", [("a", [2, 3], A)], [2, 2], [A[1], A[2], A[4], A[5]]))
# concat [2,3] ++ [2,2] on axis 1 -> [2,5]
CB = [0.9, -0.4, 1.7, 0.05]
cases.append(("concat", [("a", [2, 3], A), ("b", [2, 2], CB)], [2, 5],
              A[0:3] + CB[0:2] + A[3:6] + CB[2:4]))
# concat [2,3] ++ [1,3] on axis 0 -> [3,3]
cases.append(("concat_rows", [("a", [2, 3], A), ("b", [1, 3], CB[:3])], [3, 3], A + CB[:3]))
# gather rows of a [3,2] table at indices [[2, 0], [2, 3]] (3 is out of range: zeros)
GI = [2, 0, 2, 3]
T6 = [0.5, -1.2, 2.0, 0.3, 1.5, -0.7]
cases.append(("gather", [("a", [3, 2], T6)], [2, 2, 2],
              [v for i in GI for v in (T6[2 * i:2 * i + 2] if i < 3 else [0.0, 0.0])]))
# scatter-add updates [2,2,2] at the same indices into 3 rows
U8 = [0.1 * i - 0.3 for i in range(8)]
SA = [0.0] * 6
for p, i in enumerate(GI):
    if i < 3:
        SA[2 * i] += U8[2 * p]
        SA[2 * i + 1] += U8[2 * p + 1]
cases.append(("scatter_add", [("a", [2, 2, 2], U8)], [3, 2], SA))


# random_uniform: PCG's RXS-M-XS hash on wrapping u32, 24 bits -> [0, 1)
def hash32(x):
    M = 0xFFFFFFFF
    v = (x * 747796405 + 2891336453) & M
    w = (((v >> ((v >> 28) + 4)) ^ v) * 277803737) & M
    return (w >> 22) ^ w


def device_uniform(seed, counter, index):
    h = hash32(index ^ hash32(counter ^ hash32(seed)))
    return (h >> 8) / 16777216.0


# a [2,3] + noise(seed 7, step 3); the sum rounded to f32 as the evaluator's inputs are not
cases.append(("random_uniform", [("a", [2, 3], A)], [2, 3],
              [A[i] + device_uniform(7, 3, i) for i in range(6)]))


# Fused recurrences (kiln_ir::recurrence), B=2, T=3, U=2, written step by step from the
# Keras/PyTorch cell equations. The trace per step: LSTM [h, c, z(4U), h_in], GRU
# [h, rec(3U), h_in], SimpleRNN [h, z, h_in] (h_in: the state entering h·r, zero at step 0). The backward's expected values are central differences of
# sum(trace * dtrace) with respect to a perturbation of each pre-activation (dz for LSTM and
# SimpleRNN; d xp and d rec for GRU; five-point stencil), not the analytical BPTT.
RB, RT, RU = 2, 3, 2
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
WIDTH = {"lstm": 7, "gru": 5, "rnn": 3}


def rec_data(n, a, b):
    return [round(0.37 * math.sin(a * i + b) + 0.05 * ((i * 7) % 5) - 0.1, 6) for i in range(n)]


def rec_forward(kind, xp, r, rb, mask, dx=None, drc=None):
    """trace [B, T, W*U]; dx/drc: optional perturbations of xp's and rec's use (by index)."""
    k, u = GATES[kind], RU
    ku = k * u
    w = WIDTH[kind] * u
    trace = [0.0] * (RB * RT * w)
    for b in range(RB):
        h = [0.0] * u
        c = [0.0] * u
        for t in range(RT):
            hin = [h[j] * (mask[b * u + j] if mask else 1.0) for j in range(u)]
            rec = [sum(hin[p] * r[p * ku + m] for p in range(u)) + (rb[m] if rb else 0.0) for m in range(ku)]
            x = xp[(b * RT + t) * ku:(b * RT + t + 1) * ku]
            x = [x[m] + (dx[(b * RT + t) * ku + m] if dx else 0.0) for m in range(ku)]
            rec = [rec[m] + (drc[(b * RT + t) * ku + m] if drc else 0.0) for m in range(ku)]
            row = (b * RT + t) * w
            for j in range(u):
                trace[row + w - u + j] = hin[j]
            nh, nc = [0.0] * u, [0.0] * u
            for j in range(u):
                if kind == "lstm":
                    z = [x[g * u + j] + rec[g * u + j] for g in range(4)]
                    i_, f_, g_, o_ = sigmoid(z[0]), sigmoid(z[1]), math.tanh(z[2]), sigmoid(z[3])
                    nc[j] = f_ * c[j] + i_ * g_
                    nh[j] = o_ * math.tanh(nc[j])
                    trace[row + u + j] = nc[j]
                    for g in range(4):
                        trace[row + 2 * u + g * u + j] = z[g]
                elif kind == "gru":
                    zz = sigmoid(x[j] + rec[j])
                    rr = sigmoid(x[u + j] + rec[u + j])
                    nn = math.tanh(x[2 * u + j] + rr * rec[2 * u + j])
                    nh[j] = zz * h[j] + (1.0 - zz) * nn
                    for g in range(3):
                        trace[row + u + g * u + j] = rec[g * u + j]
                else:
                    z = x[j] + rec[j]
                    nh[j] = math.tanh(z)
                    trace[row + u + j] = z
                trace[row + j] = nh[j]
            h, c = nh, nc
    return trace


for kind in ("lstm", "gru", "rnn"):
    for masked in (False, True):
        k = GATES[kind]
        ku = k * RU
        xp = rec_data(RB * RT * ku, 0.7, 0.1)
        r = rec_data(RU * ku, 1.3, 0.4)
        rb = rec_data(ku, 2.1, 0.9) if kind == "gru" else None
        mask = [1.25, 0.0, 1.25, 1.25] if masked else None
        ins = [("xp", [RB, RT, ku], xp), ("r", [RU, ku], r)]
        if rb:
            ins.append(("rb", [ku], rb))
        if mask:
            ins.append(("mask", [RB, RU], mask))
        name = f"{kind}_recurrence" + ("_masked" if masked else "")
        w = WIDTH[kind] * RU
        cases.append((name, ins, [RB, RT, w], rec_forward(kind, xp, r, rb, mask)))
        # backward: dtrace is one more leaf
        dtr = rec_data(RB * RT * w, 0.9, 1.7)
        eps = 1e-3

        def loss(dx=None, drc=None):
            tr = rec_forward(kind, xp, r, rb, mask, dx, drc)
            return sum(a * b for a, b in zip(tr, dtr))

        def fd(which):
            out = []
            for i in range(RB * RT * ku):
                # five-point stencil: truncation error ~eps^4 (about 1e-13 here)
                d = [0.0] * (RB * RT * ku)
                f = []
                for step in (2, 1, -1, -2):
                    d[i] = step * eps
                    f.append(loss(**{which: d}))
                out.append((-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12 * eps))
            return out

        if kind == "gru":
            dxp, drec = fd("dx"), fd("drc")
            exp = []
            for bt in range(RB * RT):
                exp += dxp[bt * ku:(bt + 1) * ku] + drec[bt * ku:(bt + 1) * ku]
            gw = 2 * ku
        else:
            # z = xp + rec: a perturbation of xp is one of z (the trace's z part included)
            exp, gw = fd("dx"), ku
        cases.append((name + "_grad", ins + [("dtrace", [RB, RT, w], dtr)], [RB, RT, gw], exp))


def lit(v):
    r = repr(float(v))
    return r if ("." in r or "e" in r or "inf" in r or "nan" in r) else r + ".0"


print("// @generated by gen_golden.py -- do not edit; rerun the script instead.")
print("use super::GoldenCase;")
print()
print("/// Inputs and expected outputs of every op-table case.")
print("pub const GOLDEN: &[GoldenCase] = &[")
for name, inputs, shape, exp in cases:
    ins = ", ".join(f'("{n}", &{s}, &[{", ".join(lit(v) for v in vals)}])' for n, s, vals in inputs)
    print(f'    GoldenCase {{ name: "{name}", inputs: &[{ins}], shape: &{shape}, expected: &[{", ".join(lit(v) for v in exp)}] }},')
print("];")
