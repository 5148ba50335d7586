//! Fused recurrences: a whole LSTM, GRU or SimpleRNN layer over its time axis as one op.
//!
//! [`Op::Recurrence`](crate::Op::Recurrence) runs the recurrent part of a layer — everything
//! but the input projection, which stays one large matmul — over all timesteps;
//! [`Op::RecurrenceGrad`](crate::Op::RecurrenceGrad) is its backward (BPTT). Backends lower
//! each to a single persistent kernel (the rows of a batch are independent through time, so
//! a workgroup or a thread owns a block of rows and loops over the steps by itself).
//!
//! ## Operands and results
//! With batch `B`, steps `T`, `U` units and `k` gate blocks (LSTM 4, GRU 3, SimpleRNN 1):
//! - `xp [B, T, k·U]`: every step's input projection `x·W + b`;
//! - `r [U, k·U]`: the recurrent kernel;
//! - GRU only, `rb [k·U]`: the recurrent bias (Keras `reset_after`);
//! - with `masked`, `mask [B, U]`: the recurrent-dropout mask, multiplying the state where it
//!   enters `h·r` (the carried state itself is not dropped). Its gradient is built too
//!   (and pruned when unused, as for a mask drawn from noise).
//!
//! The forward result is the **trace** `[B, T, W]` ([`Cell::trace_width`]): per step the
//! hidden state `h` first (so `slice(trace, 2, 0, U)` is the layer's sequence output), then
//! what the backward needs, then `h_in`, the state that entered `h·r` at the step (zero at
//! step 0): LSTM `[h, c, z, h_in]` (`W = 7U`, `z` the 4U gate pre-activations), GRU
//! `[h, rec, h_in]` (`W = 5U`, `rec = h_in·r + rb`), SimpleRNN `[h, z, h_in]` (`W = 3U`).
//! With `h_in` stored, `dr = Σ h_inᵀ·d rec` is one product over all `B·T` rows of strided
//! views of the trace and the backward's result, with no copies.
//!
//! The backward takes the forward operands, the trace and its adjoint `dtrace` and returns
//! `[B, T, G]`. The adjoint may be the whole `[B, T, W]` (every part of the trace may carry
//! an adjoint) or a window of it ([`Adjoint`]): `[B, T', U]` or `[B, T', W]` with `1 ≤ T' ≤
//! T`, the adjoint of the **last** `T'` steps' first `U` (the hidden state) or all `W`
//! columns, the rest being zero. A layer's output is the trace's `h` — every step
//! (`return_sequences`) or only the last — so autodiff hands the backward `[B, T, U]` or
//! `[B, 1, U]` and no zeros are written or read for the rest
//! ([`Cell::grad_width`]): LSTM and SimpleRNN the pre-activation adjoint `dz` (`G = kU`),
//! which is both `d xp` and the adjoint of `h_in·r`; GRU `[d xp, d rec]` (`G = 6U`). The
//! weight gradients are ordinary graph ops built by autodiff: `dr = Σ h_inᵀ·d rec` over all
//! steps at once, `drb = Σ d rec`.
//!
//! ## Semantics (the reference order: [`forward`], [`backward`])
//! `h₋₁ = c₋₁ = 0`; at step `t`, `h_in = h_{t-1} ⊙ mask` (or `h_{t-1}`):
//! - LSTM: `z = xp_t + h_in·r`; `i, f, o = σ(z_i, z_f, z_o)`, `g = φ(z_g)`;
//!   `c = f⊙c_{t-1} + i⊙g`; `h = o⊙φ(c)` (Keras gate order i, f, c, o);
//! - GRU: `rec = h_in·r + rb`; `u = σ(xp_z + rec_z)`, `q = σ(xp_r + rec_r)`,
//!   `n = φ(xp_h + q⊙rec_h)`; `h = u⊙h_{t-1} + (1-u)⊙n`;
//! - SimpleRNN: `z = xp_t + h_in·r`; `h = φ(z)`.
//!
//! `σ` is the cell's `recurrent_activation`, `φ` its `activation`. Dot products run over the
//! state index in order; backends may sum in another fixed order (rounding differs within
//! f32 tolerance, bits are still the same run to run).

use serde::{Deserialize, Serialize};

