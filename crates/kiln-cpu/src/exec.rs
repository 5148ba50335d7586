//! Prepared kernels: every [`KernelOp`] turned at load time into phases ([`Phase`]) and GEMM
//! calls, and their execution on rayon threads.
//!
//! Work is split into tasks of a size fixed by the kernel's shape alone — elementwise
//! kernels in chunks of [`CHUNK`] elements, reductions in chunks of whole outputs (each
//! output folded sequentially in the interpreter's order), matmuls in output tiles (each
//! one single-threaded GEMM call over the whole `k`), recurrences in blocks of rows of the
//! batch ([`crate::recurrence`]) — so the bits never depend on the number of threads.

use crate::gemm::MatMul;
use crate::math::max_nan;
use crate::prog::{
    max_index, AccCol, Accs, Phase, PhaseSpec, RawBuf, Scalar, Scratch, Value, BLOCK,
};
use crate::recurrence::Recurrence;
use kiln_ir::{unravel, DType};
use kiln_plan::kernel::{Dense, Expr, Fold, Kernel, KernelOp, ReduceKind};
use kiln_plan::{Error, PlanError, Result};
use rayon::prelude::*;

/// Elements per elementwise task.
pub const CHUNK: usize = 64 * BLOCK;

/// A reduce stage: its phase and folds.
#[derive(Debug)]
pub struct Stage {
    phase: Phase,
    folds: Vec<(ReduceKind, u32, bool)>,
}

/// A kernel ready to run (built once per load: the size of its variants does not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Prepared {
    /// An elementwise kernel.
    Elementwise(Phase),
    /// A reduce kernel.
    Reduce {
        /// The full iteration shape.
        in_shape: Vec<usize>,
        /// Extents of the output (reduced axes set to 1).
        out_shape: Vec<usize>,
        /// Elements folded per output.
        red_n: usize,
        /// The stages, each folding the input into the accumulators.
        stages: Vec<Stage>,
        /// Runs once per output with the folded accumulators.
        epilogue: Phase,
        /// Runs over the input again with the accumulators (e.g. softmax's normalisation).
        broadcast: Option<Phase>,
        /// Outputs per task.
        chunk: usize,
        /// Column mode (see [`Columns`]), where the innermost axis is not reduced.
        columns: Option<Columns>,
    },
    /// A matmul: GEMM tiles then the epilogue per tile row.
    MatMul(Box<MatMul>),
    /// A recurrence: blocks of rows, each looping over the steps.
    Recurrence(Box<Recurrence>),
    /// A scatter-add.
    ScatterAdd {
        /// Rows of the output.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Positions.
        count: usize,
        /// Whether the row indices are f32 (converted as `cast` converts), not i32.
        float_index: bool,
        /// Row indices.
        index: Dense,
        /// Values.
        src: Dense,
        /// Output.
        dst: Dense,
    },
}

/// A reduction run column-wise: for a chunk of consecutive outputs, every reduced index in
/// order, its stage bodies evaluated over the chunk (vectorised across outputs, contiguous
/// loads where the outputs are the innermost axis), folded into one accumulator per output.
/// Each output still folds its values in the interpreter's order, so the bits are those of
/// the row-wise mode.
#[derive(Debug)]
pub struct Columns {
    /// Stage phases over the output axes (reduced axes fixed per step).
    stages: Vec<Phase>,
    /// The broadcast phase over the output axes.
    broadcast: Option<Phase>,
    /// Extents of the reduced axes.
    red_dims: Vec<usize>,
    /// The reduced axes.
    axes: Vec<usize>,
}

/// A kernel with the largest element it touches per arg (the load-time bounds check).
#[derive(Debug)]
pub struct Compiled {
    /// What runs.
    pub prepared: Prepared,
    /// `(arg, largest element index)` of every access.
    pub extents: Vec<(u32, usize)>,
}

fn bad(what: &str, msg: String) -> Error {
    Error::Plan(PlanError::new(format!("kernel `{what}`: {msg}")))
}

