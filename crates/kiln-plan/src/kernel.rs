//! `KernelIr`: what one dispatch computes, as data. The WGSL writer (kiln-wgpu) and the CPU
//! plan interpreter ([`crate::interp`]) both implement exactly these semantics.
//!
//! A kernel binds `args`: **distinct** storage buffers, in order, each read, written or both
//! (an arena buffer holding many tensors is bound once). Values are read through a [`View`]:
//! `element = offset + Σ idx[d] * strides[d]` where `idx` is the multi-index over the
//! iteration shape of the phase the load is in (stride 0 = broadcast). Values are written by
//! [`Store`]s: `buffer[offset + flat]` where `flat` is the row-major index over the same
//! iteration shape. Expression bodies are SSA lists; fusion grows kernels by adding
//! expressions and stores to them. A kernel may write several tensors (multi-output) and may
//! write a buffer it reads (in place, element for element).

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
    /// A data-dependent read: row `index` (an i32 expression) of a table in arg `arg`, at
    /// element `view.offset + index * row_stride + Σ idx[d] * view.strides[d]`; 0 when
    /// `index` is outside `0..rows`. (The view's strides cover the axes within a row; the
    /// index axes have stride 0.)
    Gather {
        /// Binding index of the table.
        arg: u32,
        /// Offset and within-row strides over the iteration shape.
        view: View,
        /// The row index expression (i32).
        index: ExprId,
        /// Rows in the table.
        rows: usize,
        /// Elements between rows.
        row_stride: usize,
    },
    /// Uniform `[0, 1)` noise: `kiln_ir::random::device_uniform(seed, counter, i)` with
    /// `counter` an i32 expression and `i = Σ idx[d] * strides[d]` (the row-major index of
    /// the noise tensor's element).
    Random {
        /// Stream key.
        seed: u32,
        /// The step counter (i32).
        counter: ExprId,
        /// Element index strides over the iteration shape.
        strides: Vec<usize>,
    },
    /// Accumulator `j` of a reduce kernel (numbered across its stages, in order): readable
    /// in the stages after the one that folds it, in the epilogue and in the broadcast body.
    /// In a matmul epilogue, `Acc(0)` is the dot product.
    Acc(u32),
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

/// A write of one body value: `args[arg][offset + flat] = value`, `flat` being the row-major
/// index over the iteration shape of the body's phase — or, with `strides`,
/// `args[arg][offset + Σ idx[d] * strides[d]]` at the multi-index `idx` (a store into a
/// part of a larger tensor, e.g. one operand's block of a concat).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Store {
    /// Binding index (an arg with `Write` or `ReadWrite` access).
    pub arg: u32,
    /// Element offset of the tensor in that buffer.
    pub offset: usize,
    /// The stored expression.
    pub value: ExprId,
    /// Element stride per iteration axis; `None`: row-major (`offset + flat`). Distinct
    /// indices must reach distinct elements.
    pub strides: Option<Vec<usize>>,
}

impl Store {
    /// A row-major store at `offset`.
    pub fn dense(arg: u32, offset: usize, value: ExprId) -> Store {
        Store {
            arg,
            offset,
            value,
            strides: None,
        }
    }

    /// The element written at multi-index `idx` (row-major `flat` over `shape`).
    pub fn index(&self, idx: &[usize], flat: usize) -> usize {
        match &self.strides {
            None => self.offset + flat,
            Some(s) => self.offset + idx.iter().zip(s).map(|(i, s)| i * s).sum::<usize>(),
        }
    }

