//! Concatenation: a concat is one tensor whose blocks its operands are stored straight into
//! when a kernel computes them (their *home*), or copied into otherwise.

use super::values::Val;
use super::views::{adapt_view, squeeze};
use super::{Class, Fuser, TensorId};
use crate::kernel::View;
use crate::Result;
use kiln_ir::{Graph, NodeId, Op};

/// Where concat operands live (indexed by node).
pub(super) struct ConcatHomes {
    /// For an operand of a concat: `(concat node, start on its axis, operand)`: the node is
    /// stored straight into its block of the concat's tensor (no copy).
    pub(super) home: Vec<Option<(NodeId, usize, NodeId)>>,
    /// The tensor of a concat node that has no home itself (allocated on first use).
    pub(super) tensor: Vec<Option<TensorId>>,
}

impl ConcatHomes {
    /// Operands of a concat computed by a kernel are stored straight into its tensor.
    pub(super) fn find(g: &Graph) -> Self {
        let mut home = vec![None; g.len()];
        for (id, n) in g.iter() {
            if let Op::Concat { axis } = n.op {
                let mut start = 0;
                for &i in &n.inputs {
                    // through reshapes that only add or remove size-1 axes
                    let mut src = i;
                    while let (Op::Reshape, Some(&x)) =
                        (&g.node(src).op, g.node(src).inputs.first())
                    {
                        if squeeze(g.shape(x).dims()) != squeeze(g.shape(src).dims()) {
                            break;
                        }
                        src = x;
                    }
                    let computed = matches!(
                        g.node(src).op,
                        Op::Unary(_)
                            | Op::Binary(_)
                            | Op::Where
                            | Op::Cast
                            | Op::MatMul
                            | Op::Concat { .. }
                    );
                    if computed && home[src.index()].is_none() {
                        home[src.index()] = Some((id, start, i));
                    }
                    start += g.shape(i).dims()[axis];
                }
            }
        }
        ConcatHomes {
            home,
            tensor: vec![None; g.len()],
        }
    }
}

impl Fuser<'_> {
    /// The tensor and view (over the node's shape) of the block of a concat that node `id`
    /// is stored into, when it has one.
    pub(super) fn region(&mut self, id: NodeId) -> Option<(TensorId, View)> {
        let (c, start, operand) = self.concats.home[id.index()]?;
        let Op::Concat { axis } = self.g.node(c).op else {
            return None;
        };
        let (t, view) = self.concat_region(c);
        let block = View {
            offset: view.offset + start * view.strides[axis],
            strides: view.strides,
        };
        // seen over the node's own shape (it may differ from the operand's by size-1 axes)
        let view = adapt_view(
            &block,
            self.g.shape(operand).dims(),
            self.g.shape(id).dims(),
        )?;
        Some((t, view))
    }

    /// The tensor and view of concat node `c`: its block of an enclosing concat, or a tensor
    /// of its own.
    pub(super) fn concat_region(&mut self, c: NodeId) -> (TensorId, View) {
        if let Some(r) = self.region(c) {
            return r;
        }
        let n = self.g.node(c);
        let dims = n.shape.dims().to_vec();
        let t = match self.concats.tensor[c.index()] {
            Some(t) => t,
            None => {
                let (name, dt, len) = (n.name.clone(), n.dtype, n.shape.numel());
                let t = self.tensor(&name, dt, len, Class::Temp, None);
                self.concats.tensor[c.index()] = Some(t);
                t
            }
        };
        (t, View::contiguous(&dims))
    }

    /// A concat is a tensor whose blocks its operands were stored into (or are copied into
    /// now, when they could not be).
    pub(super) fn concat(&mut self, id: NodeId, axis: usize) -> Result<Val> {
        let n = self.g.node(id).clone();
        let (t, view) = self.concat_region(id);
        let mut start = 0;
        for &i in &n.inputs {
            let block = View {
                offset: view.offset + start * view.strides[axis],
                strides: view.strides.clone(),
            };
            let at = start;
            start += self.g.shape(i).dims()[axis];
            let homed = self.concats.home.contains(&Some((id, at, i)));
            if homed {
                match self.val(i) {
                    Val::Mem { t: ti, .. } if ti == t => continue, // already in place
                    Val::Reg { bcast: false, .. } | Val::Lazy => {
                        let (ti, _) = self.materialize(i)?;
                        if ti == t {
                            continue;
                        }
                    }
                    _ => {}
                }
            }
            self.copy_into(i, t, Some(block))?;
        }
        Ok(Val::Mem { t, view })
    }
}