/// Prepares one kernel.
pub fn prepare(k: &Kernel) -> Result<Compiled> {
    let args = &k.args;
    let mut extents = vec![];
    let prepared = match &k.op {
        KernelOp::Elementwise {
            shape,
            body,
            stores,
            ..
        } => {
            let all: Vec<usize> = (0..shape.len()).collect();
            let p = Phase::new(&PhaseSpec::new(body, stores, args, shape, &all))?;
            extents.extend(p.extents.iter().copied());
            Prepared::Elementwise(p)
        }
        KernelOp::Reduce {
            in_shape,
            axes,
            stages,
            epilogue,
            stores,
            broadcast,
            broadcast_stores,
            ..
        } => {
            let out_shape: Vec<usize> = in_shape
                .iter()
                .enumerate()
                .map(|(d, &s)| if axes.contains(&d) { 1 } else { s })
                .collect();
            let out_axes: Vec<usize> = (0..in_shape.len()).filter(|d| !axes.contains(d)).collect();
            let red_n: usize = axes.iter().filter_map(|&a| in_shape.get(a)).product();
            let mut st = vec![];
            let mut naccs = 0;
            for s in stages {
                let keep: Vec<u32> = s.folds.iter().map(|f| f.value).collect();
                let phase = Phase::new(
                    &PhaseSpec::new(&s.body, &s.stores, args, in_shape, axes)
                        .keep(&keep)
                        .uniform_accs(),
                )?;
                extents.extend(phase.extents.iter().copied());
                let folds =
                    s.folds
                        .iter()
                        .map(|f: &Fold| {
                            let node =
                                s.body.nodes.get(f.value as usize).ok_or_else(|| {
                                    bad(&k.label, "fold of a missing value".into())
                                })?;
                            Ok((f.kind, f.value, node.dtype == DType::I32))
                        })
                        .collect::<Result<Vec<_>>>()?;
                naccs += folds.len();
                st.push(Stage { phase, folds });
            }
            let _ = naccs;
            let epi = Phase::new(&PhaseSpec::new(
                epilogue, stores, args, &out_shape, &out_axes,
            ))?;
            extents.extend(epi.extents.iter().copied());
            let bc = if broadcast_stores.is_empty() {
                None
            } else {
                let p = Phase::new(
                    &PhaseSpec::new(broadcast, broadcast_stores, args, in_shape, axes)
                        .uniform_accs(),
                )?;
                extents.extend(p.extents.iter().copied());
                Some(p)
            };
            let chunk = (8192 / red_n.max(1)).clamp(1, BLOCK);
            // column mode where the innermost non-trivial axis is an output axis
            let inner = in_shape.iter().rposition(|&e| e > 1);
            let outputs: usize = out_shape.iter().product();
            let columns = match inner {
                Some(d) if !axes.contains(&d) && outputs >= 8 && red_n > 1 => {
                    let mut cs = vec![];
                    for s in stages {
                        let keep: Vec<u32> = s.folds.iter().map(|f| f.value).collect();
                        cs.push(Phase::new(
                            &PhaseSpec::new(&s.body, &s.stores, args, in_shape, &out_axes)
                                .keep(&keep),
                        )?);
                    }
                    let cb = if broadcast_stores.is_empty() {
                        None
                    } else {
                        Some(Phase::new(&PhaseSpec::new(
                            broadcast,
                            broadcast_stores,
                            args,
                            in_shape,
                            &out_axes,
                        ))?)
                    };
                    Some(Columns {
                        stages: cs,
                        broadcast: cb,
                        red_dims: axes.iter().map(|&a| in_shape[a]).collect(),
                        axes: axes.clone(),
                    })
                }
                _ => None,
            };
            Prepared::Reduce {
                in_shape: in_shape.clone(),
                out_shape,
                red_n,
                stages: st,
                epilogue: epi,
                broadcast: bc,
                chunk,
                columns,
            }
        }
        KernelOp::MatMul {
            batch,
            m,
            n,
            k: kk,
            a,
            b,
            epilogue,
            stores,
            sums,
            ..
        } => {
            let (batch, m, n, kk) = (*batch, *m, *n, *kk);
            let shape = [batch, m, n];
            let epi = Phase::new(&PhaseSpec::new(epilogue, stores, args, &shape, &[0, 1, 2]))?;
            extents.extend(epi.extents.iter().copied());
            for (op, rows, cols) in [(a, m, kk), (b, kk, n)] {
                if args.get(op.arg as usize).map(|a| a.dtype) != Some(DType::F32) {
                    return Err(bad(&k.label, "matmul operand is not an f32 arg".into()));
                }
                if batch > 0 && rows > 0 && cols > 0 {
                    let e = max_index(
                        op.offset,
                        &[op.batch_stride, op.row_stride, op.col_stride],
                        &[batch, rows, cols],
                    )
                    .ok_or_else(|| bad(&k.label, "operand overflows".into()))?;
                    extents.push((op.arg, e));
                }
            }
            // only the product, stored once into an f32 arg that is not an operand
            let direct = match (epilogue.nodes.as_slice(), stores.as_slice()) {
                ([node], [st])
                    if node.expr == Expr::Acc(0)
                        && node.dtype == DType::F32
                        && st.value == 0
                        && st.arg != a.arg
                        && st.arg != b.arg
                        && args.get(st.arg as usize).map(|a| a.dtype) == Some(DType::F32) =>
                {
                    let s = match &st.strides {
                        Some(s) if s.len() >= 3 => [s[0], s[1], s[2]],
                        Some(_) => return Err(bad(&k.label, "store rank".into())),
                        None => [m * n, n, 1],
                    };
                    Some((st.arg, st.offset, s[0], s[1], s[2]))
                }
                _ => None,
            };
            // tiles from the shape only (never from the thread count): large enough that
            // packing stays small against the product, small enough to spread over cores;
            // fewer than 256 rows split evenly into tiles of at most 64 (IMDB's `[100, 400]`
            // weight gradient: two tiles of 50 rows, not 64 and 36, which left one core idle
            // for a third of the product)
            let (tm, tn) = if m >= 1024 && n >= 1024 {
                (512, 512)
            } else {
                (
                    if m >= 256 {
                        128
                    } else {
                        m.div_ceil(m.div_ceil(64).max(1)).max(1)
                    },
                    if n <= 512 { n.max(1) } else { 256 },
                )
            };
            let sums = match sums {
                Some(cs) => {
                    if batch != 1 || cs.shape.iter().product::<usize>() != n {
                        return Err(bad(&k.label, "column sums shape".into()));
                    }
                    let axes: Vec<usize> = (0..cs.shape.len()).collect();
                    let ph = Phase::new(&PhaseSpec::new(
                        &cs.body, &cs.stores, args, &cs.shape, &axes,
                    ))?;
                    extents.extend(ph.extents.iter().copied());
                    Some(ph)
                }
                None => None,
            };
            Prepared::MatMul(Box::new(MatMul {
                batch,
                m,
                n,
                k: kk,
                a: a.clone(),
                b: b.clone(),
                epilogue: epi,
                sums,
                direct,
                tm,
                tn,
            }))
        }
        KernelOp::Recurrence { .. } => {
            Prepared::Recurrence(Box::new(Recurrence::new(k, &mut extents)?))
        }
        KernelOp::ScatterAdd {
            rows,
            cols,
            count,
            index,
            src,
            dst,
        } => {
            let ty = |a: u32| args.get(a as usize).map(|a| a.dtype);
            if !matches!(ty(index.arg), Some(DType::I32 | DType::F32))
                || ty(src.arg) != Some(DType::F32)
                || ty(dst.arg) != Some(DType::F32)
            {
                return Err(bad(&k.label, "scatter-add arg types".into()));
            }
            let end = |d: &Dense, n: usize| {
                d.offset
                    .checked_add(n)
                    .map(|e| e.saturating_sub(1))
                    .ok_or_else(|| bad(&k.label, "scatter-add overflows".into()))
            };
            if *count > 0 {
                extents.push((index.arg, end(index, *count)?));
                let n = count
                    .checked_mul(*cols)
                    .ok_or_else(|| bad(&k.label, "overflow".into()))?;
                if n > 0 {
                    extents.push((src.arg, end(src, n)?));
                }
            }
            let n = rows
                .checked_mul(*cols)
                .ok_or_else(|| bad(&k.label, "overflow".into()))?;
            if n > 0 {
                extents.push((dst.arg, end(dst, n)?));
            }
            Prepared::ScatterAdd {
                rows: *rows,
                cols: *cols,
                count: *count,
                float_index: ty(index.arg) == Some(DType::F32),
                index: index.clone(),
                src: src.clone(),
                dst: dst.clone(),
            }
        }
    };
    Ok(Compiled { prepared, extents })
}

