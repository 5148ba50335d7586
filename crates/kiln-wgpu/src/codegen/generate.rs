//! Generation of kernels as [`crate::wgsl`] syntax trees: whole elementwise and reduce
//! kernels, and the generated half of a matmul kernel (bindings, operand accessors and the
//! epilogue function that the library shader calls).
//!
//! [`Gen`] accumulates statements: the thread index and its bounds check, the unravelled
//! multi-index (one `let` per axis of extent > 1), one `let` per body expression, then the
//! body's stores. Loads compute `offset + Σ idx[d] * stride[d]` from literals; a contiguous
//! view reads `arg[flat]` directly. A reduce kernel hoists the part of each load's index
//! that depends only on the output element (`<phase>base<i>`) out of its sequential loops
//! over the reduced elements. Identical body expressions are emitted once (a later copy is
//! `let eN = eM`), so the loads that fusion duplicates are read once.
//!
//! An elementwise kernel with `vector == 4` evaluates its body on `vec4` values: thread `gid`
//! handles elements `4*gid .. 4*gid + 4`; a load with stride 1 on the innermost non-unit axis
//! reads `arg[e / 4u]` from an `array<vec4<T>>` binding, a load with stride 0 there splats one
//! element, and stores write `arg[e / 4u]` (kiln-opt's `elementwise_vector` decides when this
//! is legal; the generator re-checks it).

use super::{arg_name, sanitize, scalar, CodegenError, ENTRY_POINT};
use crate::wgsl::{
    BinOp, Binding, Builtin, BuiltinInput, Expr as W, Function, Module, Param, Scalar, Stmt,
    StorageAccess, Type, UnOp, UniformArray,
};
use kiln_ir::{BinaryOp, DType, UnaryOp};
use kiln_plan::kernel::{Body, Expr, Kernel, KernelOp, MatOperand, ReduceKind, Store, View};
use std::cell::RefCell;

/// State of one generated kernel: its statements and structural checks.
struct Gen<'k> {
    kernel: &'k Kernel,
    stmts: Vec<Stmt>,
    /// Args declared `array<vec4<f32>>` (matmul operands read 4-wide); element `e` of such
    /// an arg is `arg[e / 4u][e % 4u]`.
    vec4_args: Vec<bool>,
    /// Lanes of body values: 1, or 4 in a vectorized elementwise kernel, whose values are
    /// `vec4`s, whose loads read `arg[e / 4u]` (stride 1 on `vector_axis`) or splat one
    /// element (stride 0), and whose stores write `arg[e / 4u]`.
    width: u32,
    /// The innermost axis of extent > 1 of a vectorized kernel.
    vector_axis: usize,
    /// Element offsets the kernel reads from its uniform table `kp` (slot `i` is
    /// `kp[i / 4][i % 4]`), so that kernels equal but for where their tensors live share
    /// one shader and pipeline.
    offsets: RefCell<Vec<u32>>,
    /// Whether a body uses `kiln_hash` (the module then defines it).
    hash: std::cell::Cell<bool>,
    /// Workgroup arrays of a tree reduction: (name, element type, length).
    wg_arrays: Vec<(String, Scalar, u32)>,
    /// In a tree reduction: the workgroup size and the invocation's index in it.
    tree: Option<(u32, W)>,
    /// Flush subnormal f32 values to 0 at stores ([`super::Target::flush_subnormals`]).
    flush: bool,
}

/// Stored f32 values smaller than this in magnitude are written as 0 on CPU adapters
/// ([`super::Target::flush_subnormals`]): 2^-60, so that a product of two stored values
/// (or a square, as Adam's second moment) stays out of the subnormal range.
pub const FLUSH_BELOW: f32 = 8.673_617e-19;

/// Name of the uniform offset table of a kernel.
pub(super) const OFFSETS: &str = "kp";

/// Maps (expression index, view) of a load to its element index.
type LoadIndex<'a> = dyn FnMut(&Gen<'_>, usize, &View) -> Result<W, CodegenError> + 'a;

impl<'k> Gen<'k> {
    fn new(kernel: &'k Kernel) -> Self {
        Gen {
            kernel,
            stmts: Vec::new(),
            vec4_args: vec![false; kernel.args.len()],
            width: 1,
            vector_axis: 0,
            offsets: RefCell::new(Vec::new()),
            hash: std::cell::Cell::new(false),
            wg_arrays: Vec::new(),
            tree: None,
            flush: false,
        }
    }

    /// The helper functions the bodies call (`kiln_hash` when noise is drawn).
    fn helpers(&self) -> Vec<Function> {
        if !self.hash.get() {
            return vec![];
        }
        // PCG's RXS-M-XS output function on wrapping u32 (kiln_ir::random::hash32)
        let x = || W::ident("x");
        let v = || W::ident("v");
        let w = || W::ident("w");
        let u = Type::Scalar(Scalar::U32);
        vec![Function {
            name: "kiln_hash".into(),
            workgroup_size: None,
            params: vec![u32_param("x")],
            ret: Some(u.clone()),
            body: vec![
                Stmt::Let(
                    "v".into(),
                    u.clone(),
                    x().bin(BinOp::Mul, W::u32(747_796_405))
                        .bin(BinOp::Add, W::u32(2_891_336_453)),
                ),
                Stmt::Let(
                    "w".into(),
                    u,
                    v().bin(
                        BinOp::Shr,
                        v().bin(BinOp::Shr, W::u32(28)).bin(BinOp::Add, W::u32(4)),
                    )
                    .bin(BinOp::Xor, v())
                    .bin(BinOp::Mul, W::u32(277_803_737)),
                ),
                Stmt::Return(Some(w().bin(BinOp::Shr, W::u32(22)).bin(BinOp::Xor, w()))),
            ],
        }]
    }

    /// The offset table: one `u32` per slot, padded to whole `vec4`s.
    pub(super) fn offset_table(&self) -> Vec<u32> {
        let mut v = self.offsets.borrow().clone();
        v.resize(v.len().div_ceil(4) * 4, 0);
        v
    }

    /// The type of a body value of dtype `dt`.
    fn ty(&self, dt: DType) -> Type {
        vtype(dt, self.width)
    }

    /// Element `index` of arg `a` (a reference: readable and, for written args, assignable).
    fn element(&self, a: usize, index: W) -> W {
        if self.vec4_args.get(a).copied().unwrap_or(false) {
            W::ident(arg_name(a))
                .index(index.clone().bin(BinOp::Div, W::u32(4)))
                .index(index.bin(BinOp::Rem, W::u32(4)))
        } else {
            W::ident(arg_name(a)).index(index)
        }
    }

