//! [`GatheredRowsMatMul`]: products of gathered rows. An embedding (or one-hot) layer feeds a
//! projection with `x = gather(t, idx)`, one table row per position, so
//!
//! - the forward product `x · w` (`[N, K] · [K, C]`) only ever multiplies the table's `R`
//!   distinct rows: it is `gather(t · w, idx)`, a product over `R` rows instead of `N`
//!   (and just `gather(w, idx)` when `t` is an identity: one-hot inputs pick rows of `w`);
//! - the weight gradient `xᵀ · d` adds up, per table row, the rows of `d` at its positions:
//!   it is `tᵀ · scatter_add(idx, d)` (and `scatter_add(idx, d)` for an identity). An
//!   embedding whose own gradient was rewritten by
//!   [`crate::scatter_matmul::ScatterBeforeMatMul`] already computes that scatter-add: it
//!   is shared (the pipeline eliminates common subexpressions after this pass).
//!
//! Both are the same sums in exact arithmetic; in f32 the gradient's are rounded in another
//! order (per table row first). Each rewrite is taken only where it costs less on the
//! device ([`GatheredRowsMatMul::for_device`]).

use crate::passes::{live, try_rebuild_chosen, Pass};
use crate::Result;
use kiln_ir::{Constant, DType, Graph, Node, NodeId, Op};
use std::collections::HashSet;

/// Rewrites products whose left operand is `reshape?(gather(t, idx))` (or its transpose)
/// into a gather of a product (or a product of a scatter-add), as the module explains.
/// A rewrite is taken when it costs less, counting multiply-adds, a gathered element as
/// `gather_weight` of them and a scattered one as `scatter_weight` (nothing for a
/// scatter-add the graph computes already):
/// - forward: `(identity ? 0 : R·K·C) + gather_weight·N·C < N·K·C + gather_weight·N·K`
///   (the gather of `K`-wide rows goes once the gradient is rewritten too);
/// - gradient: `(identity ? 0 : R·K·C) + (shared ? 0 : scatter_weight·N·C) < N·K·C`.
pub struct GatheredRowsMatMul {
    /// Cost of one gathered element in multiply-adds.
    pub gather_weight: u32,
    /// Cost of one scattered element in multiply-adds.
    pub scatter_weight: u32,
}

/// A gathered or scattered element on a CPU rasterizer costs ~40 multiply-adds of the
/// products this pass replaces (lavapipe, the char-LSTM's one-hot products: a gathered
/// element 6–9 ns, a scattered one 7–8 ns, against 0.23–0.35 ns per multiply-add of the
/// `[5120, 57] · [57, 512]` projection and the `[57, 5120] · [5120, 512]` gradient). IMDB's
/// wider products run at ≈ 0.1 ns per multiply-add there, and their rewrites come out
/// dearer at this weight, as measured
/// ([`crate::scatter_matmul::CPU_RASTERIZER_SCATTER_WEIGHT`]).
pub const CPU_RASTERIZER_ELEMENT_WEIGHT: u32 = 40;

/// A gathered element on the native CPU backend costs ~50 multiply-adds of its `gemm`
/// (`KILN_CPU_PROFILE=1`: 1.5–2 ns per element of a gather kernel with its cast and bias
/// add, against ≈ 0.03 ns per multiply-add of the projections): the char-LSTM's one-hot
/// projection is rewritten, IMDB's `[32000, 32] · [32, 400]` is not (its gather would write
/// 12.8 M elements instead of 1 M).
pub const NATIVE_GATHER_WEIGHT: u32 = 48;

/// A scattered element on the native CPU backend: ≈ 0.25–0.55 ns, ~16 multiply-adds.
pub const NATIVE_SCATTER_WEIGHT: u32 = 16;

/// A scatter-add on a GPU has each invocation (a column and a block of rows) walk every
/// position: a serial loop over `N` against a product that the whole GPU shares. Adding
/// one is never worth it there; sharing one is.
pub const GPU_SCATTER_WEIGHT: u32 = 1 << 16;