/// Subnormal f32 values are flushed to zero (inputs and results) while a guard lives: the
/// x86 `MXCSR` FTZ and DAZ bits, set on the thread that runs a task and restored after. A
/// subnormal operand costs a microcode assist of ~100 cycles per instruction on x86, which
/// made GEMMs over small gradients 20-50x slower; GPUs flush them too.
struct FlushSubnormals {
    #[cfg(target_arch = "x86_64")]
    old: u32,
}

impl FlushSubnormals {
    #[inline]
    fn new() -> FlushSubnormals {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: reading and writing MXCSR has no memory effects; FTZ (bit 15) and DAZ
            // (bit 6) only change how subnormal floats are treated.
            #[allow(deprecated)]
            unsafe {
                let old = std::arch::x86_64::_mm_getcsr();
                std::arch::x86_64::_mm_setcsr(old | 0x8040);
                FlushSubnormals { old }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushSubnormals {}
    }
}

impl Drop for FlushSubnormals {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: restores the thread's previous MXCSR.
        #[cfg(target_arch = "x86_64")]
        #[allow(deprecated)]
        unsafe {
            std::arch::x86_64::_mm_setcsr(self.old)
        }
    }
}

/// Runs `tasks` tasks, in parallel when there are several, with subnormals flushed.
pub(crate) fn for_tasks<S: Send>(
    tasks: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize) + Sync + Send,
) {
    if tasks == 1 {
        let _ftz = FlushSubnormals::new();
        let mut s = init();
        f(&mut s, 0);
    } else if tasks > 1 {
        (0..tasks).into_par_iter().for_each_init(init, |s, t| {
            let _ftz = FlushSubnormals::new();
            f(s, t)
        });
    }
}

