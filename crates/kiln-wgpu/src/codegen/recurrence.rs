//! Recurrence kernels: a whole LSTM, GRU or SimpleRNN layer over its time axis, forward or
//! backward (BPTT), as one persistent kernel ([`KernelOp::Recurrence`]; the values are
//! those of [`kiln_ir::recurrence::forward`] and [`kiln_ir::recurrence::backward`]).
//!
//! Workgroup `w` owns the batch rows `w·R .. w·R + R` (`R = launch.rows`) and runs every
//! step itself; invocation `lid` owns the `(row, unit)` pairs `idx = lid + p·WG` for
//! `p < P` ([`RecurrenceLaunch::pairs`](kiln_plan::kernel::RecurrenceLaunch::pairs)),
//! `row = idx / U`, `unit = idx % U`, valid when `idx < R·U` and the row is in the batch.
//! What a pair carries from step to step (LSTM `c`, GRU `h`, the backward's `dh`, `dc`)
//! lives in its invocation's private variables; the state the whole row needs lives in
//! workgroup memory, double buffered:
//!
//! - forward: `hbuf [2·R·U]` holds `h_in = h ⊙ mask`. Step `t` reads half `t % 2`, computes
//!   each pair's `k` dot products `Σ_k h_in[row, k]·r[k, g·U + unit]` (in `k` order,
//!   as the reference), the cell, the trace row (its last `U` columns: the step's `h_in`,
//!   read back from the half it came from), and writes `h ⊙ mask` into the other half;
//!   then one barrier.
//! - backward, steps in reverse: phase 1 computes each valid pair's cell gradient, writes
//!   `out` and the pair's `d rec` into `dbuf [2·R·kU]` (half `s % 2` at the `s`-th step
//!   done); one barrier; phase 2 (`t > 0`) adds `(Σ_m d rec[row, m]·r[unit, m] + dtrace's
//!   h_in part) ⊙ mask` to the pair's `dh` carry.
//!
//! One barrier per step is enough with the two halves: a half written at one step is read
//! only after that step's barrier (forward: at the next step; backward: in phase 2 of the
//! same step), and it is written again two steps later, after the barrier of the step in
//! between, which no invocation passes before every invocation has finished reading it.
//! Invalid pairs skip the cell (every load and store of the batch's tensors) but every
//! invocation runs every step and reaches every barrier (the loop bounds and the early
//! return of workgroups past the batch are uniform). The dot products run for invalid pairs
//! too, on row `min(row, R - 1)` of the workgroup's state: no load of them is under
//! divergent control flow, and with `R = 1` the state reads are uniform.
//!
//! The loop over the pairs is always unrolled (`P` is small: 1 unless `U` exceeds the
//! workgroup); the dot products are loops, or with `launch.unroll` written out term by term,
//! so that only the loop over the steps remains (llvmpipe stops an invocation's loops after
//! 65,535 iterations in all). Either way an invocation runs exactly
//! [`RecurrenceLaunch::iterations`](kiln_plan::kernel::RecurrenceLaunch::iterations) loop
//! iterations, which plan validation bounds by the device's limit. Activations use the
//! formulas of every other kernel ([`super::body`]); with
//! [`super::Target::flush_subnormals`] every value stored or carried to the next step is
//! flushed (BPTT's vanishing carries would otherwise run on subnormals).
//!
//! Measured on lavapipe (Mesa 22.3, 2 shared cores), where this design is slow: the IMDB
//! LSTM's forward (B = 64, T = 500, U = 100) takes 27 s a run, and fully unrolled BPTT
//! shaders compile in ~25 s (U = 100) and ~100 s (U = 200), most of it in LLVM's coroutine
//! frame building (llvmpipe runs barriers as coroutines) over the many blocks of its
//! per-lane loads.

use super::body::unary;
use super::state::{Gen, FLUSH_BELOW};
use super::CodegenError;
use crate::wgsl::{BinOp, Builtin, Expr as W, Literal, Scalar, Stmt, Type};
use kiln_ir::recurrence::{Adjoint, Cell, CellActivation, CellKind};
use kiln_ir::{DType, UnaryOp};
use kiln_plan::kernel::{Dense, KernelOp};

/// Workgroup array of the forward's `h_in` halves.
const HBUF: &str = "hbuf";
/// Workgroup array of the backward's `d rec` halves.
const DBUF: &str = "dbuf";