    fn malformed(&self, what: String) -> CodegenError {
        CodegenError::Malformed {
            label: self.kernel.label.clone(),
            what,
        }
    }

    fn let_u32(&mut self, name: String, value: W) -> W {
        self.stmts
            .push(Stmt::Let(name.clone(), Type::Scalar(Scalar::U32), value));
        W::Ident(name)
    }

    /// Emits `let {prefix}{d}` for each axis of `dims` whose extent is not 1, unravelling the
    /// row-major flat index `flat`; axes of extent 1 give `None` (index 0).
    fn unravel(
        &mut self,
        prefix: &str,
        flat: &W,
        dims: &[usize],
    ) -> Result<Vec<Option<W>>, CodegenError> {
        let mut out = vec![None; dims.len()];
        let mut inner: u64 = 1;
        for d in (0..dims.len()).rev() {
            let dim = dims[d] as u64;
            if dim != 1 {
                let mut e = flat.clone();
                if inner != 1 {
                    e = e.bin(BinOp::Div, W::u32(self.lit_u32(inner)?));
                }
                if d != 0 {
                    e = e.bin(BinOp::Rem, W::u32(self.lit_u32(dim)?));
                }
                out[d] = Some(self.let_u32(format!("{prefix}{d}"), e));
            }
            inner = inner.saturating_mul(dim);
        }
        Ok(out)
    }

    fn lit_u32(&self, v: u64) -> Result<u32, CodegenError> {
        u32::try_from(v).map_err(|_| CodegenError::Unsupported {
            label: self.kernel.label.clone(),
            what: format!("index value {v} does not fit u32 indexing"),
        })
    }

    /// `base + Σ idx[d] * strides[d]` over the axes where both are present and nonzero.
    fn view_terms(
        &self,
        mut acc: Option<W>,
        strides: &[usize],
        idx: &[Option<W>],
    ) -> Result<W, CodegenError> {
        for (i, &s) in idx.iter().zip(strides) {
            if let (Some(i), true) = (i, s != 0) {
                let term = if s == 1 {
                    i.clone()
                } else {
                    i.clone().bin(BinOp::Mul, W::u32(self.lit_u32(s as u64)?))
                };
                acc = Some(match acc {
                    Some(a) => a.bin(BinOp::Add, term),
                    None => term,
                });
            }
        }
        Ok(acc.unwrap_or(W::u32(0)))
    }

    /// A nonzero element offset, read from the uniform offset table (equal values share a
    /// slot); `None` for 0.
    fn offset(&self, offset: usize) -> Result<Option<W>, CodegenError> {
        if offset == 0 {
            return Ok(None);
        }
        let v = self.lit_u32(offset as u64)?;
        let mut table = self.offsets.borrow_mut();
        let slot = match table.iter().position(|&x| x == v) {
            Some(i) => i,
            None => {
                table.push(v);
                table.len() - 1
            }
        };
        Ok(Some(
            W::ident(OFFSETS)
                .index(W::u32(slot as u32 / 4))
                .member(["x", "y", "z", "w"][slot % 4]),
        ))
    }

    /// `@group(0) @binding(args.len())`: the offset table, when the kernel has offsets.
    fn uniforms(&self) -> Vec<UniformArray> {
        let n = self.offsets.borrow().len();
        if n == 0 {
            return vec![];
        }
        vec![UniformArray {
            group: 0,
            binding: self.kernel.args.len() as u32,
            name: OFFSETS.into(),
            len: n.div_ceil(4) as u32,
        }]
    }

    fn check_rank(&self, view: &View, rank: usize) -> Result<(), CodegenError> {
        if view.strides.len() != rank {
            return Err(self.malformed(format!(
                "a view has {} strides over a rank-{rank} iteration shape",
                view.strides.len()
            )));
        }
        Ok(())
    }

    /// Index expression of a load through `view` at the multi-index `idx` of `dims`, whose
    /// row-major flat index is `flat`.
    fn view_index(
        &self,
        view: &View,
        dims: &[usize],
        idx: &[Option<W>],
        flat: &W,
    ) -> Result<W, CodegenError> {
        self.check_rank(view, dims.len())?;
        if view.is_contiguous(dims) {
            return Ok(flat.clone());
        }
        self.view_terms(self.offset(view.offset)?, &view.strides, idx)
    }

