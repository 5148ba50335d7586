//! Groups: kernels under construction. A group has a kind (elementwise, reduce, matmul,
//! scatter-add), phase bodies (the stages of a reduction, its epilogue and broadcast pass),
//! stores and the IR nodes it computes. Also the binding accounting that decides whether a
//! node may still join a group.

use super::values::Val;
use super::{Class, Fuser, TensorId};
use crate::kernel::{Body, Expr, ExprId, Fold, View};
use kiln_ir::NodeId;

/// A phase of a group: the iteration space a body runs over.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The body of an elementwise group, or fold pass `s` of a reduction.
    Stage(u16),
    /// Reduction epilogue (output shape) or matmul epilogue (`[batch, m, n]`).
    Epi,
    /// Reduction broadcast phase (input shape, after the fold).
    Bc,
}

/// A matmul operand in symbolic form.
#[derive(Clone, Debug)]
pub struct SymMat {
    /// Tensor read.
    pub tensor: TensorId,
    /// Element offset inside the tensor.
    pub offset: usize,
    /// Batch stride.
    pub batch_stride: usize,
    /// Row stride.
    pub row_stride: usize,
    /// Column stride.
    pub col_stride: usize,
}

/// What a group computes.
#[derive(Clone, Debug)]
pub enum GroupKind {
    /// Elementwise over `shape`.
    Elementwise {
        /// Iteration shape.
        shape: Vec<usize>,
    },
    /// Reductions over `axes` of `in_shape`, in stages (see [`Group::stages`]).
    Reduce {
        /// Input iteration shape.
        in_shape: Vec<usize>,
        /// Reduced axes.
        axes: Vec<usize>,
    },
    /// `dst[index[i], c] += src[i, c]` into a zeroed `[rows, cols]` tensor (dense operands).
    ScatterAdd {
        /// Rows of the output.
        rows: usize,
        /// Elements per row.
        cols: usize,
        /// Positions.
        count: usize,
        /// Indices: (tensor, element offset).
        index: (TensorId, usize),
        /// Updates: (tensor, element offset).
        src: (TensorId, usize),
        /// Output tensor.
        dst: TensorId,
    },
    /// A whole recurrence (dense operands, a kernel of its own).
    Recurrence {
        /// Cell and attributes.
        cell: kiln_ir::recurrence::Cell,
        /// Batch rows.
        batch: usize,
        /// Timesteps.
        steps: usize,
        /// Operands in the op's order (`xp, r[, rb][, mask][, trace, dtrace]`): (tensor,
        /// element offset).
        operands: Vec<(TensorId, usize)>,
        /// Whether this is the backward.
        backward: bool,
        /// The backward's window of the trace's adjoint (the forward: the whole trace).
        adjoint: kiln_ir::recurrence::Adjoint,
        /// Output tensor.
        out: TensorId,
    },
    /// Matrix product with an epilogue.
    MatMul {
        /// Batch count.
        batch: usize,
        /// Rows.
        m: usize,
        /// Columns.
        n: usize,
        /// Inner dimension.
        k: usize,
        /// Left operand.
        a: SymMat,
        /// Right operand.
        b: SymMat,
    },
}

/// A kernel under construction. Loads and stores name tensors (`arg` = [`TensorId`]).
#[derive(Clone, Debug)]
pub struct Group {
    /// What it computes.
    pub kind: GroupKind,
    /// Stage bodies with their folds: the one body of an elementwise group, or the fold
    /// passes of a reduction (a stage may read the accumulators of earlier stages).
    pub stages: Vec<(Body, Vec<Fold>)>,
    /// Epilogue body.
    pub epi: Body,
    /// Broadcast body.
    pub bc: Body,
    /// Stores per phase: `(phase, tensor, value, view)`; the view (over the phase shape,
    /// relative to the tensor's start) is `None` for a dense row-major store.
    pub stores: Vec<(Phase, TensorId, ExprId, Option<View>)>,
    /// IR nodes computed here (the fusion group).
    pub nodes: Vec<u32>,
}

