//! The closed set of primitive ops.
//!
//! Ops are small and mathematical; everything a layer needs (softmax, cross-entropy,
//! dense layers) is a composition built by the builder in [`crate::ops`]. Operands live in the
//! node, in order; attributes live in the op. The target shape of `Reshape` and `Expand`
//! and the target dtype of `Cast` are the node's own shape and dtype.

use serde::{Deserialize, Serialize};

macro_rules! op_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vm])* $v),* }
        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),*];
            /// Lower-case mnemonic used in dumps and error messages.
            pub fn mnemonic(self) -> &'static str {
                match self { $($name::$v => $s),* }
            }
        }
    };
}

op_enum! {
    /// Elementwise ops of one operand.
    UnaryOp {
        /// `-x`
        Neg => "neg",
        /// `e^x`
        Exp => "exp",
        /// natural logarithm
        Log => "log",
        /// square root
        Sqrt => "sqrt",
        /// `1/x`
        Recip => "recip",
        /// hyperbolic tangent
        Tanh => "tanh",
        /// logistic sigmoid `1/(1+e^-x)`
        Sigmoid => "sigmoid",
        /// `max(x, 0)`
        Relu => "relu",
        /// `|x|`
        Abs => "abs",
        /// `-1, 0, 1` by the sign of x (gradient zero)
        Sign => "sign",
    }
}

op_enum! {
    /// Elementwise ops of two operands of equal shape and dtype (the builder broadcasts).
    /// Comparisons produce 1 or 0 in the operands' dtype.
    BinaryOp {
        /// `a + b`
        Add => "add",
        /// `a - b`
        Sub => "sub",
        /// `a * b`
        Mul => "mul",
        /// `a / b`
        Div => "div",
        /// `max(a, b)`
        Max => "max",
        /// `min(a, b)`
        Min => "min",
        /// `a^b` for `a > 0`
        Pow => "pow",
        /// `a < b`
        Lt => "lt",
        /// `a <= b`
        Le => "le",
        /// `a > b`
        Gt => "gt",
        /// `a >= b`
        Ge => "ge",
        /// `a == b`
        Eq => "eq",
        /// `a != b`
        Ne => "ne",
    }
}

impl BinaryOp {
    /// True for the comparison ops (no gradient, 0/1 result).
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq | BinaryOp::Ne
        )
    }
}

op_enum! {
    /// Reductions over a set of axes; the reduced axes are kept with size 1.
    ReduceOp {
        /// sum
        Sum => "sum",
        /// maximum
        Max => "max",
        /// arithmetic mean
        Mean => "mean",
    }
}

/// Constant data of a `Constant` node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Constant {
    /// Every element has this value.
    Fill(f64),
    /// Explicit row-major values (length = numel).
    Data(Vec<f64>),
}

/// A primitive op. Operands are the node's `inputs`, in the order documented per variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// A tensor fed on every run, by name.
    Input {
        /// Feed name.
        name: String,
    },
    /// A persistent, device-resident tensor (weights, optimizer state, hyper-parameters),
    /// read at the start of a run and updated by the graph's assignments at its end.
    Param {
        /// Variable name (unique in the graph).
        name: String,
    },
    /// A compile-time constant.
    Constant(Constant),
    /// `op(x)`.
    Unary(UnaryOp),
    /// `op(a, b)`, equal shapes.
    Binary(BinaryOp),
    /// `where(cond, a, b)`: `a` where `cond != 0`, else `b`; equal shapes.
    Where,
    /// Reduction of `x` over `axes` (sorted, unique), keeping them as size 1.
    Reduce {
        /// Which reduction.
        op: ReduceOp,
        /// Axes reduced.
        axes: Vec<usize>,
    },
    /// Same elements, new shape (the node's shape), row-major order.
    Reshape,
    /// Axis permutation: output axis `i` is input axis `perm[i]`.
    Permute {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Broadcast size-1 axes to the node's shape (same rank).
    Expand,
    /// Batched matrix product `[.., m, k] x [.., k, n] -> [.., m, n]` (equal batch dims).
    MatMul,
    /// Element type conversion to the node's dtype.
    Cast,
    /// Identity in the forward pass; blocks the gradient (autodiff treats the result as a
    /// constant). Used where a gradient path is known to cancel, e.g. the max subtracted
    /// inside softmax and logsumexp.
    StopGradient,
    /// The elements `start .. start + len` of axis `axis` (`len` is the node's extent on
    /// that axis); every other axis whole. A view: no data moves.
    Slice {
        /// Sliced axis.
        axis: usize,
        /// First index taken.
        start: usize,
    },
    /// Joins its operands (one or more, equal except on `axis`) along `axis`, in order.
    Concat {
        /// Joined axis.
        axis: usize,
    },
    /// `out[i.., d..] = table[idx[i..], d..]`: rows of operand 0 (`[rows, ..]`, float)
    /// picked by operand 1 (i32 indices of any shape). An index outside `0..rows` reads a
    /// row of zeros.
    Gather,
    /// Uniform `[0, 1)` noise of the node's shape: element `i` is
    /// [`crate::random::device_uniform`]`(seed, counter, i)` where `counter` is the value of
    /// the operand (one i32 element, e.g. the training step), so a new step draws new noise
    /// and the same step the same bits on every device. No gradient.
    RandomUniform {
        /// Stream key.
        seed: u32,
    },
    /// `out[r, d..] = Σ_{i: idx[i] = r} upd[i, d..]`: the adjoint of [`Op::Gather`].
    /// Operand 0 are i32 indices, operand 1 the updates `[idx.., d..]`; the node's shape is
    /// `[rows, d..]`. Indices outside `0..rows` are ignored. Sums run in index order
    /// (deterministic).
    ScatterAdd,
    /// A whole recurrent layer over its time axis (see [`crate::recurrence`]): operands
    /// `xp [B, T, kU]`, `r [U, kU]`, then `rb [kU]` (GRU) and `mask [B, U]` (masked); the
    /// result is the trace `[B, T, W]`, the hidden state `h` in its first `U` columns.
    Recurrence(crate::recurrence::Cell),
    /// The backward (BPTT) of [`Op::Recurrence`]: the forward's operands, then its trace and
    /// the trace's adjoint; the result `[B, T, G]` (see [`crate::recurrence`]).
    RecurrenceGrad(crate::recurrence::Cell),
}

