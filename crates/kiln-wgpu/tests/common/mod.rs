//! Hand-built kernels and plans shared by the shader and executor tests, with host
//! reference implementations of what each computes.
#![allow(dead_code)]

use kiln_ir::{BinaryOp, DType, Shape, UnaryOp};
use kiln_opt::kernel::{
    Access, Arg, Body, Expr, Fold, Kernel, KernelOp, MatMulVariant, MatOperand, ReduceKind,
    ReduceStage, Store, View,
};
use kiln_opt::plan::{
    BufferDesc, BufferId, BufferKind, Plan, PlanStats, Slot, Step, PLAN_FORMAT_VERSION,
};

pub const WG: u32 = 64;

pub fn args(dtypes: &[DType]) -> Vec<Arg> {
    let n = dtypes.len();
    dtypes
        .iter()
        .enumerate()
        .map(|(i, &dtype)| Arg {
            dtype,
            access: if i + 1 == n {
                Access::Write
            } else {
                Access::Read
            },
        })
        .collect()
}

/// The store of `body`'s result into `arg` (offset 0).
pub fn result_store(arg: u32, body: &Body) -> Vec<Store> {
    vec![Store {
        arg,
        offset: 0,
        value: body.result(),
        strides: None,
    }]
}

pub fn kernel(label: &str, op: KernelOp, args: Vec<Arg>, threads: u64) -> Kernel {
    Kernel {
        label: label.into(),
        op,
        args,
        workgroup_size: WG,
        threads,
        nodes: vec![],
    }
}

/// `out[i, j] = 2 * max(c ? tanh(s) : sigmoid(s), -0.25)` with `x = a^T[i, j]` (a stored
/// `[3, 2]`), `y = b[j]` (broadcast), `s = x + y`, `c = x < y`. Output `[2, 3]`.
pub fn elementwise_kernel() -> Kernel {
    let mut b = Body::default();
    let x = b.push(
        Expr::Load {
            arg: 0,
            view: View {
                offset: 0,
                strides: vec![1, 2],
            },
        },
        DType::F32,
    );
    let y = b.push(
        Expr::Load {
            arg: 1,
            view: View {
                offset: 0,
                strides: vec![0, 1],
            },
        },
        DType::F32,
    );
    let s = b.push(Expr::Binary(BinaryOp::Add, x, y), DType::F32);
    let t = b.push(Expr::Unary(UnaryOp::Tanh, s), DType::F32);
    let sg = b.push(Expr::Unary(UnaryOp::Sigmoid, s), DType::F32);
    let c = b.push(Expr::Binary(BinaryOp::Lt, x, y), DType::F32);
    let sel = b.push(Expr::Select(c, t, sg), DType::F32);
    let k = b.push(Expr::Const(-0.25), DType::F32);
    let m = b.push(Expr::Binary(BinaryOp::Max, sel, k), DType::F32);
    let two = b.push(Expr::Const(2.0), DType::F32);
    b.push(Expr::Binary(BinaryOp::Mul, m, two), DType::F32);
    kernel(
        "test/elementwise",
        KernelOp::Elementwise {
            shape: vec![2, 3],
            stores: result_store(2, &b),
            body: b,
            vector: 1,
        },
        args(&[DType::F32, DType::F32, DType::F32]),
        6,
    )
}

pub fn elementwise_reference(a: &[f32], bv: &[f32]) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..2 {
        for j in 0..3 {
            let x = a[j * 2 + i] as f64;
            let y = bv[j] as f64;
            let s = x + y;
            let v = if x < y {
                s.tanh()
            } else {
                1.0 / (1.0 + (-s).exp())
            };
            out.push(2.0 * v.max(-0.25));
        }
    }
    out
}

/// i32 arithmetic: `out = select(a > b, a * b, (a - b) / 2) + cast<i32>(f) + |a|` over `[5]`.
pub fn int_kernel() -> Kernel {
    let mut b = Body::default();
    let c = |i| View {
        offset: 0,
        strides: vec![i],
    };
    let a = b.push(Expr::Load { arg: 0, view: c(1) }, DType::I32);
    let bb = b.push(Expr::Load { arg: 1, view: c(1) }, DType::I32);
    let f = b.push(Expr::Load { arg: 2, view: c(1) }, DType::F32);
    let gt = b.push(Expr::Binary(BinaryOp::Gt, a, bb), DType::I32);
    let mul = b.push(Expr::Binary(BinaryOp::Mul, a, bb), DType::I32);
    let sub = b.push(Expr::Binary(BinaryOp::Sub, a, bb), DType::I32);
    let two = b.push(Expr::Const(2.0), DType::I32);
    let div = b.push(Expr::Binary(BinaryOp::Div, sub, two), DType::I32);
    let sel = b.push(Expr::Select(gt, mul, div), DType::I32);
    let fi = b.push(Expr::Cast(f), DType::I32);
    let s1 = b.push(Expr::Binary(BinaryOp::Add, sel, fi), DType::I32);
    let ab = b.push(Expr::Unary(UnaryOp::Abs, a), DType::I32);
    b.push(Expr::Binary(BinaryOp::Add, s1, ab), DType::I32);
    kernel(
        "test/int",
        KernelOp::Elementwise {
            shape: vec![5],
            stores: result_store(3, &b),
            body: b,
            vector: 1,
        },
        args(&[DType::I32, DType::I32, DType::F32, DType::I32]),
        5,
    )
}