impl Prepared {
    /// Runs the kernel over its bound buffers.
    ///
    /// # Safety
    /// `args` are the kernel's buffers with the arg types, each longer than every extent
    /// [`prepare`] reported for it.
    pub unsafe fn run(&self, args: &[RawBuf]) {
        match self {
            Prepared::Elementwise(p) => {
                let total = p.numel;
                let mut bases = vec![];
                p.bases(&[], &mut bases);
                for_tasks(
                    total.div_ceil(CHUNK),
                    || p.scratch(),
                    |s, t| {
                        let end = ((t + 1) * CHUNK).min(total);
                        let mut at = t * CHUNK;
                        while at < end {
                            let n = (end - at).min(BLOCK);
                            p.run_block(s, args, &bases, at, n, Accs::None);
                            at += n;
                        }
                    },
                );
            }
            Prepared::Reduce {
                in_shape,
                out_shape,
                red_n,
                stages,
                epilogue,
                columns: Some(cols),
                ..
            } => run_columns(cols, stages, epilogue, in_shape, out_shape, *red_n, args),
            Prepared::Reduce {
                in_shape,
                out_shape,
                red_n,
                stages,
                epilogue,
                broadcast,
                chunk,
                columns: None,
            } => {
                let outputs: usize = out_shape.iter().product();
                let naccs: usize = stages.iter().map(|s| s.folds.len()).sum();
                let init = || {
                    let ss: Vec<Scratch> = stages.iter().map(|s| s.phase.scratch()).collect();
                    (
                        ss,
                        epilogue.scratch(),
                        broadcast.as_ref().map(|b| b.scratch()),
                        vec![Scalar::F(0.0); naccs * chunk],
                        vec![Scalar::F(0.0); naccs],
                        Vec::new(),
                        vec![0usize; in_shape.len()],
                    )
                };
                let (chunk, red_n) = (*chunk, *red_n);
                for_tasks(outputs.div_ceil(chunk), init, |st, t| {
                    let (ss, es, bs, chunk_accs, accs, bases, idx) = st;
                    let o0 = t * chunk;
                    let cn = (outputs - o0).min(chunk);
                    for c in 0..cn {
                        unravel(o0 + c, out_shape, idx);
                        accs.clear();
                        for (stage, s) in stages.iter().zip(ss.iter_mut()) {
                            let first = accs.len();
                            for &(kind, _, int) in &stage.folds {
                                accs.push(match (kind, int) {
                                    (ReduceKind::Sum, false) => Scalar::F(0.0),
                                    (ReduceKind::Sum, true) => Scalar::I(0),
                                    (ReduceKind::Max, false) => Scalar::F(f32::NEG_INFINITY),
                                    (ReduceKind::Max, true) => Scalar::I(i32::MIN),
                                });
                            }
                            stage.phase.bases(idx, bases);
                            let mut at = 0;
                            while at < red_n {
                                let n = (red_n - at).min(BLOCK);
                                let (done, fresh) = accs.split_at_mut(first);
                                stage
                                    .phase
                                    .run_block(s, args, bases, at, n, Accs::Splat(done));
                                for (a, &(kind, value, _)) in fresh.iter_mut().zip(&stage.folds) {
                                    *a = fold(*a, kind, stage.phase.value(s, value, n));
                                }
                                at += n;
                            }
                        }
                        for (j, a) in accs.iter().enumerate() {
                            chunk_accs[j * chunk + c] = *a;
                        }
                        if let (Some(b), Some(bs)) = (broadcast, bs.as_mut()) {
                            // the epilogue of this output first (the interpreter's order)
                            epilogue.bases(&[], bases);
                            epilogue.run_block(es, args, bases, o0 + c, 1, Accs::Splat(accs));
                            b.bases(idx, bases);
                            let mut at = 0;
                            while at < red_n {
                                let n = (red_n - at).min(BLOCK);
                                b.run_block(bs, args, bases, at, n, Accs::Splat(accs));
                                at += n;
                            }
                        }
                    }
                    if broadcast.is_none() {
                        epilogue.bases(&[], bases);
                        epilogue.run_block(
                            es,
                            args,
                            bases,
                            o0,
                            cn,
                            Accs::Chunk {
                                values: chunk_accs,
                                stride: chunk,
                                first: 0,
                            },
                        );
                    }
                });
            }
            Prepared::MatMul(mm) => mm.run(args),
            Prepared::Recurrence(r) => r.run(args),
            Prepared::ScatterAdd {
                rows,
                cols,
                count,
                float_index,
                index,
                src,
                dst,
            } => {
                let (rows, cols) = (*rows, *cols);
                let _ftz = FlushSubnormals::new();
                let d = args[dst.arg as usize].ptr.add(dst.offset);
                let dst = std::slice::from_raw_parts_mut(d, rows * cols);
                dst.fill(0.0);
                let ip = args[index.arg as usize].ptr.add(index.offset);
                let sp = args[src.arg as usize].ptr as *const f32;
                for i in 0..*count {
                    // an f32 index converts as the elementwise cast does (`as`: toward zero,
                    // saturating, NaN to 0)
                    let r = if *float_index {
                        *(ip as *const f32).add(i) as i32
                    } else {
                        *(ip as *const i32).add(i)
                    };
                    if r >= 0 && (r as usize) < rows {
                        let s = std::slice::from_raw_parts(sp.add(src.offset + i * cols), cols);
                        for (o, x) in dst[r as usize * cols..][..cols].iter_mut().zip(s) {
                            *o += x;
                        }
                    }
                }
            }
        }
    }
}