    /// `(first, one past the last)` element written over an iteration `shape`.
    pub fn range(&self, shape: &[usize]) -> (usize, usize) {
        let n = shape.iter().fold(1usize, |a, &d| a.saturating_mul(d));
        match &self.strides {
            None => (self.offset, self.offset.saturating_add(n)),
            Some(s) => {
                if n == 0 {
                    return (self.offset, self.offset);
                }
                let last = shape.iter().zip(s).fold(self.offset, |a, (&d, &s)| {
                    a.saturating_add(d.saturating_sub(1).saturating_mul(s))
                });
                (self.offset, last.saturating_add(1))
            }
        }
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

/// One accumulator of a reduce stage: `acc = fold(kind, value)` over the reduced elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fold {
    /// Combiner.
    pub kind: ReduceKind,
    /// The folded expression of the stage body.
    pub value: ExprId,
}

/// One pass of a reduce kernel over the reduced elements.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReduceStage {
    /// Evaluated at every visited input index; may read earlier stages' accumulators.
    pub body: Body,
    /// Accumulators this stage defines (numbered after the earlier stages').
    pub folds: Vec<Fold>,
    /// Writes at every visited input index, over `in_shape`.
    pub stores: Vec<Store>,
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

/// The column sums of a matmul's right operand, `s[j] = Σ_p B[0, p, j]` (summed in increasing
/// `p`, in f32), evaluated in the matmul's kernel: `body` runs at each `j` over `shape` (whose
/// element count is the product's `n`, e.g. `[1, n]`), reading `Acc(0) = s[j]`, and `stores`
/// write over `shape`. The dense layer's bias gradient is the column sum of the operand its
/// weight gradient multiplies, so the two share one kernel. The sums' loads and stores never
/// touch what the product's epilogue writes (the compiler only fuses them then), so the two
/// may run in any order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnSums {
    /// Iteration shape of `body` (row-major; its element count is `n`).
    pub shape: Vec<usize>,
    /// Expressions at sum `j`; `Acc(0)` is the sum, loads index over `shape`.
    pub body: Body,
    /// Writes over `shape`.
    pub stores: Vec<Store>,
}

/// Matmul kernel family, chosen per adapter class at compile time.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatMulVariant {
    /// Each thread computes a `tile` register block; no workgroup memory, no barriers
    /// (CPU-type adapters, where barriers are very slow).
    RegisterBlocked,
    /// Workgroup-memory tiles (discrete and integrated GPUs): 64x64 per workgroup of 256,
    /// 4x4 per invocation.
    WorkgroupTiled,
    /// Wide workgroup-memory tiles for large products on GPUs: 128x128 per workgroup of 256,
    /// 8x8 per invocation, 4-wide reads of workgroup memory (twice the multiply-adds per
    /// workgroup-memory read of [`MatMulVariant::WorkgroupTiled`]); chosen for products of
    /// at least [`WIDE_TILES_FROM`] such tiles ([`MatMulVariant::for_product`]).
    WorkgroupTiledWide,
}

/// GPU products of at least this many 128x128 output tiles (over the batch) use
/// [`MatMulVariant::WorkgroupTiledWide`]: enough workgroups to fill a large GPU (an H100
/// has 132 multiprocessors); smaller products keep the 64x64 tiles, which give four times
/// as many workgroups. 2048³ has 256 such tiles, 1024³ 64, an LSTM step's products 1–4.
pub const WIDE_TILES_FROM: u64 = 128;

/// Register-blocked products of fewer 32x32 patches than this launch one patch per
/// workgroup instead of eight (see [`MatMulVariant::launch`]).
pub const SMALL_PRODUCT_PATCHES: usize = 64;

impl MatMulVariant {
    /// The family for an adapter class: register blocks where barriers are expensive (CPU
    /// adapters and unknown devices), workgroup tiles on GPUs.
    pub fn for_adapter(class: crate::AdapterClass) -> MatMulVariant {
        match class {
            crate::AdapterClass::DiscreteGpu | crate::AdapterClass::IntegratedGpu => {
                MatMulVariant::WorkgroupTiled
            }
            _ => MatMulVariant::RegisterBlocked,
        }
    }

    /// The family for a `[batch, m, n]` product on an adapter class: [`Self::for_adapter`],
    /// with GPU products of at least [`WIDE_TILES_FROM`] 128x128 tiles on the wide tiles.
    pub fn for_product(
        class: crate::AdapterClass,
        batch: usize,
        m: usize,
        n: usize,
    ) -> MatMulVariant {
        let variant = Self::for_adapter(class);
        let wide = (batch as u64)
            .saturating_mul(m.div_ceil(128) as u64)
            .saturating_mul(n.div_ceil(128) as u64);
        if variant == MatMulVariant::WorkgroupTiled && wide >= WIDE_TILES_FROM {
            MatMulVariant::WorkgroupTiledWide
        } else {
            variant
        }
    }

