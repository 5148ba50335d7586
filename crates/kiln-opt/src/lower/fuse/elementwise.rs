//! Elementwise nodes (and noise): folded to a fill, kept lazy (re-computed in each
//! consumer), or computed in the latest group that already computes one of their operands
//! at the same index, else in a new elementwise group.

use super::group::{GroupKind, Phase};
use super::values::Val;
use super::views::squeeze;
use super::{Class, Fuser, TensorId};
use crate::kernel::{Expr, ExprId};
use crate::Result;
use kiln_ir::{DType, NodeId, Op, Shape};

/// A lazy value whose cone grows past this many expressions is computed in a group of its
/// own instead (a recurrence such as an LSTM cell state would otherwise be re-computed from
/// the first step in every consumer).
const MAX_LAZY_COST: u32 = 48;

/// What is known of each lazy node's expression cone (indexed by node).
pub(super) struct LazyCones {
    /// Non-temp tensors the cone reads (its binding footprint).
    pub(super) foot: Vec<Vec<TensorId>>,
    /// Expressions the cone re-computes in each consumer.
    pub(super) cost: Vec<u32>,
}

impl Fuser<'_> {
    /// Places elementwise node `id` (see the module page).
    pub(super) fn elementwise(&mut self, id: NodeId) -> Result<Val> {
        let n = self.g.node(id).clone();
        let shape = n.shape.dims().to_vec();
        let ops: Vec<Val> = n.inputs.iter().map(|&i| self.val(i)).collect();
        if let Some(c) = fold(&n.op, &ops, n.dtype) {
            return Ok(Val::Fill(c));
        }
        let cost = 1 + n
            .inputs
            .iter()
            .map(|&i| match self.val(i) {
                Val::Lazy => self.lazy.cost[i.index()],
                _ => 0,
            })
            .sum::<u32>();
        let lazy_ok = self.concats.home[id.index()].is_none() && cost <= MAX_LAZY_COST;
        if let Some((g, p)) = self.scalar_host(id, &ops) {
            return self.place(id, g, p);
        }
        if lazy_ok && !ops.iter().any(|v| matches!(v, Val::Reg { .. })) {
            self.lazy.cost[id.index()] = cost;
            // lazy, unless its cone would bind too many buffers: then store the operand with
            // the largest footprint first
            loop {
                let mut fp: Vec<TensorId> = vec![];
                for &i in &n.inputs {
                    for t in self.footprint(i) {
                        if !fp.contains(&t) {
                            fp.push(t);
                        }
                    }
                }
                if fp.len() < self.binding_budget() {
                    self.lazy.foot[id.index()] = fp;
                    return Ok(Val::Lazy);
                }
                let big = n
                    .inputs
                    .iter()
                    .copied()
                    .filter(|&i| self.val(i) == Val::Lazy)
                    .max_by_key(|&i| self.lazy.foot[i.index()].len());
                match big {
                    Some(i) => {
                        self.materialize(i)?;
                    }
                    None => break,
                }
            }
        }
        // candidates: groups computing an operand in a phase whose shape matches
        let mut cands: Vec<(usize, Phase)> = vec![];
        for v in &ops {
            if let Val::Reg {
                g, phase, bcast, ..
            } = v
            {
                let p = if *bcast { Phase::Bc } else { *phase };
                cands.push((*g, p));
            }
        }
        cands.sort_by_key(|c| std::cmp::Reverse(c.0));
        cands.dedup();
        let mut chosen = None;
        for (g, p) in cands {
            let gr = &self.groups[g];
            if !gr.open(p) || squeeze(&gr.phase_shape(p)) != squeeze(&shape) {
                continue;
            }
            if !ops
                .iter()
                .zip(&n.inputs)
                .all(|(v, &i)| self.usable(i, v, g, p))
            {
                continue;
            }
            let mut bound = self.bound_tensors(g);
            for &i in &n.inputs {
                for t in self.footprint(i) {
                    if !bound.contains(&t) {
                        bound.push(t);
                    }
                }
            }
            if bound.len() + 1 > self.binding_budget() {
                continue;
            }
            chosen = Some((g, p));
            break;
        }
        let (g, p) = match chosen {
            Some(c) => c,
            None => (
                self.new_group(GroupKind::Elementwise {
                    shape: shape.clone(),
                }),
                Phase::Stage(0),
            ),
        };
        self.place(id, g, p)
    }

    /// Where a step counter — the one-element new value of a param computed from that param
    /// and constants, params or inputs no kernel writes before (Adam's `t + 1`) — is computed
    /// once: the earliest group with an open one-element phase (a loss's reduction epilogue)
    /// that can read its operands and bind them. The scalars computed from it (the bias
    /// correction) join it as any register value's consumers do, later kernels read them
    /// from memory instead of re-computing them, and the assignment is stored by that group
    /// — in place, the old count's only reader being in that phase — instead of taking a
    /// pass of its own after every reader of the old count. `None`: no such group, placed
    /// as any other.
    fn scalar_host(&self, id: NodeId, ops: &[Val]) -> Option<(usize, Phase)> {
        let n = self.g.node(id);
        let leaf = |v: &Val| match v {
            Val::Fill(_) => true,
            Val::Mem { t, .. } => {
                let info = &self.tensors.info[*t as usize];
                info.last_write.is_none()
                    && matches!(
                        info.class,
                        Class::Param(_) | Class::Input(_) | Class::Constant(_)
                    )
            }
            _ => false,
        };
        // the new value of a param it reads (a step counter)
        let counter = self
            .g
            .assigns()
            .iter()
            .any(|&(p, v)| v == id && n.inputs.contains(&p));
        if n.shape.numel() != 1
            || !counter
            || self.concats.home[id.index()].is_some()
            || !ops.iter().all(leaf)
        {
            return None;
        }
        (0..self.groups.len()).find_map(|g| {
            let gr = &self.groups[g];
            let p = [Phase::Stage(0), Phase::Epi, Phase::Bc]
                .into_iter()
                .find(|&p| gr.open(p) && gr.phase_shape(p).iter().product::<usize>() == 1)?;
            if !ops
                .iter()
                .zip(&n.inputs)
                .all(|(v, &i)| self.usable(i, v, g, p))
            {
                return None;
            }
            let mut bound = self.bound_tensors(g);
            for &i in &n.inputs {
                for t in self.footprint(i) {
                    if !bound.contains(&t) {
                        bound.push(t);
                    }
                }
            }
            (bound.len() < self.binding_budget()).then_some((g, p))
        })
    }

    /// Computes elementwise node `id` in phase `p` of group `g`.
    fn place(&mut self, id: NodeId, g: usize, p: Phase) -> Result<Val> {
        let n = self.g.node(id).clone();
        let shape = n.shape.dims().to_vec();
        let mut args = vec![];
        for &i in &n.inputs {
            args.push(self.operand(i, g, p, &shape)?);
        }
        let e = self.groups[g]
            .body(p)
            .push(elementwise_expr(&n.op, &args), n.dtype);
        self.groups[g].nodes.push(id.index() as u32);
        Ok(Val::Reg {
            g,
            phase: p,
            e,
            bcast: false,
        })
    }

    /// Noise is computed in an elementwise group over its shape (consumers may join it).
    pub(super) fn random(&mut self, id: NodeId, seed: u32) -> Result<Val> {
        let n = self.g.node(id).clone();
        let counter = n.inputs[0];
        let shape = n.shape.dims().to_vec();
        if let Val::Reg { .. } = self.val(counter) {
            self.materialize(counter)?;
        }
        let g = self.new_group(GroupKind::Elementwise {
            shape: shape.clone(),
        });
        let p = Phase::Stage(0);
        let map = vec![None; self.g.shape(counter).rank()];
        let c = self.value_in(counter, g, p, &map, shape.len())?;
        let e = self.groups[g].body(p).push(
            Expr::Random {
                seed,
                counter: c,
                strides: Shape::new(shape).strides(),
            },
            DType::F32,
        );
        self.groups[g].nodes.push(id.index() as u32);
        Ok(Val::Reg {
            g,
            phase: p,
            e,
            bcast: false,
        })
    }
}

pub(super) fn elementwise_expr(op: &Op, args: &[ExprId]) -> Expr {
    match op {
        Op::Unary(u) => Expr::Unary(*u, args[0]),
        Op::Binary(b) => Expr::Binary(*b, args[0], args[1]),
        Op::Where => Expr::Select(args[0], args[1], args[2]),
        Op::Cast => Expr::Cast(args[0]),
        _ => unreachable!("elementwise ops only"),
    }
}

/// Folds an elementwise op over constant fills (in f32 or i32, as the device would).
fn fold(op: &Op, ops: &[Val], dtype: DType) -> Option<f64> {
    let c: Vec<f64> = ops
        .iter()
        .map(|v| match v {
            Val::Fill(c) => Some(*c),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let r = match op {
        Op::Unary(u) => kiln_ir::eval::apply_unary(*u, c[0]),
        Op::Binary(b) => kiln_ir::eval::apply_binary(*b, c[0], c[1]),
        Op::Where => {
            if c[0] != 0.0 {
                c[1]
            } else {
                c[2]
            }
        }
        Op::Cast => c[0],
        _ => return None,
    };
    Some(match dtype {
        DType::F32 => r as f32 as f64,
        DType::I32 => r.trunc(),
    })
}
