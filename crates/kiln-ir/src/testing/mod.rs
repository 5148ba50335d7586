//! Test support shared by every crate's tests: the **op table** (one or more sample cases
//! per op kind, with inputs and hand-derived expected outputs from `gen_golden.py`) and the
//! named [`Tolerance`] policy.
//!
//! [`case_names`] is an exhaustive `match` over [`OpKind`]: adding an op without a table entry
//! does not compile, and `tests/op_table.rs` checks every name resolves to a golden case.

#[allow(clippy::approx_constant)] // literal goldens from gen_golden.py
#[rustfmt::skip]
mod golden;

use crate::eval::{Feeds, Tensor};
use crate::{BinaryOp, DType, Graph, NodeId, OpKind, ReduceOp, Result, UnaryOp};
pub use golden::GOLDEN;

/// Inputs and expected output of one case (generated data).
#[derive(Debug)]
pub struct GoldenCase {
    /// Case name (see [`case_names`]).
    pub name: &'static str,
    /// `(leaf name, shape, values)` per leaf.
    pub inputs: &'static [(&'static str, &'static [usize], &'static [f64])],
    /// Expected output shape.
    pub shape: &'static [usize],
    /// Expected output values (row-major).
    pub expected: &'static [f64],
}

/// One op-table case: an op kind, its golden data, and whether it has a gradient.
#[derive(Debug, Clone, Copy)]
pub struct OpCase {
    /// The op kind under test.
    pub kind: OpKind,
    /// Inputs and expected values.
    pub golden: &'static GoldenCase,
    /// False for piecewise-constant ops (comparisons, sign, cast to int) and leaves without
    /// float inputs.
    pub differentiable: bool,
}

/// The case names of an op kind. Exhaustive on purpose: a new op needs an entry here.
pub fn case_names(kind: OpKind) -> &'static [&'static str] {
    match kind {
        OpKind::Input => &["input"],
        OpKind::Param => &["param"],
        OpKind::Constant => &["constant"],
        OpKind::Unary(u) => match u {
            UnaryOp::Neg => &["neg"],
            UnaryOp::Exp => &["exp"],
            UnaryOp::Log => &["log"],
            UnaryOp::Sqrt => &["sqrt"],
            UnaryOp::Recip => &["recip"],
            UnaryOp::Tanh => &["tanh"],
            UnaryOp::Sigmoid => &["sigmoid"],
            UnaryOp::Relu => &["relu"],
            UnaryOp::Abs => &["abs"],
            UnaryOp::Sign => &["sign"],
        },
        OpKind::Binary(b) => match b {
            BinaryOp::Add => &["add"],
            BinaryOp::Sub => &["sub"],
            BinaryOp::Mul => &["mul"],
            BinaryOp::Div => &["div"],
            BinaryOp::Max => &["max"],
            BinaryOp::Min => &["min"],
            BinaryOp::Pow => &["pow"],
            BinaryOp::Lt => &["lt"],
            BinaryOp::Le => &["le"],
            BinaryOp::Gt => &["gt"],
            BinaryOp::Ge => &["ge"],
            BinaryOp::Eq => &["eq"],
            BinaryOp::Ne => &["ne"],
        },
        OpKind::Where => &["where"],
        OpKind::Reduce(r) => match r {
            ReduceOp::Sum => &["sum"],
            ReduceOp::Mean => &["mean"],
            ReduceOp::Max => &["max_reduce"],
        },
        OpKind::Reshape => &["reshape"],
        OpKind::Permute => &["permute"],
        OpKind::Expand => &["expand"],
        OpKind::MatMul => &["matmul", "matmul_batched"],
        OpKind::Cast => &["cast"],
        OpKind::StopGradient => &["stop_gradient"],
        OpKind::Slice => &["slice"],
        OpKind::Concat => &["concat", "concat_rows"],
        OpKind::Gather => &["gather"],
        OpKind::ScatterAdd => &["scatter_add"],
        OpKind::RandomUniform => &["random_uniform"],
        OpKind::Recurrence => &[
            "lstm_recurrence",
            "lstm_recurrence_masked",
            "gru_recurrence",
            "gru_recurrence_masked",
            "rnn_recurrence",
            "rnn_recurrence_masked",
        ],
        OpKind::RecurrenceGrad => &[
            "lstm_recurrence_grad",
            "lstm_recurrence_masked_grad",
            "gru_recurrence_grad",
            "gru_recurrence_masked_grad",
            "rnn_recurrence_grad",
            "rnn_recurrence_masked_grad",
        ],
    }
}

/// Every case of every op kind, in [`OpKind::all`] order.
///
/// # Panics
/// If a name from [`case_names`] has no golden data (regenerate `golden.rs`).
pub fn all_cases() -> Vec<OpCase> {
    let mut v = Vec::new();
    for kind in OpKind::all() {
        for name in case_names(kind) {
            let golden = GOLDEN
                .iter()
                .find(|c| c.name == *name)
                .unwrap_or_else(|| panic!("op table: no golden data for case `{name}`"));
            let differentiable = match kind {
                OpKind::Binary(b) => !b.is_comparison(),
                OpKind::Unary(UnaryOp::Sign)
                | OpKind::Constant
                | OpKind::Cast
                | OpKind::StopGradient
                | OpKind::RecurrenceGrad => false,
                _ => true,
            };
            v.push(OpCase {
                kind,
                golden,
                differentiable,
            });
        }
    }
    v
}

