//! Operands: emitting a node's value into a group's phase body — a register value of the
//! same phase, a constant, a lazy cone re-computed in place, or a load — and the rules for
//! when a value is usable in a group at all.

use super::elementwise::elementwise_expr;
use super::group::{GroupKind, Phase};
use super::values::Val;
use super::views::{adapt_view, movement_map, squeeze_map};
use super::Fuser;
use crate::kernel::{Expr, ExprId, View};
use crate::{OptError, Result};
use kiln_ir::NodeId;

impl Fuser<'_> {
    /// Can lazy node `id` be computed inside group `g` (all memory it reads is written by
    /// earlier groups)?
    pub(super) fn lazy_ok(&self, id: NodeId, g: usize) -> bool {
        self.g.node(id).inputs.iter().all(|&i| match self.val(i) {
            Val::Fill(_) => true,
            Val::Lazy => self.lazy_ok(i, g),
            Val::Mem { t, .. } => self.tensors.info[t as usize]
                .last_write
                .is_none_or(|pg| pg < g),
            Val::Reg { .. } => false,
        })
    }

    /// Can operand `id` with value `v` be used inside group `g` phase `p`?
    pub(super) fn usable(&self, id: NodeId, v: &Val, g: usize, p: Phase) -> bool {
        match v {
            Val::Fill(_) => true,
            Val::Lazy => self.lazy_ok(id, g),
            Val::Mem { t, .. } => self.tensors.info[*t as usize]
                .last_write
                .is_none_or(|pg| pg < g),
            Val::Reg {
                g: g2,
                phase,
                bcast,
                ..
            } => {
                if *g2 != g {
                    return *g2 < g;
                }
                match (phase, p, bcast) {
                    (a, b, false) if *a == b => true,
                    (Phase::Epi, Phase::Bc, true) => true,
                    (Phase::Stage(_), Phase::Bc, false) => {
                        matches!(self.groups[g].kind, GroupKind::Reduce { .. })
                    }
                    _ => false,
                }
            }
        }
    }

    /// Emits operand `id` into group `g`, phase `p` (the consumer has shape `shape`).
    pub(super) fn operand(
        &mut self,
        id: NodeId,
        g: usize,
        p: Phase,
        shape: &[usize],
    ) -> Result<ExprId> {
        let dt = self.g.dtype(id);
        let v = self.val(id);
        let pshape = self.groups[g].phase_shape(p);
        if let Val::Reg {
            g: g2,
            phase,
            e,
            bcast,
        } = v
        {
            if g2 == g {
                match (phase, p, bcast) {
                    (a, b, false) if a == b => return Ok(e),
                    (Phase::Epi, Phase::Bc, true) => {
                        return Ok(self.reemit(g, Phase::Epi, e, Phase::Bc))
                    }
                    (Phase::Stage(s), Phase::Bc, false) => {
                        return Ok(self.reemit(g, Phase::Stage(s), e, Phase::Bc))
                    }
                    _ => {}
                }
            }
        }
        if let Val::Fill(c) = v {
            return Ok(self.groups[g].body(p).push(Expr::Const(c), dt));
        }
        if let Val::Lazy = v {
            let map = squeeze_map(shape, &pshape);
            return self.lazy_expr(id, g, p, &map);
        }
        let (t, view) = self.materialize(id)?;
        let view = adapt_view(&view, shape, &pshape).ok_or_else(|| {
            OptError::Unsupported(format!(
                "operand view {shape:?} does not fit phase shape {pshape:?}"
            ))
        })?;
        let contiguous = view.is_contiguous(&pshape);
        self.note_load(t, g, p, contiguous);
        Ok(self.groups[g].body(p).push(Expr::Load { arg: t, view }, dt))
    }

    /// Emits lazy node `id` into group `g` phase `p`; `map` sends each axis of the node to
    /// an axis of the phase's iteration shape (or to index 0).
    pub(super) fn lazy_expr(
        &mut self,
        id: NodeId,
        g: usize,
        p: Phase,
        map: &[Option<usize>],
    ) -> Result<ExprId> {
        let n = self.g.node(id).clone();
        let rank = self.groups[g].phase_shape(p).len();
        if let Some(inner) = movement_map(self.g, id) {
            let x = n.inputs[0];
            let composed: Vec<Option<usize>> =
                inner.iter().map(|m| m.and_then(|d| map[d])).collect();
            return self.value_in(x, g, p, &composed, rank);
        }
        let mut args = vec![];
        for &i in &n.inputs {
            args.push(self.value_in(i, g, p, map, rank)?);
        }
        if !self.groups[g].nodes.contains(&(id.index() as u32)) {
            self.groups[g].nodes.push(id.index() as u32);
        }
        Ok(self.groups[g]
            .body(p)
            .push(elementwise_expr(&n.op, &args), n.dtype))
    }

    /// Emits the value of `id` (in memory, constant or lazy) through an axis map.
    pub(super) fn value_in(
        &mut self,
        id: NodeId,
        g: usize,
        p: Phase,
        map: &[Option<usize>],
        rank: usize,
    ) -> Result<ExprId> {
        let dt = self.g.dtype(id);
        match self.val(id) {
            Val::Fill(c) => Ok(self.groups[g].body(p).push(Expr::Const(c), dt)),
            Val::Lazy => self.lazy_expr(id, g, p, map),
            Val::Mem { t, view } => {
                let mut strides = vec![0; rank];
                for (d, m) in map.iter().enumerate() {
                    if let Some(o) = m {
                        strides[*o] += view.strides[d];
                    }
                }
                let view = View {
                    offset: view.offset,
                    strides,
                };
                let pshape = self.groups[g].phase_shape(p);
                let contiguous = view.is_contiguous(&pshape);
                self.note_load(t, g, p, contiguous);
                Ok(self.groups[g].body(p).push(Expr::Load { arg: t, view }, dt))
            }
            Val::Reg { .. } => Err(OptError::Unsupported(format!(
                "lazy value depends on register value {id} (fusion invariant broken)"
            ))),
        }
    }
}