pub fn int_reference(a: &[i32], b: &[i32], f: &[f32]) -> Vec<i32> {
    (0..a.len())
        .map(|i| {
            let sel = if a[i] > b[i] {
                a[i] * b[i]
            } else {
                (a[i] - b[i]) / 2
            };
            sel + f[i].trunc() as i32 + a[i].abs()
        })
        .collect()
}

/// Mean of squares over axis 1 of `x: [2, 3, 4]`, plus `bias[4]`: output `[2, 1, 4]`.
pub fn reduce_sum_kernel() -> Kernel {
    let mut p = Body::default();
    let x = p.push(
        Expr::Load {
            arg: 0,
            view: View::contiguous(&[2, 3, 4]),
        },
        DType::F32,
    );
    p.push(Expr::Binary(BinaryOp::Mul, x, x), DType::F32);
    let mut e = Body::default();
    let r = e.push(Expr::Acc(0), DType::F32);
    let k = e.push(Expr::Const(1.0 / 3.0), DType::F32);
    let m = e.push(Expr::Binary(BinaryOp::Mul, r, k), DType::F32);
    let bias = e.push(
        Expr::Load {
            arg: 1,
            view: View {
                offset: 0,
                strides: vec![0, 0, 1],
            },
        },
        DType::F32,
    );
    e.push(Expr::Binary(BinaryOp::Add, m, bias), DType::F32);
    kernel(
        "test/mean_sq",
        KernelOp::Reduce {
            in_shape: vec![2, 3, 4],
            axes: vec![1],
            stages: vec![ReduceStage {
                folds: vec![Fold {
                    kind: ReduceKind::Sum,
                    value: p.result(),
                }],
                body: p,
                stores: vec![],
            }],
            stores: result_store(2, &e),
            epilogue: e,
            broadcast: Body::default(),
            broadcast_stores: vec![],
            tree: 1,
        },
        args(&[DType::F32, DType::F32, DType::F32]),
        8,
    )
}

pub fn reduce_sum_reference(x: &[f32], bias: &[f32]) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..2 {
        for k in 0..4 {
            let s: f64 = (0..3).map(|j| (x[i * 12 + j * 4 + k] as f64).powi(2)).sum();
            out.push(s / 3.0 + bias[k] as f64);
        }
    }
    out
}

/// Max over axes 0 and 2 of `x: [2, 3, 4]` minus 1: output `[1, 3, 1]`.
pub fn reduce_max_kernel() -> Kernel {
    let mut p = Body::default();
    p.push(
        Expr::Load {
            arg: 0,
            view: View::contiguous(&[2, 3, 4]),
        },
        DType::F32,
    );
    let mut e = Body::default();
    let r = e.push(Expr::Acc(0), DType::F32);
    let one = e.push(Expr::Const(1.0), DType::F32);
    e.push(Expr::Binary(BinaryOp::Sub, r, one), DType::F32);
    kernel(
        "test/max",
        KernelOp::Reduce {
            in_shape: vec![2, 3, 4],
            axes: vec![0, 2],
            stages: vec![ReduceStage {
                folds: vec![Fold {
                    kind: ReduceKind::Max,
                    value: p.result(),
                }],
                body: p,
                stores: vec![],
            }],
            stores: result_store(1, &e),
            epilogue: e,
            broadcast: Body::default(),
            broadcast_stores: vec![],
            tree: 1,
        },
        args(&[DType::F32, DType::F32]),
        3,
    )
}

pub fn reduce_max_reference(x: &[f32]) -> Vec<f64> {
    (0..3)
        .map(|j| {
            let mut m = f64::NEG_INFINITY;
            for i in 0..2 {
                for k in 0..4 {
                    m = m.max(x[i * 12 + j * 4 + k] as f64);
                }
            }
            m - 1.0
        })
        .collect()
}

pub const MM: (usize, usize, usize, usize) = (2, 5, 3, 6); // batch, m, k, n

/// The epilogue `acc` (identity) and its store into `arg`.
pub fn identity_epilogue(arg: u32) -> (Body, Vec<Store>) {
    let mut e = Body::default();
    e.push(Expr::Acc(0), DType::F32);
    let st = result_store(arg, &e);
    (e, st)
}

/// A matmul kernel launched as `kiln_wgpu::codegen::matmul_dispatch` says for `variant`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    label: &str,
    variant: MatMulVariant,
    (batch, m, k, n): (usize, usize, usize, usize),
    a: MatOperand,
    b: MatOperand,
    epilogue: Body,
    stores: Vec<Store>,
    args: Vec<Arg>,
) -> Kernel {
    let launch = kiln_wgpu::codegen::matmul_dispatch(variant, batch, m, n);
    Kernel {
        label: label.into(),
        op: KernelOp::MatMul {
            batch,
            m,
            n,
            k,
            a,
            b,
            tile: launch.tile,
            variant,
            epilogue,
            stores,
            sums: None,
        },
        args,
        workgroup_size: launch.workgroup_size,
        threads: launch.threads,
        nodes: vec![],
    }
}