/// Emits the statements of a recurrence kernel (the frame gives `wg_id`, `num_wg` and
/// `lid`); returns the kernel's one-line description.
pub(super) fn recurrence(g: &mut Gen<'_>) -> Result<String, CodegenError> {
    let kernel = g.kernel;
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
        launch,
    } = &kernel.op
    else {
        unreachable!("recurrence() is only called for recurrence kernels")
    };
    let (u, k) = (cell.units, cell.gates());
    if u == 0 || launch.rows == 0 {
        return Err(g.malformed(format!(
            "recurrence of {u} units, {} rows per workgroup",
            launch.rows
        )));
    }
    if rb.is_some() != (cell.kind == CellKind::Gru) || mask.is_some() != cell.masked {
        return Err(g.malformed(format!(
            "{} recurrence with{} rb and with{} mask",
            cell.name(),
            if rb.is_some() { "" } else { "out" },
            if mask.is_some() { "" } else { "out" },
        )));
    }
    let (b, t) = (*batch as u64, *steps as u64);
    let (uu, ku) = (u as u64, (k * u) as u64);
    if grad.is_some()
        && kiln_ir::recurrence::Adjoint::of_dims(
            cell,
            *batch,
            *steps,
            &[*batch, adjoint.steps, adjoint.width],
        ) != Some(*adjoint)
    {
        return Err(g.malformed(format!("recurrence adjoint window {adjoint:?}")));
    }
    // every operand: (block, elements, written)
    let operands = kernel.op.recurrence_blocks().unwrap_or_default();
    for (d, len, write) in operands {
        let len = len as u64;
        match kernel.args.get(d.arg as usize) {
            Some(a) if a.dtype == DType::F32 && (!write || a.access.writes()) => {}
            _ => {
                return Err(g.malformed(format!(
                    "recurrence binds arg {} as f32{}",
                    d.arg,
                    if write { " (written)" } else { "" }
                )))
            }
        }
        // every index fits u32
        g.lit_u32((d.offset as u64).saturating_add(len))?;
    }
    let wg = kernel.workgroup_size;
    let pairs = launch.pairs(u, wg);
    let rows = launch.rows as u64;
    let groups = b.div_ceil(rows);
    if kernel.threads < groups.saturating_mul(wg as u64) {
        return Err(g.malformed(format!(
            "{} threads for {groups} workgroups of {wg}",
            kernel.threads
        )));
    }
    // workgroup memory: two halves of R rows' state (forward h_in, backward d rec)
    let (buf, per_row) = if grad.is_some() {
        (DBUF, ku)
    } else {
        (HBUF, uu)
    };
    let len = g.lit_u32(2 * rows * per_row)?;
    let (ku, ru, steps_u32, pairs_u32, batch_u32, groups_u32) = (
        g.lit_u32(ku)?,
        g.lit_u32(rows * uu)?,
        g.lit_u32(t)?,
        g.lit_u32(pairs as u64)?,
        g.lit_u32(b)?,
        g.lit_u32(groups)?,
    );
    g.wg_arrays.push((buf.into(), Scalar::F32, len));
    let s = Rec {
        g,
        cell: *cell,
        u: u as u32,
        ku,
        ru,
        steps: steps_u32,
        pairs: pairs_u32,
        unroll: launch.unroll,
    };
    // the workgroup index (uniform); workgroups past the batch return at once
    let mut stmts = vec![
        let_u(
            "wgi",
            id("wg_id").member("x").bin(
                BinOp::Add,
                mul(id("wg_id").member("y"), id("num_wg").member("x")),
            ),
        ),
        Stmt::If(
            id("wgi").bin(BinOp::Ge, W::u32(groups_u32)),
            vec![Stmt::Return(None)],
            vec![],
        ),
        let_u("row0", mul(id("wgi"), W::u32(launch.rows))),
    ];
    // the pairs of this invocation
    for p in 0..s.pairs {
        let idx = lin(id("lid"), p as u64 * wg as u64, s.g)?;
        stmts.extend([
            let_u(&format!("pi{p}"), idx),
            let_u(&format!("pr{p}"), div(id(format!("pi{p}")), s.u)),
            let_u(
                &format!("pj{p}"),
                id(format!("pi{p}")).bin(BinOp::Rem, W::u32(s.u)),
            ),
            let_u(&format!("pb{p}"), add(id("row0"), id(format!("pr{p}")))),
            // the row an invalid pair's dot products read (any valid one)
            let_u(
                &format!("prc{p}"),
                W::call(
                    Builtin::Min,
                    vec![id(format!("pr{p}")), W::u32(launch.rows - 1)],
                ),
            ),
            Stmt::Let(
                format!("ok{p}"),
                Type::Scalar(Scalar::Bool),
                id(format!("pi{p}")).bin(BinOp::Lt, W::u32(s.ru)).bin(
                    BinOp::And,
                    id(format!("pb{p}")).bin(BinOp::Lt, W::u32(batch_u32)),
                ),
            ),
        ]);
    }
    match grad {
        None => stmts.extend(s.forward(xp, r, rb.as_ref(), mask.as_ref(), out)?),
        Some([trace, dtrace]) => {
            stmts.extend(s.backward(xp, r, mask.as_ref(), trace, (dtrace, adjoint), out)?)
        }
    }
    g.stmts.extend(stmts);
    Ok(format!(
        "{} {}{} [{batch}, {steps}, {u}]: {} rows per workgroup, {pairs} pair(s) per invocation{}",
        cell.name(),
        if grad.is_some() { "bptt" } else { "forward" },
        if cell.masked { " masked" } else { "" },
        launch.rows,
        if launch.unroll { ", unrolled" } else { "" },
    ))
}

