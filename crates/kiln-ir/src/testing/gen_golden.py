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