impl Group {
    /// The body of phase `p`.
    pub(super) fn body(&mut self, p: Phase) -> &mut Body {
        match p {
            Phase::Stage(s) => &mut self.stages[s as usize].0,
            Phase::Epi => &mut self.epi,
            Phase::Bc => &mut self.bc,
        }
    }
    /// The body of phase `p`, read-only.
    pub(super) fn body_ref(&self, p: Phase) -> &Body {
        match p {
            Phase::Stage(s) => &self.stages[s as usize].0,
            Phase::Epi => &self.epi,
            Phase::Bc => &self.bc,
        }
    }
    /// Iteration shape of a phase.
    pub fn phase_shape(&self, p: Phase) -> Vec<usize> {
        match (&self.kind, p) {
            (GroupKind::Elementwise { shape }, _) => shape.clone(),
            (GroupKind::Reduce { in_shape, .. }, Phase::Stage(_) | Phase::Bc) => in_shape.clone(),
            (GroupKind::Reduce { in_shape, axes, .. }, Phase::Epi) => in_shape
                .iter()
                .enumerate()
                .map(|(d, &s)| if axes.contains(&d) { 1 } else { s })
                .collect(),
            (GroupKind::MatMul { batch, m, n, .. }, _) => vec![*batch, *m, *n],
            (GroupKind::ScatterAdd { rows, cols, .. }, _) => vec![*rows, *cols],
            (GroupKind::Recurrence { batch, steps, .. }, _) => vec![*batch, *steps],
        }
    }
    /// True when nodes may still join phase `p`.
    pub(super) fn open(&self, p: Phase) -> bool {
        matches!(
            (&self.kind, p),
            (GroupKind::Elementwise { .. }, Phase::Stage(0))
                | (GroupKind::Reduce { .. }, Phase::Epi | Phase::Bc)
                | (GroupKind::MatMul { .. }, Phase::Epi)
        )
    }
}

impl Fuser<'_> {
    /// Opens a new group of `kind` (one empty stage) after every existing one.
    pub(super) fn new_group(&mut self, kind: GroupKind) -> usize {
        self.groups.push(Group {
            kind,
            stages: vec![(Body::default(), vec![])],
            epi: Body::default(),
            bc: Body::default(),
            stores: vec![],
            nodes: vec![],
        });
        self.groups.len() - 1
    }

    /// Distinct non-temp tensors group `g` binds (temps share arena buffers).
    pub(super) fn bound_tensors(&self, g: usize) -> Vec<TensorId> {
        let gr = &self.groups[g];
        let mut v: Vec<TensorId> = vec![];
        let mut add = |t: TensorId| {
            if !v.contains(&t) {
                v.push(t)
            }
        };
        for b in gr.stages.iter().map(|s| &s.0).chain([&gr.epi, &gr.bc]) {
            for n in &b.nodes {
                if let Expr::Load { arg, .. } | Expr::Gather { arg, .. } = n.expr {
                    add(arg);
                }
            }
        }
        for (_, t, _, _) in &gr.stores {
            add(*t);
        }
        if let GroupKind::MatMul { a, b, .. } = &gr.kind {
            add(a.tensor);
            add(b.tensor);
        }
        if let GroupKind::ScatterAdd {
            index, src, dst, ..
        } = &gr.kind
        {
            add(index.0);
            add(src.0);
            add(*dst);
        }
        if let GroupKind::Recurrence { operands, out, .. } = &gr.kind {
            for &(t, _) in operands {
                add(t);
            }
            add(*out);
        }
        v.retain(|&t| self.tensors.info[t as usize].class != Class::Temp);
        v
    }

    /// Non-temp tensors that using node `id` as an operand binds.
    pub(super) fn footprint(&self, id: NodeId) -> Vec<TensorId> {
        match self.val(id) {
            Val::Lazy => self.lazy.foot[id.index()].clone(),
            Val::Mem { t, .. } if self.tensors.info[t as usize].class != Class::Temp => vec![t],
            _ => vec![],
        }
    }

    /// Storage bindings a group may use: the device limit minus two for arena buffers.
    pub(super) fn binding_budget(&self) -> usize {
        (self.limits.max_storage_buffers_per_shader_stage as usize)
            .saturating_sub(2)
            .max(1)
    }
}