/// The shapes of one recurrence kernel, and its generator.
struct Rec<'a, 'k> {
    g: &'a Gen<'k>,
    cell: Cell,
    /// Units `U`.
    u: u32,
    /// `k·U`.
    ku: u32,
    /// `R·U`: one half of `hbuf`.
    ru: u32,
    /// Timesteps.
    steps: u32,
    /// Pairs per invocation.
    pairs: u32,
    /// Dot products written out term by term.
    unroll: bool,
}

impl Rec<'_, '_> {
    /// Element `at` of the block `d` (a reference).
    fn el(&self, d: &Dense, at: W) -> Result<W, CodegenError> {
        Ok(self.g.element(d.arg as usize, self.off(d, at)?))
    }

    /// The index of element `at` of the block `d`.
    fn off(&self, d: &Dense, at: W) -> Result<W, CodegenError> {
        Ok(match self.g.offset(d.offset)? {
            Some(o) => o.bin(BinOp::Add, at),
            None => at,
        })
    }

    /// `v`, or 0 in its place when subnormal flushing is on and `|v| < 2^-60` (`v` is a
    /// named value).
    fn flush(&self, v: W) -> W {
        if self.g.flush {
            let small = W::call(Builtin::Abs, vec![v.clone()]).bin(BinOp::Lt, f(FLUSH_BELOW));
            sel(v, f(0.0), small)
        } else {
            v
        }
    }

    /// `arr[at] = flush(v)` for a named `v`.
    fn store(&self, target: W, v: &str) -> Stmt {
        Stmt::Assign(target, self.flush(id(v)))
    }

    /// A dot product's terms, `body(i)` for `i < n`: a loop over `var`, or written out with
    /// `i` a literal (each term in a scope of its own when it declares names).
    fn dot(
        &self,
        var: &str,
        n: u32,
        body: impl Fn(&W) -> Result<Vec<Stmt>, CodegenError>,
    ) -> Result<Vec<Stmt>, CodegenError> {
        if !self.unroll {
            return Ok(vec![Stmt::ForRange {
                var: var.into(),
                start: W::u32(0),
                end: W::u32(n),
                body: body(&id(var))?,
            }]);
        }
        let mut out = Vec::new();
        for i in 0..n {
            let b = body(&W::u32(i))?;
            if b.iter().any(|s| matches!(s, Stmt::Let(..))) {
                out.push(Stmt::Block(b));
            } else {
                out.extend(b);
            }
        }
        Ok(out)
    }

    /// `base + i·stride + extra`, folded into one literal when `i` is one.
    fn at(&self, base: &W, i: &W, stride: u32, extra: u64) -> Result<W, CodegenError> {
        match i {
            W::Lit(Literal::U32(v)) => lin(base.clone(), *v as u64 * stride as u64 + extra, self.g),
            _ => {
                let term = if stride == 1 {
                    i.clone()
                } else {
                    mul(i.clone(), W::u32(stride))
                };
                lin(add(base.clone(), term), extra, self.g)
            }
        }
    }

    /// The GRU's gates from the named `x0..x2` (input projection) and `rec0..rec2`
    /// (recurrent products with their bias): `zu`, `zq`, `ug`, `qg`, `zn`, `ng` — the same
    /// statements in the forward and in the backward, which recomputes them.
    fn gru_gates(&self) -> [Stmt; 6] {
        let (sg, ph) = (self.cell.recurrent_activation, self.cell.activation);
        [
            let_f("zu", add(id("x0"), id("rec0"))),
            let_f("zq", add(id("x1"), id("rec1"))),
            let_f("ug", self.act(sg, "zu")),
            let_f("qg", self.act(sg, "zq")),
            let_f("zn", add(id("x2"), mul(id("qg"), id("rec2")))),
            let_f("ng", self.act(ph, "zn")),
        ]
    }