/// Operand `[batch, rows, cols]` of `arg` at offset 0: row-major, or with `transposed`
/// stored as `[batch, cols, rows]` and read through its strides.
pub fn operand(arg: u32, rows: usize, cols: usize, transposed: bool) -> MatOperand {
    if !transposed {
        return dense(arg, 0, rows, cols);
    }
    MatOperand {
        arg,
        offset: 0,
        batch_stride: rows * cols,
        row_stride: 1,
        col_stride: rows,
    }
}

/// Row-major operand `[batch, rows, cols]` at `offset` of `arg`.
pub fn dense(arg: u32, offset: usize, rows: usize, cols: usize) -> MatOperand {
    MatOperand {
        arg,
        offset,
        batch_stride: rows * cols,
        row_stride: cols,
        col_stride: 1,
    }
}

/// A product `[1, m, k] x [1, k, n]` (A dense in arg 0, `b` in arg 1, the result in arg 2)
/// whose kernel also stores the column sums of B into arg 3 (`KernelOp::MatMul::sums`,
/// identity bodies).
pub fn matmul_with_sums(
    variant: MatMulVariant,
    (m, k, n): (usize, usize, usize),
    b: MatOperand,
) -> Kernel {
    let (e, st) = identity_epilogue(2);
    let mut kern = matmul(
        "test/matmul_sums",
        variant,
        (1, m, k, n),
        dense(0, 0, m, k),
        b,
        e,
        st,
        args(&[DType::F32; 4]),
    );
    kern.args[2].access = Access::Write;
    let (body, stores) = identity_epilogue(3);
    if let KernelOp::MatMul { sums, .. } = &mut kern.op {
        *sums = Some(Box::new(kiln_opt::kernel::ColumnSums {
            shape: vec![n],
            body,
            stores,
        }));
    }
    kern
}

/// `out[b] = a[b] @ bt[b]^T` with `a: [2, 5, 3]` contiguous and `bt: [2, 6, 3]` read
/// transposed in place (row stride 1, column stride 3).
pub fn matmul_kernel_variant(variant: MatMulVariant) -> Kernel {
    let (_, m, k, n) = MM;
    let (e, st) = identity_epilogue(2);
    matmul(
        "test/matmul",
        variant,
        MM,
        dense(0, 0, m, k),
        operand(1, k, n, true),
        e,
        st,
        args(&[DType::F32, DType::F32, DType::F32]),
    )
}

pub fn matmul_kernel() -> Kernel {
    matmul_kernel_variant(MatMulVariant::RegisterBlocked)
}

pub fn matmul_reference(a: &[f32], bt: &[f32]) -> Vec<f64> {
    let (batch, m, k, n) = MM;
    let mut out = Vec::new();
    for b in 0..batch {
        for i in 0..m {
            for j in 0..n {
                out.push(
                    (0..k)
                        .map(|p| a[b * m * k + i * k + p] as f64 * bt[b * n * k + j * k + p] as f64)
                        .sum(),
                );
            }
        }
    }
    out
}

/// Deterministic test values in about [-2, 2].
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u32 * 7919 + seed * 104729) % 97) as f32 / 24.0) - 2.0)
        .collect()
}

/// A one-dimensional workgroup grid covering `threads`.
pub fn groups(threads: u64, wg: u32) -> [u32; 3] {
    [threads.div_ceil(wg as u64).max(1) as u32, 1, 1]
}

pub fn empty_plan() -> Plan {
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        kind: kiln_plan::PlanKind::Graph,
        buffers: vec![],
        kernels: vec![],
        steps: vec![],
        inputs: vec![],
        outputs: vec![],
        params: vec![],
        stats: PlanStats::default(),
    }
}

pub fn buffer(
    plan: &mut Plan,
    name: &str,
    dims: &[usize],
    dtype: DType,
    kind: BufferKind,
) -> BufferId {
    let len = dims.iter().product::<usize>().max(1);
    plan.buffers.push(BufferDesc {
        name: name.into(),
        dtype,
        len,
        kind: kind.clone(),
    });
    let id = BufferId(plan.buffers.len() as u32 - 1);
    let slot = Slot {
        name: name.into(),
        buffer: id,
        shape: Shape::new(dims.to_vec()),
        dtype,
        indices: None,
    };
    match kind {
        BufferKind::Input => plan.inputs.push(slot),
        BufferKind::Output => plan.outputs.push(slot),
        BufferKind::Param => plan.params.push(slot),
        _ => {}
    }
    id
}

pub fn dispatch(plan: &mut Plan, k: Kernel, buffers: Vec<BufferId>) {
    let groups = groups(k.threads, k.workgroup_size);
    plan.kernels.push(k);
    plan.steps.push(Step::Dispatch {
        kernel: plan.kernels.len() as u32 - 1,
        buffers,
        workgroups: groups,
    });
}
