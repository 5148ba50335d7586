//! Reductions.

use super::normalize_axes;
use crate::{Graph, NodeId, Op, ReduceOp, Result, Shape};

impl Graph {
    /// Reduces `x` over `axes`. With `keep_dims` the reduced axes stay as size 1; without,
    /// they are removed (by a `Reshape` after the keep-dims reduction).
    pub fn reduce(
        &mut self,
        op: ReduceOp,
        x: NodeId,
        axes: &[usize],
        keep_dims: bool,
    ) -> Result<NodeId> {
        let m = op.mnemonic();
        let (s, dt) = self.operands(m, &[x])?.remove(0);
        let axes = normalize_axes(self, m, axes, s.rank())?;
        if op == ReduceOp::Mean && !dt.is_float() {
            return Err(self.dtype_err(m, format!("mean expects a float operand, got {dt}")));
        }
        let mut kept = s.0.clone();
        for &a in &axes {
            kept[a] = 1;
        }
        let y = if axes.is_empty() {
            x
        } else {
            self.emit(
                Op::Reduce {
                    op,
                    axes: axes.clone(),
                },
                vec![x],
                Shape(kept),
                dt,
            )
        };
        if keep_dims {
            Ok(y)
        } else {
            let dropped: Vec<usize> =
                s.0.iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, &d)| d)
                    .collect();
            self.reshape(y, Shape(dropped))
        }
    }

    /// Sum over `axes`.
    pub fn sum(&mut self, x: NodeId, axes: &[usize], keep_dims: bool) -> Result<NodeId> {
        self.reduce(ReduceOp::Sum, x, axes, keep_dims)
    }
    /// Mean over `axes`.
    pub fn mean(&mut self, x: NodeId, axes: &[usize], keep_dims: bool) -> Result<NodeId> {
        self.reduce(ReduceOp::Mean, x, axes, keep_dims)
    }
    /// Maximum over `axes`.
    pub fn max(&mut self, x: NodeId, axes: &[usize], keep_dims: bool) -> Result<NodeId> {
        self.reduce(ReduceOp::Max, x, axes, keep_dims)
    }
    /// Sum of all elements as a scalar `[]`.
    pub fn sum_all(&mut self, x: NodeId) -> Result<NodeId> {
        let r = self.shape(x).rank();
        let axes: Vec<usize> = (0..r).collect();
        self.sum(x, &axes, false)
    }
    /// Mean of all elements as a scalar `[]`.
    pub fn mean_all(&mut self, x: NodeId) -> Result<NodeId> {
        let r = self.shape(x).rank();
        let axes: Vec<usize> = (0..r).collect();
        self.mean(x, &axes, false)
    }
}