    /// Output rows and columns one workgroup computes in the workgroup-tiled families (64
    /// or 128); `None` for register blocks.
    pub const fn workgroup_tile(self) -> Option<usize> {
        match self {
            MatMulVariant::RegisterBlocked => None,
            MatMulVariant::WorkgroupTiled => Some(64),
            MatMulVariant::WorkgroupTiledWide => Some(128),
        }
    }

    /// The register block per thread of this family (`KernelOp::MatMul::tile`): `[32, 4]`
    /// (32 rows by 4 columns) register-blocked, `[4, 4]` workgroup-tiled, `[8, 8]` wide.
    pub const fn tile(self) -> [u32; 2] {
        match self {
            MatMulVariant::RegisterBlocked => [32, 4],
            MatMulVariant::WorkgroupTiled => [4, 4],
            MatMulVariant::WorkgroupTiledWide => [8, 8],
        }
    }

    /// Whether the family's shaders run with `workgroup_size` invocations per workgroup:
    /// a multiple of 8 (one 8-thread group per 32x32 patch) register-blocked, exactly 256
    /// workgroup-tiled (either width).
    pub fn accepts_workgroup(self, workgroup_size: u32) -> bool {
        match self {
            MatMulVariant::RegisterBlocked => {
                workgroup_size > 0 && workgroup_size.is_multiple_of(8)
            }
            MatMulVariant::WorkgroupTiled | MatMulVariant::WorkgroupTiledWide => {
                workgroup_size == 256
            }
        }
    }

    /// The launch geometry of a `[batch, m, n]` product in workgroups of `workgroup_size`:
    /// the one definition backends, the compiler and the validator share. Register-blocked:
    /// `threads = batch * ceil(m / 32) * ceil(n / 32) * 8`, workgroups
    /// `ceil(threads / workgroup_size)`; workgroup-tiled: one workgroup per 64x64 output tile
    /// (128x128 wide), `threads = workgroups * 256`.
    pub fn launch_in(self, workgroup_size: u32, batch: usize, m: usize, n: usize) -> MatMulLaunch {
        let (batch, m, n) = (batch as u64, m as u64, n as u64);
        let wg = workgroup_size.max(1) as u64;
        let (workgroups, threads) = match self {
            MatMulVariant::RegisterBlocked => {
                let threads = batch
                    .saturating_mul(m.div_ceil(32))
                    .saturating_mul(n.div_ceil(32))
                    .saturating_mul(8);
                (threads.div_ceil(wg), threads)
            }
            MatMulVariant::WorkgroupTiled | MatMulVariant::WorkgroupTiledWide => {
                let ts = self.workgroup_tile().unwrap_or(64) as u64;
                let groups = batch
                    .saturating_mul(m.div_ceil(ts))
                    .saturating_mul(n.div_ceil(ts));
                (groups, groups.saturating_mul(wg))
            }
        };
        MatMulLaunch {
            tile: self.tile(),
            workgroup_size,
            workgroups,
            threads,
        }
    }

