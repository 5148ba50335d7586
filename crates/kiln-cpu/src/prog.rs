//! Block programs: an SSA [`Body`] compiled at load time into a list of register operations,
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

use kiln_ir::{unravel, BinaryOp, DType, UnaryOp};
use kiln_plan::kernel::{Arg, Body, Expr, Store};
use kiln_plan::{Error, PlanError, Result};

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

struct Builder<'a> {
    args: &'a [Arg],
    raw: Vec<RawAccess>,
    access_arg: Vec<Option<(u32, usize)>>,
    ops: Vec<Op>,
    nf: u32,
    ni: u32,
    free_f: Vec<u32>,
    free_i: Vec<u32>,
    consts_f: Vec<(u32, f32)>,
    consts_i: Vec<(u32, i32)>,
    uni: Vec<bool>,
}

impl Builder<'_> {
    fn alloc(&mut self, int: bool) -> Reg {
        let (free, n) = if int {
            (&mut self.free_i, &mut self.ni)
        } else {
            (&mut self.free_f, &mut self.nf)
        };
        let i = free.pop().unwrap_or_else(|| {
            *n += 1;
            *n - 1
        });
        Reg { int, i }
    }
    /// A register no other value ever uses (constants are filled once per scratch).
    fn alloc_fresh(&mut self, int: bool) -> Reg {
        let n = if int { &mut self.ni } else { &mut self.nf };
        *n += 1;
        Reg { int, i: *n - 1 }
    }
    fn release(&mut self, r: Reg) {
        if r.int {
            self.free_i.push(r.i)
        } else {
            self.free_f.push(r.i)
        }
    }
    fn access(&mut self, a: RawAccess, arg: Option<(u32, usize)>) -> u32 {
        self.raw.push(a);
        self.access_arg.push(arg);
        (self.raw.len() - 1) as u32
    }
    fn arg_int(&self, arg: u32) -> Result<bool> {
        self.args
            .get(arg as usize)
            .map(|a| a.dtype == DType::I32)
            .ok_or_else(|| bad(format!("arg {arg} does not exist")))
    }
}

fn bad(msg: String) -> Error {
    Error::Plan(PlanError::new(format!("kernel: {msg}")))
}

/// The full-shape strides of a store (row-major over `shape` when it has none).
pub fn store_access(st: &Store, shape: &[usize]) -> RawAccess {
    RawAccess {
        offset: st.offset,
        strides: st
            .strides
            .clone()
            .unwrap_or_else(|| kiln_ir::Shape::new(shape.to_vec()).strides()),
    }
}

