//! Matrix products: a group of its own whose operands are strided tensors in memory (copied
//! dense first when their batch axes cannot share one stride); elementwise consumers join
//! its epilogue.

use super::group::{GroupKind, Phase, SymMat};
use super::values::Val;
use super::{Class, Fuser};
use crate::kernel::{Expr, View};
use crate::Result;
use kiln_ir::{DType, NodeId};

impl Fuser<'_> {
    /// A matmul operand; copies it to a dense tensor first when its batch axes cannot share
    /// one stride.
    pub(super) fn mat_operand(&mut self, id: NodeId) -> Result<SymMat> {
        let shape = self.g.shape(id).dims().to_vec();
        let r = shape.len();
        let (mut t, mut view) = self.materialize(id)?;
        let collapsible = |v: &View| {
            (0..r.saturating_sub(3))
                .all(|d| shape[d + 1] == 1 || v.strides[d] == v.strides[d + 1] * shape[d + 1])
        };
        if !collapsible(&view) {
            let name = self.g.node(id).name.clone();
            let nt = self.copy_kernel(id, &name, Class::Temp)?;
            t = nt;
            view = View::contiguous(&shape);
        }
        let batch_stride = (0..r - 2)
            .rev()
            .find(|&d| shape[d] != 1)
            .map(|d| view.strides[d])
            .unwrap_or(0);
        Ok(SymMat {
            tensor: t,
            offset: view.offset,
            batch_stride,
            row_stride: view.strides[r - 2],
            col_stride: view.strides[r - 1],
        })
    }

    /// A matmul is a group of its own; its value is the accumulator in the epilogue.
    pub(super) fn matmul(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let dims = n.shape.dims().to_vec();
        let r = dims.len();
        let (m, nn) = (dims[r - 2], dims[r - 1]);
        let k = self.g.shape(n.inputs[0]).dims()[r - 1];
        let batch: usize = dims[..r - 2].iter().product();
        let a = self.mat_operand(n.inputs[0])?;
        let b = self.mat_operand(n.inputs[1])?;
        let g = self.new_group(GroupKind::MatMul {
            batch,
            m,
            n: nn,
            k,
            a: a.clone(),
            b: b.clone(),
        });
        for t in [a.tensor, b.tensor] {
            self.note_load(t, g, Phase::Epi, false);
        }
        let e = self.groups[g].epi.push(Expr::Acc(0), DType::F32);
        self.groups[g].nodes.push(id.index() as u32);
        Ok(Val::Reg {
            g,
            phase: Phase::Epi,
            e,
            bcast: false,
        })
    }
}
