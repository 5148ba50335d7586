//! Block programs: an SSA [`Body`](kiln_plan::kernel::Body) compiled at load time into a list of register operations,
//! each evaluated over a block of up to [`BLOCK`] consecutive elements of an iteration space.
//!
//! A *phase* (an elementwise kernel, one reduce stage, a reduce epilogue or broadcast pass, a
//! matmul epilogue) iterates over some axes of a full shape. Every load, store, gather view
//! and random-number index of the phase is an *access*: `offset + Σ idx[d] * strides[d]`.
//! At load the iterated axes are coalesced (size-1 axes dropped, neighbours merged when every
//! access of the phase walks them as one axis), so a contiguous kernel becomes one axis and a
//! block is one run of a slice. At run time a block is split into runs along the last
//! coalesced axis; each access reads or writes a run as a slice (stride 1), a splat
//! (stride 0) or a strided walk. Operations then run over whole register blocks: plain loops
//! over `f32`/`i32` slices that the compiler vectorises.
//!
//! The compiler of phases is `compile` ([`Phase::new`] from a [`PhaseSpec`]), their
//! evaluation over register blocks is `run` ([`Phase::run_block`]).

mod compile;
mod run;

pub use compile::{store_access, PhaseSpec};

use kiln_ir::{BinaryOp, DType, UnaryOp};
use kiln_plan::kernel::Expr;

/// Elements per block.
pub const BLOCK: usize = 256;

/// One value of an accumulator (typed like the folded expression).
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Scalar {
    /// An f32 value.
    F(f32),
    /// An i32 value.
    I(i32),
}

impl Scalar {
    fn f(self) -> f32 {
        match self {
            Scalar::F(x) => x,
            Scalar::I(x) => x as f32,
        }
    }
    fn i(self) -> i32 {
        match self {
            Scalar::F(x) => x as i32,
            Scalar::I(x) => x,
        }
    }
}

/// A raw view of one bound buffer (f32 or i32 words), shared by the tasks of a dispatch.
/// Tasks write disjoint elements (the kernel contract: distinct indices reach distinct
/// elements, and in-place updates are element for element).
#[derive(Copy, Clone, Debug)]
pub struct RawBuf {
    /// First word.
    pub ptr: *mut f32,
    /// Words.
    pub len: usize,
    /// Element type of the words.
    pub dtype: DType,
}

// SAFETY: the executor hands a dispatch's tasks disjoint output elements; see above.
unsafe impl Send for RawBuf {}
// SAFETY: as above.
unsafe impl Sync for RawBuf {}

impl RawBuf {
    #[inline]
    /// The first word as an f32 pointer.
    pub fn fp(&self) -> *mut f32 {
        self.ptr
    }
    #[inline]
    fn ip(&self) -> *mut i32 {
        self.ptr as *mut i32
    }
}

/// An access before coalescing: offset and one stride per axis of the phase's full shape.
#[derive(Clone, Debug)]
pub struct RawAccess {
    /// Element offset.
    pub offset: usize,
    /// Strides over the full shape.
    pub strides: Vec<usize>,
}

/// An access after coalescing.
#[derive(Clone, Debug)]
struct Access {
    offset: usize,
    /// `(axis of the full shape, stride)` of the axes that are not iterated (fixed per task).
    fixed: Vec<(usize, usize)>,
    /// Strides over the coalesced iterated axes.
    strides: Vec<usize>,
}

/// Largest element an access reaches over a full shape (`None` on overflow).
pub fn max_index(offset: usize, strides: &[usize], shape: &[usize]) -> Option<usize> {
    shape.iter().zip(strides).try_fold(offset, |a, (&e, &s)| {
        a.checked_add(e.saturating_sub(1).checked_mul(s)?)
    })
}

/// A register: its type and its index in that type's register file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Reg {
    int: bool,
    i: u32,
}

#[derive(Clone, Debug)]
enum Op {
    Load {
        access: u32,
        arg: u32,
        dst: Reg,
    },
    Un {
        op: UnaryOp,
        src: Reg,
        dst: Reg,
    },
    Bin {
        op: BinaryOp,
        a: Reg,
        b: Reg,
        dst: Reg,
    },
    Select {
        c: Reg,
        a: Reg,
        b: Reg,
        dst: Reg,
    },
    Cast {
        src: Reg,
        dst: Reg,
    },
    Gather {
        access: u32,
        arg: u32,
        index: Reg,
        rows: usize,
        row_stride: usize,
        dst: Reg,
    },
    Random {
        access: u32,
        seed: u32,
        counter: Reg,
        dst: Reg,
    },
    Acc {
        j: u32,
        dst: Reg,
    },
}

/// A store of the phase: `args[arg][access index] = reg` (converted to the buffer type).
#[derive(Clone, Debug)]
struct StoreOp {
    arg: u32,
    access: u32,
    src: Reg,
}