impl Phase {
    /// Compiles `body` with its `stores` for a phase over `shape` iterating `iter_axes`
    /// (sorted). `store_shape` gives the row-major layout of dense stores; `keep` lists the
    /// expressions read after the body (fold values); `accs_uniform`: accumulators are the
    /// same at every element (stage and broadcast bodies).
    #[allow(clippy::too_many_arguments)] // one call per phase kind, each naming every part
    pub fn new(
        body: &Body,
        stores: &[Store],
        args: &[Arg],
        shape: &[usize],
        iter_axes: &[usize],
        store_shape: &[usize],
        keep: &[u32],
        accs_uniform: bool,
    ) -> Result<Phase> {
        let rank = shape.len();
        let fit = |s: &[usize]| -> Result<Vec<usize>> {
            if s.len() < rank {
                return Err(bad(format!("rank {} view over rank {rank}", s.len())));
            }
            Ok(s[..rank].to_vec())
        };
        let mut b = Builder {
            args,
            raw: vec![],
            access_arg: vec![],
            ops: vec![],
            nf: 0,
            ni: 0,
            free_f: vec![],
            free_i: vec![],
            consts_f: vec![],
            consts_i: vec![],
            uni: vec![],
        };
        // last use of every expression (stores and folds keep theirs to the end)
        let n = body.nodes.len();
        let mut last = vec![0usize; n];
        for (k, node) in body.nodes.iter().enumerate() {
            for o in operands(&node.expr) {
                let o = o as usize;
                if o >= k {
                    return Err(bad(format!("expression {k} reads a later one")));
                }
                last[o] = k;
            }
        }
        // values read after the body (stores, folds) stay in their registers
        let mut pinned = vec![false; n];
        for &v in keep.iter().chain(stores.iter().map(|s| &s.value)) {
            if let Some(p) = pinned.get_mut(v as usize) {
                *p = true;
            }
        }
        let mut regs: Vec<Reg> = Vec::with_capacity(n);
        let mut is_const = vec![false; n];
        // uniform: the same value at every element of a task (constants, loads and
        // accumulators that do not move over the iterated axes, and what only they feed)
        let mut uni: Vec<bool> = Vec::with_capacity(n);
        let still = |st: &[usize]| iter_axes.iter().all(|&d| st.get(d).is_none_or(|&x| x == 0));
        for (k, node) in body.nodes.iter().enumerate() {
            let int = node.dtype == DType::I32;
            // converted operands: a cast into a fresh register where types differ
            let mut temps = vec![];
            let mut conv = |b: &mut Builder, r: Reg, to_int: bool| -> Reg {
                if r.int == to_int {
                    return r;
                }
                let t = b.alloc(to_int);
                b.ops.push(Op::Cast { src: r, dst: t });
                temps.push(t);
                t
            };
            let dst;
            let u = match &node.expr {
                Expr::Const(_) => true,
                Expr::Load { view, .. } => still(&view.strides),
                Expr::Acc(_) => accs_uniform,
                Expr::Random { .. } => false,
                Expr::Gather { view, index, .. } => {
                    still(&view.strides) && uni.get(*index as usize) == Some(&true)
                }
                e => operands(e)
                    .iter()
                    .all(|&o| uni.get(o as usize) == Some(&true)),
            };
            uni.push(u);
            let ops_before = b.ops.len();
            match &node.expr {
                Expr::Const(c) => {
                    dst = b.alloc_fresh(int);
                    if int {
                        b.consts_i.push((dst.i, *c as i32));
                    } else {
                        b.consts_f.push((dst.i, *c as f32));
                    }
                    is_const[k] = true;
                }
                Expr::Load { arg, view } => {
                    let a = b.access(
                        RawAccess {
                            offset: view.offset,
                            strides: fit(&view.strides)?,
                        },
                        Some((*arg, 0)),
                    );
                    b.arg_int(*arg)?;
                    dst = b.alloc(int);
                    b.ops.push(Op::Load {
                        access: a,
                        arg: *arg,
                        dst,
                    });
                }
                Expr::Gather {
                    arg,
                    view,
                    index,
                    rows,
                    row_stride,
                } => {
                    let extra = rows.saturating_sub(1).saturating_mul(*row_stride);
                    let a = b.access(
                        RawAccess {
                            offset: view.offset,
                            strides: fit(&view.strides)?,
                        },
                        Some((*arg, extra)),
                    );
                    b.arg_int(*arg)?;
                    let index = conv(&mut b, regs[*index as usize], true);
                    dst = b.alloc(int);
                    b.ops.push(Op::Gather {
                        access: a,
                        arg: *arg,
                        index,
                        rows: *rows,
                        row_stride: *row_stride,
                        dst,
                    });
                }
                Expr::Random {
                    seed,
                    counter,
                    strides,
                } => {
                    let a = b.access(
                        RawAccess {
                            offset: 0,
                            strides: fit(strides)?,
                        },
                        None,
                    );
                    let counter = conv(&mut b, regs[*counter as usize], true);
                    let f = b.alloc(false);
                    b.ops.push(Op::Random {
                        access: a,
                        seed: *seed,
                        counter,
                        dst: f,
                    });
                    if int {
                        dst = b.alloc(true);
                        b.ops.push(Op::Cast { src: f, dst });
                        b.release(f);
                    } else {
                        dst = f;
                    }
                }
                Expr::Unary(op, x) => {
                    let src = conv(&mut b, regs[*x as usize], int);
                    dst = b.alloc(int);
                    b.ops.push(Op::Un { op: *op, src, dst });
                }
                Expr::Binary(op, x, y) => {
                    let a = conv(&mut b, regs[*x as usize], int);
                    let c = conv(&mut b, regs[*y as usize], int);
                    dst = b.alloc(int);
                    b.ops.push(Op::Bin {
                        op: *op,
                        a,
                        b: c,
                        dst,
                    });
                }
                Expr::Select(c, x, y) => {
                    let c = regs[*c as usize];
                    let a = conv(&mut b, regs[*x as usize], int);
                    let e = conv(&mut b, regs[*y as usize], int);
                    dst = b.alloc(int);
                    b.ops.push(Op::Select { c, a, b: e, dst });
                }
                Expr::Cast(x) => {
                    let src = regs[*x as usize];
                    dst = b.alloc(int);
                    b.ops.push(Op::Cast { src, dst });
                }
                Expr::Acc(j) => {
                    dst = b.alloc(int);
                    b.ops.push(Op::Acc { j: *j, dst });
                }
            }
            for t in temps {
                b.release(t);
            }
            // every op of a uniform expression (its casts too) computes one element
            while b.uni.len() < b.ops.len() {
                b.uni.push(u);
            }
            let _ = ops_before;
            regs.push(dst);
            // free operands whose last use is this expression (each once: `x * x`)
            let mut ops = operands(&node.expr);
            ops.sort_unstable();
            ops.dedup();
            for o in ops {
                let o = o as usize;
                if last[o] == k && !pinned[o] && !is_const[o] {
                    b.release(regs[o]);
                }
            }
        }
        let mut stores_out = vec![];
        for st in stores {
            let src = *regs
                .get(st.value as usize)
                .ok_or_else(|| bad(format!("store of missing value {}", st.value)))?;
            b.arg_int(st.arg)?;
            let mut ra = store_access(st, store_shape);
            ra.strides = fit(&ra.strides)?;
            let access = b.access(ra, Some((st.arg, 0)));
            stores_out.push(StoreOp {
                arg: st.arg,
                access,
                src,
            });
        }
        // coalesce the iterated axes over every access
        let mut axes: Vec<usize> = iter_axes
            .iter()
            .copied()
            .filter(|&d| d < rank && shape[d] != 1)
            .collect();
        let mut dims: Vec<usize> = axes.iter().map(|&d| shape[d]).collect();
        let mut strides: Vec<Vec<usize>> = b
            .raw
            .iter()
            .map(|a| axes.iter().map(|&d| a.strides[d]).collect())
            .collect();
        let mut k = dims.len();
        while k >= 2 {
            let (o, i) = (k - 2, k - 1);
            if strides.iter().all(|s| s[o] == s[i] * dims[i]) {
                dims[o] *= dims[i];
                dims.remove(i);
                axes.remove(i);
                for s in &mut strides {
                    s[o] = s[i];
                    s.remove(i);
                }
            }
            k -= 1;
        }
        if dims.is_empty() {
            dims.push(1);
            for s in &mut strides {
                s.push(0);
            }
        }
        let accesses = b
            .raw
            .iter()
            .zip(strides)
            .map(|(a, s)| Access {
                offset: a.offset,
                fixed: (0..rank)
                    .filter(|d| !iter_axes.contains(d))
                    .map(|d| (d, a.strides[d]))
                    .collect(),
                strides: s,
            })
            .collect();
        let mut extents = vec![];
        for (a, arg) in b.raw.iter().zip(&b.access_arg) {
            if let Some((arg, extra)) = arg {
                let m = max_index(a.offset, &a.strides, shape)
                    .and_then(|m| m.checked_add(*extra))
                    .ok_or_else(|| bad("an access overflows".into()))?;
                extents.push((*arg, m));
            }
        }
        let numel = dims.iter().product();
        Ok(Phase {
            dims,
            numel,
            accesses,
            ops: b.ops,
            uniform: b.uni,
            consts_f: b.consts_f,
            consts_i: b.consts_i,
            stores: stores_out,
            nf: b.nf as usize,
            ni: b.ni as usize,
            values: regs,
            extents,
        })
    }

