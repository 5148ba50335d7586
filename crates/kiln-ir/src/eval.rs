//! The f64 reference evaluator: the oracle every compiled plan is tested against.
//!
//! It computes each needed node in arena order with plain loops, in f64 (integer tensors are
//! held as f64 too and truncated where the op demands it). It is simple on purpose: clarity
//! over speed.

use crate::types::unravel;
use crate::{
    BinaryOp, Constant, DType, Graph, IrError, NodeId, Op, ReduceOp, Result, Shape, UnaryOp,
};
use std::collections::HashMap;

/// A host tensor in f64 (the evaluator's value type).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Shape.
    pub shape: Shape,
    /// Row-major values.
    pub data: Vec<f64>,
}

impl Tensor {
    /// Builds a tensor, checking that `data` fills `shape`.
    pub fn new(shape: impl Into<Shape>, data: Vec<f64>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != data.len() {
            return Err(IrError::Eval(format!(
                "{} values cannot fill shape {shape}",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }
    /// A scalar.
    pub fn scalar(v: f64) -> Self {
        Tensor {
            shape: Shape::scalar(),
            data: vec![v],
        }
    }
}

/// Values for the graph's inputs and params, by name.
pub type Feeds = HashMap<String, Tensor>;

/// Result of [`run`]: the named outputs and the new values of assigned params.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Named outputs in graph order.
    pub outputs: Vec<(String, Tensor)>,
    /// `(param name, new value)` per assignment.
    pub updates: Vec<(String, Tensor)>,
}

/// Evaluates `wanted` nodes given feeds for every input and param they depend on.
pub fn eval(g: &Graph, wanted: &[NodeId], feeds: &Feeds) -> Result<Vec<Tensor>> {
    let mut needed = vec![false; g.len()];
    for &w in wanted {
        g.try_node(w)?;
        needed[w.index()] = true;
    }
    for i in (0..g.len()).rev() {
        if needed[i] {
            for &inp in &g.nodes[i].inputs {
                needed[inp.index()] = true;
            }
        }
    }
    let mut vals: Vec<Option<Tensor>> = vec![None; g.len()];
    for i in 0..g.len() {
        if !needed[i] {
            continue;
        }
        let n = &g.nodes[i];
        let args: Vec<&Tensor> = n
            .inputs
            .iter()
            .map(|a| {
                vals[a.index()]
                    .as_ref()
                    .expect("operands precede their users")
            })
            .collect();
        let v = eval_node(g, NodeId::at(i), &args, feeds)?;
        vals[i] = Some(v);
    }
    Ok(wanted
        .iter()
        .map(|w| {
            vals[w.index()]
                .clone()
                .expect("wanted nodes were evaluated")
        })
        .collect())
}

/// Evaluates the graph's outputs and assignments (one "run" of the graph).
pub fn run(g: &Graph, feeds: &Feeds) -> Result<RunResult> {
    let mut wanted: Vec<NodeId> = g.outputs.iter().map(|o| o.1).collect();
    wanted.extend(g.assigns.iter().map(|a| a.1));
    let vals = eval(g, &wanted, feeds)?;
    let n_out = g.outputs.len();
    let outputs = g
        .outputs
        .iter()
        .zip(&vals)
        .map(|((n, _), v)| (n.clone(), v.clone()))
        .collect();
    let updates = g
        .assigns
        .iter()
        .zip(&vals[n_out..])
        .map(|((p, _), v)| {
            let name = match &g.node(*p).op {
                Op::Param { name } => name.clone(),
                _ => unreachable!("assign targets are params"),
            };
            (name, v.clone())
        })
        .collect();
    Ok(RunResult { outputs, updates })
}

fn round_dtype(v: f64, dt: DType) -> f64 {
    match dt {
        DType::F32 => v,
        DType::I32 => v.trunc(),
    }
}

/// Applies a unary op to one value.
pub fn apply_unary(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Recip => 1.0 / x,
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        // NaN stays NaN (IEEE, Keras); `f64::max` would drop it
        UnaryOp::Relu => {
            if x.is_nan() {
                x
            } else {
                x.max(0.0)
            }
        }
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
    }
}

/// `max(a, b)` that is NaN when either operand is (IEEE 754-2019 `maximum`, Keras
/// `tf.maximum`); Rust's `f64::max` returns the other operand instead.
pub fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// `min(a, b)` that is NaN when either operand is (see [`nan_max`]).
pub fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Applies a binary op to one pair of values.
pub fn apply_binary(op: BinaryOp, a: f64, b: f64) -> f64 {
    let t = |c: bool| if c { 1.0 } else { 0.0 };
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => nan_max(a, b),
        BinaryOp::Min => nan_min(a, b),
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Lt => t(a < b),
        BinaryOp::Le => t(a <= b),
        BinaryOp::Gt => t(a > b),
        BinaryOp::Ge => t(a >= b),
        BinaryOp::Eq => t(a == b),
        BinaryOp::Ne => t(a != b),
    }
}

fn feed<'a>(feeds: &'a Feeds, name: &str, shape: &Shape, what: &str) -> Result<&'a Tensor> {
    let t = feeds
        .get(name)
        .ok_or_else(|| IrError::Eval(format!("no value fed for {what} `{name}`")))?;
    if &t.shape != shape {
        return Err(IrError::Eval(format!(
            "{what} `{name}` expects shape {shape}, was fed {}",
            t.shape
        )));
    }
    Ok(t)
}

