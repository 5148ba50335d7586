//! The builder: one method per op (plus compositions), each checking shapes and dtypes and
//! returning a typed error that names the op, the node and the shapes.
//!
//! Binary ops broadcast NumPy-style: the builder inserts explicit `Reshape` + `Expand` nodes,
//! so in the IR every elementwise op sees equal shapes (autodiff undoes broadcasts by summing
//! over the expanded axes).

mod composite;
mod elementwise;
pub use elementwise::broadcast_shapes;
mod matmul;
mod movement;
mod recurrence;
mod reduce;
mod source;

use crate::error::ShapeList;
use crate::{DType, Graph, IrError, Node, NodeId, Op, Result, Shape};

impl Graph {
    /// Checks that every id exists and returns their nodes' (shape, dtype).
    pub(crate) fn operands(&self, op: &'static str, ids: &[NodeId]) -> Result<Vec<(Shape, DType)>> {
        ids.iter()
            .map(|&id| {
                self.nodes
                    .get(id.index())
                    .map(|n| (n.shape.clone(), n.dtype))
                    .ok_or(IrError::UnknownNode {
                        op,
                        id,
                        len: self.nodes.len(),
                    })
            })
            .collect()
    }

    /// Appends a node named after the current scope.
    pub(crate) fn emit(
        &mut self,
        op: Op,
        inputs: Vec<NodeId>,
        shape: Shape,
        dtype: DType,
    ) -> NodeId {
        let name = self.scoped_name(op.mnemonic());
        self.push_unchecked(Node {
            op,
            inputs,
            shape,
            dtype,
            name,
        })
    }

    pub(crate) fn shape_err(
        &self,
        op: &'static str,
        message: impl Into<String>,
        got: Vec<Shape>,
        hint: Option<String>,
    ) -> IrError {
        IrError::Shape {
            op,
            node: self.scoped_name(op),
            message: message.into(),
            got: ShapeList(got),
            hint,
        }
    }

    pub(crate) fn dtype_err(&self, op: &'static str, message: impl Into<String>) -> IrError {
        IrError::DType {
            op,
            node: self.scoped_name(op),
            message: message.into(),
        }
    }

    pub(crate) fn attr_err(&self, op: &'static str, message: impl Into<String>) -> IrError {
        IrError::Attribute {
            op,
            node: self.scoped_name(op),
            message: message.into(),
        }
    }
}

/// Checks a list of axes against a rank; returns them sorted and unique.
pub(crate) fn normalize_axes(
    g: &Graph,
    op: &'static str,
    axes: &[usize],
    rank: usize,
) -> Result<Vec<usize>> {
    let mut v = axes.to_vec();
    v.sort_unstable();
    v.dedup();
    if v.len() != axes.len() {
        return Err(g.attr_err(op, format!("axes {axes:?} contain duplicates")));
    }
    if let Some(&a) = v.iter().find(|&&a| a >= rank) {
        return Err(g.attr_err(op, format!("axis {a} is out of range for rank {rank}")));
    }
    Ok(v)
}