    /// Fresh scratch memory for this phase (constants filled in).
    pub fn scratch(&self) -> Scratch {
        let mut s = Scratch {
            f: vec![0.0; self.nf.max(1) * BLOCK],
            i: vec![0; self.ni.max(1) * BLOCK],
            idx: vec![0; BLOCK],
            runs: vec![],
            bases: vec![],
            multi: vec![0; self.dims.len()],
        };
        for &(r, c) in &self.consts_f {
            s.f[r as usize * BLOCK..][..BLOCK].fill(c);
        }
        for &(r, c) in &self.consts_i {
            s.i[r as usize * BLOCK..][..BLOCK].fill(c);
        }
        s
    }

    /// Makes `s` fit this phase (reusing its memory).
    pub fn prepare(&self, s: &mut Scratch) {
        if s.f.len() < self.nf * BLOCK {
            s.f.resize(self.nf * BLOCK, 0.0);
        }
        if s.i.len() < self.ni * BLOCK {
            s.i.resize(self.ni * BLOCK, 0);
        }
        s.idx.resize(BLOCK, 0);
        s.multi.resize(self.dims.len(), 0);
        for &(r, c) in &self.consts_f {
            s.f[r as usize * BLOCK..][..BLOCK].fill(c);
        }
        for &(r, c) in &self.consts_i {
            s.i[r as usize * BLOCK..][..BLOCK].fill(c);
        }
    }