    /// `σ` or `φ` of the named value `x`.
    fn act(&self, a: CellActivation, x: &str) -> W {
        activation(a, id(x))
    }

    /// The forward's statements after the pairs are known.
    fn forward(
        &self,
        xp: &Dense,
        r: &Dense,
        rb: Option<&Dense>,
        mask: Option<&Dense>,
        out: &Dense,
    ) -> Result<Vec<Stmt>, CodegenError> {
        let (u, ku, kind) = (self.u, self.ku, self.cell.kind);
        let mut stmts = Vec::new();
        for p in 0..self.pairs {
            match kind {
                CellKind::Lstm => stmts.push(var_f(&format!("c{p}"), f(0.0))),
                CellKind::Gru => stmts.push(var_f(&format!("hp{p}"), f(0.0))),
                CellKind::SimpleRnn => {}
            }
        }
        // h_{-1} = 0: zero the half step 0 reads
        for p in 0..self.pairs {
            stmts.push(Stmt::If(
                id(format!("pi{p}")).bin(BinOp::Lt, W::u32(self.ru)),
                vec![Stmt::Assign(id(HBUF).index(id(format!("pi{p}"))), f(0.0))],
                vec![],
            ));
        }
        stmts.push(Stmt::Barrier);
        let mut step = vec![
            let_u(
                "cur",
                mul(id("t").bin(BinOp::Rem, W::u32(2)), W::u32(self.ru)),
            ),
            let_u("nxt", W::u32(self.ru).bin(BinOp::Sub, id("cur"))),
        ];
        for p in 0..self.pairs {
            let (pr, pj, pb) = (
                id(format!("pr{p}")),
                id(format!("pj{p}")),
                id(format!("pb{p}")),
            );
            // the dot products outside the validity test (an invalid pair reads row R - 1):
            // no loads under divergent control flow
            let mut pair = vec![
                let_u("hb", add(id("cur"), mul(id(format!("prc{p}")), W::u32(u)))),
                let_u("rj", self.off(r, pj.clone())?),
            ];
            let k = self.cell.gates() as u32;
            for gi in 0..k {
                pair.push(var_f(&format!("a{gi}"), f(0.0)));
            }
            // a_g = Σ_k h_in[k] · r[k, g·U + unit], k in order
            pair.extend(self.dot("k", u, |kk| {
                let mut b = vec![let_f("hv", id(HBUF).index(self.at(&id("hb"), kk, 1, 0)?))];
                for gi in 0..k {
                    let a = id(format!("a{gi}"));
                    let rv = self
                        .g
                        .element(r.arg as usize, self.at(&id("rj"), kk, ku, (gi * u) as u64)?);
                    b.push(Stmt::Assign(a.clone(), add(a, mul(id("hv"), rv))));
                }
                Ok(b)
            })?);
            let mut s = Vec::new();
            s.push(let_u(
                "bt",
                add(mul(pb.clone(), W::u32(self.steps)), id("t")),
            ));
            s.push(let_u(
                "xb",
                self.off(xp, add(mul(id("bt"), W::u32(ku)), pj.clone()))?,
            ));
            let tw = self.g.lit_u32(self.cell.trace_width() as u64)?;
            s.push(let_u(
                "ob",
                self.off(out, add(mul(id("bt"), W::u32(tw)), pj.clone()))?,
            ));
            let xg = |gi: u32| -> Result<W, CodegenError> {
                Ok(self
                    .g
                    .element(xp.arg as usize, lin(id("xb"), (gi * u) as u64, self.g)?))
            };
            let o = |c: u64| -> Result<W, CodegenError> {
                Ok(self.g.element(out.arg as usize, lin(id("ob"), c, self.g)?))
            };
            // the trace's last U columns: h_in, the state that entered h·r at this step
            s.push(let_f("hic", id(HBUF).index(add(id("hb"), pj.clone()))));
            s.push(self.store(o((tw - u) as u64)?, "hic"));
            let (sg, ph) = (self.cell.recurrent_activation, self.cell.activation);
            match kind {
                CellKind::Lstm => {
                    for gi in 0..4 {
                        s.push(let_f(&format!("z{gi}"), add(xg(gi)?, id(format!("a{gi}")))));
                    }
                    s.extend([
                        let_f("ig", self.act(sg, "z0")),
                        let_f("fg", self.act(sg, "z1")),
                        let_f("gg", self.act(ph, "z2")),
                        let_f("og", self.act(sg, "z3")),
                        let_f(
                            "cn",
                            add(mul(id("fg"), id(format!("c{p}"))), mul(id("ig"), id("gg"))),
                        ),
                        let_f("pc", self.act(ph, "cn")),
                        let_f("h", mul(id("og"), id("pc"))),
                        Stmt::Assign(id(format!("c{p}")), self.flush(id("cn"))),
                        self.store(o(0)?, "h"),
                        self.store(o(u as u64)?, "cn"),
                    ]);
                    for gi in 0..4 {
                        s.push(self.store(o(((2 + gi) * u) as u64)?, &format!("z{gi}")));
                    }
                }
                CellKind::Gru => {
                    let rb = rb.ok_or_else(|| self.g.malformed("a GRU without rb".into()))?;
                    for gi in 0..3 {
                        let bias = self.el(rb, lin(pj.clone(), (gi * u) as u64, self.g)?)?;
                        s.push(let_f(&format!("rec{gi}"), add(id(format!("a{gi}")), bias)));
                        s.push(let_f(&format!("x{gi}"), xg(gi)?));
                    }
                    s.extend(self.gru_gates());
                    s.extend([
                        let_f(
                            "h",
                            add(
                                mul(id("ug"), id(format!("hp{p}"))),
                                mul(sub(f(1.0), id("ug")), id("ng")),
                            ),
                        ),
                        Stmt::Assign(id(format!("hp{p}")), self.flush(id("h"))),
                        self.store(o(0)?, "h"),
                    ]);
                    for gi in 0..3 {
                        s.push(self.store(o(((1 + gi) * u) as u64)?, &format!("rec{gi}")));
                    }
                }
                CellKind::SimpleRnn => s.extend([
                    let_f("z", add(xg(0)?, id("a0"))),
                    let_f("h", self.act(ph, "z")),
                    self.store(o(0)?, "h"),
                    self.store(o(u as u64)?, "z"),
                ]),
            }
            // h_in of the next step
            let hin = match mask {
                Some(m) => mul(
                    id("h"),
                    self.el(m, add(mul(pb.clone(), W::u32(u)), pj.clone()))?,
                ),
                None => id("h"),
            };
            s.push(let_f("hi", hin));
            s.push(self.store(
                id(HBUF).index(add(add(id("nxt"), mul(pr.clone(), W::u32(u))), pj.clone())),
                "hi",
            ));
            pair.push(Stmt::If(id(format!("ok{p}")), s, vec![]));
            step.push(Stmt::Block(pair));
        }
        // the next step reads what this one wrote into `nxt` (and writes `cur` again)
        step.push(Stmt::Barrier);
        stmts.push(Stmt::ForRange {
            var: "t".into(),
            start: W::u32(0),
            end: W::u32(self.steps),
            body: step,
        });
        Ok(stmts)
    }