    /// Emits `body` as `let {prefix}{i}` statements (nothing for an empty body). `accs` are
    /// the accumulators [`Expr::Acc`] may read in this phase, with their dtypes.
    fn body(
        &mut self,
        body: &Body,
        prefix: &str,
        accs: &[(W, DType)],
        load: &mut LoadIndex<'_>,
    ) -> Result<(), CodegenError> {
        // Common subexpressions (fusion duplicates lazy values and their loads): an expression
        // identical to an earlier one, operands resolved, becomes `let {prefix}{i} = earlier`,
        // and later expressions read the earlier value. Bodies are pure (every load happens
        // before the stores), so this changes no value.
        let mut canon: Vec<usize> = Vec::with_capacity(body.nodes.len());
        let mut seen: std::collections::HashMap<(String, DType), usize> =
            std::collections::HashMap::new();
        for (i, node) in body.nodes.iter().enumerate() {
            let dt = node.dtype;
            let name = |j: usize| W::Ident(format!("{prefix}{}", canon[j]));
            let operand = |id: u32| -> Result<(W, DType), CodegenError> {
                let j = id as usize;
                if j >= i {
                    return Err(self.malformed(format!(
                        "{prefix}{i} uses {prefix}{j}, which is not before it"
                    )));
                }
                Ok((name(j), body.nodes[j].dtype))
            };
            let value = match &node.expr {
                Expr::Load { arg, view } => {
                    let a = *arg as usize;
                    let arg_dt = self.kernel.args.get(a).map(|x| x.dtype);
                    if arg_dt != Some(dt) {
                        return Err(self.malformed(format!(
                            "{prefix}{i} loads {dt} from arg {a} ({arg_dt:?})"
                        )));
                    }
                    let index = load(self, i, view)?;
                    if self.width == 1 {
                        self.element(a, index)
                    } else if view.strides.get(self.vector_axis) == Some(&1) {
                        W::ident(arg_name(a)).index(index.bin(BinOp::Div, W::u32(4)))
                    } else {
                        W::Construct(self.ty(dt), vec![self.element(a, index)])
                    }
                }
                Expr::Gather {
                    arg,
                    view,
                    index,
                    rows,
                    row_stride,
                } => {
                    let a = *arg as usize;
                    if self.width != 1 || self.kernel.args.get(a).map(|x| x.dtype) != Some(dt) {
                        return Err(self.malformed(format!(
                            "{prefix}{i} gathers {dt} from arg {a} in a {}-wide body",
                            self.width
                        )));
                    }
                    let (ix, idt) = operand(*index)?;
                    if idt != DType::I32 || *rows == 0 {
                        return Err(self.malformed(format!(
                            "{prefix}{i} gathers with a {idt} index from {rows} rows"
                        )));
                    }
                    // a negative index becomes a huge u32: out of range like a large one
                    let r = W::Convert(Scalar::U32, Box::new(ix));
                    let rows_lit = W::u32(self.lit_u32(*rows as u64)?);
                    let clamped = W::call(
                        Builtin::Min,
                        vec![r.clone(), W::u32(self.lit_u32(*rows as u64 - 1)?)],
                    );
                    let base = load(self, i, view)?;
                    let at = base.bin(
                        BinOp::Add,
                        clamped.bin(BinOp::Mul, W::u32(self.lit_u32(*row_stride as u64)?)),
                    );
                    W::call(
                        Builtin::Select,
                        vec![zero(dt), self.element(a, at), r.bin(BinOp::Lt, rows_lit)],
                    )
                }
                Expr::Random {
                    seed,
                    counter,
                    strides,
                } => {
                    let (c, cdt) = operand(*counter)?;
                    if self.width != 1 || cdt != DType::I32 || dt != DType::F32 {
                        return Err(self.malformed(format!(
                            "{prefix}{i} draws {dt} noise with a {cdt} counter in a {}-wide body",
                            self.width
                        )));
                    }
                    let index = load(
                        self,
                        i,
                        &kiln_plan::kernel::View {
                            offset: 0,
                            strides: strides.clone(),
                        },
                    )?;
                    self.hash.set(true);
                    let hash = |e: W| W::CallFn("kiln_hash".into(), vec![e]);
                    let h = hash(
                        index.bin(
                            BinOp::Xor,
                            hash(
                                W::Convert(Scalar::U32, Box::new(c))
                                    .bin(BinOp::Xor, hash(W::u32(*seed))),
                            ),
                        ),
                    );
                    W::Convert(Scalar::F32, Box::new(h.bin(BinOp::Shr, W::u32(8))))
                        .bin(BinOp::Mul, W::f32(1.0 / 16_777_216.0))
                }
                Expr::Const(v) => splat(
                    match dt {
                        DType::F32 => W::f32(*v as f32),
                        DType::I32 => W::i32(*v as i32),
                    },
                    dt,
                    self.width,
                ),
                Expr::Unary(op, x) => unary(*op, operand(*x)?.0, dt, self.width),
                Expr::Binary(op, a, b) => {
                    let (a, adt) = operand(*a)?;
                    binary(*op, a, operand(*b)?.0, adt, self.width)
                }
                Expr::Select(c, a, b) => {
                    let (c, cdt) = operand(*c)?;
                    let cond = c.bin(BinOp::Ne, splat(zero(cdt), cdt, self.width));
                    W::call(Builtin::Select, vec![operand(*b)?.0, operand(*a)?.0, cond])
                }
                Expr::Cast(x) => {
                    let (x, xdt) = operand(*x)?;
                    if xdt == dt {
                        x
                    } else {
                        convert(x, dt, self.width)
                    }
                }
                Expr::Acc(j) => match accs.get(*j as usize) {
                    Some((acc, adt)) if *adt == dt => acc.clone(),
                    Some((_, adt)) => {
                        return Err(self.malformed(format!(
                            "{prefix}{i} reads the {adt} accumulator {j} as {dt}"
                        )))
                    }
                    None => {
                        return Err(self.malformed(format!(
                            "{prefix}{i} reads accumulator {j}, which this phase does not have"
                        )))
                    }
                },
            };
            let value = match seen.entry((value.to_string(), dt)) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    canon.push(*e.get());
                    W::Ident(format!("{prefix}{}", e.get()))
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i);
                    canon.push(i);
                    value
                }
            };
            self.stmts
                .push(Stmt::Let(format!("{prefix}{i}"), self.ty(dt), value));
        }
        Ok(())
    }

    /// Emits `stores` of `body` (already emitted with `prefix`) at element `offset + flat`.
    /// A value whose dtype differs from its buffer's is converted, as the interpreter does.
    fn stores(
        &mut self,
        stores: &[Store],
        body: &Body,
        prefix: &str,
        flat: &W,
        idx: &[Option<W>],
    ) -> Result<(), CodegenError> {
        for st in stores {
            let v = st.value as usize;
            let Some(node) = body.nodes.get(v) else {
                return Err(self.malformed(format!(
                    "a store writes {prefix}{v}, but the body has {} expressions",
                    body.nodes.len()
                )));
            };
            let a = st.arg as usize;
            let Some(arg) = self.kernel.args.get(a) else {
                return Err(self.malformed(format!("a store writes missing arg {a}")));
            };
            if !arg.access.writes() {
                return Err(self.malformed(format!("a store writes arg {a}, which is read-only")));
            }
            let mut value = W::ident(format!("{prefix}{v}"));
            if node.dtype != arg.dtype {
                value = convert(value, arg.dtype, self.width);
            }
            if self.flush && arg.dtype == DType::F32 {
                // select(v, 0, |v| < 2^-60): values whose products with anything of order 1
                // or smaller would reach the subnormal range become +0
                let tiny = splat(W::f32(FLUSH_BELOW), DType::F32, self.width);
                let small = W::call(Builtin::Abs, vec![value.clone()]).bin(BinOp::Lt, tiny);
                value = W::call(
                    Builtin::Select,
                    vec![value, splat(W::f32(0.0), DType::F32, self.width), small],
                );
            }
            let index = match &st.strides {
                Some(strides) => {
                    if strides.len() != idx.len() {
                        return Err(self.malformed(format!(
                            "a store has {} strides over a rank-{} phase",
                            strides.len(),
                            idx.len()
                        )));
                    }
                    self.view_terms(self.offset(st.offset)?, strides, idx)?
                }
                None => match self.offset(st.offset)? {
                    Some(o) => flat.clone().bin(BinOp::Add, o),
                    None => flat.clone(),
                },
            };
            let target = if self.width == 1 {
                self.element(a, index)
            } else {
                W::ident(arg_name(a)).index(index.bin(BinOp::Div, W::u32(4)))
            };
            self.stmts.push(Stmt::Assign(target, value));
        }
        Ok(())
    }

    /// Emits `let {prefix}base{i}` for every load of `body` over `in_shape`: the part of its
    /// index that depends only on the kept (non-reduced) axes. Returns (expression, base).
    fn hoisted_bases(
        &mut self,
        body: &Body,
        prefix: &str,
        kept: &[Option<W>],
    ) -> Result<Vec<(usize, W)>, CodegenError> {
        let mut bases = Vec::new();
        for (i, node) in body.nodes.iter().enumerate() {
            if let Expr::Load { view, .. } | Expr::Gather { view, .. } = &node.expr {
                self.check_rank(view, kept.len())?;
                let base = self.view_terms(self.offset(view.offset)?, &view.strides, kept)?;
                bases.push((i, self.let_u32(format!("{prefix}base{i}"), base)));
            }
        }
        Ok(bases)
    }

    /// The storage bindings of the kernel: arg `i` is `arg{i}` at binding `i`, read-only
    /// exactly when its access is `Read`.
    fn bindings(&self) -> Vec<Binding> {
        self.kernel
            .args
            .iter()
            .enumerate()
            .map(|(i, a)| Binding {
                group: 0,
                binding: i as u32,
                name: arg_name(i),
                access: if a.access.writes() {
                    StorageAccess::ReadWrite
                } else {
                    StorageAccess::Read
                },
                ty: if self.vec4_args[i] {
                    Type::RuntimeArrayVec4(scalar(a.dtype))
                } else {
                    Type::RuntimeArray(scalar(a.dtype))
                },
            })
            .collect()
    }
}

