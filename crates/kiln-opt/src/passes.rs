//! Graph-to-graph passes. Each pass is a value implementing [`Pass`]; the pipeline in
//! [`crate::compile`] names them in order and runs `verify` after each one.

use crate::Result;
use kiln_ir::eval::{apply_binary, apply_unary};
use kiln_ir::{BinaryOp, Constant, DType, Graph, Node, NodeId, Op, UnaryOp};

/// A graph-to-graph transformation.
pub trait Pass {
    /// Verb-phrase name, used by `KILN_DUMP` and the per-pass timings.
    fn name(&self) -> &'static str;
    /// Runs the pass, returning the new graph.
    fn run(&self, g: &Graph) -> Result<Graph>;
}

/// Removes nodes that no output or assignment depends on, renumbering the rest (arena order
/// is kept, so the result is still topologically ordered).
pub struct EliminateDeadNodes;

impl Pass for EliminateDeadNodes {
    fn name(&self) -> &'static str {
        "EliminateDeadNodes"
    }

    fn run(&self, g: &Graph) -> Result<Graph> {
        Ok(rebuild_live(g, &live(g), |out, n| {
            out.push_unchecked(n.clone())
        }))
    }
}

/// Which nodes of `g` an output or an assignment depends on (by index).
pub(crate) fn live(g: &Graph) -> Vec<bool> {
    let mut live = vec![false; g.len()];
    for (_, o) in g.outputs() {
        live[o.index()] = true;
    }
    for (p, v) in g.assigns() {
        live[p.index()] = true;
        live[v.index()] = true;
    }
    for i in (0..g.len()).rev() {
        if live[i] {
            for inp in &g.nodes()[i].inputs {
                live[inp.index()] = true;
            }
        }
    }
    live
}

/// Rebuilds `g` node by node: `f` sees the original node with inputs already remapped into
/// the new graph and returns the id that stands for it there.
pub(crate) fn rebuild(g: &Graph, f: impl FnMut(&mut Graph, &Node) -> NodeId) -> Graph {
    rebuild_live(g, &vec![true; g.len()], f)
}

/// [`rebuild`] with a rewrite that may fail: `f` sees each node (inputs remapped) and returns
/// the id that stands for it, or `None` to keep a copy of it; after the first error every
/// node is copied and the error is returned.
pub(crate) fn try_rebuild(
    g: &Graph,
    mut f: impl FnMut(&mut Graph, &Node) -> kiln_ir::Result<Option<NodeId>>,
) -> Result<Graph> {
    let mut err = None;
    let out = rebuild(g, |out, n| {
        if err.is_none() {
            match f(out, n) {
                Ok(Some(id)) => return id,
                Ok(None) => {}
                Err(e) => err = Some(e),
            }
        }
        out.push_unchecked(n.clone())
    });
    match err {
        Some(e) => Err(e.into()),
        None => Ok(out),
    }
}

/// [`try_rebuild`] for a pass that chose its rewrites on `g` first: `f` runs on node `i`
/// (inputs remapped) with `chosen[i]` where that is `Some`, and the other nodes are copied.
pub(crate) fn try_rebuild_chosen<T: Copy>(
    g: &Graph,
    chosen: &[Option<T>],
    mut f: impl FnMut(&mut Graph, &Node, T) -> kiln_ir::Result<Option<NodeId>>,
) -> Result<Graph> {
    // `rebuild` visits the nodes in arena order
    let mut at = 0usize;
    try_rebuild(g, |out, n| {
        let i = at;
        at += 1;
        match chosen.get(i).copied().flatten() {
            Some(c) => f(out, n, c),
            None => Ok(None),
        }
    })
}