/// The activations a fused cell may use (the others keep the unrolled graph).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CellActivation {
    /// `x`
    Linear,
    /// `tanh x`
    Tanh,
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// `max(x, 0)`
    Relu,
    /// `clip(0.2 x + 0.5, 0, 1)` (Keras 2's hard sigmoid)
    HardSigmoid,
}

/// The scalar arithmetic the reference recurrences need (f32 for plans, f64 for the oracle).
pub trait Real:
    Copy
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    /// The value nearest `v`.
    fn of(v: f64) -> Self;
    /// `e^self`
    fn exp(self) -> Self;
    /// `tanh self`
    fn tanh(self) -> Self;
}

impl Real for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
}

impl Real for f64 {
    fn of(v: f64) -> Self {
        v
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
}

impl CellActivation {
    /// Every variant.
    pub const ALL: [CellActivation; 5] = [
        CellActivation::Linear,
        CellActivation::Tanh,
        CellActivation::Sigmoid,
        CellActivation::Relu,
        CellActivation::HardSigmoid,
    ];

    /// Lower-case name (Keras's).
    pub fn name(self) -> &'static str {
        match self {
            CellActivation::Linear => "linear",
            CellActivation::Tanh => "tanh",
            CellActivation::Sigmoid => "sigmoid",
            CellActivation::Relu => "relu",
            CellActivation::HardSigmoid => "hard_sigmoid",
        }
    }

    /// `f(x)`.
    pub fn apply<F: Real>(self, x: F) -> F {
        let (zero, one) = (F::of(0.0), F::of(1.0));
        match self {
            CellActivation::Linear => x,
            CellActivation::Tanh => x.tanh(),
            CellActivation::Sigmoid => one / (one + (-x).exp()),
            // NaN passes through, as the graph's relu (IEEE, Keras)
            CellActivation::Relu => {
                if x <= zero {
                    zero
                } else {
                    x
                }
            }
            CellActivation::HardSigmoid => {
                let y = F::of(0.2) * x + F::of(0.5);
                if y < zero {
                    zero
                } else if y > one {
                    one
                } else {
                    y
                }
            }
        }
    }

    /// `f'(x)` given `x` and `y = f(x)` (tanh and sigmoid from `y`, as their graph
    /// gradients are; relu and hard sigmoid 0 at their kinks).
    pub fn derivative<F: Real>(self, x: F, y: F) -> F {
        let (zero, one) = (F::of(0.0), F::of(1.0));
        match self {
            CellActivation::Linear => one,
            CellActivation::Tanh => one - y * y,
            CellActivation::Sigmoid => y * (one - y),
            CellActivation::Relu => {
                if x > zero {
                    one
                } else {
                    zero
                }
            }
            CellActivation::HardSigmoid => {
                let v = F::of(0.2) * x + F::of(0.5);
                if v > zero && v < one {
                    F::of(0.2)
                } else {
                    zero
                }
            }
        }
    }
}

/// The cell a recurrence runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CellKind {
    /// Keras `LSTM` (gates i, f, c, o).
    Lstm,
    /// Keras `GRU` with `reset_after` (gates z, r, h; PyTorch's `nn.GRU`).
    Gru,
    /// Keras `SimpleRNN`.
    SimpleRnn,
}

/// A recurrence's attributes: the op's part of [`crate::Op::Recurrence`] and
/// [`crate::Op::RecurrenceGrad`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cell {
    /// LSTM, GRU or SimpleRNN.
    pub kind: CellKind,
    /// Hidden units `U`.
    pub units: usize,
    /// `φ`: the state activation.
    pub activation: CellActivation,
    /// `σ`: the gate activation (unused by SimpleRNN).
    pub recurrent_activation: CellActivation,
    /// Whether a recurrent-dropout mask `[B, U]` is an operand.
    pub masked: bool,
}

