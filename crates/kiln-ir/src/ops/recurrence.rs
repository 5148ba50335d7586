//! The fused recurrence ops (see [`crate::recurrence`]).

use crate::recurrence::Cell;
use crate::{DType, Graph, NodeId, Op, Result, Shape};

impl Graph {
    /// A whole recurrent layer over `xp [B, T, kU]` with recurrent kernel `r [U, kU]`, the
    /// GRU's recurrent bias `rb [kU]` and, when `cell.masked`, the recurrent-dropout mask
    /// `mask [B, U]` (pass them in that order in `extra`). Returns the trace `[B, T, W]`;
    /// its first `U` columns are the hidden states (see [`crate::recurrence`]).
    pub fn recurrence(
        &mut self,
        cell: Cell,
        xp: NodeId,
        r: NodeId,
        extra: &[NodeId],
    ) -> Result<NodeId> {
        let mut ids = vec![xp, r];
        ids.extend_from_slice(extra);
        let ops = self.operands("recurrence", &ids)?;
        let (b, t) = self.check_recurrence("recurrence", &cell, &ops)?;
        Ok(self.emit(
            Op::Recurrence(cell),
            ids,
            Shape(vec![b, t, cell.trace_width()]),
            DType::F32,
        ))
    }

    /// The backward of [`Graph::recurrence`]: the forward's operands `ops` (in its order),
    /// its `trace` and the trace's adjoint `dtrace`: the whole `[B, T, W]` or a window of it,
    /// `[B, T', U]` or `[B, T', W]`, the last `T'` steps (see
    /// [`Adjoint`](crate::recurrence::Adjoint)). Returns `[B, T, G]`.
    pub fn recurrence_grad(
        &mut self,
        cell: Cell,
        ops: &[NodeId],
        trace: NodeId,
        dtrace: NodeId,
    ) -> Result<NodeId> {
        let mut ids = ops.to_vec();
        ids.extend([trace, dtrace]);
        let sh = self.operands("recurrence_grad", &ids)?;
        let n = sh.len();
        if n < 2 {
            return Err(self.shape_err(
                "recurrence_grad",
                "needs the forward's operands, the trace and its adjoint",
                sh.into_iter().map(|s| s.0).collect(),
                None,
            ));
        }
        let (b, t) = self.check_recurrence("recurrence_grad", &cell, &sh[..n - 2])?;
        let want = Shape(vec![b, t, cell.trace_width()]);
        if sh[n - 2].0 != want
            || crate::recurrence::Adjoint::of_dims(&cell, b, t, &sh[n - 1].0 .0).is_none()
            || sh[n - 2].1 != DType::F32
            || sh[n - 1].1 != DType::F32
        {
            return Err(self.shape_err(
                "recurrence_grad",
                format!(
                    "the trace must be f32 {want} and its adjoint f32 [{b}, T', {}] or [{b}, T', {}] \
                     with 1 <= T' <= {t}",
                    cell.units,
                    cell.trace_width()
                ),
                sh.into_iter().map(|s| s.0).collect(),
                None,
            ));
        }
        Ok(self.emit(
            Op::RecurrenceGrad(cell),
            ids,
            Shape(vec![b, t, cell.grad_width()]),
            DType::F32,
        ))
    }

    /// Checks the forward operands of a recurrence; returns `(B, T)`.
    fn check_recurrence(
        &self,
        op: &'static str,
        cell: &Cell,
        ops: &[(Shape, DType)],
    ) -> Result<(usize, usize)> {
        let got = || ops.iter().map(|s| s.0.clone()).collect::<Vec<_>>();
        if cell.units == 0 {
            return Err(self.attr_err(op, "units must be at least 1"));
        }
        if ops.len() != cell.forward_arity() {
            return Err(self.shape_err(
                op,
                format!(
                    "a {} recurrence{} takes {} operands (xp, r{}{}), got {}",
                    cell.name(),
                    if cell.masked { " with a mask" } else { "" },
                    cell.forward_arity(),
                    if cell.rb_operand().is_some() {
                        ", rb"
                    } else {
                        ""
                    },
                    if cell.masked { ", mask" } else { "" },
                    ops.len()
                ),
                got(),
                None,
            ));
        }
        if let Some((_, d)) = ops.iter().find(|(_, d)| *d != DType::F32) {
            return Err(self.dtype_err(op, format!("expects f32 operands, got {d}")));
        }
        let x = &ops[0].0;
        if x.rank() != 3 || x.0[1] == 0 {
            return Err(self.shape_err(
                op,
                "xp must be [batch, steps >= 1, gates*units]",
                got(),
                None,
            ));
        }
        let (b, t) = (x.0[0], x.0[1]);
        let want = cell.operand_shapes(b, t);
        if ops
            .iter()
            .enumerate()
            .any(|(k, (s, _))| !cell.operand_fits(k, &s.0, b, t))
        {
            return Err(self.shape_err(
                op,
                format!("expects operands shaped {want:?} for {} units", cell.units),
                got(),
                None,
            ));
        }
        Ok((b, t))
    }
}