/// Runs a column-mode reduction (see [`Columns`]).
unsafe fn run_columns(
    cols: &Columns,
    stages: &[Stage],
    epilogue: &Phase,
    in_shape: &[usize],
    out_shape: &[usize],
    red_n: usize,
    args: &[RawBuf],
) {
    let outputs: usize = out_shape.iter().product();
    // outputs per task: any grouping gives the same bits (each output folds alone)
    let chunk = if outputs >= 2 * BLOCK { BLOCK } else { 64 };
    let naccs: usize = stages.iter().map(|s| s.folds.len()).sum();
    let init = || {
        (
            cols.stages
                .iter()
                .map(|p| p.scratch())
                .collect::<Vec<Scratch>>(),
            epilogue.scratch(),
            cols.broadcast.as_ref().map(|b| b.scratch()),
            Vec::<AccCol>::with_capacity(naccs),
            vec![Scalar::F(0.0); naccs * chunk],
            Vec::new(),
            vec![0usize; in_shape.len()],
            vec![0usize; cols.red_dims.len()],
        )
    };
    for_tasks(outputs.div_ceil(chunk), init, |st, t| {
        let (ss, es, bs, accs, chunk_accs, bases, idx, ridx) = st;
        let o0 = t * chunk;
        let cn = (outputs - o0).min(chunk);
        accs.clear();
        for ((stage, phase), s) in stages.iter().zip(&cols.stages).zip(ss.iter_mut()) {
            let first = accs.len();
            for &(kind, _, int) in &stage.folds {
                accs.push(match (kind, int) {
                    (ReduceKind::Sum, false) => AccCol::F(vec![0.0; cn]),
                    (ReduceKind::Sum, true) => AccCol::I(vec![0; cn]),
                    (ReduceKind::Max, false) => AccCol::F(vec![f32::NEG_INFINITY; cn]),
                    (ReduceKind::Max, true) => AccCol::I(vec![i32::MIN; cn]),
                });
            }
            for r in 0..red_n {
                unravel(r, &cols.red_dims, ridx);
                for (k, &a) in cols.axes.iter().enumerate() {
                    idx[a] = ridx[k];
                }
                phase.bases(idx, bases);
                let mut at = 0;
                while at < cn {
                    let n = (cn - at).min(BLOCK);
                    let (done, fresh) = accs.split_at_mut(first);
                    phase.run_block(
                        s,
                        args,
                        bases,
                        o0 + at,
                        n,
                        Accs::Cols {
                            cols: done,
                            first: at,
                        },
                    );
                    for (a, &(kind, value, _)) in fresh.iter_mut().zip(&stage.folds) {
                        fold_cols(a, at, kind, phase.value(s, value, n));
                    }
                    at += n;
                }
            }
        }
        for (j, a) in accs.iter().enumerate() {
            for c in 0..cn {
                chunk_accs[j * chunk + c] = match a {
                    AccCol::F(v) => Scalar::F(v[c]),
                    AccCol::I(v) => Scalar::I(v[c]),
                };
            }
        }
        epilogue.bases(&[], bases);
        let mut at = 0;
        while at < cn {
            let n = (cn - at).min(BLOCK);
            epilogue.run_block(
                es,
                args,
                bases,
                o0 + at,
                n,
                Accs::Chunk {
                    values: chunk_accs,
                    stride: chunk,
                    first: at,
                },
            );
            at += n;
        }
        if let (Some(b), Some(bs)) = (&cols.broadcast, bs.as_mut()) {
            for r in 0..red_n {
                unravel(r, &cols.red_dims, ridx);
                for (k, &a) in cols.axes.iter().enumerate() {
                    idx[a] = ridx[k];
                }
                b.bases(idx, bases);
                let mut at = 0;
                while at < cn {
                    let n = (cn - at).min(BLOCK);
                    b.run_block(
                        bs,
                        args,
                        bases,
                        o0 + at,
                        n,
                        Accs::Cols {
                            cols: accs,
                            first: at,
                        },
                    );
                    at += n;
                }
            }
        }
    });
}

