//! `KernelIr`: what one dispatch computes, as data. The WGSL writer (kiln-wgpu) and the CPU
//! plan interpreter ([`crate::interp`]) both implement exactly these semantics.
//!
//! A kernel binds `args` (storage buffers, in order); the **last arg is the output**, written
//! contiguously (row-major over the kernel's output shape). Inputs are read through a
//! [`View`]: `element = offset + Σ idx[d] * strides[d]` where `idx` is the multi-index over
//! the kernel's iteration shape (stride 0 = broadcast). Expression bodies are SSA lists whose
//! last entry is the result; this is what fusion grows into.

use kiln_ir::{BinaryOp, DType, UnaryOp};
use serde::{Deserialize, Serialize};

/// Index of an expression inside its [`Body`].
pub type ExprId = u32;

/// How an operand reads its buffer over an iteration shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct View {
    /// Element offset of index 0.
    pub offset: usize,
    /// Element stride per iteration axis (0 for broadcast axes).
    pub strides: Vec<usize>,
}

impl View {
    /// The row-major view of a contiguous tensor of `dims`.
    pub fn contiguous(dims: &[usize]) -> View {
        View {
            offset: 0,
            strides: kiln_ir::Shape::new(dims.to_vec()).strides(),
        }
    }
    /// True when this view reads a contiguous tensor of `dims` in order (index = flat index).
    pub fn is_contiguous(&self, dims: &[usize]) -> bool {
        self.offset == 0 && {
            let c = View::contiguous(dims);
            dims.iter()
                .zip(self.strides.iter().zip(&c.strides))
                .all(|(&d, (&s, &cs))| d == 1 || s == cs)
        }
    }
    /// Element index for a multi-index.
    pub fn index(&self, idx: &[usize]) -> usize {
        self.offset
            + idx
                .iter()
                .zip(&self.strides)
                .map(|(i, s)| i * s)
                .sum::<usize>()
    }
}

/// One expression of a kernel body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    /// Read arg `arg` (an input binding) through `view` at the current iteration index.
    Load {
        /// Binding index into the kernel's args.
        arg: u32,
        /// Index map over the body's iteration shape.
        view: View,
    },
    /// A literal.
    Const(f64),
    /// `op(x)`.
    Unary(UnaryOp, ExprId),
    /// `op(a, b)`; comparisons give 1/0 in the operands' dtype.
    Binary(BinaryOp, ExprId, ExprId),
    /// `a` where `cond != 0`, else `b`.
    Select(ExprId, ExprId, ExprId),
    /// Conversion of `x` to this expression's dtype (float to int truncates).
    Cast(ExprId),
    /// The reduced value (only in a reduce kernel's epilogue).
    Reduced,
}

/// An expression with its result dtype.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExprNode {
    /// The expression.
    pub expr: Expr,
    /// Its result dtype.
    pub dtype: DType,
}

/// An SSA expression list; the last entry is the body's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// Expressions; operands refer to earlier entries.
    pub nodes: Vec<ExprNode>,
}

impl Body {
    /// Appends an expression and returns its id.
    pub fn push(&mut self, expr: Expr, dtype: DType) -> ExprId {
        self.nodes.push(ExprNode { expr, dtype });
        (self.nodes.len() - 1) as ExprId
    }
    /// Id of the result (the last expression).
    pub fn result(&self) -> ExprId {
        (self.nodes.len() - 1) as ExprId
    }
    /// Dtype of the result.
    pub fn dtype(&self) -> DType {
        self.nodes.last().map(|n| n.dtype).unwrap_or(DType::F32)
    }
}

/// Reduction combiners available to reduce kernels (mean = sum + a scaling epilogue).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReduceKind {
    /// Running sum, starting at 0.
    Sum,
    /// Running maximum, starting at -inf (i32: the smallest i32).
    Max,
}

/// A matrix operand of a matmul kernel: element `(b, i, j)` is at
/// `offset + b*batch_stride + i*row_stride + j*col_stride` (transposes are read in place).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MatOperand {
    /// Binding index.
    pub arg: u32,
    /// Element offset.
    pub offset: usize,
    /// Stride between batch matrices.
    pub batch_stride: usize,
    /// Stride between rows.
    pub row_stride: usize,
    /// Stride between columns.
    pub col_stride: usize,
}

/// What a kernel computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KernelOp {
    /// One thread per output element of `shape`: `out[flat] = body(idx)`.
    Elementwise {
        /// Output (= iteration) shape.
        shape: Vec<usize>,
        /// The expression; loads index over `shape`.
        body: Body,
    },
    /// One thread per output element. The output shape is `in_shape` with `axes` set to 1.
    /// `acc = fold(kind, prologue(idx) for idx over the reduced axes)`, then
    /// `out = epilogue(acc)` where epilogue loads index over the output shape.
    Reduce {
        /// Iteration shape of the prologue.
        in_shape: Vec<usize>,
        /// Reduced axes (sorted).
        axes: Vec<usize>,
        /// Combiner.
        kind: ReduceKind,
        /// Per-element value; loads index over `in_shape`.
        prologue: Body,
        /// Result from [`Expr::Reduced`]; loads index over the output shape.
        epilogue: Body,
    },
    /// `out[b, i, j] = Σ_p a[b, i, p] * b[b, p, j]`, output contiguous `[batch, m, n]`.
    /// Each thread computes a `tile[0] x tile[1]` register block.
    MatMul {
        /// Number of matrices.
        batch: usize,
        /// Rows of the output.
        m: usize,
        /// Columns of the output.
        n: usize,
        /// Inner dimension.
        k: usize,
        /// Left operand.
        a: MatOperand,
        /// Right operand.
        b: MatOperand,
        /// Register block (rows, cols) per thread.
        tile: [u32; 2],
    },
}

/// Access mode of a kernel argument.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    /// Bound read-only.
    Read,
    /// Bound read-write (the output).
    Write,
}

/// A kernel argument: a storage buffer binding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Arg {
    /// Element type of the bound buffer.
    pub dtype: DType,
    /// Access mode.
    pub access: Access,
}

/// A compiled kernel: its op, its bindings, and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    /// Human-readable label (the fusion group, e.g. `dense_1/matmul`).
    pub label: String,
    /// What it computes.
    pub op: KernelOp,
    /// Storage bindings; the last one is the output.
    pub args: Vec<Arg>,
    /// Threads per workgroup (1-D).
    pub workgroup_size: u32,
    /// Total threads needed (the executor's bounds check).
    pub threads: u64,
    /// IR node indices this kernel computes (its fusion group).
    pub nodes: Vec<u32>,
}