    /// The backward's statements after the pairs are known; `dtrace` is the window `adj` of
    /// the trace's adjoint (its other elements are zero: never read).
    fn backward(
        &self,
        xp: &Dense,
        r: &Dense,
        mask: Option<&Dense>,
        trace: &Dense,
        (dtrace, adj): (&Dense, &Adjoint),
        out: &Dense,
    ) -> Result<Vec<Stmt>, CodegenError> {
        let (u, ku, kind) = (self.u, self.ku, self.cell.kind);
        let tw = self.g.lit_u32(self.cell.trace_width() as u64)?;
        // the window: the steps from `first` on, columns below `dw`
        let (dsteps, dw) = (
            self.g.lit_u32(adj.steps as u64)?,
            self.g.lit_u32(adj.width as u64)?,
        );
        let first = self.steps - dsteps;
        // whether step `t` is in the window; the window row of row `pb` at step `t`
        // (clamped into the window, so that it is in bounds when it is not read)
        let in_window = || id("t").bin(BinOp::Ge, W::u32(first));
        let window_row = |pb: W| {
            let tt = if first == 0 {
                id("t")
            } else {
                W::call(Builtin::Max, vec![id("t"), W::u32(first)]).bin(BinOp::Sub, W::u32(first))
            };
            mul(add(mul(pb, W::u32(dsteps)), tt), W::u32(dw))
        };
        let windowed = |v: W| {
            if first == 0 {
                v
            } else {
                sel(f(0.0), v, in_window())
            }
        };
        let gw = self.g.lit_u32(self.cell.grad_width() as u64)?;
        let (sg, ph) = (self.cell.recurrent_activation, self.cell.activation);
        let mut stmts = Vec::new();
        // adjoints flowing from step t+1 into h_t and c_t
        for p in 0..self.pairs {
            stmts.push(var_f(&format!("dh{p}"), f(0.0)));
            if kind == CellKind::Lstm {
                stmts.push(var_f(&format!("dc{p}"), f(0.0)));
            }
        }
        let last = self.steps.saturating_sub(1);
        let mut step = vec![
            let_u("t", W::u32(last).bin(BinOp::Sub, id("s"))),
            let_u(
                "cur",
                mul(
                    id("s").bin(BinOp::Rem, W::u32(2)),
                    W::u32(self.g.lit_u32(self.ru as u64 * self.cell.gates() as u64)?),
                ),
            ),
        ];
        let ge0 = || id("t").bin(BinOp::Gt, W::u32(0));
        // phase 1: the cell gradient of every valid pair; d rec into dbuf[cur]
        for p in 0..self.pairs {
            let (pr, pj, pb) = (
                id(format!("pr{p}")),
                id(format!("pj{p}")),
                id(format!("pb{p}")),
            );
            let dh_p = id(format!("dh{p}"));
            let mut s = vec![
                let_u("bt", add(mul(pb.clone(), W::u32(self.steps)), id("t"))),
                let_u(
                    "tb",
                    self.off(trace, add(mul(id("bt"), W::u32(tw)), pj.clone()))?,
                ),
                // the previous step's trace row (read only when t > 0)
                let_u(
                    "ptb",
                    sel(id("tb"), id("tb").bin(BinOp::Sub, W::u32(tw)), ge0()),
                ),
                let_u(
                    "db",
                    self.off(dtrace, add(window_row(pb.clone()), pj.clone()))?,
                ),
                let_u(
                    "ob",
                    self.off(out, add(mul(id("bt"), W::u32(gw)), pj.clone()))?,
                ),
                let_u(
                    "rw",
                    add(add(id("cur"), mul(pr.clone(), W::u32(ku))), pj.clone()),
                ),
            ];
            let tr = |c: u64| -> Result<W, CodegenError> {
                Ok(self
                    .g
                    .element(trace.arg as usize, lin(id("tb"), c, self.g)?))
            };
            let prev = |c: u64| -> Result<W, CodegenError> {
                Ok(sel(
                    f(0.0),
                    self.g
                        .element(trace.arg as usize, lin(id("ptb"), c, self.g)?),
                    ge0(),
                ))
            };
            let dt = |c: u64| -> Result<W, CodegenError> {
                Ok(if c >= dw as u64 {
                    f(0.0)
                } else {
                    windowed(
                        self.g
                            .element(dtrace.arg as usize, lin(id("db"), c, self.g)?),
                    )
                })
            };
            let o = |c: u64| -> Result<W, CodegenError> {
                Ok(self.g.element(out.arg as usize, lin(id("ob"), c, self.g)?))
            };
            let drec = |c: u64| -> Result<W, CodegenError> {
                Ok(id(DBUF).index(lin(id("rw"), c, self.g)?))
            };
            let uu = u as u64;
            s.push(let_f("dh", add(dt(0)?, dh_p.clone())));
            // (d rec, trace adjoint) -> v{g}, written to out at `o_at` and to dbuf
            let emit_v = |s: &mut Vec<Stmt>,
                          gi: u64,
                          val: W,
                          adj: u64,
                          o_at: u64|
             -> Result<(), CodegenError> {
                let v = format!("v{gi}");
                s.push(let_f(&v, add(val, dt(adj)?)));
                s.push(self.store(o(o_at)?, &v));
                s.push(self.store(drec(gi * uu)?, &v));
                Ok(())
            };
            match kind {
                CellKind::Lstm => {
                    for gi in 0..4 {
                        s.push(let_f(&format!("z{gi}"), tr((2 + gi) * uu)?));
                    }
                    s.extend([
                        let_f("cp", prev(uu)?),
                        let_f("cc", tr(uu)?),
                        let_f("dc", add(dt(uu)?, id(format!("dc{p}")))),
                        let_f("ig", self.act(sg, "z0")),
                        let_f("fg", self.act(sg, "z1")),
                        let_f("gg", self.act(ph, "z2")),
                        let_f("og", self.act(sg, "z3")),
                        let_f("pc", self.act(ph, "cc")),
                        let_f(
                            "dc2",
                            add(
                                id("dc"),
                                mul(mul(id("dh"), id("og")), derivative(ph, id("cc"), id("pc"))),
                            ),
                        ),
                    ]);
                    let dz = [
                        mul(mul(id("dc2"), id("gg")), derivative(sg, id("z0"), id("ig"))),
                        mul(mul(id("dc2"), id("cp")), derivative(sg, id("z1"), id("fg"))),
                        mul(mul(id("dc2"), id("ig")), derivative(ph, id("z2"), id("gg"))),
                        mul(mul(id("dh"), id("pc")), derivative(sg, id("z3"), id("og"))),
                    ];
                    for (gi, val) in dz.into_iter().enumerate() {
                        let gi = gi as u64;
                        emit_v(&mut s, gi, val, (2 + gi) * uu, gi * uu)?;
                    }
                    s.extend([
                        let_f("dcn", mul(id("dc2"), id("fg"))),
                        Stmt::Assign(id(format!("dc{p}")), self.flush(id("dcn"))),
                        Stmt::Assign(dh_p.clone(), f(0.0)),
                    ]);
                }
                CellKind::Gru => {
                    s.extend([
                        let_f("hp", prev(0)?),
                        let_u(
                            "xb",
                            self.off(xp, add(mul(id("bt"), W::u32(ku)), pj.clone()))?,
                        ),
                    ]);
                    for gi in 0..3 {
                        s.push(let_f(
                            &format!("x{gi}"),
                            self.g
                                .element(xp.arg as usize, lin(id("xb"), gi * uu, self.g)?),
                        ));
                        s.push(let_f(&format!("rec{gi}"), tr((1 + gi) * uu)?));
                    }
                    s.extend(self.gru_gates());
                    s.extend([
                        let_f(
                            "du",
                            mul(
                                mul(id("dh"), sub(id("hp"), id("ng"))),
                                derivative(sg, id("zu"), id("ug")),
                            ),
                        ),
                        let_f(
                            "dn",
                            mul(
                                mul(id("dh"), sub(f(1.0), id("ug"))),
                                derivative(ph, id("zn"), id("ng")),
                            ),
                        ),
                        let_f(
                            "dq",
                            mul(
                                mul(id("dn"), id("rec2")),
                                derivative(sg, id("zq"), id("qg")),
                            ),
                        ),
                        self.store(o(0)?, "du"),
                        self.store(o(uu)?, "dq"),
                        self.store(o(2 * uu)?, "dn"),
                    ]);
                    let dr = [id("du"), id("dq"), mul(id("dn"), id("qg"))];
                    for (gi, val) in dr.into_iter().enumerate() {
                        let gi = gi as u64;
                        emit_v(&mut s, gi, val, (1 + gi) * uu, (3 + gi) * uu)?;
                    }
                    s.extend([
                        let_f("dhu", mul(id("dh"), id("ug"))),
                        Stmt::Assign(dh_p.clone(), self.flush(id("dhu"))),
                    ]);
                }
                CellKind::SimpleRnn => {
                    s.extend([let_f("z", tr(uu)?), let_f("h", tr(0)?)]);
                    let val = mul(id("dh"), derivative(ph, id("z"), id("h")));
                    emit_v(&mut s, 0, val, uu, 0)?;
                    s.push(Stmt::Assign(dh_p.clone(), f(0.0)));
                }
            }
            step.push(Stmt::If(id(format!("ok{p}")), s, vec![]));
        }
        // dbuf[cur] is complete; phase 2 reads it, and the next step's phase 1 writes the
        // other half
        step.push(Stmt::Barrier);
        // phase 2: dh_{t-1} += (d rec · rᵀ) ⊙ mask
        let mut phase2 = Vec::new();
        for p in 0..self.pairs {
            let (pj, pb) = (id(format!("pj{p}")), id(format!("pb{p}")));
            let dh_p = id(format!("dh{p}"));
            let mut pair = vec![
                let_u("dr", add(id("cur"), mul(id(format!("prc{p}")), W::u32(ku)))),
                let_u("rr", self.off(r, mul(pj.clone(), W::u32(ku)))?),
                var_f("acc", f(0.0)),
            ];
            pair.extend(self.dot("m", ku, |m| {
                let term = mul(
                    id(DBUF).index(self.at(&id("dr"), m, 1, 0)?),
                    self.g.element(r.arg as usize, self.at(&id("rr"), m, 1, 0)?),
                );
                Ok(vec![Stmt::Assign(id("acc"), add(id("acc"), term))])
            })?);
            // + the trace adjoint's h_in part of this step (a window of whole rows only)
            let dhin = if dw == tw {
                windowed(self.el(
                    dtrace,
                    add(
                        window_row(pb.clone()),
                        lin(pj.clone(), (tw - u) as u64, self.g)?,
                    ),
                )?)
            } else {
                f(0.0)
            };
            let back = match mask {
                Some(mk) => mul(
                    id("acc2"),
                    self.el(mk, add(mul(pb.clone(), W::u32(u)), pj.clone()))?,
                ),
                None => id("acc2"),
            };
            let s = vec![
                let_f("acc2", add(id("acc"), dhin)),
                let_f("dhn", add(dh_p.clone(), back)),
                Stmt::Assign(dh_p, self.flush(id("dhn"))),
            ];
            pair.push(Stmt::If(id(format!("ok{p}")), s, vec![]));
            phase2.push(Stmt::Block(pair));
        }
        step.push(Stmt::If(ge0(), phase2, vec![]));
        stmts.push(Stmt::ForRange {
            var: "s".into(),
            start: W::u32(0),
            end: W::u32(self.steps),
            body: step,
        });
        Ok(stmts)
    }
}