impl Cell {
    /// Gate blocks `k` of the projection: LSTM 4, GRU 3, SimpleRNN 1.
    pub fn gates(&self) -> usize {
        match self.kind {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
            CellKind::SimpleRnn => 1,
        }
    }
    /// Width `W` of one step of the trace: LSTM 7U, GRU 5U, SimpleRNN 3U.
    pub fn trace_width(&self) -> usize {
        self.units
            * (1 + match self.kind {
                CellKind::Lstm => 6,
                CellKind::Gru => 4,
                CellKind::SimpleRnn => 2,
            })
    }
    /// Column of the trace where `h_in` (the state that entered `h·r` at the step) starts:
    /// the last `U` columns, `W - U`.
    pub fn h_in_column(&self) -> usize {
        self.trace_width() - self.units
    }
    /// Width `G` of one step of the backward result: LSTM 4U, GRU 6U, SimpleRNN U.
    pub fn grad_width(&self) -> usize {
        match self.kind {
            CellKind::Gru => 6 * self.units,
            _ => self.gates() * self.units,
        }
    }
    /// Operands of the forward op: `xp, r`, then `rb` (GRU), then `mask` (masked).
    pub fn forward_arity(&self) -> usize {
        2 + usize::from(self.kind == CellKind::Gru) + usize::from(self.masked)
    }
    /// Index of the `rb` operand (GRU).
    pub fn rb_operand(&self) -> Option<usize> {
        (self.kind == CellKind::Gru).then_some(2)
    }
    /// Index of the `mask` operand (masked).
    pub fn mask_operand(&self) -> Option<usize> {
        self.masked
            .then_some(2 + usize::from(self.kind == CellKind::Gru))
    }
    /// Lower-case name, e.g. `lstm`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
            CellKind::SimpleRnn => "simple_rnn",
        }
    }
    /// Whether `dims` fits forward operand `k` of batch `b` and `t` steps (`rb` may also be
    /// `[1, kU]`, a row of the GRU's `[2, 3U]` bias).
    pub fn operand_fits(&self, k: usize, dims: &[usize], b: usize, t: usize) -> bool {
        let want = self.operand_shapes(b, t);
        match want.get(k) {
            Some(w) if Some(k) == self.rb_operand() => dims == w.as_slice() || dims == [1, w[0]],
            Some(w) => dims == w.as_slice(),
            None => false,
        }
    }
    /// The expected operand shapes for batch `b` and `t` steps, in operand order (the
    /// forward's; the backward appends `trace [b, t, W]` and its adjoint, see [`Adjoint`]).
    pub fn operand_shapes(&self, b: usize, t: usize) -> Vec<Vec<usize>> {
        let (u, k) = (self.units, self.gates());
        let mut v = vec![vec![b, t, k * u], vec![u, k * u]];
        if self.kind == CellKind::Gru {
            v.push(vec![k * u]);
        }
        if self.masked {
            v.push(vec![b, u]);
        }
        v
    }
}

/// The part of the trace's adjoint a backward receives: the last `steps` steps' first
/// `width` columns (`width` is `U` or the trace width `W`); everything else is zero. The
/// adjoint operand is `[B, steps, width]`, row-major.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Adjoint {
    /// `T'`, the steps covered (the last ones), `1..=T`.
    pub steps: usize,
    /// `U` (the hidden state only) or `W` (the whole trace).
    pub width: usize,
}

impl Adjoint {
    /// The whole trace of `steps` steps.
    pub fn full(cell: &Cell, steps: usize) -> Adjoint {
        Adjoint {
            steps,
            width: cell.trace_width(),
        }
    }
    /// The window an adjoint shaped `dims` covers in a backward of `cell` over `(b, t)`, if
    /// it is one: `[b, T', U]` or `[b, T', W]` with `1 ≤ T' ≤ t`.
    pub fn of_dims(cell: &Cell, b: usize, t: usize, dims: &[usize]) -> Option<Adjoint> {
        match *dims {
            [db, ds, dw]
                if db == b
                    && (1..=t).contains(&ds)
                    && (dw == cell.units || dw == cell.trace_width()) =>
            {
                Some(Adjoint {
                    steps: ds,
                    width: dw,
                })
            }
            _ => None,
        }
    }
    /// Elements of the adjoint operand for `b` rows.
    pub fn len(&self, b: usize) -> usize {
        b.saturating_mul(self.steps).saturating_mul(self.width)
    }
    /// Whether it covers nothing (never for a valid window).
    pub fn is_empty(&self) -> bool {
        self.steps == 0 || self.width == 0
    }
    /// The offset of row `bi`'s step `t` (of `steps` in all) in the adjoint operand, if the
    /// window covers that step.
    pub fn row(&self, bi: usize, steps: usize, t: usize) -> Option<usize> {
        let first = steps - self.steps;
        (t >= first).then(|| (bi * self.steps + t - first) * self.width)
    }
}

