//! Values: how a node's result is available ([`Val`]: a fill, memory through a view, a lazy
//! cone, or a register value of a group) and turning any of them into memory
//! (`materialize`, copy kernels, dense operands).

use super::group::{GroupKind, Phase};
use super::views::{adapt_view, store_view};
use super::{Class, Fuser, TensorId};
use crate::kernel::{ExprId, View};
use crate::{OptError, Result};
use kiln_ir::{NodeId, Op, Shape};

/// How a node's value is available.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// Every element equals this.
    Fill(f64),
    /// In memory, through a view over the node's shape.
    Mem {
        /// Tensor.
        t: TensorId,
        /// View (relative to the tensor's start).
        view: View,
    },
    /// An elementwise node all of whose operands are in memory, constant or lazy: computed
    /// inside whichever group consumes it (re-computed per consumer group).
    Lazy,
    /// Computed in group `g`, phase `phase`, as expression `e`. With `bcast`, the value is
    /// a reduction result seen broadcast over the reduction's input shape.
    Reg {
        /// Group.
        g: usize,
        /// Phase.
        phase: Phase,
        /// Expression.
        e: ExprId,
        /// Broadcast back over the reduced axes.
        bcast: bool,
    },
}

impl Fuser<'_> {
    /// The value of a node already placed.
    pub(super) fn val(&self, id: NodeId) -> Val {
        self.vals[id.index()]
            .clone()
            .expect("operands precede users")
    }

    /// A new elementwise kernel that computes node `id` (whatever its value) over its shape
    /// and stores it densely into a new tensor of `class` named `name`; returns the tensor.
    pub(super) fn copy_kernel(&mut self, id: NodeId, name: &str, class: Class) -> Result<TensorId> {
        let node = self.g.node(id).clone();
        let t = self.tensor(name, node.dtype, node.shape.numel(), class, None);
        self.copy_into(id, t, None)?;
        Ok(t)
    }

    /// A new elementwise kernel that computes node `id` over its shape and stores it into
    /// tensor `t` through `view` (`None`: dense).
    pub(super) fn copy_into(&mut self, id: NodeId, t: TensorId, view: Option<View>) -> Result<()> {
        let shape = self.g.node(id).shape.dims().to_vec();
        let g = self.new_group(GroupKind::Elementwise {
            shape: shape.clone(),
        });
        let e = self.operand(id, g, Phase::Stage(0), &shape)?;
        let view = match view {
            Some(v) => store_view(&v, &shape, &shape)?,
            None => None,
        };
        self.add_store(g, Phase::Stage(0), t, e, view);
        if !self.groups[g].nodes.contains(&(id.index() as u32)) {
            self.groups[g].nodes.push(id.index() as u32);
        }
        Ok(())
    }

    /// Stores register value `v` of node `id` to a new temp tensor (once) and returns it.
    pub(super) fn materialize(&mut self, id: NodeId) -> Result<(TensorId, View)> {
        let node = self.g.node(id);
        let shape = node.shape.dims().to_vec();
        match self.val(id) {
            Val::Mem { t, view } => Ok((t, view)),
            Val::Lazy => {
                let name = node.name.clone();
                let (t, view) = match self.region(id) {
                    Some((t, view)) => {
                        self.copy_into(id, t, Some(view.clone()))?;
                        (t, view)
                    }
                    None => (
                        self.copy_kernel(id, &name, Class::Temp)?,
                        View::contiguous(&shape),
                    ),
                };
                self.vals[id.index()] = Some(Val::Mem {
                    t,
                    view: view.clone(),
                });
                Ok((t, view))
            }
            Val::Fill(v) => {
                // a broadcast constant becomes a tiny constant tensor
                let t = self.tensor(
                    &node.name,
                    node.dtype,
                    1,
                    Class::Constant(vec![v as f32]),
                    None,
                );
                Ok((
                    t,
                    View {
                        offset: 0,
                        strides: vec![0; shape.len()],
                    },
                ))
            }
            Val::Reg { g, phase, e, bcast } => {
                let base = if bcast {
                    self.reduced_source(id)
                } else {
                    self.reg_source(id)
                };
                let (t, home_view) = match self.stored[base.index()].clone() {
                    Some(s) => s,
                    None => {
                        let bn = self.g.node(base).clone();
                        let (ph, ex) = match self.val(base) {
                            Val::Reg { phase, e, .. } => (phase, e),
                            _ => (phase, e),
                        };
                        let s = match (bcast, self.region(base)) {
                            (false, Some((t, view))) => {
                                let pshape = self.groups[g].phase_shape(ph);
                                let sv = store_view(&view, bn.shape.dims(), &pshape)?;
                                self.add_store(g, ph, t, ex, sv);
                                (t, Some(view))
                            }
                            _ => {
                                let len = bn.shape.numel();
                                let t = self.tensor(&bn.name, bn.dtype, len, Class::Temp, None);
                                self.add_store(g, ph, t, ex, None);
                                (t, None)
                            }
                        };
                        self.stored[base.index()] = Some(s.clone());
                        s
                    }
                };
                if let (Some(hv), false) = (home_view, bcast) {
                    let bshape = self.g.shape(base).dims().to_vec();
                    let view = adapt_view(&hv, &bshape, &shape).ok_or_else(|| {
                        OptError::Unsupported(format!(
                            "block view over {bshape:?} does not fit {shape:?}"
                        ))
                    })?;
                    self.vals[id.index()] = Some(Val::Mem {
                        t,
                        view: view.clone(),
                    });
                    return Ok((t, view));
                }
                let view = if bcast {
                    // the stored reduction output seen over the reduction's input shape
                    let out_shape = self.groups[g].phase_shape(Phase::Epi);
                    let in_shape = self.groups[g].phase_shape(Phase::Bc);
                    let cs = Shape::new(out_shape.clone()).strides();
                    let v = View {
                        offset: 0,
                        strides: out_shape
                            .iter()
                            .zip(cs)
                            .map(|(&d, s)| if d == 1 { 0 } else { s })
                            .collect(),
                    };
                    adapt_view(&v, &in_shape, &shape).ok_or_else(|| {
                        OptError::Unsupported(format!(
                            "broadcast view {in_shape:?} does not fit {shape:?}"
                        ))
                    })?
                } else {
                    View::contiguous(&shape)
                };
                // the node keeps its register value: consumers in its own phase still read
                // the register (a stored value is not readable in the group writing it);
                // other groups find the stored tensor through `stored`
                Ok((t, view))
            }
        }
    }

    /// The node that computes a (non-broadcast) register value: through reshapes that only
    /// add or remove size-1 axes, which share their operand's register value.
    pub(super) fn reg_source(&self, id: NodeId) -> NodeId {
        let mut cur = id;
        loop {
            let n = self.g.node(cur);
            match (&n.op, n.inputs.first()) {
                (Op::Reshape, Some(&x))
                    if matches!(self.val(x), Val::Reg { bcast: false, .. })
                        && self.val(x) == self.val(cur) =>
                {
                    cur = x
                }
                _ => return cur,
            }
        }
    }

    /// The reduction node behind a broadcast register value.
    pub(super) fn reduced_source(&self, id: NodeId) -> NodeId {
        let mut cur = id;
        loop {
            let n = self.g.node(cur);
            match (&n.op, self.val(cur)) {
                (Op::Expand | Op::Reshape, Val::Reg { .. }) => cur = n.inputs[0],
                _ => return cur,
            }
        }
    }

    /// Operand `id` as a dense tensor (copied first when its view is not dense):
    /// `(tensor, element offset)`.
    pub(super) fn dense_operand(&mut self, id: NodeId) -> Result<(TensorId, usize)> {
        let dims = self.g.shape(id).dims().to_vec();
        let (t, view) = self.materialize(id)?;
        let dense = View {
            offset: 0,
            strides: view.strides.clone(),
        }
        .is_contiguous(&dims);
        if dense {
            return Ok((t, view.offset));
        }
        let name = self.g.node(id).name.clone();
        Ok((self.copy_kernel(id, &name, Class::Temp)?, 0))
    }
}