/// Folds one block of values into a chunk's accumulators (element `e` into `acc[at + e]`).
fn fold_cols(acc: &mut AccCol, at: usize, kind: ReduceKind, v: Value) {
    match (acc, v) {
        (AccCol::F(a), Value::F(v)) => {
            let a = &mut a[at..at + v.len()];
            match kind {
                ReduceKind::Sum => a.iter_mut().zip(v).for_each(|(a, x)| *a += x),
                ReduceKind::Max => a.iter_mut().zip(v).for_each(|(a, x)| *a = max_nan(*a, *x)),
            }
        }
        (AccCol::I(a), Value::I(v)) => {
            let a = &mut a[at..at + v.len()];
            match kind {
                ReduceKind::Sum => a
                    .iter_mut()
                    .zip(v)
                    .for_each(|(a, x)| *a = a.wrapping_add(*x)),
                ReduceKind::Max => a.iter_mut().zip(v).for_each(|(a, x)| *a = (*a).max(*x)),
            }
        }
        _ => {}
    }
}

fn fold(a: Scalar, kind: ReduceKind, v: Value) -> Scalar {
    match (kind, a, v) {
        (ReduceKind::Sum, Scalar::F(mut a), Value::F(v)) => {
            for &x in v {
                a += x;
            }
            Scalar::F(a)
        }
        (ReduceKind::Max, Scalar::F(mut a), Value::F(v)) => {
            for &x in v {
                a = max_nan(a, x);
            }
            Scalar::F(a)
        }
        (ReduceKind::Sum, Scalar::I(mut a), Value::I(v)) => {
            for &x in v {
                a = a.wrapping_add(x);
            }
            Scalar::I(a)
        }
        (ReduceKind::Max, Scalar::I(mut a), Value::I(v)) => {
            for &x in v {
                a = a.max(x);
            }
            Scalar::I(a)
        }
        // the accumulator is typed like its value, so these do not occur
        (_, a, _) => a,
    }
}