/// `a(x)` for a named f32 value `x`, as [`CellActivation::apply`] (tanh and sigmoid as the
/// elementwise kernels write them).
fn activation(a: CellActivation, x: W) -> W {
    match a {
        CellActivation::Linear => x,
        CellActivation::Tanh => unary(UnaryOp::Tanh, x, DType::F32, 1),
        CellActivation::Sigmoid => unary(UnaryOp::Sigmoid, x, DType::F32, 1),
        // NaN passes through (as the graph's relu)
        CellActivation::Relu => sel(x.clone(), f(0.0), x.bin(BinOp::Le, f(0.0))),
        CellActivation::HardSigmoid => W::call(
            Builtin::Clamp,
            vec![add(mul(f(0.2), x), f(0.5)), f(0.0), f(1.0)],
        ),
    }
}

/// `a'(x)` given the named values `x` and `y = a(x)`, as [`CellActivation::derivative`].
fn derivative(a: CellActivation, x: W, y: W) -> W {
    match a {
        CellActivation::Linear => f(1.0),
        CellActivation::Tanh => sub(f(1.0), mul(y.clone(), y)),
        CellActivation::Sigmoid => mul(y.clone(), sub(f(1.0), y)),
        CellActivation::Relu => sel(f(0.0), f(1.0), x.bin(BinOp::Gt, f(0.0))),
        CellActivation::HardSigmoid => {
            let v = add(mul(f(0.2), x), f(0.5));
            sel(
                f(0.0),
                f(0.2),
                v.clone()
                    .bin(BinOp::Gt, f(0.0))
                    .bin(BinOp::And, v.bin(BinOp::Lt, f(1.0))),
            )
        }
    }
}

