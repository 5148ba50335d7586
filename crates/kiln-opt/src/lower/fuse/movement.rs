//! Movement ops and slices: views of their operand in memory (register values survive
//! reshapes that only change size-1 axes, and a reduction result expanded back over its
//! input shape becomes a broadcast register value).

use super::group::{GroupKind, Phase};
use super::values::Val;
use super::views::{adapt_view, movement_map, squeeze};
use super::{Class, Fuser};
use crate::kernel::View;
use crate::Result;
use kiln_ir::{NodeId, Op, Shape};

impl Fuser<'_> {
    /// Reshape, permute or expand: a register value kept, a lazy relabelling, or a view.
    pub(super) fn movement(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let x = n.inputs[0];
        let src = self.g.shape(x).dims().to_vec();
        let dims = n.shape.dims().to_vec();
        let v = self.val(x);
        // register values: keep them when only size-1 axes change, or when a reduction result
        // is broadcast back over its input shape
        if let Val::Reg { g, phase, e, bcast } = v {
            match &n.op {
                // an expand that only adds size-1 axes (a scalar to `[1]`) is a reshape
                Op::Reshape | Op::Expand if squeeze(&src) == squeeze(&dims) => return Ok(v),
                Op::Expand if !bcast && phase == Phase::Epi => {
                    if let GroupKind::Reduce { in_shape, .. } = &self.groups[g].kind {
                        if *in_shape == dims && src == self.groups[g].phase_shape(Phase::Epi) {
                            return Ok(Val::Reg {
                                g,
                                phase,
                                e,
                                bcast: true,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        if v == Val::Lazy && movement_map(self.g, id).is_some() {
            return Ok(Val::Lazy);
        }
        let (t, view) = match v {
            Val::Fill(c) => return Ok(Val::Fill(c)),
            Val::Mem { t, view } => (t, view),
            Val::Reg { .. } | Val::Lazy => self.materialize(x)?,
        };
        if let (Op::Reshape, Some(v)) = (&n.op, adapt_view(&view, &src, &dims)) {
            return Ok(Val::Mem { t, view: v });
        }
        Ok(match &n.op {
            Op::Reshape => {
                let dense = View {
                    offset: 0,
                    strides: view.strides.clone(),
                }
                .is_contiguous(&src);
                if dense {
                    Val::Mem {
                        t,
                        view: View {
                            offset: view.offset,
                            strides: Shape::new(dims).strides(),
                        },
                    }
                } else {
                    // copy to dense memory first
                    let name = self.g.node(x).name.clone();
                    let nt = self.copy_kernel(x, &name, Class::Temp)?;
                    Val::Mem {
                        t: nt,
                        view: View::contiguous(&dims),
                    }
                }
            }
            Op::Permute { perm } => Val::Mem {
                t,
                view: View {
                    offset: view.offset,
                    strides: perm.iter().map(|&p| view.strides[p]).collect(),
                },
            },
            Op::Expand => Val::Mem {
                t,
                view: View {
                    offset: view.offset,
                    strides: (0..dims.len())
                        .map(|d| if src[d] == 1 { 0 } else { view.strides[d] })
                        .collect(),
                },
            },
            _ => unreachable!("movement ops only"),
        })
    }

    /// A slice is a view: its operand in memory with the offset moved.
    pub(super) fn slice(&mut self, id: NodeId, axis: usize, start: usize) -> Result<Val> {
        let x = self.g.node(id).inputs[0];
        let (t, view) = match self.val(x) {
            Val::Fill(c) => return Ok(Val::Fill(c)),
            Val::Mem { t, view } => (t, view),
            Val::Reg { .. } | Val::Lazy => self.materialize(x)?,
        };
        Ok(Val::Mem {
            t,
            view: View {
                offset: view.offset + start * view.strides[axis],
                strides: view.strides,
            },
        })
    }
}
