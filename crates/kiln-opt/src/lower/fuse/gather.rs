//! Gather and scatter-add: a gather is an elementwise group whose body reads a table row
//! named by an index expression; a scatter-add is a kernel of its own over dense operands.

use super::group::{GroupKind, Phase};
use super::values::Val;
use super::{Class, Fuser};
use crate::kernel::{Expr, View};
use crate::OptError;
use crate::Result;
use kiln_ir::recurrence::Adjoint;
use kiln_ir::NodeId;

impl Fuser<'_> {
    /// A gather is an elementwise group over its output whose body reads the table at the
    /// row its index expression names.
    pub(super) fn gather(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let (table, idx) = (n.inputs[0], n.inputs[1]);
        let shape = n.shape.dims().to_vec();
        let irank = self.g.shape(idx).rank();
        if let Val::Reg { .. } = self.val(idx) {
            self.materialize(idx)?;
        }
        let (t, tview) = self.materialize(table)?;
        let g = self.new_group(GroupKind::Elementwise {
            shape: shape.clone(),
        });
        let p = Phase::Stage(0);
        let map: Vec<Option<usize>> = (0..irank).map(Some).collect();
        let index = self.value_in(idx, g, p, &map, shape.len())?;
        let mut strides = vec![0; irank];
        strides.extend_from_slice(&tview.strides[1..]);
        self.note_load(t, g, p, false);
        let e = self.groups[g].body(p).push(
            Expr::Gather {
                arg: t,
                view: View {
                    offset: tview.offset,
                    strides,
                },
                index,
                rows: self.g.shape(table).dims()[0],
                row_stride: tview.strides[0],
            },
            n.dtype,
        );
        self.groups[g].nodes.push(id.index() as u32);
        Ok(Val::Reg {
            g,
            phase: p,
            e,
            bcast: false,
        })
    }

    /// A scatter-add is a kernel of its own writing a new tensor.
    pub(super) fn scatter_add(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let (idx, upd) = (n.inputs[0], n.inputs[1]);
        // indices cast from floats (an Embedding's input) are read, and converted as the cast
        // converts, by the scatter-add itself: no kernel for the cast
        let from = self.g.node(idx).inputs.first().copied();
        let idx = match (&self.g.node(idx).op, from) {
            (kiln_ir::Op::Cast, Some(x)) if self.g.dtype(x) == kiln_ir::DType::F32 => x,
            _ => idx,
        };
        let index = self.dense_operand(idx)?;
        let src = self.dense_operand(upd)?;
        let dims = n.shape.dims().to_vec();
        let rows = dims[0];
        let cols: usize = dims[1..].iter().product();
        let count = self.g.shape(idx).numel();
        let dst = self.tensor(&n.name, n.dtype, n.shape.numel(), Class::Temp, None);
        let g = self.new_group(GroupKind::ScatterAdd {
            rows,
            cols,
            count,
            index,
            src,
            dst,
        });
        self.note_load(index.0, g, Phase::Epi, false);
        self.note_load(src.0, g, Phase::Epi, false);
        let ti = &mut self.tensors.info[dst as usize];
        ti.producer = Some(g);
        ti.last_write = Some(g);
        self.groups[g].nodes.push(id.index() as u32);
        Ok(Val::Mem {
            t: dst,
            view: View::contiguous(&dims),
        })
    }
}

impl Fuser<'_> {
    /// A recurrence (forward or backward) is a kernel of its own over dense operands,
    /// writing a new tensor.
    pub(super) fn recurrence(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let (cell, backward) = match n.op {
            kiln_ir::Op::Recurrence(c) => (c, false),
            kiln_ir::Op::RecurrenceGrad(c) => (c, true),
            _ => unreachable!("called for recurrences"),
        };
        let mut operands = Vec::with_capacity(n.inputs.len());
        for &i in &n.inputs {
            operands.push(self.dense_operand(i)?);
        }
        let dims = n.shape.dims().to_vec();
        let adjoint = match n.inputs.last() {
            Some(&d) if backward => {
                Adjoint::of_dims(&cell, dims[0], dims[1], self.g.shape(d).dims()).ok_or_else(
                    || {
                        OptError::Unsupported(format!(
                            "`{}`: the trace's adjoint {} is no window of the trace",
                            n.name,
                            self.g.shape(d)
                        ))
                    },
                )?
            }
            _ => Adjoint::full(&cell, dims[1]),
        };
        let out = self.tensor(&n.name, n.dtype, n.shape.numel(), Class::Temp, None);
        let g = self.new_group(GroupKind::Recurrence {
            cell,
            batch: dims[0],
            steps: dims[1],
            operands: operands.clone(),
            backward,
            adjoint,
            out,
        });
        for (t, _) in operands {
            self.note_load(t, g, Phase::Epi, false);
        }
        let ti = &mut self.tensors.info[out as usize];
        ti.producer = Some(g);
        ti.last_write = Some(g);
        self.groups[g].nodes.push(id.index() as u32);
        Ok(Val::Mem {
            t: out,
            view: View::contiguous(&dims),
        })
    }
}