/// [`rebuild`] over the nodes marked in `live` only (the others are dropped; no live node,
/// output or assignment may depend on them). Outputs and assignments are remapped into the
/// new graph.
fn rebuild_live(g: &Graph, live: &[bool], mut f: impl FnMut(&mut Graph, &Node) -> NodeId) -> Graph {
    // every operand, output and assignment of a live node is live and earlier (the
    // precondition above, and arena order), so its new id is always known when asked for
    let mut remap: Vec<Option<NodeId>> = vec![None; g.len()];
    let at = |remap: &[Option<NodeId>], i: NodeId| {
        remap[i.index()].expect("rebuild_live: a live node depends on a dead or later one")
    };
    let mut out = Graph::new();
    for (id, n) in g.iter() {
        if !live[id.index()] {
            continue;
        }
        let node = Node {
            op: n.op.clone(),
            inputs: n.inputs.iter().map(|&i| at(&remap, i)).collect(),
            shape: n.shape.clone(),
            dtype: n.dtype,
            name: n.name.clone(),
        };
        remap[id.index()] = Some(f(&mut out, &node));
    }
    let outputs = g
        .outputs()
        .iter()
        .map(|(n, o)| (n.clone(), at(&remap, *o)))
        .collect();
    let assigns = g
        .assigns()
        .iter()
        .map(|(p, v)| (at(&remap, *p), at(&remap, *v)))
        .collect();
    out.set_roots(outputs, assigns);
    out
}

fn fill_of(g: &Graph, id: NodeId) -> Option<f64> {
    match &g.node(id).op {
        Op::Constant(Constant::Fill(v)) => Some(*v),
        _ => None,
    }
}

/// Folds elementwise ops and movements of constant fills into fills, and applies algebraic
/// identities: `x*1`, `1*x`, `x+0`, `0+x`, `x-0`, `x/1` → `x`; `neg(neg(x))` → `x`.
pub struct FoldConstants;

impl Pass for FoldConstants {
    fn name(&self) -> &'static str {
        "FoldConstants"
    }

    fn run(&self, g: &Graph) -> Result<Graph> {
        Ok(rebuild(g, |out, n| {
            let fills: Vec<Option<f64>> = n.inputs.iter().map(|&i| fill_of(out, i)).collect();
            let all_fill = !n.inputs.is_empty() && fills.iter().all(Option::is_some);
            let fill = |out: &mut Graph, v: f64| {
                let v = if n.dtype == DType::I32 {
                    v.trunc()
                } else {
                    v as f32 as f64
                };
                out.push_unchecked(Node {
                    op: Op::Constant(Constant::Fill(v)),
                    inputs: vec![],
                    shape: n.shape.clone(),
                    dtype: n.dtype,
                    name: n.name.clone(),
                })
            };
            let c = |i: usize| fills[i].unwrap_or(f64::NAN);
            match &n.op {
                Op::Reshape | Op::Expand | Op::Permute { .. } | Op::StopGradient if all_fill => {
                    fill(out, c(0))
                }
                Op::Unary(u) if all_fill => fill(out, apply_unary(*u, c(0))),
                Op::Binary(b) if all_fill => fill(out, apply_binary(*b, c(0), c(1))),
                Op::Where if all_fill => fill(out, if c(0) != 0.0 { c(1) } else { c(2) }),
                Op::Binary(BinaryOp::Mul) if fills[1] == Some(1.0) => n.inputs[0],
                Op::Binary(BinaryOp::Mul) if fills[0] == Some(1.0) => n.inputs[1],
                Op::Binary(BinaryOp::Add) if fills[1] == Some(0.0) => n.inputs[0],
                Op::Binary(BinaryOp::Add) if fills[0] == Some(0.0) => n.inputs[1],
                Op::Binary(BinaryOp::Sub) if fills[1] == Some(0.0) => n.inputs[0],
                Op::Binary(BinaryOp::Div) if fills[1] == Some(1.0) => n.inputs[0],
                Op::Unary(UnaryOp::Neg)
                    if matches!(out.node(n.inputs[0]).op, Op::Unary(UnaryOp::Neg)) =>
                {
                    out.node(n.inputs[0]).inputs[0]
                }
                _ => out.push_unchecked(n.clone()),
            }
        }))
    }
}

