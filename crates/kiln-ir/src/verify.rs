//! Structural verification, run after every pass in debug builds and tests.

use crate::{Graph, IrError, NodeId, Op, Result};

/// Checks the graph's invariants: operands precede users, arities match, shapes/dtypes are
/// consistent with each op's rule, roots point into the graph and assign params.
pub fn verify(g: &Graph) -> Result<()> {
    let bad = |id: NodeId, op: &Op, m: String| IrError::Invalid {
        id,
        op: op.mnemonic(),
        message: m,
    };
    for (id, n) in g.iter() {
        let arity_ok = match n.op.arity() {
            Some(a) => n.inputs.len() == a,
            None => !n.inputs.is_empty(),
        };
        if !arity_ok {
            return Err(bad(
                id,
                &n.op,
                format!(
                    "has {} operands, expects {}",
                    n.inputs.len(),
                    n.op.arity().map_or("one or more".into(), |a| a.to_string())
                ),
            ));
        }
        for &i in &n.inputs {
            if i >= id {
                return Err(bad(id, &n.op, format!("operand {i} does not precede it")));
            }
        }
        let s = |k: usize| &g.node(n.inputs[k]).shape;
        let ok = match &n.op {
            Op::Unary(_) | Op::Reshape | Op::Cast | Op::StopGradient => {
                n.op != Op::Reshape || s(0).numel() == n.shape.numel()
            }
            Op::Binary(_) => s(0) == &n.shape && s(1) == &n.shape,
            Op::Where => (0..3).all(|k| s(k) == &n.shape),
            Op::Expand => {
                s(0).rank() == n.shape.rank()
                    && s(0)
                        .0
                        .iter()
                        .zip(&n.shape.0)
                        .all(|(&a, &b)| a == b || a == 1)
            }
            Op::Permute { perm } => {
                perm.len() == s(0).rank()
                    && perm
                        .iter()
                        .enumerate()
                        .all(|(i, &p)| n.shape.0[i] == s(0).0[p])
            }
            Op::Reduce { axes, .. } => {
                s(0).rank() == n.shape.rank()
                    && (0..n.shape.rank()).all(|d| {
                        if axes.contains(&d) {
                            n.shape.0[d] == 1
                        } else {
                            n.shape.0[d] == s(0).0[d]
                        }
                    })
            }
            Op::MatMul => {
                let (a, b) = (s(0), s(1));
                let r = a.rank();
                r >= 2
                    && b.rank() == r
                    && n.shape.rank() == r
                    && a.0[r - 1] == b.0[r - 2]
                    && a.0[..r - 2] == b.0[..r - 2]
                    && n.shape.0[r - 2] == a.0[r - 2]
                    && n.shape.0[r - 1] == b.0[r - 1]
            }
            Op::Constant(crate::Constant::Data(d)) => d.len() == n.shape.numel(),
            Op::Slice { axis, start } => {
                let x = s(0);
                x.rank() == n.shape.rank()
                    && *axis < x.rank()
                    && start + n.shape.0[*axis] <= x.0[*axis]
                    && (0..x.rank()).all(|d| d == *axis || x.0[d] == n.shape.0[d])
            }
            Op::Concat { axis } => {
                let r = n.shape.rank();
                *axis < r
                    && (0..n.inputs.len()).all(|k| {
                        s(k).rank() == r && (0..r).all(|d| d == *axis || s(k).0[d] == n.shape.0[d])
                    })
                    && (0..n.inputs.len()).map(|k| s(k).0[*axis]).sum::<usize>() == n.shape.0[*axis]
            }
            Op::Gather => {
                let (t, i) = (s(0), s(1));
                g.dtype(n.inputs[1]) == crate::DType::I32
                    && t.rank() >= 1
                    && n.shape.rank() == i.rank() + t.rank() - 1
                    && n.shape.0[..i.rank()] == i.0[..]
                    && n.shape.0[i.rank()..] == t.0[1..]
            }
            Op::RandomUniform { .. } => {
                s(0).numel() == 1
                    && g.dtype(n.inputs[0]) == crate::DType::I32
                    && n.dtype == crate::DType::F32
            }
            Op::ScatterAdd => {
                let (i, u) = (s(0), s(1));
                g.dtype(n.inputs[0]) == crate::DType::I32
                    && n.shape.rank() >= 1
                    && u.rank() == i.rank() + n.shape.rank() - 1
                    && u.0[..i.rank()] == i.0[..]
                    && u.0[i.rank()..] == n.shape.0[1..]
            }
            Op::Recurrence(c) | Op::RecurrenceGrad(c) => {
                let grad = matches!(n.op, Op::RecurrenceGrad(_));
                let x = s(0);
                x.rank() == 3 && c.units > 0 && {
                    let (b, t) = (x.0[0], x.0[1]);
                    let na = c.forward_arity();
                    let tw = [b, t, c.trace_width()];
                    let width = if grad {
                        c.grad_width()
                    } else {
                        c.trace_width()
                    };
                    (0..na).all(|k| c.operand_fits(k, &s(k).0, b, t))
                        && (!grad
                            || (s(na).0 == tw
                                && crate::recurrence::Adjoint::of_dims(c, b, t, &s(na + 1).0)
                                    .is_some()))
                        && n.shape.0 == [b, t, width]
                        && n.dtype == crate::DType::F32
                        && (0..n.inputs.len()).all(|k| g.dtype(n.inputs[k]) == crate::DType::F32)
                }
            }
            _ => true,
        };
        if !ok {
            return Err(bad(
                id,
                &n.op,
                format!("shape {} is inconsistent with its operands", n.shape),
            ));
        }
    }
    for (name, o) in g.outputs() {
        if o.index() >= g.len() {
            return Err(IrError::Eval(format!(
                "output `{name}` points past the graph"
            )));
        }
    }
    for (p, v) in g.assigns() {
        if p.index() >= g.len() || v.index() >= g.len() {
            return Err(IrError::Eval("assignment points past the graph".into()));
        }
        if !matches!(g.node(*p).op, Op::Param { .. }) {
            return Err(bad(
                *p,
                &g.node(*p).op,
                "assignment target is not a param".into(),
            ));
        }
    }
    Ok(())
}