fn eval_node(g: &Graph, id: NodeId, args: &[&Tensor], feeds: &Feeds) -> Result<Tensor> {
    let n = g.node(id);
    let shape = n.shape.clone();
    let numel = shape.numel();
    let data: Vec<f64> = match &n.op {
        Op::Input { name } => feed(feeds, name, &shape, "input")?.data.clone(),
        Op::Param { name } => feed(feeds, name, &shape, "param")?.data.clone(),
        Op::Constant(Constant::Fill(v)) => vec![*v; numel],
        Op::Constant(Constant::Data(d)) => d.clone(),
        Op::Unary(u) => args[0].data.iter().map(|&x| apply_unary(*u, x)).collect(),
        Op::Binary(b) => args[0]
            .data
            .iter()
            .zip(&args[1].data)
            .map(|(&x, &y)| apply_binary(*b, x, y))
            .collect(),
        Op::Where => (0..numel)
            .map(|i| {
                if args[0].data[i] != 0.0 {
                    args[1].data[i]
                } else {
                    args[2].data[i]
                }
            })
            .collect(),
        Op::Cast | Op::StopGradient => args[0].data.clone(),
        Op::Reshape => args[0].data.clone(),
        Op::Permute { perm } => {
            let src = &args[0].shape;
            let ss = src.strides();
            let mut idx = vec![0; shape.rank()];
            (0..numel)
                .map(|i| {
                    unravel(i, &shape.0, &mut idx);
                    let off: usize = idx.iter().zip(perm).map(|(&x, &p)| x * ss[p]).sum();
                    args[0].data[off]
                })
                .collect()
        }
        Op::Expand => {
            let src = &args[0].shape;
            let ss = src.strides();
            let mut idx = vec![0; shape.rank()];
            (0..numel)
                .map(|i| {
                    unravel(i, &shape.0, &mut idx);
                    let off: usize = (0..idx.len())
                        .map(|d| if src.0[d] == 1 { 0 } else { idx[d] * ss[d] })
                        .sum();
                    args[0].data[off]
                })
                .collect()
        }
        Op::Slice { axis, start } => {
            let src = &args[0].shape;
            let ss = src.strides();
            let mut idx = vec![0; shape.rank()];
            (0..numel)
                .map(|i| {
                    unravel(i, &shape.0, &mut idx);
                    idx[*axis] += start;
                    let off: usize = idx.iter().zip(&ss).map(|(&x, &s)| x * s).sum();
                    args[0].data[off]
                })
                .collect()
        }
        Op::Concat { axis } => {
            // outer blocks of `inner * extent` elements, operands in turn
            let outer: usize = shape.0[..*axis].iter().product();
            let inner: usize = shape.0[axis + 1..].iter().product();
            let mut out = Vec::with_capacity(numel);
            for o in 0..outer {
                for a in args {
                    let chunk = a.shape.0[*axis] * inner;
                    out.extend_from_slice(&a.data[o * chunk..(o + 1) * chunk]);
                }
            }
            out
        }
        Op::RandomUniform { seed } => {
            let counter = args[0].data[0] as i32 as u32;
            (0..numel)
                .map(|i| crate::random::device_uniform(*seed, counter, i as u32) as f64)
                .collect()
        }
        Op::Gather => {
            let rows = args[0].shape.0[0];
            let row: usize = args[0].shape.0[1..].iter().product();
            let mut out = Vec::with_capacity(numel);
            for &ix in &args[1].data {
                if ix >= 0.0 && (ix as usize) < rows {
                    let r = ix as usize;
                    out.extend_from_slice(&args[0].data[r * row..(r + 1) * row]);
                } else {
                    out.extend(std::iter::repeat_n(0.0, row));
                }
            }
            out
        }
        Op::ScatterAdd => {
            let rows = shape.0[0];
            let row: usize = shape.0[1..].iter().product();
            let mut out = vec![0.0; numel];
            for (i, &ix) in args[0].data.iter().enumerate() {
                if ix >= 0.0 && (ix as usize) < rows {
                    let r = ix as usize;
                    for d in 0..row {
                        out[r * row + d] += args[1].data[i * row + d];
                    }
                }
            }
            out
        }
        Op::Recurrence(c) | Op::RecurrenceGrad(c) => {
            use crate::recurrence::{backward, forward, Operands};
            let (b, t) = (shape.0[0], shape.0[1]);
            let ops = Operands {
                xp: &args[0].data,
                r: &args[1].data,
                rb: c.rb_operand().map(|i| &args[i].data[..]),
                mask: c.mask_operand().map(|i| &args[i].data[..]),
            };
            let mut out = vec![0.0; numel];
            if matches!(n.op, Op::Recurrence(_)) {
                forward(c, t, 0..b, ops, &mut out);
            } else {
                let n = args.len();
                let adj = crate::recurrence::Adjoint::of_dims(c, b, t, &args[n - 1].shape.0)
                    .ok_or_else(|| {
                        IrError::Eval(format!(
                            "recurrence_grad: adjoint {} is no window of the trace",
                            args[n - 1].shape
                        ))
                    })?;
                backward(
                    c,
                    t,
                    0..b,
                    ops,
                    &args[n - 2].data,
                    (&args[n - 1].data, adj),
                    &mut out,
                );
            }
            out
        }
        Op::Reduce { op, axes } => {
            let src = &args[0].shape;
            let os = shape.strides();
            let mut acc = vec![
                match op {
                    ReduceOp::Max => f64::NEG_INFINITY,
                    _ => 0.0,
                };
                numel
            ];
            let mut idx = vec![0; src.rank()];
            for (i, &x) in args[0].data.iter().enumerate() {
                unravel(i, &src.0, &mut idx);
                let o: usize = (0..idx.len())
                    .map(|d| if axes.contains(&d) { 0 } else { idx[d] * os[d] })
                    .sum();
                match op {
                    ReduceOp::Max => acc[o] = nan_max(acc[o], x),
                    _ => acc[o] += x,
                }
            }
            if *op == ReduceOp::Mean {
                let cnt: usize = axes.iter().map(|&a| src.0[a]).product();
                acc.iter_mut().for_each(|v| *v /= cnt as f64);
            }
            acc
        }
        Op::MatMul => {
            let (sa, sb) = (&args[0].shape, &args[1].shape);
            let r = sa.rank();
            let (m, k, nn) = (sa.0[r - 2], sa.0[r - 1], sb.0[r - 1]);
            let batch: usize = sa.0[..r - 2].iter().product();
            let mut out = vec![0.0; batch * m * nn];
            for bi in 0..batch {
                let a = &args[0].data[bi * m * k..];
                let b = &args[1].data[bi * k * nn..];
                for i in 0..m {
                    for j in 0..nn {
                        let mut s = 0.0;
                        for p in 0..k {
                            s += a[i * k + p] * b[p * nn + j];
                        }
                        out[bi * m * nn + i * nn + j] = s;
                    }
                }
            }
            out
        }
    };
    let data = if n.dtype == DType::I32 {
        data.into_iter()
            .map(|v| round_dtype(v, DType::I32))
            .collect()
    } else {
        data
    };
    Ok(Tensor { shape, data })
}

#[cfg(test)]
mod nan_tests {
    use super::*;

    #[test]
    fn relu_max_min_propagate_nan() {
        let nan = f64::NAN;
        assert!(apply_unary(UnaryOp::Relu, nan).is_nan());
        assert!(apply_unary(UnaryOp::Tanh, nan).is_nan());
        assert_eq!(apply_unary(UnaryOp::Relu, -2.0), 0.0);
        for (a, b) in [(nan, 1.0), (1.0, nan), (nan, nan)] {
            assert!(apply_binary(BinaryOp::Max, a, b).is_nan());
            assert!(apply_binary(BinaryOp::Min, a, b).is_nan());
        }
        assert_eq!(
            apply_binary(BinaryOp::Max, f64::INFINITY, f64::NEG_INFINITY),
            f64::INFINITY
        );
    }
}