/// `base + c` (just `base` for 0), `c` a u32 literal.
fn lin(base: W, c: u64, g: &Gen<'_>) -> Result<W, CodegenError> {
    Ok(if c == 0 {
        base
    } else {
        add(base, W::u32(g.lit_u32(c)?))
    })
}

fn id(name: impl Into<String>) -> W {
    W::ident(name)
}

fn f(v: f32) -> W {
    W::f32(v)
}

fn add(a: W, b: W) -> W {
    a.bin(BinOp::Add, b)
}

fn sub(a: W, b: W) -> W {
    a.bin(BinOp::Sub, b)
}

fn mul(a: W, b: W) -> W {
    a.bin(BinOp::Mul, b)
}

fn div(a: W, b: u32) -> W {
    a.bin(BinOp::Div, W::u32(b))
}

/// `select(f, t, c)`: `t` where `c` holds.
fn sel(f: W, t: W, c: W) -> W {
    W::call(Builtin::Select, vec![f, t, c])
}

fn let_f(name: &str, e: W) -> Stmt {
    Stmt::Let(name.into(), Type::Scalar(Scalar::F32), e)
}

fn var_f(name: &str, e: W) -> Stmt {
    Stmt::Var(name.into(), Type::Scalar(Scalar::F32), e)
}

fn let_u(name: &str, e: W) -> Stmt {
    Stmt::Let(name.into(), Type::Scalar(Scalar::U32), e)
}