    /// The launch of a `[batch, m, n]` product: `(tile, workgroup_size, threads)`, the
    /// contract with the library shaders (`shaders/matmul_register.wgsl` and
    /// `shaders/matmul_subgroup.wgsl`, `shaders/matmul_tiled.wgsl`,
    /// `shaders/matmul_tiled_wide.wgsl`). Register-blocked: each
    /// group of 8 threads (`thread / 8`; one subgroup where the device has subgroups of 8)
    /// computes a 32x32 patch, tile `[32, 4]` (32 rows by 4 columns per thread), 64-thread
    /// workgroups (8-thread ones, one patch each, for products of fewer than
    /// [`SMALL_PRODUCT_PATCHES`] patches). Workgroup-tiled: each 256-thread workgroup computes a 64x64 tile (16x16
    /// threads of 4x4; wide: a 128x128 tile, 16x16 threads of 8x8); the workgroup index is
    /// `thread / 256`.
    pub fn launch(self, batch: usize, m: usize, n: usize) -> ([u32; 2], u32, u64) {
        let wg = match self {
            MatMulVariant::RegisterBlocked => {
                // a CPU adapter runs each workgroup on one core: a product of few patches
                // gets one patch (8 threads) per workgroup so that it spreads over the cores
                // (an LSTM step's `[64,400]·[400,100]` is 8 patches: one 64-thread workgroup)
                let patches = batch * m.div_ceil(32) * n.div_ceil(32);
                if patches >= SMALL_PRODUCT_PATCHES {
                    64
                } else {
                    8
                }
            }
            MatMulVariant::WorkgroupTiled | MatMulVariant::WorkgroupTiledWide => 256,
        };
        let l = self.launch_in(wg, batch, m, n);
        (l.tile, l.workgroup_size, l.threads)
    }
}

/// The launch geometry of one matmul kernel ([`MatMulVariant::launch_in`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MatMulLaunch {
    /// Register block per invocation (`KernelOp::MatMul::tile`).
    pub tile: [u32; 2],
    /// Invocations per workgroup (`Kernel::workgroup_size`).
    pub workgroup_size: u32,
    /// Workgroups needed.
    pub workgroups: u64,
    /// Threads needed (`Kernel::threads` is at least this).
    pub threads: u64,
}

