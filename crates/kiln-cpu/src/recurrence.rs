//! Prepared recurrences ([`KernelOp::Recurrence`]): a whole LSTM, GRU or SimpleRNN layer over
//! its time axis, forward or backward (BPTT), with the values of the reference
//! [`kiln_ir::recurrence::forward`] / [`kiln_ir::recurrence::backward`].
//!
//! The rows of a batch are independent through time, so the batch is split into blocks of
//! [`ROWS`] rows (a fixed partition: never from the thread count), one task each, and every
//! task loops over all the steps by itself:
//! - forward, per step: `acc [rows, kU] = h_in · r` as one single-threaded GEMM call
//!   ([`crate::gemm`]'s `product`; skipped at step 0, where `h_in = 0`), then the cell over
//!   each row as loops over the units that vectorise (the activations are `math.rs`'s
//!   branch-free polynomials), writing the trace; `h_in = h ⊙ mask` for the next step;
//! - backward, steps in reverse: the cell's gradient per row (writing `out`, whose `d rec`
//!   part is read in place as the next product's operand), then
//!   `dh_{t-1} += (d rec · rᵀ) ⊙ mask` as one GEMM call on top of the direct part (GRU
//!   `dh·u`). `rᵀ` is copied row-major once per run: read in place through r's strides, it
//!   was a column-major operand that `gemm` packed again at every step of every block (the
//!   char-LSTM's BPTT took 33 ms a train step that way, 8 ms with the copy).
//!
//! Each task's products have shapes fixed by the kernel's shape, so the bits are the same on
//! any number of threads. A build of the cell loops for AVX2+FMA runs where the CPU has it
//! (multiplies and adds are never fused, so the bits are those of the baseline build). The
//! activations are [`CellActivation::apply`]'s and [`CellActivation::derivative`]'s (`relu`
//! lets NaN through, as the graph's relu does). Operands that share elements with the
//! result (one arena arg) are copied before the run.

use crate::exec::for_tasks;
use crate::gemm::product;
use crate::isa::Isa;
use crate::math;
use crate::prog::RawBuf;
use kiln_ir::recurrence::{Adjoint, Cell, CellActivation, CellKind};
use kiln_ir::DType;
use kiln_plan::kernel::{Dense, Kernel, KernelOp};
use kiln_plan::{Error, PlanError, Result};
use std::borrow::Cow;

/// Rows of the batch per task. Fixed, so the partition (and the shape of every product)
/// depends on the kernel's shape only.
pub const ROWS: usize = 16;

/// Per-unit scratch vectors a row's cell uses.
const LANES: usize = 10;

/// A prepared recurrence.
#[derive(Debug)]
pub struct Recurrence {
    cell: Cell,
    batch: usize,
    steps: usize,
    xp: Dense,
    r: Dense,
    rb: Option<Dense>,
    mask: Option<Dense>,
    grad: Option<[Dense; 2]>,
    /// The backward's window of the trace's adjoint.
    adjoint: Adjoint,
    out: Dense,
    /// An operand shares elements with `out`: the operands are copied before the run.
    overlap: bool,
}

fn bad(label: &str, msg: &str) -> Error {
    Error::Plan(PlanError::new(format!("kernel `{label}`: {msg}")))
}