/// Merges nodes that compute the same op on the same operands (common subexpressions).
/// Inputs and params are unique by name and never merged.
pub struct EliminateCommonSubexpressions;

impl Pass for EliminateCommonSubexpressions {
    fn name(&self) -> &'static str {
        "EliminateCommonSubexpressions"
    }

    fn run(&self, g: &Graph) -> Result<Graph> {
        let mut seen: std::collections::HashMap<String, NodeId> = std::collections::HashMap::new();
        Ok(rebuild(g, |out, n| {
            if matches!(n.op, Op::Input { .. } | Op::Param { .. }) {
                return out.push_unchecked(n.clone());
            }
            let key = format!("{:?}|{:?}|{:?}|{:?}", n.op, n.inputs, n.shape, n.dtype);
            if let Some(&id) = seen.get(&key) {
                return id;
            }
            let id = out.push_unchecked(n.clone());
            seen.insert(key, id);
            id
        }))
    }
}

/// Numerically stable rewrite: `log(exp(z) / expand(sum(exp(z))))` — a log of a softmax —
/// becomes `z - expand(log(sum(exp(z))))`, which never takes the log of an underflowed
/// probability (`log(softmax([0, 1000]))[0]` is -1000, not -inf).
pub struct RewriteLogSoftmax;

impl Pass for RewriteLogSoftmax {
    fn name(&self) -> &'static str {
        "RewriteLogSoftmax"
    }

    fn run(&self, g: &Graph) -> Result<Graph> {
        Ok(rebuild(g, |out, n| {
            if let Some((z, s, bshape)) = match_log_softmax(out, n) {
                let mk = |out: &mut Graph,
                          op: Op,
                          inputs: Vec<NodeId>,
                          shape: kiln_ir::Shape,
                          what: &str| {
                    out.push_unchecked(Node {
                        op,
                        inputs,
                        shape,
                        dtype: n.dtype,
                        name: format!("{}/{what}", n.name),
                    })
                };
                let sshape = out.shape(s).clone();
                let ls = mk(out, Op::Unary(UnaryOp::Log), vec![s], sshape, "log_sum");
                let le = mk(out, Op::Expand, vec![ls], bshape, "expand");
                let zshape = out.shape(z).clone();
                return mk(
                    out,
                    Op::Binary(BinaryOp::Sub),
                    vec![z, le],
                    zshape,
                    "log_softmax",
                );
            }
            out.push_unchecked(n.clone())
        }))
    }
}

/// `(z, s, expanded shape)` when `n` is `log(div(exp(z), expand(s)))` with `s = sum(exp(z))`.
fn match_log_softmax(g: &Graph, n: &Node) -> Option<(NodeId, NodeId, kiln_ir::Shape)> {
    if n.op != Op::Unary(UnaryOp::Log) {
        return None;
    }
    let d = g.node(n.inputs[0]);
    if d.op != Op::Binary(BinaryOp::Div) {
        return None;
    }
    let (e, b) = (d.inputs[0], d.inputs[1]);
    let en = g.node(e);
    let bn = g.node(b);
    if en.op != Op::Unary(UnaryOp::Exp) || bn.op != Op::Expand {
        return None;
    }
    let s = bn.inputs[0];
    let sn = g.node(s);
    match &sn.op {
        Op::Reduce {
            op: kiln_ir::ReduceOp::Sum,
            ..
        } if sn.inputs[0] == e => Some((en.inputs[0], s, bn.shape.clone())),
        _ => None,
    }
}