fn zero(dt: DType) -> W {
    match dt {
        DType::F32 => W::f32(0.0),
        DType::I32 => W::i32(0),
    }
}

fn one(dt: DType) -> W {
    match dt {
        DType::F32 => W::f32(1.0),
        DType::I32 => W::i32(1),
    }
}

/// `dt` with `width` lanes (a scalar for 1, a `vecN` otherwise).
fn vtype(dt: DType, width: u32) -> Type {
    if width == 1 {
        Type::Scalar(scalar(dt))
    } else {
        Type::Vec(width as u8, scalar(dt))
    }
}

/// A scalar `x` of dtype `dt` as a value with `width` lanes.
fn splat(x: W, dt: DType, width: u32) -> W {
    if width == 1 {
        x
    } else {
        W::Construct(vtype(dt, width), vec![x])
    }
}

/// `x` converted to dtype `dt`, lane for lane.
fn convert(x: W, dt: DType, width: u32) -> W {
    if width == 1 {
        x.convert(scalar(dt))
    } else {
        W::Construct(vtype(dt, width), vec![x])
    }
}

/// `op(x)` in dtype `dt` on `width` lanes; transcendental ops on i32 compute in f32 and
/// truncate.
fn unary(op: UnaryOp, x: W, dt: DType, width: u32) -> W {
    let k = |v: W| splat(v, dt, width);
    match op {
        UnaryOp::Neg => x.un(UnOp::Neg),
        UnaryOp::Abs => W::call(Builtin::Abs, vec![x]),
        UnaryOp::Sign => W::call(Builtin::Sign, vec![x]),
        UnaryOp::Relu => W::call(Builtin::Max, vec![x, k(zero(dt))]),
        UnaryOp::Recip => k(one(dt)).bin(BinOp::Div, x),
        UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Tanh | UnaryOp::Sigmoid
            if dt == DType::I32 =>
        {
            convert(
                unary(op, convert(x, DType::F32, width), DType::F32, width),
                DType::I32,
                width,
            )
        }
        UnaryOp::Exp => W::call(Builtin::Exp, vec![x]),
        UnaryOp::Log => W::call(Builtin::Log, vec![x]),
        UnaryOp::Sqrt => W::call(Builtin::Sqrt, vec![x]),
        // tanh(±15) is ±1 in f32; clamping avoids the NaN some drivers return for large |x|.
        UnaryOp::Tanh => W::call(
            Builtin::Tanh,
            vec![W::call(
                Builtin::Clamp,
                vec![x, k(W::f32(-15.0)), k(W::f32(15.0))],
            )],
        ),
        UnaryOp::Sigmoid => k(W::f32(1.0)).bin(
            BinOp::Div,
            k(W::f32(1.0)).bin(BinOp::Add, W::call(Builtin::Exp, vec![x.un(UnOp::Neg)])),
        ),
    }
}

/// `op(a, b)` for operands of dtype `dt` on `width` lanes; comparisons give 1/0 in `dt`.
fn binary(op: BinaryOp, a: W, b: W, dt: DType, width: u32) -> W {
    let k = |v: W| splat(v, dt, width);
    let cmp = |o: BinOp| {
        W::call(
            Builtin::Select,
            vec![k(zero(dt)), k(one(dt)), a.clone().bin(o, b.clone())],
        )
    };
    match op {
        BinaryOp::Add => a.bin(BinOp::Add, b),
        BinaryOp::Sub => a.bin(BinOp::Sub, b),
        BinaryOp::Mul => a.bin(BinOp::Mul, b),
        BinaryOp::Div => a.bin(BinOp::Div, b),
        BinaryOp::Max => W::call(Builtin::Max, vec![a, b]),
        BinaryOp::Min => W::call(Builtin::Min, vec![a, b]),
        BinaryOp::Pow if dt == DType::I32 => convert(
            W::call(
                Builtin::Pow,
                vec![convert(a, DType::F32, width), convert(b, DType::F32, width)],
            ),
            DType::I32,
            width,
        ),
        BinaryOp::Pow => W::call(Builtin::Pow, vec![a, b]),
        BinaryOp::Lt => cmp(BinOp::Lt),
        BinaryOp::Le => cmp(BinOp::Le),
        BinaryOp::Gt => cmp(BinOp::Gt),
        BinaryOp::Ge => cmp(BinOp::Ge),
        BinaryOp::Eq => cmp(BinOp::Eq),
        BinaryOp::Ne => cmp(BinOp::Ne),
    }
}

fn u32_param(name: &str) -> Param {
    Param {
        builtin: None,
        name: name.into(),
        ty: Type::Scalar(Scalar::U32),
    }
}

