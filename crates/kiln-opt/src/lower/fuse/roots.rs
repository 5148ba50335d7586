//! Roots: outputs become output tensors (stored by the group computing them, renamed in
//! place, or copied), and assignments write their param — in place by the group computing
//! the new value when every reader of the param comes first, else through a copy at the
//! end of the run. New values computed for the assignments alone (lazy values) of one shape
//! share one group: an optimizer's weight and slot updates are one pass, not three.

use super::group::{GroupKind, Phase};
use super::values::Val;
use super::views::squeeze;
use super::{Class, Fuser, TensorId};
use crate::Result;
use kiln_ir::NodeId;

impl Fuser<'_> {
    /// A dense tensor of its own holding the value of `v` (the source of a param copy).
    pub(super) fn standalone_copy(&mut self, v: NodeId) -> Result<TensorId> {
        let vn = self.g.node(v).clone();
        let dims = vn.shape.dims().to_vec();
        if let Val::Mem { t, view } = self.val(v) {
            if self.tensors.info[t as usize].class == Class::Temp && view.is_contiguous(&dims) {
                self.tensors.info[t as usize].class = Class::Standalone;
                return Ok(t);
            }
        }
        self.copy_kernel(v, &vn.name, Class::Standalone)
    }

    /// Places the graph's outputs and assignments, once every node has a value.
    pub(super) fn roots(&mut self) -> Result<()> {
        let outputs = self.g.outputs().to_vec();
        for (name, id) in outputs {
            let n = self.g.node(id).clone();
            let dims = n.shape.dims().to_vec();
            let slot = self.fused.outputs.len();
            let v = self.val(id);
            let t = match v {
                Val::Reg {
                    g,
                    phase,
                    e,
                    bcast: false,
                } if self.stored[id.index()].is_none() => {
                    let t = self.tensor(&name, n.dtype, n.shape.numel(), Class::Output(slot), None);
                    self.add_store(g, phase, t, e, None);
                    t
                }
                Val::Mem { t, view }
                    if self.tensors.info[t as usize].class == Class::Temp
                        && view.is_contiguous(&dims)
                        && self.tensors.info[t as usize].len == n.shape.numel() =>
                {
                    self.tensors.info[t as usize].class = Class::Output(slot);
                    self.tensors.info[t as usize].name = name.clone();
                    t
                }
                _ => self.copy_kernel(id, &name, Class::Output(slot))?,
            };
            self.fused.outputs.push((name, t, id));
        }
        // Assignments. First every source that cannot be updated in place gets its own
        // tensor (this may create groups that load params); only then, with every load known,
        // decide which register values may overwrite their param in place.
        let assigns = self.g.assigns().to_vec();
        let mut deferred = vec![];
        // groups made here for lazy new values, by shape: later lazy values of the same shape
        // join them (one pass writes e.g. an optimizer's weight and both its slots)
        let mut lazy_groups: Vec<(Vec<usize>, usize)> = vec![];
        for (p, v) in assigns {
            if p == v {
                continue;
            }
            let Val::Mem { t: pt, .. } = self.val(p) else {
                unreachable!("params are in memory")
            };
            if let Val::Reg {
                g,
                phase,
                e,
                bcast: false,
            } = self.val(v)
            {
                deferred.push((p, pt, v, g, phase, e));
                continue;
            }
            if self.val(v) == Val::Lazy {
                // compute it in a group of its own, which may then write the param in place
                // (the node stays lazy for any other consumer)
                let dims = self.g.shape(v).dims().to_vec();
                let joinable = lazy_groups.iter().find(|(shape, g)| {
                    if squeeze(shape) != squeeze(&dims) {
                        return false;
                    }
                    let mut bound = self.bound_tensors(*g);
                    for t in self.footprint(v).into_iter().chain([pt]) {
                        if !bound.contains(&t) {
                            bound.push(t);
                        }
                    }
                    // one binding to spare: the value may need a tensor of its own (a
                    // copy's source)
                    bound.len() < self.binding_budget()
                });
                let g = match joinable {
                    Some(&(_, g)) => g,
                    None => {
                        let g = self.new_group(GroupKind::Elementwise {
                            shape: dims.clone(),
                        });
                        lazy_groups.push((dims.clone(), g));
                        g
                    }
                };
                let e = self.operand(v, g, Phase::Stage(0), &dims)?;
                deferred.push((p, pt, v, g, Phase::Stage(0), e));
                continue;
            }
            let src = self.standalone_copy(v)?;
            self.fused.copies.push((pt, src));
        }
        for (p, pt, v, g, phase, e) in deferred {
            let pshape = self.g.shape(p).dims().to_vec();
            let phase_ok = squeeze(&self.groups[g].phase_shape(phase)) == squeeze(&pshape);
            let readers_ok = self.tensors.loads[pt as usize]
                .iter()
                .all(|&(rg, rp, contiguous)| rg < g || (rg == g && rp == phase && contiguous));
            if phase_ok && readers_ok {
                // in place: the group that computes the new value writes the param
                self.add_store(g, phase, pt, e, None);
            } else {
                let vn = self.g.node(v);
                let (name, dt, len) = (vn.name.clone(), vn.dtype, vn.shape.numel());
                let t = self.tensor(&name, dt, len, Class::Standalone, None);
                self.add_store(g, phase, t, e, None);
                self.fused.copies.push((pt, t));
            }
        }
        Ok(())
    }
}