impl Recurrence {
    /// Prepares kernel `k` (a [`KernelOp::Recurrence`]), pushing the largest element of
    /// every operand and of the output to `extents`.
    pub(crate) fn new(k: &Kernel, extents: &mut Vec<(u32, usize)>) -> Result<Recurrence> {
        let KernelOp::Recurrence {
            cell,
            batch,
            steps,
            xp,
            r,
            rb,
            mask,
            grad,
            adjoint,
            out,
            ..
        } = &k.op
        else {
            return Err(bad(&k.label, "not a recurrence"));
        };
        let (b, t) = (*batch, *steps);
        let overflow = || bad(&k.label, "recurrence size overflows");
        let u = cell.units;
        if u == 0 || rb.is_some() != (cell.kind == CellKind::Gru) || mask.is_some() != cell.masked {
            return Err(bad(&k.label, "recurrence operands do not match its cell"));
        }
        // every block (operand or result) and its element count
        let blocks = k.op.recurrence_blocks().unwrap_or_default();
        if blocks.iter().any(|&(_, n, _)| n == usize::MAX) {
            return Err(overflow());
        }
        let end = |d: &Dense, n: usize| d.offset.checked_add(n).ok_or_else(overflow);
        for &(d, n, _) in &blocks {
            if k.args.get(d.arg as usize).map(|a| a.dtype) != Some(DType::F32) {
                return Err(bad(&k.label, "recurrence operand is not an f32 arg"));
            }
            if n > 0 {
                extents.push((d.arg, end(d, n)? - 1));
            }
        }
        let out_n = blocks.iter().find(|b| b.2).map_or(0, |b| b.1);
        let out_end = end(out, out_n)?;
        let mut overlap = false;
        for &(d, n, _) in blocks.iter().filter(|b| !b.2) {
            if n > 0 && out_n > 0 && d.arg == out.arg && d.offset < out_end {
                overlap |= out.offset < end(d, n)?;
            }
        }
        Ok(Recurrence {
            cell: *cell,
            batch: b,
            steps: t,
            xp: xp.clone(),
            r: r.clone(),
            rb: rb.clone(),
            mask: mask.clone(),
            grad: grad.clone(),
            adjoint: *adjoint,
            out: out.clone(),
            overlap,
        })
    }

    /// Runs the recurrence over its bound buffers.
    ///
    /// # Safety
    /// `args` are the kernel's buffers, every extent [`Recurrence::new`] reported checked
    /// against them.
    pub(crate) unsafe fn run(&self, args: &[RawBuf]) {
        self.run_with(args, Isa::best())
    }

    /// [`Recurrence::run`] with the cell loops compiled for `isa` (one the CPU has).
    ///
    /// # Safety
    /// As [`Recurrence::run`].
    unsafe fn run_with(&self, args: &[RawBuf], isa: Isa) {
        let c = &self.cell;
        let (b, t, u) = (self.batch, self.steps, c.units);
        let ku = c.gates() * u;
        if b == 0 || t == 0 {
            return;
        }
        let view = |d: &Dense, n: usize| -> Cow<'_, [f32]> {
            // SAFETY: in bounds (checked at load); nothing writes these elements during the
            // run unless they overlap `out`, and then they are copied here first.
            let s = std::slice::from_raw_parts(args[d.arg as usize].fp().add(d.offset), n);
            if self.overlap {
                Cow::Owned(s.to_vec())
            } else {
                Cow::Borrowed(s)
            }
        };
        let r = view(&self.r, u * ku);
        // Backward: rᵀ `[kU, U]` once per run, so that the per-step product `d rec · rᵀ`
        // reads B row by row instead of packing a column-major view every step.
        let mut rt = Vec::new();
        if self.grad.is_some() {
            rt = vec![0.0f32; u * ku];
            for (q, row) in r.chunks_exact(ku).enumerate() {
                for (m, &v) in row.iter().enumerate() {
                    rt[m * u + q] = v;
                }
            }
        }
        let ops = Ops {
            xp: view(&self.xp, b * t * ku),
            r,
            rt,
            rb: self.rb.as_ref().map(|d| view(d, ku)),
            mask: self.mask.as_ref().map(|d| view(d, b * u)),
        };
        let w = c.trace_width();
        let adj = self.adjoint;
        let grad = self
            .grad
            .as_ref()
            .map(|[tr, dtr]| (view(tr, b * t * w), view(dtr, adj.len(b))));
        let width = if grad.is_some() { c.grad_width() } else { w };
        let out = args[self.out.arg as usize];
        let out_off = self.out.offset;
        let init = || Scratch {
            a: vec![0.0; ROWS * ku],
            b: vec![0.0; ROWS * u],
            c: vec![0.0; ROWS * u],
            lanes: vec![0.0; LANES * u],
            zero: vec![0.0; u],
            drow: vec![0.0; w],
        };
        for_tasks(b.div_ceil(ROWS), init, |s, task| {
            let r0 = task * ROWS;
            let nb = (b - r0).min(ROWS);
            // SAFETY: the rows `r0..r0 + nb` of `out` are this task's alone, in bounds
            // (checked at load) and disjoint from the operands (else those were copied).
            let o = std::slice::from_raw_parts_mut(
                out.fp().add(out_off + r0 * t * width),
                nb * t * width,
            );
            let task = Task {
                cell: c,
                steps: t,
                adjoint: adj,
                r0,
                nb,
            };
            match &grad {
                None => task.dispatch_forward(isa, &ops, o, s),
                Some((tr, dtr)) => {
                    let (n, dn) = (nb * t * w, adj.len(nb));
                    let (tr, dtr) = (&tr[r0 * t * w..][..n], &dtr[adj.len(r0)..][..dn]);
                    task.dispatch_backward(isa, &ops, tr, dtr, o, s)
                }
            }
        });
    }
}