/// The kind of an op without its attributes: the unit of the op table.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`Op::Input`]
    Input,
    /// [`Op::Param`]
    Param,
    /// [`Op::Constant`]
    Constant,
    /// [`Op::Unary`]
    Unary(UnaryOp),
    /// [`Op::Binary`]
    Binary(BinaryOp),
    /// [`Op::Where`]
    Where,
    /// [`Op::Reduce`]
    Reduce(ReduceOp),
    /// [`Op::Reshape`]
    Reshape,
    /// [`Op::Permute`]
    Permute,
    /// [`Op::Expand`]
    Expand,
    /// [`Op::MatMul`]
    MatMul,
    /// [`Op::Cast`]
    Cast,
    /// [`Op::StopGradient`]
    StopGradient,
    /// [`Op::Slice`]
    Slice,
    /// [`Op::Concat`]
    Concat,
    /// [`Op::Gather`]
    Gather,
    /// [`Op::ScatterAdd`]
    ScatterAdd,
    /// [`Op::RandomUniform`]
    RandomUniform,
    /// [`Op::Recurrence`]
    Recurrence,
    /// [`Op::RecurrenceGrad`]
    RecurrenceGrad,
}

impl OpKind {
    /// Every op kind (each unary/binary/reduce variant separately).
    pub fn all() -> Vec<OpKind> {
        let mut v = vec![OpKind::Input, OpKind::Param, OpKind::Constant];
        v.extend(UnaryOp::ALL.iter().map(|&u| OpKind::Unary(u)));
        v.extend(BinaryOp::ALL.iter().map(|&b| OpKind::Binary(b)));
        v.push(OpKind::Where);
        v.extend(ReduceOp::ALL.iter().map(|&r| OpKind::Reduce(r)));
        v.extend([
            OpKind::Reshape,
            OpKind::Permute,
            OpKind::Expand,
            OpKind::MatMul,
            OpKind::Cast,
            OpKind::StopGradient,
            OpKind::Slice,
            OpKind::Concat,
            OpKind::Gather,
            OpKind::ScatterAdd,
            OpKind::RandomUniform,
            OpKind::Recurrence,
            OpKind::RecurrenceGrad,
        ]);
        v
    }
}

impl Op {
    /// The op's kind.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Input { .. } => OpKind::Input,
            Op::Param { .. } => OpKind::Param,
            Op::Constant(_) => OpKind::Constant,
            Op::Unary(u) => OpKind::Unary(*u),
            Op::Binary(b) => OpKind::Binary(*b),
            Op::Where => OpKind::Where,
            Op::Reduce { op, .. } => OpKind::Reduce(*op),
            Op::Reshape => OpKind::Reshape,
            Op::Permute { .. } => OpKind::Permute,
            Op::Expand => OpKind::Expand,
            Op::MatMul => OpKind::MatMul,
            Op::Cast => OpKind::Cast,
            Op::StopGradient => OpKind::StopGradient,
            Op::Slice { .. } => OpKind::Slice,
            Op::Concat { .. } => OpKind::Concat,
            Op::Gather => OpKind::Gather,
            Op::ScatterAdd => OpKind::ScatterAdd,
            Op::RandomUniform { .. } => OpKind::RandomUniform,
            Op::Recurrence(_) => OpKind::Recurrence,
            Op::RecurrenceGrad(_) => OpKind::RecurrenceGrad,
        }
    }

    /// Lower-case mnemonic for dumps and errors.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Param { .. } => "param",
            Op::Constant(_) => "constant",
            Op::Unary(u) => u.mnemonic(),
            Op::Binary(b) => b.mnemonic(),
            Op::Where => "where",
            Op::Reduce { op, .. } => op.mnemonic(),
            Op::Reshape => "reshape",
            Op::Permute { .. } => "permute",
            Op::Expand => "expand",
            Op::MatMul => "matmul",
            Op::Cast => "cast",
            Op::StopGradient => "stop_gradient",
            Op::Slice { .. } => "slice",
            Op::Concat { .. } => "concat",
            Op::Gather => "gather",
            Op::ScatterAdd => "scatter_add",
            Op::RandomUniform { .. } => "random_uniform",
            Op::Recurrence(_) => "recurrence",
            Op::RecurrenceGrad(_) => "recurrence_grad",
        }
    }

    /// Number of operands the op takes; `None` for [`Op::Concat`] (one or more).
    pub fn arity(&self) -> Option<usize> {
        Some(match self {
            Op::Input { .. } | Op::Param { .. } | Op::Constant(_) => 0,
            Op::Binary(_) | Op::MatMul | Op::Gather | Op::ScatterAdd => 2,
            Op::Where => 3,
            Op::Concat { .. } => return None,
            Op::Recurrence(c) => c.forward_arity(),
            Op::RecurrenceGrad(c) => c.forward_arity() + 2,
            _ => 1,
        })
    }

    /// True for ops computed element by element (fusable into one expression body).
    pub fn is_elementwise(&self) -> bool {
        matches!(self, Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast)
    }
}