    /// Per-access base offsets for a task whose fixed (non-iterated) axes are at `fixed_idx`
    /// (a full-rank multi-index; iterated axes ignored).
    pub fn bases(&self, fixed_idx: &[usize], out: &mut Vec<usize>) {
        out.clear();
        out.extend(self.accesses.iter().map(|a| {
            a.offset
                + a.fixed
                    .iter()
                    .map(|&(d, s)| fixed_idx.get(d).copied().unwrap_or(0) * s)
                    .sum::<usize>()
        }));
    }

    /// The value register of expression `e` as an f32/i32 slice of the last block.
    pub fn value<'s>(&self, s: &'s Scratch, e: u32, n: usize) -> Value<'s> {
        let r = self.values[e as usize];
        let at = r.i as usize * BLOCK;
        if r.int {
            Value::I(&s.i[at..at + n])
        } else {
            Value::F(&s.f[at..at + n])
        }
    }

    /// Evaluates the block `[start, start + n)` of the iteration space (`n <= BLOCK`) and
    /// performs its stores.
    ///
    /// # Safety
    /// `args` are the kernel's bound buffers, every access of the phase lies inside them
    /// (checked at load), and no other task touches the elements this block stores.
    pub unsafe fn run_block(
        &self,
        s: &mut Scratch,
        args: &[RawBuf],
        task_bases: &[usize],
        start: usize,
        n: usize,
        accs: Accs,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return self.run_block_avx2(s, args, task_bases, start, n, accs);
            }
        }
        self.run_block_impl(s, args, task_bases, start, n, accs)
    }

    /// [`Phase::run_block`] compiled for AVX2 (8-wide vectors). Multiplies and adds are never
    /// fused, so the bits are those of the baseline build.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_block_avx2(
        &self,
        s: &mut Scratch,
        args: &[RawBuf],
        task_bases: &[usize],
        start: usize,
        n: usize,
        accs: Accs,
    ) {
        self.run_block_impl(s, args, task_bases, start, n, accs)
    }

    // index loops over several slices of one length are what vectorises here
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    unsafe fn run_block_impl(
        &self,
        s: &mut Scratch,
        args: &[RawBuf],
        task_bases: &[usize],
        start: usize,
        n: usize,
        accs: Accs,
    ) {
        // runs along the last coalesced axis
        let last = self.dims.len() - 1;
        let inner = self.dims[last];
        s.runs.clear();
        s.bases.clear();
        unravel(start, &self.dims, &mut s.multi);
        let mut pos = 0;
        while pos < n {
            let len = (inner - s.multi[last]).min(n - pos);
            s.runs.push((pos, len));
            for (a, &tb) in self.accesses.iter().zip(task_bases) {
                let off: usize = s.multi.iter().zip(&a.strides).map(|(i, s)| i * s).sum();
                s.bases.push(tb + off);
            }
            pos += len;
            // advance the multi-index by len
            s.multi[last] += len;
            let mut d = last;
            while d > 0 && s.multi[d] >= self.dims[d] {
                s.multi[d] = 0;
                s.multi[d - 1] += 1;
                d -= 1;
            }
        }
        let na = self.accesses.len();
        let f = s.f.as_mut_ptr();
        let ip = s.i.as_mut_ptr();
        let full = n;
        let len_now = std::cell::Cell::new(n);
        let fr = |r: Reg| reg(f, r, len_now.get());
        let ir = |r: Reg| reg(ip, r, len_now.get());
        let fw = |r: Reg| reg_mut(f, r, len_now.get());
        let iw = |r: Reg| reg_mut(ip, r, len_now.get());
        let one_run = [(0usize, 1usize)];
        for (op, &u) in self.ops.iter().zip(&self.uniform) {
            let n = if u { 1 } else { full };
            len_now.set(n);
            let runs: &[(usize, usize)] = if u { &one_run } else { &s.runs };
            match *op {
                Op::Load { access, arg, dst } => {
                    let buf = args[arg as usize];
                    let step = self.accesses[access as usize].strides[last];
                    for (r, &(p, len)) in runs.iter().enumerate() {
                        let base = s.bases[r * na + access as usize];
                        debug_assert!(base + (len - 1) * step < buf.len, "load past the end {:?} {:?} base {base} len {len} step {step} buf {} start {start} n {n} runs {:?}", self.dims, self.accesses[access as usize], buf.len, s.runs);
                        match (dst.int, buf.dtype) {
                            (false, DType::F32) => {
                                load(&mut fw(dst)[p..p + len], buf.fp(), base, step, |x| x)
                            }
                            (false, DType::I32) => {
                                load(&mut fw(dst)[p..p + len], buf.ip(), base, step, |x| x as f32)
                            }
                            (true, DType::I32) => {
                                load(&mut iw(dst)[p..p + len], buf.ip(), base, step, |x| x)
                            }
                            (true, DType::F32) => {
                                load(&mut iw(dst)[p..p + len], buf.fp(), base, step, |x| x as i32)
                            }
                        }
                    }
                }
                Op::Gather {
                    access,
                    arg,
                    index,
                    rows,
                    row_stride,
                    dst,
                } => {
                    let buf = args[arg as usize];
                    self.indices(s, access, n);
                    let idx = ir(index);
                    for e in 0..n {
                        let r = idx[e];
                        let ok = r >= 0 && (r as usize) < rows;
                        let at = s.idx[e] + if ok { r as usize * row_stride } else { 0 };
                        debug_assert!(!ok || at < buf.len, "gather past the end");
                        match (dst.int, buf.dtype) {
                            (false, DType::F32) => {
                                fw(dst)[e] = if ok { *buf.fp().add(at) } else { 0.0 }
                            }
                            (false, DType::I32) => {
                                fw(dst)[e] = if ok { *buf.ip().add(at) as f32 } else { 0.0 }
                            }
                            (true, DType::I32) => {
                                iw(dst)[e] = if ok { *buf.ip().add(at) } else { 0 }
                            }
                            (true, DType::F32) => {
                                iw(dst)[e] = if ok { *buf.fp().add(at) as i32 } else { 0 }
                            }
                        }
                    }
                }
                Op::Random {
                    access,
                    seed,
                    counter,
                    dst,
                } => {
                    self.indices(s, access, n);
                    let c = ir(counter);
                    let out = fw(dst);
                    for e in 0..n {
                        out[e] =
                            kiln_ir::random::device_uniform(seed, c[e] as u32, s.idx[e] as u32);
                    }
                }
                Op::Acc { j, dst } => {
                    let j = j as usize;
                    match accs {
                        Accs::None => fill(f, ip, dst, n, Scalar::F(f32::NAN)),
                        Accs::Splat(v) => match v.get(j) {
                            Some(&x) => fill(f, ip, dst, n, x),
                            None => fill(f, ip, dst, n, Scalar::F(f32::NAN)),
                        },
                        Accs::Chunk {
                            values,
                            stride,
                            first,
                        } => {
                            let src = &values[j * stride + first..][..n];
                            if dst.int {
                                for (o, v) in iw(dst).iter_mut().zip(src) {
                                    *o = v.i();
                                }
                            } else {
                                for (o, v) in fw(dst).iter_mut().zip(src) {
                                    *o = v.f();
                                }
                            }
                        }
                        Accs::Cols { cols, first } => match cols.get(j) {
                            Some(AccCol::F(c)) => {
                                let src = &c[first..first + n];
                                if dst.int {
                                    for (o, v) in iw(dst).iter_mut().zip(src) {
                                        *o = *v as i32;
                                    }
                                } else {
                                    fw(dst).copy_from_slice(src);
                                }
                            }
                            Some(AccCol::I(c)) => {
                                let src = &c[first..first + n];
                                if dst.int {
                                    iw(dst).copy_from_slice(src);
                                } else {
                                    for (o, v) in fw(dst).iter_mut().zip(src) {
                                        *o = *v as f32;
                                    }
                                }
                            }
                            None => fill(f, ip, dst, n, Scalar::F(f32::NAN)),
                        },
                        Accs::Row(row) => {
                            if j == 0 {
                                if dst.int {
                                    for (o, v) in iw(dst).iter_mut().zip(row) {
                                        *o = *v as i32;
                                    }
                                } else {
                                    fw(dst).copy_from_slice(&row[..n]);
                                }
                            } else {
                                fill(f, ip, dst, n, Scalar::F(f32::NAN))
                            }
                        }
                    }
                }
                Op::Cast { src, dst } => match (src.int, dst.int) {
                    (false, false) => fw(dst).copy_from_slice(fr(src)),
                    (true, true) => iw(dst).copy_from_slice(ir(src)),
                    (true, false) => {
                        for (o, &x) in fw(dst).iter_mut().zip(ir(src)) {
                            *o = x as f32
                        }
                    }
                    (false, true) => {
                        for (o, &x) in iw(dst).iter_mut().zip(fr(src)) {
                            *o = x as i32
                        }
                    }
                },
                Op::Select { c, a, b, dst } => {
                    if dst.int {
                        let (a, b, o) = (ir(a), ir(b), iw(dst));
                        if c.int {
                            let c = ir(c);
                            for e in 0..n {
                                o[e] = if c[e] != 0 { a[e] } else { b[e] };
                            }
                        } else {
                            let c = fr(c);
                            for e in 0..n {
                                o[e] = if c[e] != 0.0 { a[e] } else { b[e] };
                            }
                        }
                    } else {
                        let (a, b, o) = (fr(a), fr(b), fw(dst));
                        if c.int {
                            let c = ir(c);
                            for e in 0..n {
                                o[e] = if c[e] != 0 { a[e] } else { b[e] };
                            }
                        } else {
                            let c = fr(c);
                            for e in 0..n {
                                o[e] = if c[e] != 0.0 { a[e] } else { b[e] };
                            }
                        }
                    }
                }
                Op::Un { op, src, dst } => {
                    if dst.int {
                        crate::math::unary_i32(op, ir(src), iw(dst))
                    } else {
                        crate::math::unary_f32(op, fr(src), fw(dst))
                    }
                }
                Op::Bin { op, a, b, dst } => {
                    if dst.int {
                        crate::math::binary_i32(op, ir(a), ir(b), iw(dst))
                    } else {
                        crate::math::binary_f32(op, fr(a), fr(b), fw(dst))
                    }
                }
            }
            if u && full > 1 {
                let d = op_dst(op);
                len_now.set(full);
                if d.int {
                    let r = iw(d);
                    let x = r[0];
                    r[1..].fill(x);
                } else {
                    let r = fw(d);
                    let x = r[0];
                    r[1..].fill(x);
                }
            }
        }
        let n = full;
        len_now.set(n);
        for st in &self.stores {
            let buf = args[st.arg as usize];
            let step = self.accesses[st.access as usize].strides[last];
            for (r, &(p, len)) in s.runs.iter().enumerate() {
                let base = s.bases[r * na + st.access as usize];
                debug_assert!(base + (len - 1) * step < buf.len, "store past the end");
                match (st.src.int, buf.dtype) {
                    (false, DType::F32) => {
                        store(&fr(st.src)[p..p + len], buf.fp(), base, step, |x| x)
                    }
                    (false, DType::I32) => {
                        store(&fr(st.src)[p..p + len], buf.ip(), base, step, |x| x as i32)
                    }
                    (true, DType::I32) => {
                        store(&ir(st.src)[p..p + len], buf.ip(), base, step, |x| x)
                    }
                    (true, DType::F32) => {
                        store(&ir(st.src)[p..p + len], buf.fp(), base, step, |x| x as f32)
                    }
                }
            }
        }
    }

    /// Fills `s.idx[..n]` with the element index of `access` at every element of the block.
    fn indices(&self, s: &mut Scratch, access: u32, n: usize) {
        let na = self.accesses.len();
        let step = self.accesses[access as usize].strides[self.dims.len() - 1];
        for (r, &(p, len)) in s.runs.iter().enumerate() {
            let base = s.bases[r * na + access as usize];
            for (j, o) in s.idx[p..p + len].iter_mut().enumerate() {
                *o = base + j * step;
            }
        }
        let _ = n;
    }
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