/// Builds the module of an elementwise or reduce kernel.
pub(super) fn generated_module(
    kernel: &Kernel,
    target: &super::Target,
) -> Result<(Module, Vec<u32>), CodegenError> {
    let mut g = Gen::new(kernel);
    g.flush = target.flush_subnormals;
    let threads = u32::try_from(kernel.threads).map_err(|_| CodegenError::Unsupported {
        label: kernel.label.clone(),
        what: format!("{} threads do not fit u32 indexing", kernel.threads),
    })?;
    if kernel.workgroup_size == 0 {
        return Err(g.malformed("workgroup size 0".into()));
    }
    // gid = global_id.x + global_id.y * (num_workgroups.x * WG): one work item per
    // invocation; out-of-range invocations return. (A grid-stride loop over the items with a
    // capped launch measured 2x slower on lavapipe, whose loops are expensive.)
    let gid = g.let_u32(
        "gid".into(),
        W::ident("global_id").member("x").bin(
            BinOp::Add,
            W::ident("global_id").member("y").bin(
                BinOp::Mul,
                W::ident("num_wg")
                    .member("x")
                    .bin(BinOp::Mul, W::u32(kernel.workgroup_size)),
            ),
        ),
    );
    // (a tree reduction checks its workgroup index instead: its barriers need uniform
    // control flow)
    if !matches!(&kernel.op, KernelOp::Reduce { tree, .. } if *tree > 1) {
        g.stmts.push(Stmt::If(
            gid.clone().bin(BinOp::Ge, W::u32(threads)),
            vec![Stmt::Return(None)],
            vec![],
        ));
    }
    let too_many = |g: &Gen, numel: u64| {
        (kernel.threads > numel).then(|| {
            g.malformed(format!(
                "{} threads for {numel} elements (extra threads would store out of range)",
                kernel.threads
            ))
        })
    };

    let what = match &kernel.op {
        KernelOp::Elementwise {
            shape,
            body,
            stores,
            vector,
        } => {
            let numel: u64 = shape.iter().map(|&d| d as u64).product();
            match *vector {
                1 => {}
                4 if kiln_plan::kernel::elementwise_vector(shape, body, stores) == 4 => {
                    g.width = 4;
                    g.vector_axis = shape.iter().rposition(|&d| d > 1).unwrap_or(0);
                    for n in &body.nodes {
                        if let Expr::Load { arg, view } = &n.expr {
                            if view.strides.get(g.vector_axis) == Some(&1) {
                                if let Some(v) = g.vec4_args.get_mut(*arg as usize) {
                                    *v = true;
                                }
                            }
                        }
                    }
                    for st in stores {
                        if let Some(v) = g.vec4_args.get_mut(st.arg as usize) {
                            *v = true;
                        }
                    }
                }
                v => {
                    return Err(g.malformed(format!(
                        "vector width {v} for shape {shape:?} and its loads and stores"
                    )))
                }
            }
            if let Some(e) = too_many(&g, numel / *vector as u64) {
                return Err(e);
            }
            // the first element of the work item
            let flat = if *vector == 1 {
                gid.clone()
            } else {
                g.let_u32("flat".into(), gid.clone().bin(BinOp::Mul, W::u32(*vector)))
            };
            let idx = g.unravel("i", &flat, shape)?;
            g.body(body, "e", &[], &mut |g, _, view| {
                g.view_index(view, shape, &idx, &flat)
            })?;
            g.stores(stores, body, "e", &flat, &idx)?;
            format!(
                "elementwise {shape:?} x{vector}, {} exprs, {} stores",
                body.nodes.len(),
                stores.len()
            )
        }
        KernelOp::Reduce {
            in_shape,
            axes,
            stages,
            epilogue,
            stores,
            broadcast,
            broadcast_stores,
            tree,
        } => {
            if *tree > 1 && (!tree.is_power_of_two() || kernel.workgroup_size != *tree) {
                return Err(g.malformed(format!(
                    "reduce tree {tree} with workgroup size {} (a power of two, equal)",
                    kernel.workgroup_size
                )));
            }
            if axes.iter().any(|&a| a >= in_shape.len()) || axes.windows(2).any(|w| w[0] >= w[1]) {
                return Err(g.malformed(format!(
                    "reduce axes {axes:?} are not sorted, distinct axes of {in_shape:?}"
                )));
            }
            if stages.is_empty()
                || stages.iter().any(|s| {
                    s.folds
                        .iter()
                        .any(|f| f.value as usize >= s.body.nodes.len())
                })
            {
                return Err(g.malformed(
                    "a reduce kernel needs stages whose folds name body values".into(),
                ));
            }
            let reduced = |d: usize| axes.contains(&d);
            let out_shape: Vec<usize> = (0..in_shape.len())
                .map(|d| if reduced(d) { 1 } else { in_shape[d] })
                .collect();
            let per_output = (*tree).max(1) as u64;
            if let Some(e) = too_many(
                &g,
                out_shape.iter().map(|&d| d as u64).product::<u64>() * per_output,
            ) {
                return Err(e);
            }
            let red_dims: Vec<usize> = axes.iter().map(|&a| in_shape[a]).collect();
            let count: u64 = red_dims.iter().map(|&d| d as u64).product();
            let in_strides = kiln_ir::Shape::new(in_shape.clone()).strides();
            // the output element: this thread's (sequential), or this workgroup's (tree)
            let out_el = if *tree > 1 {
                let o = g.let_u32(
                    "o".into(),
                    W::ident("wg_id").member("x").bin(
                        BinOp::Add,
                        W::ident("wg_id")
                            .member("y")
                            .bin(BinOp::Mul, W::ident("num_wg").member("x")),
                    ),
                );
                let outputs: u64 = out_shape.iter().map(|&d| d as u64).product();
                // uniform per workgroup: safe before the barriers
                g.stmts.push(Stmt::If(
                    o.clone().bin(BinOp::Ge, W::u32(g.lit_u32(outputs)?)),
                    vec![Stmt::Return(None)],
                    vec![],
                ));
                g.tree = Some((*tree, W::ident("lid")));
                o
            } else {
                gid.clone()
            };
            let out_idx = g.unravel("i", &out_el, &out_shape)?;
            // The kept axes of the input index (those not reduced) come from the output index.
            let kept: Vec<Option<W>> = out_idx
                .iter()
                .enumerate()
                .map(|(d, x)| x.clone().filter(|_| !reduced(d)))
                .collect();
            let any_stage_stores = stages.iter().any(|s| !s.stores.is_empty());
            let flat_base = if !any_stage_stores && broadcast_stores.is_empty() {
                None
            } else {
                let b = g.view_terms(None, &in_strides, &kept)?;
                Some(g.let_u32("fbase".into(), b))
            };
            // Stages: each folds its values over the reduced elements (r unravels over them)
            // into fresh accumulators `acc{j}`, reading the earlier stages' accumulators.
            let mut accs: Vec<(W, DType)> = vec![];
            for (si, stage) in stages.iter().enumerate() {
                let prefix = format!("p{si}_");
                let bases = g.hoisted_bases(&stage.body, &prefix, &kept)?;
                let mut tail = vec![];
                let first = accs.len();
                for (k, f) in stage.folds.iter().enumerate() {
                    let dt = stage.body.nodes[f.value as usize].dtype;
                    let init = match (f.kind, dt) {
                        (ReduceKind::Sum, _) => zero(dt),
                        (ReduceKind::Max, DType::F32) => W::f32(f32::NEG_INFINITY),
                        (ReduceKind::Max, DType::I32) => W::i32(i32::MIN),
                    };
                    let name = format!("acc{}", first + k);
                    g.stmts
                        .push(Stmt::Var(name.clone(), Type::Scalar(scalar(dt)), init));
                    let acc = W::ident(name);
                    let v = W::ident(format!("{prefix}{}", f.value));
                    let combined = match f.kind {
                        ReduceKind::Sum => acc.clone().bin(BinOp::Add, v),
                        ReduceKind::Max => W::call(Builtin::Max, vec![acc.clone(), v]),
                    };
                    tail.push(Stmt::Assign(acc.clone(), combined));
                }
                let earlier = accs.clone();
                let pass = reduce_loop(
                    &mut g,
                    ReducePhase {
                        body: &stage.body,
                        prefix: &prefix,
                        accs: &earlier,
                        bases: &bases,
                        stores: &stage.stores,
                        flat_base: flat_base.as_ref(),
                    },
                    axes,
                    &red_dims,
                    &in_strides,
                    count,
                    tail,
                    &kept,
                )?;
                g.stmts.push(pass);
                if let Some((wg, lid)) = g.tree.clone() {
                    // combine the threads' partial accumulators in a fixed tree
                    for (k, f) in stage.folds.iter().enumerate() {
                        let dt = stage.body.nodes[f.value as usize].dtype;
                        let acc = W::ident(format!("acc{}", first + k));
                        let arr = format!("red{}", first + k);
                        g.wg_arrays.push((arr.clone(), scalar(dt), wg));
                        let at = |e: W| W::ident(arr.clone()).index(e);
                        g.stmts.push(Stmt::Assign(at(lid.clone()), acc.clone()));
                        g.stmts.push(Stmt::Barrier);
                        let mut half = wg / 2;
                        while half >= 1 {
                            let other = at(lid.clone().bin(BinOp::Add, W::u32(half)));
                            let combined = match f.kind {
                                ReduceKind::Sum => at(lid.clone()).bin(BinOp::Add, other),
                                ReduceKind::Max => {
                                    W::call(Builtin::Max, vec![at(lid.clone()), other])
                                }
                            };
                            g.stmts.push(Stmt::If(
                                lid.clone().bin(BinOp::Lt, W::u32(half)),
                                vec![Stmt::Assign(at(lid.clone()), combined)],
                                vec![],
                            ));
                            g.stmts.push(Stmt::Barrier);
                            half /= 2;
                        }
                        g.stmts.push(Stmt::Assign(acc, at(W::u32(0))));
                    }
                }
                for (k, f) in stage.folds.iter().enumerate() {
                    accs.push((
                        W::ident(format!("acc{}", first + k)),
                        stage.body.nodes[f.value as usize].dtype,
                    ));
                }
            }
            // The epilogue at the output element.
            g.body(epilogue, "e", &accs, &mut |g, _, view| {
                g.view_index(view, &out_shape, &out_idx, &out_el)
            })?;
            match g.tree.clone() {
                // every thread has the accumulators; one stores
                Some((_, lid)) => {
                    let outer = std::mem::take(&mut g.stmts);
                    g.stores(stores, epilogue, "e", &out_el, &out_idx)?;
                    let body = std::mem::replace(&mut g.stmts, outer);
                    g.stmts
                        .push(Stmt::If(lid.bin(BinOp::Eq, W::u32(0)), body, vec![]));
                }
                None => g.stores(stores, epilogue, "e", &out_el, &out_idx)?,
            }
            // The broadcast body over the reduced elements again.
            if !broadcast_stores.is_empty() {
                let b_bases = g.hoisted_bases(broadcast, "b", &kept)?;
                let pass = reduce_loop(
                    &mut g,
                    ReducePhase {
                        body: broadcast,
                        prefix: "b",
                        accs: &accs,
                        bases: &b_bases,
                        stores: broadcast_stores,
                        flat_base: flat_base.as_ref(),
                    },
                    axes,
                    &red_dims,
                    &in_strides,
                    count,
                    vec![],
                    &kept,
                )?;
                g.stmts.push(pass);
            }
            format!(
                "reduce {in_shape:?} over {axes:?}; {} stages, {} accumulators; stores: {} output, {} broadcast",
                stages.len(),
                accs.len(),
                stores.len(),
                broadcast_stores.len()
            )
        }
        KernelOp::ScatterAdd {
            rows,
            cols,
            count,
            index,
            src,
            dst,
        } => {
            if let Some(e) = too_many(&g, *cols as u64) {
                return Err(e);
            }
            for (d, dt, write) in [
                (index, DType::I32, false),
                (src, DType::F32, false),
                (dst, DType::F32, true),
            ] {
                match kernel.args.get(d.arg as usize) {
                    Some(a) if a.dtype == dt && (!write || a.access.writes()) => {}
                    _ => {
                        return Err(g.malformed(format!(
                            "scatter-add binds arg {} as {dt}{}",
                            d.arg,
                            if write { " (written)" } else { "" }
                        )))
                    }
                }
            }
            let lit = |g: &Gen, v: usize| g.lit_u32(v as u64).map(W::u32);
            let with_off = |g: &Gen, off: usize, e: W| -> Result<W, CodegenError> {
                Ok(match g.offset(off)? {
                    Some(o) => o.bin(BinOp::Add, e),
                    None => e,
                })
            };
            let c = gid.clone();
            let (r, i) = (W::ident("r"), W::ident("i"));
            // zero this thread's column
            let zero_at = with_off(
                &g,
                dst.offset,
                r.clone()
                    .bin(BinOp::Mul, lit(&g, *cols)?)
                    .bin(BinOp::Add, c.clone()),
            )?;
            g.stmts.push(Stmt::ForRange {
                var: "r".into(),
                start: W::u32(0),
                end: lit(&g, *rows)?,
                body: vec![Stmt::Assign(
                    g.element(dst.arg as usize, zero_at),
                    W::f32(0.0),
                )],
            });
            // then add every position's value in order
            let ix_at = with_off(&g, index.offset, i.clone())?;
            let src_at = with_off(
                &g,
                src.offset,
                i.clone()
                    .bin(BinOp::Mul, lit(&g, *cols)?)
                    .bin(BinOp::Add, c.clone()),
            )?;
            let dst_at = with_off(
                &g,
                dst.offset,
                W::ident("ix")
                    .bin(BinOp::Mul, lit(&g, *cols)?)
                    .bin(BinOp::Add, c.clone()),
            )?;
            let at = W::ident("at");
            let body = vec![
                Stmt::Let(
                    "ix".into(),
                    Type::Scalar(Scalar::U32),
                    W::Convert(Scalar::U32, Box::new(g.element(index.arg as usize, ix_at))),
                ),
                Stmt::If(
                    W::ident("ix").bin(BinOp::Lt, lit(&g, *rows)?),
                    vec![
                        Stmt::Let("at".into(), Type::Scalar(Scalar::U32), dst_at),
                        Stmt::Assign(
                            g.element(dst.arg as usize, at.clone()),
                            g.element(dst.arg as usize, at)
                                .bin(BinOp::Add, g.element(src.arg as usize, src_at)),
                        ),
                    ],
                    vec![],
                ),
            ];
            g.stmts.push(Stmt::ForRange {
                var: "i".into(),
                start: W::u32(0),
                end: lit(&g, *count)?,
                body,
            });
            format!("scatter-add {count} positions into [{rows}, {cols}]")
        }
        KernelOp::MatMul { .. } => unreachable!("matmul kernels use the library shader"),
    };

    let table = g.offset_table();
    let tree_mode = g.tree.is_some();
    let mut module = Module {
        comments: vec![
            sanitize(&format!("kiln kernel `{}`", kernel.label)),
            sanitize(&format!(
                "{what}; {} work items, workgroup {}",
                kernel.threads, kernel.workgroup_size
            )),
        ],
        consts: Vec::new(),
        overrides: Vec::new(),
        bindings: g.bindings(),
        uniforms: g.uniforms(),
        workgroup: g.wg_arrays.clone(),
        functions: g
            .helpers()
            .into_iter()
            .chain([Function {
                name: ENTRY_POINT.into(),
                workgroup_size: Some(kernel.workgroup_size),
                params: vec![
                    Param {
                        builtin: Some(BuiltinInput::GlobalInvocationId),
                        name: "global_id".into(),
                        ty: Type::Vec(3, Scalar::U32),
                    },
                    Param {
                        builtin: Some(BuiltinInput::NumWorkgroups),
                        name: "num_wg".into(),
                        ty: Type::Vec(3, Scalar::U32),
                    },
                ],
                ret: None,
                body: g.stmts,
            }])
            .collect(),
    };
    if tree_mode {
        if let Some(f) = module.functions.last_mut() {
            f.params.push(Param {
                builtin: Some(BuiltinInput::WorkgroupId),
                name: "wg_id".into(),
                ty: Type::Vec(3, Scalar::U32),
            });
            f.params.push(Param {
                builtin: Some(BuiltinInput::LocalInvocationIndex),
                name: "lid".into(),
                ty: Type::Scalar(Scalar::U32),
            });
        }
    }
    Ok((module, table))
}