/// What a kernel computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KernelOp {
    /// One work item per `vector` consecutive (row-major) elements of `shape`; evaluates
    /// `body` at each of them and performs `stores`. `Kernel::threads` is the number of work
    /// items, `numel / vector`.
    Elementwise {
        /// Iteration shape.
        shape: Vec<usize>,
        /// Expressions; loads index over `shape`.
        body: Body,
        /// Writes, each over `shape`.
        stores: Vec<Store>,
        /// Elements per work item: 1, or 4 when the kernel is vectorizable (see
        /// [`elementwise_vector`]): a backend may then evaluate the body on 4-wide vectors,
        /// reading every load either as one aligned 4-element vector or as a splat of one
        /// element, and writing every store as one aligned 4-element vector. The semantics
        /// are those of `vector == 1` (the CPU interpreter ignores the width).
        vector: u32,
    },
    /// One thread per element of the output shape (`in_shape` with `axes` set to 1). The
    /// thread runs its `stages` in order; each stage visits every reduced element (the input
    /// index), evaluates its body there — which may read the accumulators of earlier stages —
    /// folds its `folds` into fresh accumulators and performs its stores over `in_shape`. Then
    /// it evaluates `epilogue` at the output index and performs `stores` over the output
    /// shape; then, if `broadcast_stores` is non-empty, it visits the reduced elements once
    /// more, evaluating `broadcast` and performing `broadcast_stores` over `in_shape`. Every
    /// input element is visited by exactly one thread in each pass. (Softmax is one kernel: a
    /// max stage, a sum-of-exp stage reading the max, and a broadcast pass writing
    /// `exp(x - max) / sum`.)
    Reduce {
        /// Iteration shape of the stages and the broadcast pass.
        in_shape: Vec<usize>,
        /// Reduced axes (sorted).
        axes: Vec<usize>,
        /// Fold passes, in order (at least one).
        stages: Vec<ReduceStage>,
        /// Loads index over the output shape; may read every accumulator.
        epilogue: Body,
        /// Writes over the output shape.
        stores: Vec<Store>,
        /// Loads index over `in_shape`; may read every accumulator.
        broadcast: Body,
        /// Writes over `in_shape`.
        broadcast_stores: Vec<Store>,
        /// Threads cooperating on one output element: 1 (one thread folds sequentially — CPU
        /// adapters, where barriers are slow) or the workgroup size (a workgroup per output
        /// element: each thread folds a strided share, then the partial accumulators combine
        /// in a fixed tree in workgroup memory — GPUs). Either way the combine order is fixed,
        /// so results are deterministic; they may differ from each other in rounding. The
        /// CPU interpreter always folds sequentially.
        tree: u32,
    },
    /// `acc[b, i, j] = Σ_p a[b, i, p] * b[b, p, j]`, then `epilogue` (where
    /// [`Expr::Acc`]`(0)` is `acc`; loads index over `[batch, m, n]`) and `stores` over
    /// `[batch, m, n]`. In the register-blocked variant each thread computes a
    /// `tile[0] x tile[1]` block; `threads = batch * ceil(m/tile0) * ceil(n/tile1)`.
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
        /// Kernel family.
        variant: MatMulVariant,
        /// Per-element epilogue (bias, activation, scaling, fused consumers).
        epilogue: Body,
        /// Writes over `[batch, m, n]`.
        stores: Vec<Store>,
        /// The right operand's column sums with their own epilogue (batch 1 only): a bias
        /// gradient computed beside its weight gradient.
        sums: Option<Box<ColumnSums>>,
    },
    /// `dst[r, c] = Σ_{i: index[i] = r} src[i, c]` for `r < rows`, `c < cols`, summed in
    /// order of `i` (deterministic, no atomics). Indices outside `0..rows` are skipped.
    ///
    /// Launch (GPU backends): `threads = cols · J`, `J ≥ 1` blocks of rows. Thread `t` owns
    /// column `t % cols` of the rows `[b·⌈rows/J⌉, (b+1)·⌈rows/J⌉)`, `b = t / cols`: it
    /// zeroes them, then visits every position in order, adding the ones whose index falls
    /// in its rows. The running sum of the row it last added to stays in a register until
    /// the index changes (a run of one index, such as padding, is register adds, not
    /// read-modify-writes), so each element sees the same additions in the same order for
    /// every `J`.
    ScatterAdd {
        /// Rows of `dst`.
        rows: usize,
        /// Elements per row.
        cols: usize,
        /// Positions (`index` has `count` i32 elements, `src` `count * cols`).
        count: usize,
        /// Row index per position: i32, or f32 converted to i32 as the graph's `cast` does
        /// (the arg's dtype says which).
        index: Dense,
        /// Values per position (f32).
        src: Dense,
        /// Output `[rows, cols]` (f32).
        dst: Dense,
    },
    /// A whole recurrent layer over its time axis ([`kiln_ir::recurrence`], whose reference
    /// [`forward`](kiln_ir::recurrence::forward) and
    /// [`backward`](kiln_ir::recurrence::backward) define the values): the forward
    /// (`grad: None`) writes the trace `[batch, steps, W]` to `out`; the backward reads the
    /// trace and its adjoint (`grad`) and writes `[batch, steps, G]`. All operands are dense
    /// row-major f32 blocks. One persistent kernel: each workgroup owns `launch.rows` rows of
    /// the batch and loops over every step by itself (workgroup barriers only), so
    /// `threads = ceil(batch / rows) * workgroup_size`.
    Recurrence {
        /// The cell and its attributes.
        cell: kiln_ir::recurrence::Cell,
        /// Rows of the batch `B`.
        batch: usize,
        /// Timesteps `T`.
        steps: usize,
        /// Input projections `[B, T, kU]`.
        xp: Dense,
        /// Recurrent kernel `[U, kU]`.
        r: Dense,
        /// Recurrent bias `[kU]` (GRU).
        rb: Option<Dense>,
        /// Recurrent-dropout mask `[B, U]` (masked cells).
        mask: Option<Dense>,
        /// The backward's `[trace, dtrace]`: the trace `[B, T, W]` and its adjoint, the
        /// window `adjoint` of it (`[B, T', W']`); `None` for the forward.
        grad: Option<[Dense; 2]>,
        /// The backward's window of the trace's adjoint ([`kiln_ir::recurrence::Adjoint`]);
        /// the forward's is the whole trace.
        adjoint: kiln_ir::recurrence::Adjoint,
        /// The result: trace `[B, T, W]` or gradient `[B, T, G]`.
        out: Dense,
        /// How a GPU backend runs it.
        launch: RecurrenceLaunch,
    },
}

