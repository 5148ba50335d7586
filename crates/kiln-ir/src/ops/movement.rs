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

impl Graph {
    /// The elements `start .. start + len` of `axis` (every other axis whole). A no-op when
    /// it takes the whole axis.
    pub fn slice(&mut self, x: NodeId, axis: usize, start: usize, len: usize) -> Result<NodeId> {
        let (s, dt) = self.operands("slice", &[x])?.remove(0);
        if axis >= s.rank() || len == 0 || start + len > s.0[axis] {
            return Err(self.shape_err(
                "slice",
                format!(
                    "cannot take {len} elements from {start} on axis {axis} of a rank-{} tensor",
                    s.rank()
                ),
                vec![s],
                Some("the range must be non-empty and inside the axis".into()),
            ));
        }
        if start == 0 && len == s.0[axis] {
            return Ok(x);
        }
        let mut out = s.0.clone();
        out[axis] = len;
        Ok(self.emit(Op::Slice { axis, start }, vec![x], Shape(out), dt))
    }

    /// Joins `xs` (same rank and dtype, equal extents except on `axis`) along `axis`.
    pub fn concat(&mut self, xs: &[NodeId], axis: usize) -> Result<NodeId> {
        let ops = self.operands("concat", xs)?;
        let Some((first, dt)) = ops.first().cloned() else {
            return Err(self.shape_err("concat", "needs at least one operand", vec![], None));
        };
        let r = first.rank();
        let fits = axis < r
            && ops.iter().all(|(s, d)| {
                *d == dt && s.rank() == r && (0..r).all(|k| k == axis || s.0[k] == first.0[k])
            });
        if !fits {
            return Err(self.shape_err(
                "concat",
                format!("operands must have one dtype and equal extents except on axis {axis}"),
                ops.into_iter().map(|o| o.0).collect(),
                None,
            ));
        }
        if xs.len() == 1 {
            return Ok(xs[0]);
        }
        let mut out = first.0.clone();
        out[axis] = ops.iter().map(|(s, _)| s.0[axis]).sum();
        Ok(self.emit(Op::Concat { axis }, xs.to_vec(), Shape(out), dt))
    }

    /// Rows of `table` (`[rows, ..]`) picked by the i32 `indices`: the result has shape
    /// `indices.shape ++ table.shape[1..]`. Indices outside `0..rows` read zeros.
    pub fn gather(&mut self, table: NodeId, indices: NodeId) -> Result<NodeId> {
        let mut ops = self.operands("gather", &[table, indices])?;
        let (is, idt) = ops.remove(1);
        let (ts, dt) = ops.remove(0);
        if ts.rank() == 0 || idt != crate::DType::I32 || !dt.is_float() {
            return Err(self.shape_err(
                "gather",
                format!("needs a float table of rank >= 1 and i32 indices (got {dt} table, {idt} indices)"),
                vec![ts, is],
                Some("cast the indices with cast(x, DType::I32)".into()),
            ));
        }
        let mut out = is.0.clone();
        out.extend_from_slice(&ts.0[1..]);
        Ok(self.emit(Op::Gather, vec![table, indices], Shape(out), dt))
    }

    /// `out[r, ..] = Σ updates[i, ..]` over the positions `i` whose index is `r`; `updates`
    /// has shape `indices.shape ++ row_shape`; the result `[rows] ++ row_shape`. Indices
    /// outside `0..rows` are ignored.
    pub fn scatter_add(&mut self, indices: NodeId, updates: NodeId, rows: usize) -> Result<NodeId> {
        let mut ops = self.operands("scatter_add", &[indices, updates])?;
        let (us, dt) = ops.remove(1);
        let (is, idt) = ops.remove(0);
        if idt != crate::DType::I32
            || !dt.is_float()
            || rows == 0
            || us.rank() < is.rank()
            || us.0[..is.rank()] != is.0[..]
        {
            return Err(self.shape_err(
                "scatter_add",
                format!("needs i32 indices, float updates shaped indices ++ row, and rows >= 1 (rows {rows})"),
                vec![is, us],
                None,
            ));
        }
        let mut out = vec![rows];
        out.extend_from_slice(&us.0[is.rank()..]);
        Ok(self.emit(Op::ScatterAdd, vec![indices, updates], Shape(out), dt))
    }
}

impl Graph {
    /// Uniform `[0, 1)` noise of `shape` from stream `seed` at step `counter` (a one-element
    /// i32 tensor): see [`Op::RandomUniform`].
    pub fn random_uniform(
        &mut self,
        seed: u32,
        counter: NodeId,
        shape: impl Into<Shape>,
    ) -> Result<NodeId> {
        let shape = shape.into();
        let (cs, cdt) = self.operands("random_uniform", &[counter])?.remove(0);
        if cs.numel() != 1 || cdt != crate::DType::I32 || shape.numel() > u32::MAX as usize {
            return Err(self.shape_err(
                "random_uniform",
                format!(
                    "needs a one-element i32 counter (got {cdt} {cs}) and at most 2^32 elements"
                ),
                vec![cs],
                Some("cast the step counter with cast(x, DType::I32)".into()),
            ));
        }
        Ok(self.emit(
            Op::RandomUniform { seed },
            vec![counter],
            shape,
            crate::DType::F32,
        ))
    }
}