/// One body evaluated over the reduced elements of a reduce kernel.
struct ReducePhase<'a> {
    body: &'a Body,
    prefix: &'a str,
    accs: &'a [(W, DType)],
    bases: &'a [(usize, W)],
    stores: &'a [Store],
    flat_base: Option<&'a W>,
}

/// `for (r in 0..count) { unravel r; body; tail; stores }` over the reduced axes.
#[allow(clippy::too_many_arguments)]
fn reduce_loop(
    g: &mut Gen<'_>,
    phase: ReducePhase<'_>,
    axes: &[usize],
    red_dims: &[usize],
    in_strides: &[usize],
    count: u64,
    tail: Vec<Stmt>,
    kept: &[Option<W>],
) -> Result<Stmt, CodegenError> {
    let outer = std::mem::take(&mut g.stmts);
    let r = W::ident("r");
    if let Some((wg, lid)) = g.tree.clone() {
        // this thread's share: r = it * wg + lid
        g.stmts.push(Stmt::Let(
            "r".into(),
            Type::Scalar(Scalar::U32),
            W::ident("it")
                .bin(BinOp::Mul, W::u32(wg))
                .bin(BinOp::Add, lid),
        ));
    }
    let r_idx = g.unravel("r", &r, red_dims)?;
    let mut full: Vec<Option<W>> = vec![None; in_strides.len()];
    for (k, &a) in axes.iter().enumerate() {
        full[a] = r_idx[k].clone();
    }
    // the whole input index (kept axes too), for strided stores
    let mut all = full.clone();
    for (d, k) in kept.iter().enumerate() {
        if all[d].is_none() {
            all[d] = k.clone();
        }
    }
    let bases = phase.bases;
    g.body(phase.body, phase.prefix, phase.accs, &mut |g, i, view| {
        let base = bases.iter().find(|(j, _)| *j == i).map(|(_, b)| b.clone());
        g.view_terms(base, &view.strides, &full)
    })?;
    g.stmts.extend(tail);
    if !phase.stores.is_empty() {
        let flat = g.view_terms(phase.flat_base.cloned(), in_strides, &full)?;
        let f = g.let_u32(format!("{}flat", phase.prefix), flat);
        g.stores(phase.stores, phase.body, phase.prefix, &f, &all)?;
    }
    let mut body = std::mem::replace(&mut g.stmts, outer);
    if let Some((wg, _)) = g.tree.clone() {
        // the first statement defines r; the rest runs while r < count
        let rest = body.split_off(1);
        body.push(Stmt::If(
            r.bin(BinOp::Lt, W::u32(g.lit_u32(count)?)),
            rest,
            vec![],
        ));
        return Ok(Stmt::ForRange {
            var: "it".into(),
            start: W::u32(0),
            end: W::u32(g.lit_u32(count.div_ceil(wg as u64))?),
            body,
        });
    }
    Ok(Stmt::ForRange {
        var: "r".into(),
        start: W::u32(0),
        end: W::u32(g.lit_u32(count)?),
        body,
    })
}

