//! Movement ops: reshape, permute, expand/broadcast.

use crate::{Graph, NodeId, Op, Result, Shape};

impl Graph {
    /// Same elements in a new shape (row-major order). A no-op when the shape is equal.
    pub fn reshape(&mut self, x: NodeId, shape: impl Into<Shape>) -> Result<NodeId> {
        let shape = shape.into();
        let (s, dt) = self.operands("reshape", &[x])?.remove(0);
        if s.numel() != shape.numel() {
            return Err(self.shape_err(
                "reshape",
                format!(
                    "cannot reshape {} elements into {shape} ({} elements)",
                    s.numel(),
                    shape.numel()
                ),
                vec![s],
                None,
            ));
        }
        if s == shape {
            return Ok(x);
        }
        Ok(self.emit(Op::Reshape, vec![x], shape, dt))
    }

    /// Permutes axes: output axis `i` is input axis `perm[i]`.
    pub fn permute(&mut self, x: NodeId, perm: &[usize]) -> Result<NodeId> {
        let (s, dt) = self.operands("permute", &[x])?.remove(0);
        let mut seen = vec![false; s.rank()];
        if perm.len() != s.rank()
            || perm
                .iter()
                .any(|&p| p >= s.rank() || std::mem::replace(&mut seen[p], true))
        {
            return Err(self.shape_err(
                "permute",
                format!("{perm:?} is not a permutation of the {} axes", s.rank()),
                vec![s],
                None,
            ));
        }
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(x);
        }
        let out = Shape(perm.iter().map(|&p| s.0[p]).collect());
        Ok(self.emit(
            Op::Permute {
                perm: perm.to_vec(),
            },
            vec![x],
            out,
            dt,
        ))
    }

    /// Swaps the last two axes (matrix transpose, batched).
    pub fn transpose(&mut self, x: NodeId) -> Result<NodeId> {
        let (s, _) = self.operands("transpose", &[x])?.remove(0);
        if s.rank() < 2 {
            return Err(self.shape_err("transpose", "needs rank >= 2", vec![s], None));
        }
        let r = s.rank();
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.permute(x, &perm)
    }

    /// Broadcasts size-1 axes of `x` to `shape` (same rank). A no-op when equal.
    pub fn expand(&mut self, x: NodeId, shape: impl Into<Shape>) -> Result<NodeId> {
        let shape = shape.into();
        let (s, dt) = self.operands("expand", &[x])?.remove(0);
        let ok =
            s.rank() == shape.rank() && s.0.iter().zip(&shape.0).all(|(&a, &b)| a == b || a == 1);
        if !ok {
            return Err(self.shape_err(
                "expand",
                format!("can only expand size-1 axes of the same rank to {shape}"),
                vec![s],
                Some("reshape to add leading size-1 axes first, or use broadcast_to".into()),
            ));
        }
        if s == shape {
            return Ok(x);
        }
        Ok(self.emit(Op::Expand, vec![x], shape, dt))
    }

    /// NumPy-style broadcast of `x` to `shape` (adds leading axes, then expands).
    pub fn broadcast_to(&mut self, x: NodeId, shape: &Shape) -> Result<NodeId> {
        let (s, _) = self.operands("broadcast", &[x])?.remove(0);
        if &s == shape {
            return Ok(x);
        }
        if s.rank() > shape.rank() {
            return Err(self.shape_err(
                "broadcast",
                format!("cannot broadcast to lower rank {shape}"),
                vec![s],
                None,
            ));
        }
        let mut dims = vec![1; shape.rank() - s.rank()];
        dims.extend_from_slice(&s.0);
        let r = self.reshape(x, Shape(dims))?;
        self.expand(r, shape.clone())
    }
}