impl KernelOp {
    /// The dense blocks a [`KernelOp::Recurrence`] touches, `(block, elements, written)`:
    /// `xp`, `r`, `rb`, `mask`, the backward's `trace` and `dtrace` (its window's size),
    /// then `out` (the one written). Counts saturate (a validated plan's never do). `None` for other ops.
    pub fn recurrence_blocks(&self) -> Option<Vec<(&Dense, usize, bool)>> {
        let KernelOp::Recurrence {
            cell,
            batch,
            steps,
            xp,
            r,
            rb,
            mask,
            grad,
            adjoint,
            out,
            ..
        } = self
        else {
            return None;
        };
        let (u, ku) = (cell.units, cell.gates().saturating_mul(cell.units));
        let bt = batch.saturating_mul(*steps);
        let mut v = vec![
            (xp, bt.saturating_mul(ku), false),
            (r, u.saturating_mul(ku), false),
        ];
        v.extend(rb.iter().map(|d| (d, ku, false)));
        v.extend(mask.iter().map(|d| (d, batch.saturating_mul(u), false)));
        if let Some([trace, dtrace]) = grad {
            v.push((trace, bt.saturating_mul(cell.trace_width()), false));
            v.push((dtrace, adjoint.len(*batch), false));
        }
        let width = if grad.is_some() {
            cell.grad_width()
        } else {
            cell.trace_width()
        };
        v.push((out, bt.saturating_mul(width), true));
        Some(v)
    }
}

/// The launch of a [`KernelOp::Recurrence`] on a GPU backend (the CPU backends ignore it).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecurrenceLaunch {
    /// Rows of the batch per workgroup.
    pub rows: u32,
    /// Whether the per-step loops over the state are unrolled in the shader text (devices
    /// whose loop limit the looped form would exceed: llvmpipe's 65,535 iterations per
    /// invocation), leaving only the loop over the steps.
    pub unroll: bool,
}

/// Largest workgroup a recurrence uses.
pub const RECURRENCE_MAX_WORKGROUP: u32 = 256;

impl RecurrenceLaunch {
    /// `(launch, workgroup size)` of a recurrence on a device, or `None` when it does not
    /// fit (workgroup memory, workgroup count or loop limit): then the layer keeps the
    /// unrolled graph. Rows per workgroup are as many as fill up to
    /// [`RECURRENCE_MAX_WORKGROUP`] invocations with one `(row, unit)` pair each (at least
    /// one row); workgroup memory holds two state buffers of the rows (forward: `2·rows·U`
    /// floats; backward: `2·rows·kU`).
    pub fn choose(
        cell: &kiln_ir::recurrence::Cell,
        backward: bool,
        batch: usize,
        steps: usize,
        limits: &crate::DeviceLimits,
    ) -> Option<(RecurrenceLaunch, u32)> {
        let cap = RECURRENCE_MAX_WORKGROUP
            .min(limits.max_compute_invocations_per_workgroup)
            .min(limits.max_compute_workgroup_size_x)
            .max(1) as usize;
        let u = cell.units;
        let per_row = if backward { cell.gates() * u } else { u };
        let mem = limits.max_compute_workgroup_storage_size as usize / 4;
        let mut rows = (cap / u).clamp(1, batch.max(1));
        while rows > 1 && 2 * rows * per_row > mem {
            rows -= 1;
        }
        if 2 * rows * per_row > mem {
            return None;
        }
        let workgroups = batch.div_ceil(rows);
        if workgroups > limits.max_compute_workgroups_per_dimension as usize {
            return None;
        }
        let wg = (rows * u).min(cap).next_multiple_of(8).min(cap) as u32;
        let launch = RecurrenceLaunch {
            rows: rows as u32,
            unroll: false,
        };
        let looped = launch.iterations(cell, backward, steps, wg);
        if looped <= limits.max_loop_iterations {
            return Some((launch, wg));
        }
        let launch = RecurrenceLaunch {
            unroll: true,
            ..launch
        };
        (launch.iterations(cell, backward, steps, wg) <= limits.max_loop_iterations)
            .then_some((launch, wg))
    }