/// Checks that every element `operand` reads for a `[batch, rows, cols]` matrix has a u32
/// index.
fn check_operand(
    kernel: &Kernel,
    name: &str,
    op: &MatOperand,
    dims: [usize; 3],
) -> Result<(), CodegenError> {
    let last = [op.batch_stride, op.row_stride, op.col_stride]
        .iter()
        .zip(dims)
        .try_fold(op.offset as u64, |acc, (&s, d)| {
            (s as u64)
                .checked_mul(d.saturating_sub(1) as u64)
                .and_then(|t| acc.checked_add(t))
        });
    match (kernel.args.get(op.arg as usize), last) {
        (None, _) => Err(CodegenError::Malformed {
            label: kernel.label.clone(),
            what: format!("matmul operand {name} reads missing arg {}", op.arg),
        }),
        (Some(a), _) if a.dtype != DType::F32 => Err(CodegenError::Unsupported {
            label: kernel.label.clone(),
            what: format!(
                "matmul operand {name} is {} (only f32 is supported)",
                a.dtype
            ),
        }),
        (_, Some(l)) if l <= u32::MAX as u64 => Ok(()),
        _ => Err(CodegenError::Unsupported {
            label: kernel.label.clone(),
            what: format!("matmul operand {name} reaches past u32 indexing"),
        }),
    }
}

