//! The state every generated kernel is built in ([`Gen`]) and the index arithmetic the
//! kernel families share: the thread's multi-index (one `let` per axis of extent > 1),
//! loads through views (`offset + Σ idx[d] * stride[d]` from literals; a contiguous view
//! reads `arg[flat]` directly), the uniform offset table (`kp`), bindings and helper
//! functions. Body and store emission live in [`super::body`].

use super::body::vtype;
use super::{arg_name, scalar, CodegenError};
use crate::wgsl::{
    BinOp, Binding, Expr as W, Function, Param, Scalar, Stmt, StorageAccess, Type, UniformArray,
};
use kiln_ir::DType;
use kiln_plan::kernel::{Kernel, View};
use std::cell::RefCell;

/// State of one generated kernel: its statements and structural checks.
pub(super) struct Gen<'k> {
    pub(super) kernel: &'k Kernel,
    pub(super) stmts: Vec<Stmt>,
    /// Args declared `array<vec4<f32>>` (matmul operands read 4-wide); element `e` of such
    /// an arg is `arg[e / 4u][e % 4u]`.
    pub(super) vec4_args: Vec<bool>,
    /// Lanes of body values: 1, or 4 in a vectorized elementwise kernel, whose values are
    /// `vec4`s, whose loads read `arg[e / 4u]` (stride 1 on `vector_axis`) or splat one
    /// element (stride 0), and whose stores write `arg[e / 4u]`.
    pub(super) width: u32,
    /// The innermost axis of extent > 1 of a vectorized kernel.
    pub(super) vector_axis: usize,
    /// Element offsets the kernel reads from its uniform table `kp` (slot `i` is
    /// `kp[i / 4][i % 4]`), so that kernels equal but for where their tensors live share
    /// one shader and pipeline.
    pub(super) offsets: RefCell<Vec<u32>>,
    /// Whether a body uses `kiln_hash` (the module then defines it).
    pub(super) hash: std::cell::Cell<bool>,
    /// Workgroup arrays of a tree reduction: (name, element type, length).
    pub(super) wg_arrays: Vec<(String, Scalar, u32)>,
    /// In a tree reduction: the workgroup size and the invocation's index in it.
    pub(super) tree: Option<(u32, W)>,
    /// Flush subnormal f32 values to 0 at stores ([`super::Target::flush_subnormals`]).
    pub(super) flush: bool,
}

/// Stored f32 values smaller than this in magnitude are written as 0 on CPU adapters
/// ([`super::Target::flush_subnormals`]): 2^-60, so that a product of two stored values
/// (or a square, as Adam's second moment) stays out of the subnormal range.
pub const FLUSH_BELOW: f32 = 8.673_617e-19;

/// Name of the uniform offset table of a kernel.
pub(super) const OFFSETS: &str = "kp";

/// Maps (expression index, view) of a load to its element index.
pub(super) type LoadIndex<'a> = dyn FnMut(&Gen<'_>, usize, &View) -> Result<W, CodegenError> + 'a;

impl<'k> Gen<'k> {
    /// A kernel with no statements yet (scalar lanes, no flush).
    pub(super) fn new(kernel: &'k Kernel) -> Self {
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
    pub(super) fn helpers(&self) -> Vec<Function> {
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
    pub(super) fn ty(&self, dt: DType) -> Type {
        vtype(dt, self.width)
    }

    /// Element `index` of arg `a` (a reference: readable and, for written args, assignable).
    pub(super) fn element(&self, a: usize, index: W) -> W {
        if self.vec4_args.get(a).copied().unwrap_or(false) {
            W::ident(arg_name(a))
                .index(index.clone().bin(BinOp::Div, W::u32(4)))
                .index(index.bin(BinOp::Rem, W::u32(4)))
        } else {
            W::ident(arg_name(a)).index(index)
        }
    }

    /// The error for a kernel that breaks a structural rule of `KernelIr`.
    pub(super) fn malformed(&self, what: String) -> CodegenError {
        CodegenError::Malformed {
            label: self.kernel.label.clone(),
            what,
        }
    }

    /// Emits `let {name}: u32 = value` and returns `name`.
    pub(super) fn let_u32(&mut self, name: String, value: W) -> W {
        self.stmts
            .push(Stmt::Let(name.clone(), Type::Scalar(Scalar::U32), value));
        W::Ident(name)
    }

    /// Emits `let {prefix}{d}` for each axis of `dims` whose extent is not 1, unravelling the
    /// row-major flat index `flat`; axes of extent 1 give `None` (index 0).
    pub(super) fn unravel(
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

    /// `v` as a u32 literal, or the error for a kernel whose indices do not fit u32.
    pub(super) fn lit_u32(&self, v: u64) -> Result<u32, CodegenError> {
        u32::try_from(v).map_err(|_| CodegenError::Unsupported {
            label: self.kernel.label.clone(),
            what: format!("index value {v} does not fit u32 indexing"),
        })
    }

    /// `base + Σ idx[d] * strides[d]` over the axes where both are present and nonzero.
    pub(super) fn view_terms(
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
    pub(super) fn offset(&self, offset: usize) -> Result<Option<W>, CodegenError> {
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
    pub(super) fn uniforms(&self) -> Vec<UniformArray> {
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

    /// Checks that `view` has one stride per axis of a rank-`rank` iteration shape.
    pub(super) fn check_rank(&self, view: &View, rank: usize) -> Result<(), CodegenError> {
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
    pub(super) fn view_index(
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

    /// The error for a kernel launching more than `numel` threads (`None` when it does not).
    pub(super) fn too_many(&self, numel: u64) -> Option<CodegenError> {
        (self.kernel.threads > numel).then(|| {
            self.malformed(format!(
                "{} threads for {numel} elements (extra threads would store out of range)",
                self.kernel.threads
            ))
        })
    }

    /// The storage bindings of the kernel: arg `i` is `arg{i}` at binding `i`, read-only
    /// exactly when its access is `Read`.
    pub(super) fn bindings(&self) -> Vec<Binding> {
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

/// A `u32` function parameter.
pub(super) fn u32_param(name: &str) -> Param {
    Param {
        builtin: None,
        name: name.into(),
        ty: Type::Scalar(Scalar::U32),
    }
}
