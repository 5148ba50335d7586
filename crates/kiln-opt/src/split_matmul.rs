//! [`SplitLongMatMuls`]: no matmul may loop over more of its contraction axis than the
//! device allows. Autodiff joins the T per-step products `Σₜ aₜᵀ·dₜ` of a recurrent
//! weight's gradient into one product over `B·T` rows (a device-independent rewrite); on a
//! device with a loop limit (llvmpipe ends loops after 65,535 iterations) that product, like
//! any long one, is split here into contraction ranges whose products are summed in order.

use crate::passes::{try_rebuild, Pass};
use crate::Result;
use kiln_ir::{Graph, NodeId, Op};

/// Splits every matmul whose contraction length `k` exceeds `max_k` into
/// `Σᵢ a[.., kᵢ] · b[kᵢ, ..]` over consecutive ranges of at most `max_k` (slices are views;
/// the partial products are added in range order, so the result is deterministic).
pub struct SplitLongMatMuls {
    /// Largest contraction length one matmul kernel may loop over.
    pub max_k: usize,
}

impl Pass for SplitLongMatMuls {
    fn name(&self) -> &'static str {
        "SplitLongMatMuls"
    }

    fn run(&self, g: &Graph) -> Result<Graph> {
        try_rebuild(g, |out, n| {
            if n.op == Op::MatMul {
                let (a, b) = (n.inputs[0], n.inputs[1]);
                let ra = out.shape(a).rank();
                let k = out.shape(a).0[ra - 1];
                if k > self.max_k.max(1) {
                    let name = n.name.clone();
                    return out
                        .scoped(&name, |o| split(o, a, b, k, self.max_k.max(1)))
                        .map(Some);
                }
            }
            Ok(None)
        })
    }
}

/// `a · b` as the in-order sum of the products of contraction ranges of at most `max` (the
/// ranges are as equal as possible, so no tiny last product).
fn split(g: &mut Graph, a: NodeId, b: NodeId, k: usize, max: usize) -> kiln_ir::Result<NodeId> {
    let (ra, rb) = (g.shape(a).rank(), g.shape(b).rank());
    let parts = k.div_ceil(max);
    let mut total: Option<NodeId> = None;
    let mut start = 0;
    for i in 0..parts {
        let len = k / parts + usize::from(i < k % parts);
        let sa = g.slice(a, ra - 1, start, len)?;
        let sb = g.slice(b, rb - 2, start, len)?;
        let p = g.matmul(sa, sb)?;
        total = Some(match total {
            None => p,
            Some(t) => g.add(t, p)?,
        });
        start += len;
    }
    Ok(total.unwrap_or(a))
}