/// The generated half of a matmul kernel: the bindings (arg `i` is `arg{i}` at binding `i`),
/// the operand readers `load_a(e)` / `load_b(e)` (element `e` of A's / B's buffer), and
/// `epilogue(acc, bi, i, j)`, which evaluates the kernel's epilogue at output `[bi, i, j]`
/// with `Expr::Reduced = acc` and performs its stores at `(bi*m + i)*n + j`.
pub(super) fn matmul_prelude(
    kernel: &Kernel,
    target: &super::Target,
) -> Result<(Module, Vec<u32>), CodegenError> {
    let KernelOp::MatMul {
        batch,
        m,
        n,
        k,
        a,
        b,
        epilogue,
        stores,
        variant,
        tile,
    } = &kernel.op
    else {
        unreachable!("matmul_prelude is only called for matmul kernels")
    };
    check_operand(kernel, "A", a, [*batch, *m, *k])?;
    check_operand(kernel, "B", b, [*batch, *k, *n])?;
    let mut g = Gen::new(kernel);
    g.flush = target.flush_subnormals;
    // Operands whose 4-wide reads are aligned vec4 loads: contiguous along the read
    // dimension (k for A, j for B) with every other stride and the offset multiples of 4.
    let aligned = |op: &MatOperand, outer: usize, rows: usize| {
        op.col_stride == 1
            && op.offset.is_multiple_of(4)
            && (outer == 1 || op.batch_stride.is_multiple_of(4))
            && (rows == 1 || op.row_stride.is_multiple_of(4))
    };
    let (fast_a, fast_b) = (aligned(a, *batch, *m), aligned(b, *batch, *k));
    if fast_a {
        g.vec4_args[a.arg as usize] = true;
    }
    if fast_b {
        g.vec4_args[b.arg as usize] = true;
    }
    let out = [*batch, *m, *n];
    let numel = out
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    if numel.is_none_or(|c| c > u32::MAX as u64) {
        return Err(CodegenError::Unsupported {
            label: kernel.label.clone(),
            what: format!("output {out:?} does not fit u32 indexing"),
        });
    }
    let (bi, i, j) = (W::ident("bi"), W::ident("i"), W::ident("j"));
    let flat = g.let_u32(
        "flat".into(),
        bi.clone()
            .bin(BinOp::Mul, W::u32(g.lit_u32(*m as u64)?))
            .bin(BinOp::Add, i.clone())
            .bin(BinOp::Mul, W::u32(g.lit_u32(*n as u64)?))
            .bin(BinOp::Add, j.clone()),
    );
    let idx = [Some(bi), Some(i), Some(j)];
    let acc = W::ident("acc");
    g.body(
        epilogue,
        "e",
        &[(acc.clone(), DType::F32)],
        &mut |g, _, view| g.view_index(view, &out, &idx, &flat),
    )?;
    g.stores(stores, epilogue, "e", &flat, &idx)?;
    let e = || W::ident("e");
    let reader = |name: &str, ret: Type, value: W| Function {
        name: name.into(),
        workgroup_size: None,
        params: vec![u32_param("e")],
        ret: Some(ret),
        body: vec![Stmt::Return(Some(value))],
    };
    let f32_ty = Type::Scalar(Scalar::F32);
    let vec4_ty = Type::Vec(4, Scalar::F32);
    // Four elements `e + q * stride`, 4-wide when aligned.
    let read4 = |op: &MatOperand, fast: bool| -> Result<W, CodegenError> {
        let arg = op.arg as usize;
        if fast {
            return Ok(W::ident(arg_name(arg)).index(e().bin(BinOp::Div, W::u32(4))));
        }
        let mut parts = vec![g.element(arg, e())];
        for q in 1..4u64 {
            let step = g.lit_u32(q * op.col_stride as u64)?;
            parts.push(g.element(arg, e().bin(BinOp::Add, W::u32(step))));
        }
        Ok(W::Construct(vec4_ty.clone(), parts))
    };
    let u32_ty = Type::Scalar(Scalar::U32);
    let off =
        |g: &Gen, o: usize| -> Result<W, CodegenError> { Ok(g.offset(o)?.unwrap_or(W::u32(0))) };
    let offset_fn = |name: &str, value: W| Function {
        name: name.into(),
        workgroup_size: None,
        params: vec![],
        ret: Some(u32_ty.clone()),
        body: vec![Stmt::Return(Some(value))],
    };
    let functions = vec![
        offset_fn("a_off", off(&g, a.offset)?),
        offset_fn("b_off", off(&g, b.offset)?),
        reader("load_a", f32_ty.clone(), g.element(a.arg as usize, e())),
        reader("load_b", f32_ty.clone(), g.element(b.arg as usize, e())),
        reader("load_a4", vec4_ty.clone(), read4(a, fast_a)?),
        reader("load_b4", vec4_ty.clone(), read4(b, fast_b)?),
    ];
    let table = g.offset_table();
    let uniforms = g.uniforms();
    let module = Module {
        comments: vec![
            sanitize(&format!("kiln kernel `{}`", kernel.label)),
            sanitize(&format!(
                "matmul {variant:?} {tile:?}: [{batch}, {m}, {k}] x [{batch}, {k}, {n}]; epilogue {} exprs, {} stores",
                epilogue.nodes.len(),
                stores.len()
            )),
            format!(
                "generated: bindings, load_a, load_b, load_a4 ({}), load_b4 ({}), epilogue; then the library kernel",
                if fast_a { "vec4" } else { "strided" },
                if fast_b { "vec4" } else { "strided" }
            ),
        ],
        consts: Vec::new(),
        overrides: Vec::new(),
        bindings: g.bindings(),
        uniforms,
        workgroup: Vec::new(),
        functions: g
            .helpers()
            .into_iter()
            .chain(functions)
            .chain([Function {
                name: "epilogue".into(),
                workgroup_size: None,
                params: vec![
                    Param {
                        builtin: None,
                        name: "acc".into(),
                        ty: Type::Scalar(Scalar::F32),
                    },
                    u32_param("bi"),
                    u32_param("i"),
                    u32_param("j"),
                ],
                ret: None,
                body: g.stmts,
            }])
            .collect(),
    };
    Ok((module, table))
}