/// The data of one recurrence: contiguous row-major operands (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Operands<'a, F> {
    /// `[B, T, kU]`
    pub xp: &'a [F],
    /// `[U, kU]`
    pub r: &'a [F],
    /// `[kU]` (GRU)
    pub rb: Option<&'a [F]>,
    /// `[B, U]` (masked)
    pub mask: Option<&'a [F]>,
}

/// The forward of rows `rows` of a batch of `steps` steps into `trace` (`[rows.len(), T, W]`,
/// the block of those rows): the reference implementation, dot products in index order.
pub fn forward<F: Real>(
    cell: &Cell,
    steps: usize,
    rows: std::ops::Range<usize>,
    ops: Operands<'_, F>,
    trace: &mut [F],
) {
    let (u, k, w) = (cell.units, cell.gates(), cell.trace_width());
    let ku = k * u;
    let zero = F::of(0.0);
    let mut hin = vec![zero; u];
    let mut acc = vec![zero; ku];
    for (bi, b) in rows.enumerate() {
        for t in 0..steps {
            // h_in = h_{t-1} ⊙ mask
            for j in 0..u {
                hin[j] = if t == 0 {
                    zero
                } else {
                    let h = trace[(bi * steps + t - 1) * w + j];
                    ops.mask.map_or(h, |m| h * m[b * u + j])
                };
            }
            for (m, a) in acc.iter_mut().enumerate() {
                let mut s = zero;
                for (p, &hv) in hin.iter().enumerate() {
                    s = s + hv * ops.r[p * ku + m];
                }
                *a = s;
            }
            let xp = &ops.xp[(b * steps + t) * ku..][..ku];
            let prev = (t > 0).then(|| (bi * steps + t - 1) * w);
            let row = (bi * steps + t) * w;
            for (j, &hv) in hin.iter().enumerate() {
                trace[row + w - u + j] = hv;
            }
            for j in 0..u {
                let hp = prev.map_or(zero, |p| trace[p + j]);
                match cell.kind {
                    CellKind::Lstm => {
                        let z: [F; 4] = std::array::from_fn(|g| xp[g * u + j] + acc[g * u + j]);
                        let cp = prev.map_or(zero, |p| trace[p + u + j]);
                        let (c, h) = lstm_cell(cell, z, cp);
                        trace[row + j] = h;
                        trace[row + u + j] = c;
                        for (g, zg) in z.iter().enumerate() {
                            trace[row + 2 * u + g * u + j] = *zg;
                        }
                    }
                    CellKind::Gru => {
                        let rb = ops.rb.unwrap_or(&[]);
                        let rec: [F; 3] = std::array::from_fn(|g| {
                            acc[g * u + j] + rb.get(g * u + j).copied().unwrap_or(zero)
                        });
                        let x: [F; 3] = std::array::from_fn(|g| xp[g * u + j]);
                        trace[row + j] = gru_cell(cell, x, rec, hp);
                        for (g, rg) in rec.iter().enumerate() {
                            trace[row + u + g * u + j] = *rg;
                        }
                    }
                    CellKind::SimpleRnn => {
                        let z = xp[j] + acc[j];
                        trace[row + j] = cell.activation.apply(z);
                        trace[row + u + j] = z;
                    }
                }
            }
        }
    }
}

/// One LSTM unit: `(c, h)` from its four pre-activations and `c_{t-1}`.
pub fn lstm_cell<F: Real>(cell: &Cell, z: [F; 4], c_prev: F) -> (F, F) {
    let (sg, ph) = (cell.recurrent_activation, cell.activation);
    let (i, f, g, o) = (
        sg.apply(z[0]),
        sg.apply(z[1]),
        ph.apply(z[2]),
        sg.apply(z[3]),
    );
    let c = f * c_prev + i * g;
    (c, o * ph.apply(c))
}

/// One GRU unit: `h` from its input projections `x`, recurrent terms `rec` and `h_{t-1}`.
pub fn gru_cell<F: Real>(cell: &Cell, x: [F; 3], rec: [F; 3], h_prev: F) -> F {
    let (sg, ph) = (cell.recurrent_activation, cell.activation);
    let one = F::of(1.0);
    let u = sg.apply(x[0] + rec[0]);
    let q = sg.apply(x[1] + rec[1]);
    let n = ph.apply(x[2] + q * rec[2]);
    u * h_prev + (one - u) * n
}