/// The operands of a run.
struct Ops<'a> {
    xp: Cow<'a, [f32]>,
    r: Cow<'a, [f32]>,
    /// Backward: `rᵀ [kU, U]`, row-major (empty in the forward).
    rt: Vec<f32>,
    rb: Option<Cow<'a, [f32]>>,
    mask: Option<Cow<'a, [f32]>>,
}

/// A task's buffers, reused across its steps.
struct Scratch {
    /// Forward: `acc [rows, kU]`.
    a: Vec<f32>,
    /// Forward: `h_in [rows, U]`; backward: `dh_next [rows, U]`.
    b: Vec<f32>,
    /// Backward: `dc_next [rows, U]` (LSTM), then the product `drec · rᵀ`.
    c: Vec<f32>,
    /// [`LANES`] vectors of `U`.
    lanes: Vec<f32>,
    /// `U` zeros: the state before step 0.
    zero: Vec<f32>,
    /// Backward, a window of the trace's adjoint: one row of it, zero outside the window.
    drow: Vec<f32>,
}

/// One block of rows.
struct Task<'a> {
    cell: &'a Cell,
    steps: usize,
    /// The backward's window of the trace's adjoint.
    adjoint: Adjoint,
    r0: usize,
    nb: usize,
}

/// `N` disjoint vectors of `u` elements from the front of `buf` (at least `N·u` long).
#[inline(always)]
fn lanes<const N: usize>(buf: &mut [f32], u: usize) -> [&mut [f32]; N] {
    let mut it = buf.chunks_exact_mut(u.max(1));
    std::array::from_fn(|_| it.next().unwrap_or_default())
}

/// `y = f(x)`, [`CellActivation::apply`] over a slice.
#[inline(always)]
fn act(f: CellActivation, x: &[f32], y: &mut [f32]) {
    let y = &mut y[..x.len()];
    let it = y.iter_mut().zip(x);
    match f {
        CellActivation::Linear => y.copy_from_slice(x),
        CellActivation::Tanh => it.for_each(|(y, &x)| *y = math::tanh(x)),
        CellActivation::Sigmoid => it.for_each(|(y, &x)| *y = 1.0 / (1.0 + math::exp(-x))),
        // NaN passes through (as the graph's relu)
        CellActivation::Relu => it.for_each(|(y, &x)| *y = if x <= 0.0 { 0.0 } else { x }),
        CellActivation::HardSigmoid => it.for_each(|(y, &x)| {
            // NaN stays NaN, as in the reference's comparisons
            *y = (0.2 * x + 0.5).clamp(0.0, 1.0)
        }),
    }
}

/// `d = f'(x)` given `y = f(x)`, [`CellActivation::derivative`] over slices.
#[inline(always)]
fn deriv(f: CellActivation, x: &[f32], y: &[f32], d: &mut [f32]) {
    let n = x.len();
    let (y, d) = (&y[..n], &mut d[..n]);
    match f {
        CellActivation::Linear => d.fill(1.0),
        CellActivation::Tanh => d.iter_mut().zip(y).for_each(|(d, &y)| *d = 1.0 - y * y),
        CellActivation::Sigmoid => d.iter_mut().zip(y).for_each(|(d, &y)| *d = y * (1.0 - y)),
        CellActivation::Relu => d
            .iter_mut()
            .zip(x)
            .for_each(|(d, &x)| *d = if x > 0.0 { 1.0 } else { 0.0 }),
        CellActivation::HardSigmoid => d.iter_mut().zip(x).for_each(|(d, &x)| {
            let v = 0.2 * x + 0.5;
            *d = if v > 0.0 && v < 1.0 { 0.2 } else { 0.0 }
        }),
    }
}