impl GatheredRowsMatMul {
    /// The pass for a device with `limits`: the native CPU backend's weights are measured
    /// ([`NATIVE_GATHER_WEIGHT`], [`NATIVE_SCATTER_WEIGHT`]); on CPU rasterizers both are
    /// scalarized loads ([`CPU_RASTERIZER_ELEMENT_WEIGHT`]); on GPUs a gather is parallel
    /// (one multiply-add) and a scatter-add serial ([`GPU_SCATTER_WEIGHT`]).
    pub fn for_device(limits: &crate::DeviceLimits) -> Self {
        let cpu = limits.adapter_class == crate::AdapterClass::Cpu;
        match (cpu, limits.persistent_kernels) {
            (true, false) => GatheredRowsMatMul {
                gather_weight: CPU_RASTERIZER_ELEMENT_WEIGHT,
                scatter_weight: CPU_RASTERIZER_ELEMENT_WEIGHT,
            },
            (true, true) => GatheredRowsMatMul {
                gather_weight: NATIVE_GATHER_WEIGHT,
                scatter_weight: NATIVE_SCATTER_WEIGHT,
            },
            (false, _) => GatheredRowsMatMul {
                gather_weight: 1,
                scatter_weight: GPU_SCATTER_WEIGHT,
            },
        }
    }
}

impl Pass for GatheredRowsMatMul {
    fn name(&self) -> &'static str {
        "GatheredRowsMatMul"
    }

    fn run(&self, g: &Graph) -> Result<Graph> {
        // the scatter-adds the graph computes (live ones: autodiff leaves gradients of
        // constant tables behind, dead): (indices, updates before any reshape, rows)
        let live = live(g);
        let scatters: HashSet<(NodeId, NodeId, usize)> = g
            .iter()
            .filter(|(id, n)| n.op == Op::ScatterAdd && live[id.index()])
            .map(|(_, n)| {
                let u = n.inputs[1];
                let u = if g.node(u).op == Op::Reshape {
                    g.node(u).inputs[0]
                } else {
                    u
                };
                (n.inputs[0], u, n.shape.0[0])
            })
            .collect();
        // (dead products, such as the gradient of an input, are left to the elimination)
        let chosen: Vec<Option<Rewrite>> = g
            .iter()
            .map(|(id, n)| {
                live[id.index()]
                    .then(|| self.choose(g, n, &scatters))
                    .flatten()
            })
            .collect();
        try_rebuild_chosen(g, &chosen, rewrite)
    }
}

/// Which rewrite a product takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rewrite {
    /// `x · w` → `gather(t · w, idx)`.
    Forward,
    /// `xᵀ · d` → `tᵀ · scatter_add(idx, d)`.
    Gradient,
}

/// The gathered operand `reshape?(gather(t, idx))` of a product, as `[N, K]` rows.
struct Gathered {
    /// The table `t`, `[R, K]`.
    table: NodeId,
    /// The indices, `N` of them in any shape.
    idx: NodeId,
    /// `R`, `K`, `N`.
    rows: usize,
    /// Row width.
    k: usize,
    /// Positions.
    n: usize,
    /// Whether `t` is a constant identity matrix.
    identity: bool,
}

/// `x` as gathered rows, when it is `gather(t, idx)` (rank-1 `idx`) or a reshape of one to
/// `[N, K]`, with `t` a 2-D table.
fn gathered(g: &Graph, x: NodeId) -> Option<Gathered> {
    let xs = g.shape(x);
    if xs.rank() != 2 {
        return None;
    }
    let e = if g.node(x).op == Op::Reshape {
        g.node(x).inputs[0]
    } else {
        x
    };
    let en = g.node(e);
    if en.op != Op::Gather {
        return None;
    }
    let (table, idx) = (en.inputs[0], en.inputs[1]);
    let ts = g.shape(table);
    if ts.rank() != 2 {
        return None;
    }
    let (rows, k) = (ts.0[0], ts.0[1]);
    let n = g.shape(idx).numel();
    if xs.0 != [n, k] {
        return None;
    }
    Some(Gathered {
        table,
        idx,
        rows,
        k,
        n,
        identity: is_identity(g.node(table), rows, k),
    })
}