/// Splits every reduction over more than `max_count` elements into two nested reductions
/// (the reduced elements, moved last and merged, are factored as `a x b` with `b <= max_count`;
/// then `b` is reduced, then `a`), so no kernel loops longer than the device allows
/// ([`crate::DeviceLimits::max_loop_iterations`]; llvmpipe silently stops loops at 65,535
/// iterations). A count with no usable factor is left alone; lowering then refuses it with a
/// typed error rather than computing a wrong result.
pub struct SplitLongReductions {
    /// Largest number of elements one reduction may fold.
    pub max_count: usize,
}

impl Pass for SplitLongReductions {
    fn name(&self) -> &'static str {
        "SplitLongReductions"
    }

    fn run(&self, g: &Graph) -> Result<Graph> {
        try_rebuild(g, |out, n| {
            if let Op::Reduce { op, axes } = &n.op {
                let count: usize = axes.iter().map(|&a| out.shape(n.inputs[0]).0[a]).product();
                if count > self.max_count {
                    let name = n.name.clone();
                    return out.scoped(&name, |o| {
                        split_reduce(o, n.inputs[0], *op, axes, self.max_count)
                    });
                }
            }
            Ok(None)
        })
    }
}

/// The largest divisor of `c` that is at most `max` (1 when there is none above 1).
fn largest_divisor_at_most(c: usize, max: usize) -> usize {
    (1..=max.min(c))
        .rev()
        .find(|&d| c.is_multiple_of(d))
        .unwrap_or(1)
}

/// `reduce(op, x, axes)` (keeping dims) as nested reductions of at most `max` elements each;
/// `None` when the count cannot be factored that way.
fn split_reduce(
    g: &mut Graph,
    x: NodeId,
    op: kiln_ir::ReduceOp,
    axes: &[usize],
    max: usize,
) -> kiln_ir::Result<Option<NodeId>> {
    use kiln_ir::ReduceOp;
    let xs = g.shape(x).clone();
    let r = xs.rank();
    let count: usize = axes.iter().map(|&a| xs.0[a]).product();
    let b = largest_divisor_at_most(count, max);
    if b <= 1 {
        return Ok(None);
    }
    let a = count / b;
    let kept: Vec<usize> = (0..r).filter(|d| !axes.contains(d)).collect();
    let consecutive = axes.windows(2).all(|w| w[1] == w[0] + 1);
    // Consecutive reduced axes merge and split in place: [.., count, ..] -> [.., a, b, ..]
    // is a dense reshape (no copy). Otherwise the kept axes move first (a permute, which the
    // reshape after it must copy).
    let (x3, outer, inner) = if consecutive {
        let f = axes[0];
        let mut dims: Vec<usize> = xs.0[..f].to_vec();
        dims.extend([a, b]);
        dims.extend_from_slice(&xs.0[axes[axes.len() - 1] + 1..]);
        (g.reshape(x, dims)?, f, f + 1)
    } else {
        let mut perm = kept.clone();
        perm.extend_from_slice(axes);
        let xp = g.permute(x, &perm)?;
        let mut dims: Vec<usize> = kept.iter().map(|&d| xs.0[d]).collect();
        let k = dims.len();
        dims.extend([a, b]);
        (g.reshape(xp, dims)?, k, k + 1)
    };
    let kind = if op == ReduceOp::Max {
        ReduceOp::Max
    } else {
        ReduceOp::Sum
    };
    let r1 = g.reduce(kind, x3, &[inner], true)?;
    let r2 = if a > max {
        match split_reduce(g, r1, kind, &[outer], max)? {
            Some(id) => id,
            None => return Ok(None),
        }
    } else {
        g.reduce(kind, r1, &[outer], true)?
    };
    let r2 = if op == ReduceOp::Mean {
        g.mul_scalar(r2, 1.0 / count as f64)?
    } else {
        r2
    };
    // back to the original rank, reduced axes as size 1
    let out: Vec<usize> = (0..r)
        .map(|d| if axes.contains(&d) { 1 } else { xs.0[d] })
        .collect();
    Ok(Some(g.reshape(r2, out)?))
}