    /// `(row, unit)` pairs each invocation owns: `ceil(rows·U / workgroup_size)`.
    pub fn pairs(&self, units: usize, workgroup_size: u32) -> usize {
        (self.rows as usize * units).div_ceil(workgroup_size.max(1) as usize)
    }

    /// Loop iterations one invocation runs (the device's loop limit counts all its loops):
    /// the steps, and unless unrolled, per step and owned pair the dot product over the
    /// state (`U` forward, `kU` backward).
    pub fn iterations(
        &self,
        cell: &kiln_ir::recurrence::Cell,
        backward: bool,
        steps: usize,
        workgroup_size: u32,
    ) -> u64 {
        let inner = if self.unroll {
            0
        } else {
            let dot = if backward {
                cell.gates() * cell.units
            } else {
                cell.units
            };
            (self.pairs(cell.units, workgroup_size) * dot) as u64
        };
        (steps as u64).saturating_mul(1 + inner)
    }
}

/// A dense row-major block of a kernel argument.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dense {
    /// Binding index.
    pub arg: u32,
    /// Element offset of the block.
    pub offset: usize,
}

/// Access mode of a kernel argument.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    /// Only loaded: bound read-only.
    Read,
    /// Only stored: bound read-write.
    Write,
    /// Loaded and stored (an arena, or an in-place update): bound read-write.
    ReadWrite,
}

impl Access {
    /// True when the kernel writes the buffer.
    pub fn writes(self) -> bool {
        !matches!(self, Access::Read)
    }
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
    /// Storage bindings: distinct buffers (see [`crate::plan::Step::Dispatch`]).
    pub args: Vec<Arg>,
    /// Threads per workgroup (1-D).
    pub workgroup_size: u32,
    /// Threads needed, one per work item (the executor's bounds check): elements, or
    /// `vector`-element groups, of an elementwise kernel; output elements of a reduce
    /// kernel; register blocks of a matmul.
    pub threads: u64,
    /// IR node indices this kernel computes (its fusion group).
    pub nodes: Vec<u32>,
}

/// The vector width of an elementwise kernel over `shape` with this `body` and `stores`: 4
/// when every element group `4w..4w+4` (row-major) shares all outer indices and can be read
/// and written as aligned 4-element vectors, else 1. With `inner` the last axis whose extent
/// is not 1: `shape[inner]` (hence the element count) is a multiple of 4; every load either
/// has stride 1 on `inner`, its offset and its strides on the other non-unit axes being
/// multiples of 4 (an aligned vector), or stride 0 on `inner` (a splat of one element); every
/// store's offset is a multiple of 4.
pub fn elementwise_vector(shape: &[usize], body: &Body, stores: &[Store]) -> u32 {
    const W: usize = 4;
    let Some(inner) = shape.iter().rposition(|&d| d > 1) else {
        return 1; // one element
    };
    if !shape[inner].is_multiple_of(W) {
        return 1;
    }
    let loads_ok = body.nodes.iter().all(|n| match &n.expr {
        Expr::Gather { .. } | Expr::Random { .. } => false,
        Expr::Load { view, .. } => match view.strides.get(inner) {
            Some(0) => true,
            Some(1) => {
                view.offset.is_multiple_of(W)
                    && view
                        .strides
                        .iter()
                        .zip(shape)
                        .enumerate()
                        .all(|(d, (&s, &e))| d == inner || e == 1 || s.is_multiple_of(W))
            }
            _ => false,
        },
        _ => true,
    });
    let stores_ok = stores.iter().all(|s| {
        s.offset.is_multiple_of(W)
            && match &s.strides {
                None => true,
                Some(st) => {
                    st.len() == shape.len()
                        && st[inner] == 1
                        && st
                            .iter()
                            .zip(shape)
                            .enumerate()
                            .all(|(d, (&s, &e))| d == inner || e == 1 || s.is_multiple_of(W))
                }
            }
    });
    if loads_ok && stores_ok {
        W as u32
    } else {
        1
    }
}