/// The backward of one LSTM unit at one step. `z` its pre-activations, `c_prev`/`c` the
/// cell state before and after, `dh`/`dc` the adjoints of `h` and `c` arriving at this step
/// (from outside and from step `t+1`). Returns `(dz, dc_prev)`.
pub fn lstm_cell_grad<F: Real>(
    cell: &Cell,
    z: [F; 4],
    c_prev: F,
    c: F,
    dh: F,
    dc: F,
) -> ([F; 4], F) {
    let (sg, ph) = (cell.recurrent_activation, cell.activation);
    let (i, f, g, o) = (
        sg.apply(z[0]),
        sg.apply(z[1]),
        ph.apply(z[2]),
        sg.apply(z[3]),
    );
    let pc = ph.apply(c);
    let dc = dc + dh * o * ph.derivative(c, pc);
    let dz = [
        dc * g * sg.derivative(z[0], i),
        dc * c_prev * sg.derivative(z[1], f),
        dc * i * ph.derivative(z[2], g),
        dh * pc * sg.derivative(z[3], o),
    ];
    (dz, dc * f)
}

/// The backward of one GRU unit at one step: `(d x [3], d rec [3], dh_prev)` (the direct
/// part of `dh_prev`, not through `rec`), given the adjoint `dh` of its `h`.
pub fn gru_cell_grad<F: Real>(
    cell: &Cell,
    x: [F; 3],
    rec: [F; 3],
    h_prev: F,
    dh: F,
) -> ([F; 3], [F; 3], F) {
    let (sg, ph) = (cell.recurrent_activation, cell.activation);
    let one = F::of(1.0);
    let (zu, zq) = (x[0] + rec[0], x[1] + rec[1]);
    let (u, q) = (sg.apply(zu), sg.apply(zq));
    let zn = x[2] + q * rec[2];
    let n = ph.apply(zn);
    let du = dh * (h_prev - n) * sg.derivative(zu, u);
    let dn = dh * (one - u) * ph.derivative(zn, n);
    let dq = dn * rec[2] * sg.derivative(zq, q);
    ([du, dq, dn], [du, dq, dn * q], dh * u)
}

