//! [`ScatterBeforeMatMul`]: an embedding's gradient is `scatter_add(idx, dx)` with
//! `dx = d · wᵀ`, a product over every position (`N` rows) that the scatter then folds into
//! the table's `rows`. Scattering first — `scatter_add(idx, d) · wᵀ` — is the same sum in
//! another order, with a product over `rows` instead of `N` rows; the product then ends the
//! gradient, so the optimizer's update rides in its epilogue (one kernel fewer per step).

use crate::passes::{try_rebuild_chosen, Pass};
use crate::Result;
use kiln_ir::{Graph, NodeId, Op};

/// Rewrites `scatter_add(idx, reshape?(a · b))` into `scatter_add(idx, reshape(a)) · b` when
/// `a · b` (2-D, `[N, K] · [K, C]`, `N` the number of indices) has no other use and the
/// rewrite costs less: `w·N·K + 2·rows·K·C < 2·N·K·C + w·N·C`, with `w` the cost of one
/// scattered element in multiply-adds (`scatter_weight`). The sums are the same in exact
/// arithmetic; in f32 they are rounded in another order.
pub struct ScatterBeforeMatMul {
    /// Cost of one scattered element in multiply-adds: 1 where a scatter-add runs as
    /// compiled loops over whole rows (native CPU, GPUs: its positions are a serial loop per
    /// column either way), [`CPU_RASTERIZER_SCATTER_WEIGHT`] on CPU rasterizers.
    pub scatter_weight: u32,
}

/// A scattered element on a CPU rasterizer costs as much as ~300 multiply-adds of its
/// register-blocked matmul (lavapipe, IMDB's `[32000, 400]` scatter: 12 ns per element,
/// against ≈ 0.04 ns per multiply-add): there the rewrite would make the embedding gradient
/// 3.5x slower (43 → 153 ms), so it is priced out.
pub const CPU_RASTERIZER_SCATTER_WEIGHT: u32 = 256;

impl ScatterBeforeMatMul {
    /// The pass for a device with `limits`.
    pub fn for_device(limits: &crate::DeviceLimits) -> Self {
        let rasterizer =
            limits.adapter_class == crate::AdapterClass::Cpu && !limits.persistent_kernels;
        ScatterBeforeMatMul {
            scatter_weight: if rasterizer {
                CPU_RASTERIZER_SCATTER_WEIGHT
            } else {
                1
            },
        }
    }
}

impl Pass for ScatterBeforeMatMul {
    fn name(&self) -> &'static str {
        "ScatterBeforeMatMul"
    }

    fn run(&self, g: &Graph) -> Result<Graph> {
        let mut uses = vec![0usize; g.len()];
        for (_, n) in g.iter() {
            for x in &n.inputs {
                uses[x.index()] += 1;
            }
        }
        for (_, o) in g.outputs() {
            uses[o.index()] += 1;
        }
        for (p, v) in g.assigns() {
            uses[p.index()] += 1;
            uses[v.index()] += 1;
        }
        let single = |x: NodeId| uses[x.index()] == 1;
        let chosen: Vec<Option<()>> = g
            .iter()
            .map(|(_, n)| pattern(g, n, single, self.scatter_weight).map(|_| ()))
            .collect();
        try_rebuild_chosen(g, &chosen, |out, n, ()| {
            rewrite(out, n, self.scatter_weight)
        })
    }
}

/// `(a, b)` of the product when scatter-add `n` of `g` matches: its updates are
/// `reshape?(a · b)`, the product and the reshape have no other use (`single`), `a · b` is
/// `[N, K] · [K, C]` with one row per index, and the rewrite costs less with a scattered
/// element worth `weight` multiply-adds.
fn pattern(
    g: &Graph,
    n: &kiln_ir::Node,
    single: impl Fn(NodeId) -> bool,
    weight: u32,
) -> Option<(NodeId, NodeId)> {
    if n.op != Op::ScatterAdd {
        return None;
    }
    let (idx, upd) = (n.inputs[0], n.inputs[1]);
    let mut m = upd;
    if g.node(m).op == Op::Reshape {
        if !single(m) {
            return None;
        }
        m = g.node(m).inputs[0];
    }
    if g.node(m).op != Op::MatMul || !single(m) {
        return None;
    }
    let (a, b) = (g.node(m).inputs[0], g.node(m).inputs[1]);
    let (sa, sb) = (g.shape(a), g.shape(b));
    let (is, us) = (g.shape(idx), g.shape(upd));
    if sa.rank() != 2 || sb.rank() != 2 {
        return None;
    }
    let (nn, k, c) = (sa.0[0], sa.0[1], sb.0[1]);
    // the updates are the product's rows, one per index: `[idx.., C]`
    if is.numel() != nn || us.rank() != is.rank() + 1 || us.0[is.rank()] != c {
        return None;
    }
    let rows = n.shape.0[0];
    let (nn, k, c, r, w) = (
        nn as u128,
        k as u128,
        c as u128,
        rows as u128,
        weight as u128,
    );
    (w * nn * k + 2 * r * k * c < 2 * nn * k * c + w * nn * c).then_some((a, b))
}

/// The rewritten node for scatter-add `n` (a node [`pattern`] chose; its inputs already in
/// `out`, where the product and the reshape were copied).
fn rewrite(out: &mut Graph, n: &kiln_ir::Node, weight: u32) -> kiln_ir::Result<Option<NodeId>> {
    let Some((a, b)) = pattern(out, n, |_| true, weight) else {
        return Ok(None);
    };
    let idx = n.inputs[0];
    let rows = n.shape.0[0];
    let mut ushape = out.shape(idx).0.clone();
    ushape.push(out.shape(a).0[1]);
    out.scoped(&n.name, |o| -> kiln_ir::Result<Option<NodeId>> {
        let a = o.reshape(a, ushape)?;
        let s = o.scatter_add(idx, a, rows)?;
        Ok(Some(o.matmul(s, b)?))
    })
}
