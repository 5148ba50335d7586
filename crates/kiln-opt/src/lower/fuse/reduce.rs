//! Reductions: a reduction adopts the elementwise group computing its input as its first
//! stage, joins a sibling reduction over the same shape and axes, or opens a new group.
//! Values of a reduction's broadcast pass may start a new fold stage; `reemit` copies an
//! expression cone between the phases of a group.

use super::group::{GroupKind, Phase};
use super::values::Val;
use super::Fuser;
use crate::kernel::{Body, Expr, ExprId, Fold, ReduceKind, View};
use crate::Result;
use kiln_ir::{BinaryOp, NodeId, ReduceOp};

impl Fuser<'_> {
    /// True when group `g` reduces `axes` of `in_shape`. Axes of size 1 do not count: a sum
    /// over `[0, 1]` of `[64, 1]` (a loss) and one over `[0]` (a bias gradient) have the
    /// same partial sums and the same output elements, so they share one kernel.
    pub(super) fn same_reduce(&self, g: usize, in_shape: &[usize], axes: &[usize]) -> bool {
        let real = |a: &[usize]| -> Vec<usize> {
            a.iter()
                .copied()
                .filter(|&i| in_shape.get(i) != Some(&1))
                .collect()
        };
        matches!(&self.groups[g].kind, GroupKind::Reduce { in_shape: s, axes: a } if s == in_shape && real(a) == real(axes))
    }

    /// Adds fold `(kind, e)` to stage `s` of group `g`; returns its accumulator index.
    pub(super) fn add_fold(&mut self, g: usize, s: usize, kind: ReduceKind, e: ExprId) -> u32 {
        let gr = &mut self.groups[g];
        let before: usize = gr.stages[..s].iter().map(|st| st.1.len()).sum();
        gr.stages[s].1.push(Fold { kind, value: e });
        (before + gr.stages[s].1.len() - 1) as u32
    }

    /// Places reduction `id` (see the module page); its value is in the epilogue.
    pub(super) fn reduce(&mut self, id: NodeId, op: ReduceOp, axes: &[usize]) -> Result<Val> {
        let n = self.g.node(id).clone();
        let x = n.inputs[0];
        let in_shape = self.g.shape(x).dims().to_vec();
        let kind = if op == ReduceOp::Max {
            ReduceKind::Max
        } else {
            ReduceKind::Sum
        };
        let xv = self.val(x);
        let (g, acc) = match xv {
            // the elementwise group computing x becomes the reduction's first stage
            Val::Reg {
                g,
                phase: Phase::Stage(0),
                e,
                bcast: false,
            } if matches!(&self.groups[g].kind, GroupKind::Elementwise { shape } if *shape == in_shape) =>
            {
                self.groups[g].kind = GroupKind::Reduce {
                    in_shape: in_shape.clone(),
                    axes: axes.to_vec(),
                };
                (g, self.add_fold(g, 0, kind, e))
            }
            // a sibling of the reductions of the same (last) stage
            Val::Reg {
                g,
                phase: Phase::Stage(s),
                e,
                bcast: false,
            } if self.same_reduce(g, &in_shape, axes)
                && s as usize + 1 == self.groups[g].stages.len() =>
            {
                (g, self.add_fold(g, s as usize, kind, e))
            }
            // a value of the broadcast pass (it may read the accumulators): a new stage
            Val::Reg {
                g,
                phase: Phase::Bc,
                e,
                bcast: false,
            } if self.same_reduce(g, &in_shape, axes) => {
                self.groups[g].stages.push((Body::default(), vec![]));
                let s = self.groups[g].stages.len() - 1;
                let e2 = self.reemit(g, Phase::Bc, e, Phase::Stage(s as u16));
                (g, self.add_fold(g, s, kind, e2))
            }
            _ => {
                // a sibling reduction of an earlier group over the same shape and axes, or a
                // new group
                let fp = self.footprint(x);
                let host = (0..self.groups.len()).rev().find(|&g| {
                    if !self.same_reduce(g, &in_shape, axes) || !self.usable(x, &xv, g, Phase::Bc) {
                        return false;
                    }
                    if matches!(xv, Val::Reg { g: g2, .. } if g2 >= g) {
                        return false; // only values of earlier groups can be loaded
                    }
                    let mut bound = self.bound_tensors(g);
                    for t in &fp {
                        if !bound.contains(t) {
                            bound.push(*t);
                        }
                    }
                    bound.len() < self.binding_budget()
                });
                match host {
                    Some(g) => {
                        let s = self.groups[g].stages.len() - 1;
                        let e = self.operand(x, g, Phase::Stage(s as u16), &in_shape)?;
                        (g, self.add_fold(g, s, kind, e))
                    }
                    None => {
                        let g = self.new_group(GroupKind::Reduce {
                            in_shape: in_shape.clone(),
                            axes: axes.to_vec(),
                        });
                        let e = self.operand(x, g, Phase::Stage(0), &in_shape)?;
                        (g, self.add_fold(g, 0, kind, e))
                    }
                }
            }
        };
        let dt = n.dtype;
        let mut e = self.groups[g].epi.push(Expr::Acc(acc), dt);
        if op == ReduceOp::Mean {
            let cnt: usize = axes.iter().map(|&a| in_shape[a]).product();
            let c = self.groups[g].epi.push(Expr::Const(1.0 / cnt as f64), dt);
            e = self.groups[g]
                .epi
                .push(Expr::Binary(BinaryOp::Mul, e, c), dt);
        }
        self.groups[g].nodes.push(id.index() as u32);
        Ok(Val::Reg {
            g,
            phase: Phase::Epi,
            e,
            bcast: false,
        })
    }

    /// Copies the expression cone of `e` from phase `from` to `to` of group `g`, turning
    /// load views over the source phase shape into views over the target phase shape.
    pub(super) fn reemit(&mut self, g: usize, from: Phase, e: ExprId, to: Phase) -> ExprId {
        let src = self.groups[g].body_ref(from).clone();
        let fshape = self.groups[g].phase_shape(from);
        let mut map: Vec<Option<ExprId>> = vec![None; src.nodes.len()];
        let mut need = vec![false; src.nodes.len()];
        need[e as usize] = true;
        for i in (0..src.nodes.len()).rev() {
            if !need[i] {
                continue;
            }
            match &src.nodes[i].expr {
                Expr::Unary(_, a) | Expr::Cast(a) => need[*a as usize] = true,
                Expr::Gather { index, .. } => need[*index as usize] = true,
                Expr::Random { counter, .. } => need[*counter as usize] = true,
                Expr::Binary(_, a, b) => {
                    need[*a as usize] = true;
                    need[*b as usize] = true;
                }
                Expr::Select(c, a, b) => {
                    need[*c as usize] = true;
                    need[*a as usize] = true;
                    need[*b as usize] = true;
                }
                _ => {}
            }
        }
        let mut reloads = vec![];
        let dst = self.groups[g].body(to);
        for i in 0..src.nodes.len() {
            if !need[i] {
                continue;
            }
            let m = |x: &ExprId| map[*x as usize].expect("operands first");
            let n = &src.nodes[i];
            if let Expr::Load { arg, .. } | Expr::Gather { arg, .. } = &n.expr {
                // a re-emitted load reads after this group's earlier-phase stores: it blocks
                // in-place updates of that tensor in the earlier phase
                reloads.push(*arg);
            }
            // reduced axes have size 1 in the epilogue shape: index them with 0
            let restride = |view: &View| View {
                offset: view.offset,
                strides: view
                    .strides
                    .iter()
                    .zip(&fshape)
                    .map(|(&s, &d)| if d == 1 { 0 } else { s })
                    .collect(),
            };
            let ex = match &n.expr {
                Expr::Load { arg, view } => Expr::Load {
                    arg: *arg,
                    view: restride(view),
                },
                Expr::Gather {
                    arg,
                    view,
                    index,
                    rows,
                    row_stride,
                } => Expr::Gather {
                    arg: *arg,
                    view: restride(view),
                    index: m(index),
                    rows: *rows,
                    row_stride: *row_stride,
                },
                Expr::Random {
                    seed,
                    counter,
                    strides,
                } => Expr::Random {
                    seed: *seed,
                    counter: m(counter),
                    strides: restride(&View {
                        offset: 0,
                        strides: strides.clone(),
                    })
                    .strides,
                },
                Expr::Const(c) => Expr::Const(*c),
                Expr::Unary(op, a) => Expr::Unary(*op, m(a)),
                Expr::Binary(op, a, b) => Expr::Binary(*op, m(a), m(b)),
                Expr::Select(c, a, b) => Expr::Select(m(c), m(a), m(b)),
                Expr::Cast(a) => Expr::Cast(m(a)),
                Expr::Acc(j) => Expr::Acc(*j),
            };
            map[i] = Some(dst.push(ex, n.dtype));
        }
        for t in reloads {
            self.tensors.loads[t as usize].push((g, to, false));
        }
        map[e as usize].expect("target was emitted")
    }
}