impl OpCase {
    /// Builds the case into `g`; returns its leaves (in golden input order) and its output.
    pub fn build(&self, g: &mut Graph) -> Result<(Vec<NodeId>, NodeId)> {
        let mut leaves = Vec::new();
        for (name, shape, _) in self.golden.inputs {
            leaves.push(if self.kind == OpKind::Param {
                g.param(name, shape.to_vec(), DType::F32)?
            } else {
                g.input(name, shape.to_vec(), DType::F32)?
            });
        }
        let l = |i: usize| leaves[i];
        let out = match self.golden.name {
            "input" | "param" => l(0),
            "constant" => g.constant(vec![0.2, -0.5, 1.0, 0.7, 0.3, -1.1], [2, 3], DType::F32)?,
            "where" => g.where_(l(0), l(1), l(2))?,
            "sum" => g.sum(l(0), &[1], true)?,
            "mean" => g.mean(l(0), &[0], true)?,
            "max_reduce" => g.max(l(0), &[1], true)?,
            "reshape" => g.reshape(l(0), [3, 2])?,
            "permute" => g.permute(l(0), &[2, 0, 1])?,
            "expand" => g.expand(l(0), [2, 3])?,
            "matmul" | "matmul_batched" => g.matmul(l(0), l(1))?,
            "stop_gradient" => g.stop_gradient(l(0))?,
            "slice" => g.slice(l(0), 1, 1, 2)?,
            "concat" => g.concat(&[l(0), l(1)], 1)?,
            "concat_rows" => g.concat(&[l(0), l(1)], 0)?,
            "random_uniform" => {
                // noise at step 3, added to the input (so the case has a float leaf)
                let step = g.constant(vec![3.0], [1], DType::I32)?;
                let r = g.random_uniform(7, step, [2, 3])?;
                g.add(l(0), r)?
            }
            "gather" | "scatter_add" => {
                let idx = g.constant(vec![2.0, 0.0, 2.0, 3.0], [2, 2], DType::I32)?;
                if self.golden.name == "gather" {
                    g.gather(l(0), idx)?
                } else {
                    g.scatter_add(idx, l(0), 3)?
                }
            }
            name if name.contains("_recurrence") => {
                use crate::recurrence::{Cell, CellActivation, CellKind};
                let kind = match &name[..3] {
                    "lst" => CellKind::Lstm,
                    "gru" => CellKind::Gru,
                    _ => CellKind::SimpleRnn,
                };
                let grad = name.ends_with("_grad");
                let cell = Cell {
                    kind,
                    units: 2,
                    activation: CellActivation::Tanh,
                    recurrent_activation: CellActivation::Sigmoid,
                    masked: name.contains("masked"),
                };
                let n = cell.forward_arity();
                let trace = g.recurrence(cell, l(0), l(1), &leaves[2..n])?;
                if grad {
                    g.recurrence_grad(cell, &leaves[..n], trace, l(n))?
                } else {
                    trace
                }
            }
            "cast" => {
                let i = g.cast(l(0), DType::I32)?;
                g.cast(i, DType::F32)?
            }
            name => match self.kind {
                OpKind::Unary(u) => g.unary(u, l(0))?,
                OpKind::Binary(b) => g.binary(b, l(0), l(1))?,
                _ => unreachable!("op table case `{name}` has no builder"),
            },
        };
        Ok((leaves, out))
    }

    /// Feeds for the case's leaves.
    pub fn feeds(&self) -> Feeds {
        self.golden
            .inputs
            .iter()
            .map(|(n, s, v)| {
                (
                    n.to_string(),
                    Tensor {
                        shape: s.to_vec().into(),
                        data: v.to_vec(),
                    },
                )
            })
            .collect()
    }
}

/// A named tolerance: `|got - want| <= abs + rel * |want|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Relative part.
    pub rel: f64,
    /// Absolute part.
    pub abs: f64,
}

impl Tolerance {
    /// f64 finite differences vs analytic gradients (eps 1e-6).
    pub const FINITE_DIFF: Tolerance = Tolerance {
        rel: 1e-3,
        abs: 1e-5,
    };
    /// f32 device results vs the f64 reference, elementwise ops.
    pub const F32: Tolerance = Tolerance {
        rel: 1e-4,
        abs: 1e-5,
    };

    /// The f32 tolerance for a sum of `k` terms (matmul, reductions): atol scales with √k.
    pub fn f32_sum(k: usize) -> Tolerance {
        Tolerance {
            rel: 1e-4,
            abs: 1e-5 * (k.max(1) as f64).sqrt(),
        }
    }

    /// Checks every element; the error names the first offending index and the values.
    pub fn check(&self, what: &str, got: &[f64], want: &[f64]) -> std::result::Result<(), String> {
        if got.len() != want.len() {
            return Err(format!(
                "{what}: {} values, expected {}",
                got.len(),
                want.len()
            ));
        }
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let ok = (g - w).abs() <= self.abs + self.rel * w.abs()
                || (g.is_nan() && w.is_nan())
                || g == w;
            if !ok {
                return Err(format!(
                    "{what}: element {i}: got {g}, expected {w} (|diff| {:.3e} > {:?})",
                    (g - w).abs(),
                    self
                ));
            }
        }
        Ok(())
    }
}