impl Task<'_> {
    unsafe fn dispatch_forward(&self, isa: Isa, ops: &Ops, out: &mut [f32], s: &mut Scratch) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => self.forward_avx512(ops, out, s),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => self.forward_avx2(ops, out, s),
            Isa::Baseline => self.forward(ops, out, s),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn forward_avx512(&self, ops: &Ops, out: &mut [f32], s: &mut Scratch) {
        self.forward(ops, out, s)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward_avx2(&self, ops: &Ops, out: &mut [f32], s: &mut Scratch) {
        self.forward(ops, out, s)
    }

    unsafe fn dispatch_backward(
        &self,
        isa: Isa,
        ops: &Ops,
        trace: &[f32],
        dtrace: &[f32],
        out: &mut [f32],
        s: &mut Scratch,
    ) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => self.backward_avx512(ops, trace, dtrace, out, s),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => self.backward_avx2(ops, trace, dtrace, out, s),
            Isa::Baseline => self.backward(ops, trace, dtrace, out, s),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn backward_avx512(
        &self,
        ops: &Ops,
        trace: &[f32],
        dtrace: &[f32],
        out: &mut [f32],
        s: &mut Scratch,
    ) {
        self.backward(ops, trace, dtrace, out, s)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn backward_avx2(
        &self,
        ops: &Ops,
        trace: &[f32],
        dtrace: &[f32],
        out: &mut [f32],
        s: &mut Scratch,
    ) {
        self.backward(ops, trace, dtrace, out, s)
    }

    /// The forward of this block into `out` (its rows of the trace, `[nb, T, W]`).
    // index loops over several slices of one length are what vectorises here
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn forward(&self, ops: &Ops, out: &mut [f32], s: &mut Scratch) {
        let c = self.cell;
        let (t, nb, r0) = (self.steps, self.nb, self.r0);
        let (u, ku, w) = (c.units, c.gates() * c.units, c.trace_width());
        let (sg, ph) = (c.recurrent_activation, c.activation);
        let Scratch {
            a: acc,
            b: hin,
            lanes: buf,
            zero,
            ..
        } = s;
        let (acc, hin, zero) = (&mut acc[..nb * ku], &mut hin[..nb * u], &zero[..u]);
        let [l0, l1, l2, l3, l4] = lanes::<5>(buf, u);
        let rb = ops.rb.as_deref().unwrap_or(&[]);
        for step in 0..t {
            if step == 0 {
                acc.fill(0.0);
            } else {
                // acc = h_in · r: one product over the block
                product(
                    [nb, u, ku],
                    (hin.as_ptr(), u, 1),
                    (ops.r.as_ptr(), ku, 1),
                    (acc.as_mut_ptr(), ku, 1),
                );
            }
            for i in 0..nb {
                let row = (i * t + step) * w;
                let (before, cur) = out.split_at_mut(row);
                let cur = &mut cur[..w];
                // the trace's last U columns: h_in, the state that entered h·r (zero at 0)
                if step == 0 {
                    cur[w - u..].fill(0.0);
                } else {
                    cur[w - u..].copy_from_slice(&hin[i * u..][..u]);
                }
                let prev = (step > 0).then(|| &before[row - w..]);
                let x = &ops.xp[((r0 + i) * t + step) * ku..][..ku];
                let a = &acc[i * ku..][..ku];
                let hp = prev.map_or(zero, |p| &p[..u]);
                match c.kind {
                    CellKind::Lstm => {
                        let (h, rest) = cur.split_at_mut(u);
                        let (cs, z) = rest.split_at_mut(u);
                        let z = &mut z[..ku];
                        z.iter_mut()
                            .zip(x.iter().zip(a))
                            .for_each(|(z, (&x, &a))| *z = x + a);
                        act(sg, &z[..u], l0);
                        act(sg, &z[u..2 * u], l1);
                        act(ph, &z[2 * u..3 * u], l2);
                        act(sg, &z[3 * u..], l3);
                        let cp = prev.map_or(zero, |p| &p[u..2 * u]);
                        for j in 0..u {
                            cs[j] = l1[j] * cp[j] + l0[j] * l2[j];
                        }
                        act(ph, cs, l4);
                        for j in 0..u {
                            h[j] = l3[j] * l4[j];
                        }
                    }
                    CellKind::Gru => {
                        let (h, rec) = cur.split_at_mut(u);
                        let rec = &mut rec[..ku];
                        if rb.len() == ku {
                            rec.iter_mut()
                                .zip(a.iter().zip(rb))
                                .for_each(|(r, (&a, &b))| *r = a + b);
                        } else {
                            rec.copy_from_slice(a);
                        }
                        for j in 0..u {
                            l0[j] = x[j] + rec[j];
                            l1[j] = x[u + j] + rec[u + j];
                        }
                        act(sg, l0, l2); // u
                        act(sg, l1, l3); // q
                        for j in 0..u {
                            l0[j] = x[2 * u + j] + l3[j] * rec[2 * u + j];
                        }
                        act(ph, l0, l1); // n
                        for j in 0..u {
                            h[j] = l2[j] * hp[j] + (1.0 - l2[j]) * l1[j];
                        }
                    }
                    CellKind::SimpleRnn => {
                        let (h, z) = cur.split_at_mut(u);
                        let z = &mut z[..u];
                        z.iter_mut()
                            .zip(x.iter().zip(a))
                            .for_each(|(z, (&x, &a))| *z = x + a);
                        act(ph, z, h);
                    }
                }
                // h_in for the next step
                let h = &cur[..u];
                let hi = &mut hin[i * u..][..u];
                match ops.mask.as_deref() {
                    Some(m) => {
                        let m = &m[(r0 + i) * u..][..u];
                        for j in 0..u {
                            hi[j] = h[j] * m[j];
                        }
                    }
                    None => hi.copy_from_slice(h),
                }
            }
        }
    }

    /// The backward of this block: `trace`, `dtrace` its rows (`[nb, T, W]` and the
    /// adjoint's window `[nb, T', W']`), `out` its rows of the result (`[nb, T, G]`).
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn backward(
        &self,
        ops: &Ops,
        trace: &[f32],
        dtrace: &[f32],
        out: &mut [f32],
        s: &mut Scratch,
    ) {
        let c = self.cell;
        let (t, nb, r0) = (self.steps, self.nb, self.r0);
        let (u, ku, w, gw) = (
            c.units,
            c.gates() * c.units,
            c.trace_width(),
            c.grad_width(),
        );
        let (sg, ph) = (c.recurrent_activation, c.activation);
        let Scratch {
            b: dh_next,
            c: dc_next,
            a: prod,
            lanes: buf,
            zero,
            drow,
        } = s;
        let (dh_next, dc_next, zero) = (&mut dh_next[..nb * u], &mut dc_next[..nb * u], &zero[..u]);
        let adj = self.adjoint;
        let whole = adj == Adjoint::full(c, t);
        let prod = &mut prod[..nb * u];
        let [l0, l1, l2, l3, l4, l5, l6, l7, l8, l9] = lanes::<LANES>(buf, u);
        // the `d rec` part of a row of `out`
        let doff = if c.kind == CellKind::Gru { 3 * u } else { 0 };
        dh_next.fill(0.0);
        dc_next.fill(0.0);
        for step in (0..t).rev() {
            for i in 0..nb {
                let row = (i * t + step) * w;
                let tr = &trace[row..][..w];
                // this step's row of the adjoint: in place, or (a window) copied into a row
                // that is zero outside it
                let dtr: &[f32] = if whole {
                    &dtrace[row..][..w]
                } else {
                    let part = &mut drow[..adj.width];
                    match adj.row(i, t, step) {
                        Some(at) => part.copy_from_slice(&dtrace[at..][..adj.width]),
                        None => part.fill(0.0),
                    }
                    &drow[..w]
                };
                let prev = (step > 0).then(|| &trace[row - w..][..w]);
                let o = &mut out[(i * t + step) * gw..][..gw];
                let x = &ops.xp[((r0 + i) * t + step) * ku..][..ku];
                let dhn = &mut dh_next[i * u..][..u];
                // dh = dtrace_h + dh_next
                for j in 0..u {
                    l0[j] = dtr[j] + dhn[j];
                }
                let dh = &*l0;
                match c.kind {
                    CellKind::Lstm => {
                        let dcn = &mut dc_next[i * u..][..u];
                        let (cs, z) = (&tr[u..2 * u], &tr[2 * u..6 * u]);
                        let (zi, zf, zg, zo) =
                            (&z[..u], &z[u..2 * u], &z[2 * u..3 * u], &z[3 * u..]);
                        let dz = &dtr[2 * u..6 * u];
                        let cp = prev.map_or(zero, |p| &p[u..2 * u]);
                        act(sg, zi, l1);
                        act(sg, zf, l2);
                        act(ph, zg, l3);
                        act(sg, zo, l4);
                        act(ph, cs, l5); // φ(c)
                        deriv(ph, cs, l5, l6);
                        // dc = dtrace_c + dc_next + dh·o·φ'(c)
                        for j in 0..u {
                            let d = dtr[u + j] + dcn[j];
                            l7[j] = d + dh[j] * l4[j] * l6[j];
                        }
                        let dc = &*l7;
                        deriv(sg, zi, l1, l6);
                        for j in 0..u {
                            o[j] = dc[j] * l3[j] * l6[j] + dz[j];
                        }
                        deriv(sg, zf, l2, l6);
                        for j in 0..u {
                            o[u + j] = dc[j] * cp[j] * l6[j] + dz[u + j];
                        }
                        deriv(ph, zg, l3, l6);
                        for j in 0..u {
                            o[2 * u + j] = dc[j] * l1[j] * l6[j] + dz[2 * u + j];
                        }
                        deriv(sg, zo, l4, l6);
                        for j in 0..u {
                            o[3 * u + j] = dh[j] * l5[j] * l6[j] + dz[3 * u + j];
                        }
                        for j in 0..u {
                            dcn[j] = dc[j] * l2[j];
                        }
                        dhn.fill(0.0);
                    }
                    CellKind::Gru => {
                        let rec = &tr[u..4 * u];
                        let drec = &dtr[u..4 * u];
                        let hp = prev.map_or(zero, |p| &p[..u]);
                        for j in 0..u {
                            l1[j] = x[j] + rec[j]; // z_u
                            l2[j] = x[u + j] + rec[u + j]; // z_q
                        }
                        act(sg, l1, l3); // u
                        act(sg, l2, l4); // q
                        for j in 0..u {
                            l5[j] = x[2 * u + j] + l4[j] * rec[2 * u + j]; // z_n
                        }
                        act(ph, l5, l6); // n
                                         // du = dh·(h_prev - n)·σ'(z_u)
                        deriv(sg, l1, l3, l7);
                        for j in 0..u {
                            l8[j] = dh[j] * (hp[j] - l6[j]) * l7[j];
                        }
                        // dn = dh·(1 - u)·φ'(z_n)
                        deriv(ph, l5, l6, l7);
                        for j in 0..u {
                            l9[j] = dh[j] * (1.0 - l3[j]) * l7[j];
                        }
                        // dq = dn·rec_h·σ'(z_q)
                        deriv(sg, l2, l4, l7);
                        for j in 0..u {
                            let (du, dn) = (l8[j], l9[j]);
                            let dq = dn * rec[2 * u + j] * l7[j];
                            o[j] = du;
                            o[u + j] = dq;
                            o[2 * u + j] = dn;
                            o[3 * u + j] = du + drec[j];
                            o[4 * u + j] = dq + drec[u + j];
                            o[5 * u + j] = dn * l4[j] + drec[2 * u + j];
                        }
                        // the direct part of dh_{t-1}
                        for j in 0..u {
                            dhn[j] = dh[j] * l3[j];
                        }
                    }
                    CellKind::SimpleRnn => {
                        let (h, z) = (&tr[..u], &tr[u..2 * u]);
                        deriv(ph, z, h, l1);
                        for j in 0..u {
                            o[j] = dh[j] * l1[j] + dtr[u + j];
                        }
                        dhn.fill(0.0);
                    }
                }
            }
            if step == 0 {
                continue;
            }
            // dh_{t-1} += (d rec · rᵀ + d h_in) ⊙ mask: `d rec` read in place from this step's
            // rows of `out` (row stride T·G), rᵀ from its row-major copy, d h_in from the
            // trace's adjoint (its last U columns)
            product(
                [nb, ku, u],
                (out.as_ptr().add(step * gw + doff), t * gw, 1),
                (ops.rt.as_ptr(), u, 1),
                (prod.as_mut_ptr(), u, 1),
            );
            for i in 0..nb {
                // the adjoint's h_in columns (a window of width W only)
                let Some(at) = adj.row(i, t, step).filter(|_| adj.width == w) else {
                    continue;
                };
                let dhin = &dtrace[at + w - u..][..u];
                for (p, &d) in prod[i * u..][..u].iter_mut().zip(dhin) {
                    *p += d;
                }
            }
            match ops.mask.as_deref() {
                Some(m) => {
                    let m = &m[r0 * u..][..nb * u];
                    for ((d, &p), &m) in dh_next.iter_mut().zip(prod.iter()).zip(m) {
                        *d += p * m;
                    }
                }
                None => {
                    for (d, &p) in dh_next.iter_mut().zip(prod.iter()) {
                        *d += p;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::recurrence::{backward, forward, Operands};
    use kiln_plan::kernel::{Access, Arg, RecurrenceLaunch};

    fn data(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let v = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15 ^ seed);
                ((v >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// Within f32 rounding of the reference; `abs` grows with the length of the cell's dot
    /// products.
    fn close(what: &str, got: &[f32], want: &[f32], abs: f32) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= abs + 1e-5 * w.abs(),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    #[test]
    fn activations_match_the_reference() {
        let xs = [
            -120.0f32,
            -3.0,
            -2.5,
            -0.7,
            0.0,
            0.3,
            2.1,
            2.5,
            95.0,
            f32::NAN,
        ];
        for f in CellActivation::ALL {
            let (mut y, mut d) = ([0.0; 10], [0.0; 10]);
            act(f, &xs, &mut y);
            deriv(f, &xs, &y, &mut d);
            for (i, &x) in xs.iter().enumerate() {
                let (wy, wd) = (f.apply(x), f.derivative(x, f.apply(x)));
                for (what, g, w) in [("f", y[i], wy), ("f'", d[i], wd)] {
                    let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-6 * w.abs().max(1.0);
                    assert!(ok, "{f:?} {what}({x}) = {g}, want {w}");
                }
            }
        }
    }

    /// One f32 arg holding every operand and the result: `out` at `out_at`, which may
    /// overlap the operands (in place over `xp` or `dtrace`); the backward reads the window
    /// `adj` of the trace's adjoint. Returns the result, checked against the reference.
    fn run_in_arena(
        c: Cell,
        (b, t): (usize, usize),
        backward_pass: bool,
        adj: Adjoint,
        out_at: usize,
    ) -> Vec<f32> {
        let (u, ku, w) = (c.units, c.gates() * c.units, c.trace_width());
        let (xp, r, mask) = (data(b * t * ku, 1), data(u * ku, 2), data(b * u, 3));
        let mask: Vec<f32> = mask
            .iter()
            .map(|&m| if m > -0.3 { 1.25 } else { 0.0 })
            .collect();
        let ops = Operands {
            xp: &xp,
            r: &r,
            rb: None,
            mask: c.masked.then_some(&mask[..]),
        };
        let mut trace = vec![0.0; b * t * w];
        forward(&c, t, 0..b, ops, &mut trace);
        let dtrace = data(adj.len(b), 4);
        // arena: xp, r, mask, trace, dtrace, then room for `out` anywhere
        let parts: [&[f32]; 5] = [&xp, &r, &mask, &trace, &dtrace];
        let mut offs = vec![];
        let mut arena = vec![];
        for p in parts {
            offs.push(arena.len());
            arena.extend_from_slice(p);
        }
        let width = if backward_pass { c.grad_width() } else { w };
        arena.resize(arena.len().max(out_at + b * t * width), 0.0);
        let dense = |i: usize| Dense {
            arg: 0,
            offset: offs[i],
        };
        let k = Kernel {
            label: "rec".into(),
            op: KernelOp::Recurrence {
                cell: c,
                batch: b,
                steps: t,
                xp: dense(0),
                r: dense(1),
                rb: None,
                mask: c.masked.then(|| dense(2)),
                grad: backward_pass.then(|| [dense(3), dense(4)]),
                adjoint: adj,
                out: Dense {
                    arg: 0,
                    offset: out_at,
                },
                launch: RecurrenceLaunch {
                    rows: 1,
                    unroll: false,
                },
            },
            args: vec![Arg {
                dtype: DType::F32,
                access: Access::ReadWrite,
            }],
            workgroup_size: 1,
            threads: b as u64,
            nodes: vec![],
        };
        let mut extents = vec![];
        let rec = Recurrence::new(&k, &mut extents).unwrap();
        assert!(extents.iter().all(|&(_, e)| e < arena.len()));
        // every instruction set the CPU has, on a fresh copy of the arena: the same bits
        let fresh = arena.clone();
        let mut got: Vec<f32> = vec![];
        for isa in Isa::available() {
            arena.copy_from_slice(&fresh);
            let raw = RawBuf {
                ptr: arena.as_mut_ptr(),
                len: arena.len(),
                dtype: DType::F32,
            };
            // SAFETY: every extent lies in the arena (asserted above)
            unsafe { rec.run_with(&[raw], isa) };
            let out = arena[out_at..][..b * t * width].to_vec();
            if got.is_empty() {
                got = out;
            } else {
                let differ = out
                    .iter()
                    .zip(&got)
                    .position(|(x, y)| x.to_bits() != y.to_bits());
                assert_eq!(
                    differ, None,
                    "{c:?} backward {backward_pass}: {isa:?} differs"
                );
            }
        }
        let mut want = vec![0.0; b * t * width];
        if backward_pass {
            backward(&c, t, 0..b, ops, &trace, (&dtrace, adj), &mut want);
        } else {
            want = trace;
        }
        close(
            &format!("{c:?} backward {backward_pass} out at {out_at}"),
            &got,
            &want,
            1e-6 * (c.units as f32 / 5.0).max(1.0),
        );
        got
    }

    #[test]
    fn operands_overlapping_the_result_are_read_before_it_is_written() {
        let c = Cell {
            kind: CellKind::Lstm,
            units: 5,
            activation: CellActivation::Tanh,
            recurrent_activation: CellActivation::Sigmoid,
            masked: true,
        };
        // 19 rows: blocks of 16 and 3
        let (b, t) = (19, 4);
        let (u, ku, w) = (c.units, c.gates() * c.units, c.trace_width());
        // the arena's layout (see `run_in_arena`): xp, r, mask, trace, dtrace
        let dtrace_at = b * t * ku + u * ku + b * u + b * t * w;
        let end = dtrace_at + b * t * w;
        let full = Adjoint::full(&c, t);
        for backward_pass in [false, true] {
            let apart = run_in_arena(c, (b, t), backward_pass, full, end);
            // in place over xp (the forward) or over dtrace (the backward)
            let at = if backward_pass { dtrace_at } else { 0 };
            let inplace = run_in_arena(c, (b, t), backward_pass, full, at);
            assert_eq!(apart, inplace, "copied operands change the bits");
        }
    }

    /// The backward reads a window of the trace's adjoint (the last step's `h`, every
    /// step's `h`, the last steps' whole rows) as the reference does (LSTM and SimpleRNN
    /// here; GRU through the layers' and the op table's tests).
    #[test]
    fn adjoint_windows_match_the_reference() {
        for kind in [CellKind::Lstm, CellKind::SimpleRnn] {
            let c = Cell {
                kind,
                units: 5,
                activation: CellActivation::Tanh,
                recurrent_activation: CellActivation::Sigmoid,
                masked: true,
            };
            let (b, t, u, w) = (19, 4, c.units, c.trace_width());
            for (steps, width) in [(1, u), (t, u), (2, w), (t, w)] {
                let end = b * t * (c.gates() * u + w + w) + u * c.gates() * u + b * u;
                // `run_in_arena` checks the result against the reference
                run_in_arena(c, (b, t), true, Adjoint { steps, width }, end);
            }
        }
    }

    /// The cell loops compiled for every instruction set this CPU has (baseline, AVX2,
    /// AVX-512) give the same bits, forward and backward, with unit counts that fill whole
    /// 16-wide vectors and leave remainders (`run_in_arena` runs each and compares them).
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        let cells = [
            (
                CellKind::Lstm,
                37,
                CellActivation::Tanh,
                CellActivation::Sigmoid,
            ),
            (
                CellKind::Lstm,
                64,
                CellActivation::Relu,
                CellActivation::HardSigmoid,
            ),
            (
                CellKind::SimpleRnn,
                48,
                CellActivation::Tanh,
                CellActivation::Sigmoid,
            ),
        ];
        for (kind, units, activation, recurrent_activation) in cells {
            let c = Cell {
                kind,
                units,
                activation,
                recurrent_activation,
                masked: true,
            };
            let (b, t) = (19, 6);
            let end = b * t * (c.gates() * units + 2 * c.trace_width())
                + units * c.gates() * units
                + b * units;
            for backward_pass in [false, true] {
                run_in_arena(c, (b, t), backward_pass, Adjoint::full(&c, t), end);
            }
        }
        assert!(!Isa::available().is_empty());
    }
}