/// Where the accumulators a body reads come from.
#[derive(Copy, Clone, Debug)]
pub enum Accs<'a> {
    /// The body reads none.
    None,
    /// One value per accumulator, the same for every element (a stage or broadcast body).
    Splat(&'a [Scalar]),
    /// Accumulator `j` of element `e` of the block is `values[j * stride + first + e]` (the
    /// epilogue of a chunk of reduce outputs).
    Chunk {
        /// Values, accumulator-major.
        values: &'a [Scalar],
        /// Outputs per accumulator.
        stride: usize,
        /// Index of the block's first element.
        first: usize,
    },
    /// `Acc(0)` of element `e` is `row[e]` (a matmul epilogue).
    Row(&'a [f32]),
    /// Accumulator `j` of element `e` is `cols[j][first + e]` (a column-mode reduction).
    Cols {
        /// One column of values per accumulator.
        cols: &'a [AccCol],
        /// Index of the block's first element.
        first: usize,
    },
}

/// The accumulators of one fold for a chunk of reduce outputs.
#[derive(Clone, Debug)]
pub enum AccCol {
    /// f32 accumulators.
    F(Vec<f32>),
    /// i32 accumulators.
    I(Vec<i32>),
}

/// Per-task scratch memory of a phase: register files and run tables.
#[derive(Default)]
pub struct Scratch {
    f: Vec<f32>,
    i: Vec<i32>,
    idx: Vec<usize>,
    runs: Vec<(usize, usize)>,
    bases: Vec<usize>,
    multi: Vec<usize>,
}

/// A compiled phase: iteration space, accesses, register program and stores.
#[derive(Clone, Debug)]
pub struct Phase {
    /// Coalesced extents of the iterated axes (at least one).
    dims: Vec<usize>,
    /// Elements of the iteration space.
    pub numel: usize,
    accesses: Vec<Access>,
    ops: Vec<Op>,
    /// Per op: it computes one element, filled over the block.
    uniform: Vec<bool>,
    consts_f: Vec<(u32, f32)>,
    consts_i: Vec<(u32, i32)>,
    stores: Vec<StoreOp>,
    nf: usize,
    ni: usize,
    /// The value of every body expression (for folds).
    values: Vec<Reg>,
    /// Per access: the arg it touches and the largest element over the full shape
    /// (gathers include the whole table), for the load-time bounds check.
    pub extents: Vec<(u32, usize)>,
}

/// A register block's values.
pub enum Value<'s> {
    /// f32 values.
    F(&'s [f32]),
    /// i32 values.
    I(&'s [i32]),
}

#[inline(always)]
unsafe fn load<S: Copy, D: Copy>(
    out: &mut [D],
    src: *const S,
    base: usize,
    step: usize,
    cv: impl Fn(S) -> D,
) {
    match step {
        1 => {
            let s = std::slice::from_raw_parts(src.add(base), out.len());
            for (o, &x) in out.iter_mut().zip(s) {
                *o = cv(x);
            }
        }
        0 => out.fill(cv(*src.add(base))),
        _ => {
            for (j, o) in out.iter_mut().enumerate() {
                *o = cv(*src.add(base + j * step));
            }
        }
    }
}

#[inline(always)]
unsafe fn store<S: Copy, D>(
    vals: &[S],
    dst: *mut D,
    base: usize,
    step: usize,
    cv: impl Fn(S) -> D,
) {
    if step == 1 {
        let d = std::slice::from_raw_parts_mut(dst.add(base), vals.len());
        for (o, &x) in d.iter_mut().zip(vals) {
            *o = cv(x);
        }
    } else {
        // step 0 (several elements onto one) keeps the last, as a sequential loop would
        for (j, &x) in vals.iter().enumerate() {
            *dst.add(base + j * step) = cv(x);
        }
    }
}

/// Register `r` of a register file as a slice of `n` elements.
///
/// # Safety
/// `p` is a register file with register `r`; the caller never holds a mutable and another
/// slice of the same register at once.
#[inline(always)]
unsafe fn reg<'a, T>(p: *mut T, r: Reg, n: usize) -> &'a [T] {
    std::slice::from_raw_parts(p.add(r.i as usize * BLOCK), n)
}

/// Register `r` as a mutable slice (see [`reg`]).
#[inline(always)]
#[allow(clippy::mut_from_ref)]
unsafe fn reg_mut<'a, T>(p: *mut T, r: Reg, n: usize) -> &'a mut [T] {
    std::slice::from_raw_parts_mut(p.add(r.i as usize * BLOCK), n)
}

unsafe fn fill(f: *mut f32, ip: *mut i32, dst: Reg, n: usize, x: Scalar) {
    if dst.int {
        reg_mut(ip, dst, n).fill(x.i())
    } else {
        reg_mut(f, dst, n).fill(x.f())
    }
}

/// The register an op writes.
fn op_dst(op: &Op) -> Reg {
    match *op {
        Op::Load { dst, .. }
        | Op::Un { dst, .. }
        | Op::Bin { dst, .. }
        | Op::Select { dst, .. }
        | Op::Cast { dst, .. }
        | Op::Gather { dst, .. }
        | Op::Random { dst, .. }
        | Op::Acc { dst, .. } => dst,
    }
}

/// The operands of an expression.
fn operands(e: &Expr) -> Vec<u32> {
    match e {
        Expr::Load { .. } | Expr::Const(_) | Expr::Acc(_) => vec![],
        Expr::Unary(_, a) | Expr::Cast(a) => vec![*a],
        Expr::Binary(_, a, b) => vec![*a, *b],
        Expr::Select(c, a, b) => vec![*c, *a, *b],
        Expr::Gather { index, .. } => vec![*index],
        Expr::Random { counter, .. } => vec![*counter],
    }
}