/// The backward of rows `rows` (see the module docs): `trace` is the block of those rows
/// (`[rows.len(), T, W]`), `dtrace` their block of the adjoint window `adj`
/// (`[rows.len(), T', W']`), `out` receives `[rows.len(), T, G]`. The reference
/// implementation, steps in reverse, dot products in index order.
#[allow(clippy::too_many_arguments)]
pub fn backward<F: Real>(
    cell: &Cell,
    steps: usize,
    rows: std::ops::Range<usize>,
    ops: Operands<'_, F>,
    trace: &[F],
    (dtrace, adj): (&[F], Adjoint),
    out: &mut [F],
) {
    let (u, k, w, gw) = (
        cell.units,
        cell.gates(),
        cell.trace_width(),
        cell.grad_width(),
    );
    let ku = k * u;
    let zero = F::of(0.0);
    // adjoints flowing from step t+1 into h_t and c_t
    let mut dh_next = vec![zero; u];
    let mut dc_next = vec![zero; u];
    let mut drec = vec![zero; ku];
    for (bi, b) in rows.enumerate() {
        dh_next.iter_mut().for_each(|v| *v = zero);
        dc_next.iter_mut().for_each(|v| *v = zero);
        for t in (0..steps).rev() {
            // the adjoint of column `col` of this step's trace row
            let drow = adj.row(bi, steps, t);
            let dt = |col: usize| match drow {
                Some(r) if col < adj.width => dtrace[r + col],
                _ => zero,
            };
            let row = (bi * steps + t) * w;
            let prev = (t > 0).then(|| (bi * steps + t - 1) * w);
            let orow = (bi * steps + t) * gw;
            let xp = &ops.xp[(b * steps + t) * ku..][..ku];
            for j in 0..u {
                let dh = dt(j) + dh_next[j];
                let hp = prev.map_or(zero, |p| trace[p + j]);
                match cell.kind {
                    CellKind::Lstm => {
                        let z: [F; 4] = std::array::from_fn(|g| trace[row + 2 * u + g * u + j]);
                        let cp = prev.map_or(zero, |p| trace[p + u + j]);
                        let dc = dt(u + j) + dc_next[j];
                        let (dz, dcp) = lstm_cell_grad(cell, z, cp, trace[row + u + j], dh, dc);
                        for g in 0..4 {
                            let v = dz[g] + dt(2 * u + g * u + j);
                            out[orow + g * u + j] = v;
                            drec[g * u + j] = v;
                        }
                        dc_next[j] = dcp;
                        dh_next[j] = zero;
                    }
                    CellKind::Gru => {
                        let x: [F; 3] = std::array::from_fn(|g| xp[g * u + j]);
                        let rec: [F; 3] = std::array::from_fn(|g| trace[row + u + g * u + j]);
                        let (dx, dr, dhp) = gru_cell_grad(cell, x, rec, hp, dh);
                        for g in 0..3 {
                            out[orow + g * u + j] = dx[g];
                            let v = dr[g] + dt(u + g * u + j);
                            out[orow + 3 * u + g * u + j] = v;
                            drec[g * u + j] = v;
                        }
                        dh_next[j] = dhp;
                    }
                    CellKind::SimpleRnn => {
                        let z = trace[row + u + j];
                        let h = trace[row + j];
                        let v = dh * cell.activation.derivative(z, h) + dt(u + j);
                        out[orow + j] = v;
                        drec[j] = v;
                        dh_next[j] = zero;
                    }
                }
            }
            if t == 0 {
                continue;
            }
            // h_in = h_{t-1} ⊙ mask, rec = h_in·r: dh_{t-1} += (drec·rᵀ + dtrace_hin) ⊙ mask
            for p in 0..u {
                let mut s = zero;
                for (m, &d) in drec.iter().enumerate() {
                    s = s + d * ops.r[p * ku + m];
                }
                let s = s + dt(w - u + p);
                let s = ops.mask.map_or(s, |mk| s * mk[b * u + p]);
                dh_next[p] = dh_next[p] + s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(kind: CellKind, masked: bool) -> Cell {
        Cell {
            kind,
            units: 3,
            activation: CellActivation::Tanh,
            recurrent_activation: CellActivation::Sigmoid,
            masked,
        }
    }

    fn data(n: usize, seed: u64) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let v = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15 ^ seed);
                ((v >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect()
    }

    /// `Σ trace ⊙ weights`, a scalar loss to check the backward by finite differences.
    fn loss(
        c: &Cell,
        (b, t): (usize, usize),
        (xp, r): (&[f64], &[f64]),
        (rb, mask): (&[f64], &[f64]),
        wts: &[f64],
    ) -> f64 {
        let mut trace = vec![0.0; b * t * c.trace_width()];
        let ops = Operands {
            xp,
            r,
            rb: (c.kind == CellKind::Gru).then_some(rb),
            mask: c.masked.then_some(mask),
        };
        forward(c, t, 0..b, ops, &mut trace);
        trace.iter().zip(wts).map(|(a, b)| a * b).sum()
    }

    /// A window of the adjoint gives the backward of the whole adjoint with zeros outside
    /// the window, bit for bit (the zeros add nothing).
    #[test]
    fn an_adjoint_window_is_the_zero_padded_adjoint() {
        for kind in [CellKind::Lstm, CellKind::Gru, CellKind::SimpleRnn] {
            let c = cell(kind, true);
            let (b, t, u, k, w) = (2, 4, c.units, c.gates(), c.trace_width());
            let (xp, r, rb) = (data(b * t * k * u, 1), data(u * k * u, 2), data(k * u, 3));
            let mask = data(b * u, 4);
            let ops = Operands {
                xp: &xp,
                r: &r,
                rb: (kind == CellKind::Gru).then_some(&rb[..]),
                mask: Some(&mask[..]),
            };
            let mut trace = vec![0.0; b * t * w];
            forward(&c, t, 0..b, ops, &mut trace);
            for (steps, width) in [(1, u), (t, u), (2, u), (1, w), (3, w)] {
                let adj = Adjoint { steps, width };
                assert_eq!(Adjoint::of_dims(&c, b, t, &[b, steps, width]), Some(adj));
                let d = data(adj.len(b), 6 + steps as u64);
                let mut full = vec![0.0; b * t * w];
                for bi in 0..b {
                    for s in t - steps..t {
                        for col in 0..width {
                            full[(bi * t + s) * w + col] =
                                d[(bi * steps + s - (t - steps)) * width + col];
                        }
                    }
                }
                let mut want = vec![0.0; b * t * c.grad_width()];
                backward(
                    &c,
                    t,
                    0..b,
                    ops,
                    &trace,
                    (&full, Adjoint::full(&c, t)),
                    &mut want,
                );
                let mut got = vec![f64::NAN; want.len()];
                backward(&c, t, 0..b, ops, &trace, (&d, adj), &mut got);
                assert_eq!(got, want, "{kind:?} window {adj:?}");
            }
            for bad in [[b, 0, u], [b, t + 1, u], [b, t, 2 * u], [b + 1, t, u]] {
                assert_eq!(Adjoint::of_dims(&c, b, t, &bad), None, "{bad:?}");
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        for kind in [CellKind::Lstm, CellKind::Gru, CellKind::SimpleRnn] {
            for masked in [false, true] {
                let c = cell(kind, masked);
                let (b, t, u, k) = (2, 4, c.units, c.gates());
                let xp = data(b * t * k * u, 1);
                let r = data(u * k * u, 2);
                let rb = data(k * u, 3);
                let mask: Vec<f64> = data(b * u, 4)
                    .iter()
                    .map(|v| if *v > -0.2 { 1.25 } else { 0.0 })
                    .collect();
                let wts = data(b * t * c.trace_width(), 5);
                let mut trace = vec![0.0; b * t * c.trace_width()];
                let ops = Operands {
                    xp: &xp,
                    r: &r,
                    rb: (kind == CellKind::Gru).then_some(&rb[..]),
                    mask: masked.then_some(&mask[..]),
                };
                forward(&c, t, 0..b, ops, &mut trace);
                let mut out = vec![0.0; b * t * c.grad_width()];
                backward(
                    &c,
                    t,
                    0..b,
                    ops,
                    &trace,
                    (&wts, Adjoint::full(&c, t)),
                    &mut out,
                );
                // d loss / d xp by central differences
                let eps = 1e-6;
                for i in 0..xp.len() {
                    let (mut a, mut bb) = (xp.clone(), xp.clone());
                    a[i] += eps;
                    bb[i] -= eps;
                    let fd = (loss(&c, (b, t), (&a, &r), (&rb, &mask), &wts)
                        - loss(&c, (b, t), (&bb, &r), (&rb, &mask), &wts))
                        / (2.0 * eps);
                    let (bt, m) = (i / (k * u), i % (k * u));
                    let got = out[bt * c.grad_width() + m];
                    assert!(
                        (fd - got).abs() < 1e-7,
                        "{kind:?} masked {masked} xp[{i}]: fd {fd} vs {got}"
                    );
                }
                // d loss / d r = Σ h_inᵀ·drec
                let gw = c.grad_width();
                let doff = if kind == CellKind::Gru { 3 * u } else { 0 };
                for p in 0..u {
                    for m in 0..k * u {
                        let (mut a, mut bb) = (r.clone(), r.clone());
                        a[p * k * u + m] += eps;
                        bb[p * k * u + m] -= eps;
                        let fd = (loss(&c, (b, t), (&xp, &a), (&rb, &mask), &wts)
                            - loss(&c, (b, t), (&xp, &bb), (&rb, &mask), &wts))
                            / (2.0 * eps);
                        let mut got = 0.0;
                        for bi in 0..b {
                            for s in 1..t {
                                let h = trace[(bi * t + s - 1) * c.trace_width() + p];
                                let h = if masked { h * mask[bi * u + p] } else { h };
                                got += h * out[(bi * t + s) * gw + doff + m];
                            }
                        }
                        assert!(
                            (fd - got).abs() < 1e-7,
                            "{kind:?} masked {masked} r[{p},{m}]: fd {fd} vs {got}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn activations_and_derivatives_agree() {
        for a in CellActivation::ALL {
            for x in [-3.0f64, -0.7, 0.3, 2.1] {
                let eps = 1e-6;
                let fd = (a.apply(x + eps) - a.apply(x - eps)) / (2.0 * eps);
                let d = a.derivative(x, a.apply(x));
                assert!((fd - d).abs() < 1e-6, "{a:?} at {x}: {fd} vs {d}");
            }
        }
    }
}