/// Whether `node` is the constant identity matrix `[rows, k]`.
fn is_identity(node: &Node, rows: usize, k: usize) -> bool {
    let Op::Constant(Constant::Data(v)) = &node.op else {
        return false;
    };
    rows == k
        && v.len() == rows * k
        && v.iter().enumerate().all(|(i, &x)| {
            let diagonal = i / k == i % k;
            x == if diagonal { 1.0 } else { 0.0 }
        })
}

impl GatheredRowsMatMul {
    /// The rewrite product `n` of `g` takes, if any (`scatters` as in `run`).
    fn choose(
        &self,
        g: &Graph,
        n: &Node,
        scatters: &HashSet<(NodeId, NodeId, usize)>,
    ) -> Option<Rewrite> {
        if n.op != Op::MatMul || n.shape.rank() != 2 {
            return None;
        }
        let (a, b) = (n.inputs[0], n.inputs[1]);
        let c = n.shape.0[1] as u128;
        if let Some(x) = gathered(g, a) {
            let (r, k, nn) = (x.rows as u128, x.k as u128, x.n as u128);
            let product = if x.identity { 0 } else { r * k * c };
            let w = self.gather_weight as u128;
            let new = product + w * nn * c;
            return (new < nn * k * c + w * nn * k).then_some(Rewrite::Forward);
        }
        let an = g.node(a);
        if an.op != (Op::Permute { perm: vec![1, 0] }) {
            return None;
        }
        let x = gathered(g, an.inputs[0])?;
        let (r, k, nn) = (x.rows as u128, x.k as u128, x.n as u128);
        let product = if x.identity { 0 } else { r * k * c };
        let scatter = if scatters.contains(&(x.idx, b, x.rows)) {
            0
        } else {
            self.scatter_weight as u128 * nn * c
        };
        (product + scatter < nn * k * c).then_some(Rewrite::Gradient)
    }
}

/// The node standing for product `n` (one that `choose` picked; its operands already in
/// `out`, where the gather, the reshape and the transpose were copied).
fn rewrite(out: &mut Graph, n: &Node, how: Rewrite) -> kiln_ir::Result<Option<NodeId>> {
    let (a, b) = (n.inputs[0], n.inputs[1]);
    let x = match how {
        Rewrite::Forward => gathered(out, a),
        Rewrite::Gradient => gathered(out, out.node(a).inputs[0]),
    };
    let Some(x) = x else {
        return Ok(None);
    };
    let c = n.shape.0[1];
    out.scoped(&n.name, |o| -> kiln_ir::Result<Option<NodeId>> {
        match how {
            Rewrite::Forward => {
                let tw = if x.identity { b } else { o.matmul(x.table, b)? };
                // the indices flattened before their cast (a view of the input), so that
                // the gather's rows are `[N, C]` and consumers such as a bias add join its
                // kernel (a register value does not survive a reshape that merges axes)
                let idx = match o.node(x.idx).op {
                    Op::Cast => {
                        let from = o.node(x.idx).inputs[0];
                        let flat = o.reshape(from, [x.n])?;
                        o.cast(flat, DType::I32)?
                    }
                    _ => o.reshape(x.idx, [x.n])?,
                };
                Ok(Some(o.gather(tw, idx)?))
            }
            Rewrite::Gradient => {
                let mut ushape = o.shape(x.idx).0.clone();
                ushape.push(c);
                let d = o.reshape(b, ushape)?;
                let s = o.scatter_add(x.idx, d, x.rows)?;
                if x.identity {
                    return Ok(Some(s));
                }
                let tt = o.permute(x.table, &[1, 0])?;
                Ok(Some(o.matmul(tt, s)?))
            }
        }
    })
}
