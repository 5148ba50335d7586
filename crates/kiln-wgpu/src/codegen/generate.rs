//! Generation of elementwise and reduce kernels as [`crate::wgsl`] syntax trees.
//!
//! [`Gen`] accumulates the statements of the entry point: the thread index and its bounds
//! check, the unravelled multi-index (one `let` per axis of extent > 1), and one `let` per
//! body expression. Loads compute `offset + Σ idx[d] * stride[d]` from literals; a
//! contiguous view reads `arg[gid]` directly. A reduce kernel hoists the part of each
//! prologue load's index that depends only on the output element (`base<i>`) out of its
//! sequential loop over the reduced elements.

use super::{arg_name, sanitize, scalar, CodegenError, ENTRY_POINT};
use crate::wgsl::{
    BinOp, Binding, Builtin, BuiltinInput, Expr as W, Function, Module, Override, Param, Scalar,
    Stmt, StorageAccess, Type, UnOp,
};
use kiln_ir::{BinaryOp, DType, UnaryOp};
use kiln_opt::kernel::{Body, Expr, Kernel, KernelOp, ReduceKind, View};

/// State of one generated kernel: its statements and structural checks.
struct Gen<'k> {
    kernel: &'k Kernel,
    stmts: Vec<Stmt>,
}

impl<'k> Gen<'k> {
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
        view: &View,
        idx: &[Option<W>],
    ) -> Result<W, CodegenError> {
        for (i, &s) in idx.iter().zip(&view.strides) {
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

    /// Index expression of a load through `view` at the multi-index `idx` of `dims`.
    fn view_index(
        &self,
        view: &View,
        dims: &[usize],
        idx: &[Option<W>],
        gid: &W,
    ) -> Result<W, CodegenError> {
        if view.strides.len() != dims.len() {
            return Err(self.malformed(format!(
                "a view has {} strides over a rank-{} iteration shape",
                view.strides.len(),
                dims.len()
            )));
        }
        if view.is_contiguous(dims) {
            return Ok(gid.clone());
        }
        let offset = (view.offset != 0)
            .then(|| self.lit_u32(view.offset as u64).map(W::u32))
            .transpose()?;
        self.view_terms(offset, view, idx)
    }

    /// Emits `body` as `let {prefix}{i}` statements and returns the result expression.
    /// `load` maps (expression index, arg, view) to the element index of that load.
    fn body(
        &mut self,
        body: &Body,
        prefix: &str,
        reduced: Option<&W>,
        load: &mut dyn FnMut(&Self, usize, &View) -> Result<W, CodegenError>,
    ) -> Result<W, CodegenError> {
        if body.nodes.is_empty() {
            return Err(self.malformed("an empty expression body".into()));
        }
        let name = |i: usize| W::Ident(format!("{prefix}{i}"));
        for (i, node) in body.nodes.iter().enumerate() {
            let dt = node.dtype;
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
                    W::ident(arg_name(a)).index(load(self, i, view)?)
                }
                Expr::Const(v) => match dt {
                    DType::F32 => W::f32(*v as f32),
                    DType::I32 => W::i32(*v as i32),
                },
                Expr::Unary(op, x) => unary(*op, operand(*x)?.0, dt),
                Expr::Binary(op, a, b) => {
                    let (a, adt) = operand(*a)?;
                    binary(*op, a, operand(*b)?.0, adt)
                }
                Expr::Select(c, a, b) => {
                    let (c, cdt) = operand(*c)?;
                    let cond = c.bin(BinOp::Ne, zero(cdt));
                    W::call(Builtin::Select, vec![operand(*b)?.0, operand(*a)?.0, cond])
                }
                Expr::Cast(x) => {
                    let (x, xdt) = operand(*x)?;
                    if xdt == dt {
                        x
                    } else {
                        x.convert(scalar(dt))
                    }
                }
                Expr::Reduced => match reduced {
                    Some(acc) => acc.clone(),
                    None => {
                        return Err(self.malformed(format!(
                            "{prefix}{i} reads the reduced value outside an epilogue"
                        )))
                    }
                },
            };
            self.stmts.push(Stmt::Let(
                format!("{prefix}{i}"),
                Type::Scalar(scalar(dt)),
                value,
            ));
        }
        Ok(name(body.nodes.len() - 1))
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

/// `op(x)` in dtype `dt`; transcendental ops on i32 compute in f32 and truncate.
fn unary(op: UnaryOp, x: W, dt: DType) -> W {
    match op {
        UnaryOp::Neg => x.un(UnOp::Neg),
        UnaryOp::Abs => W::call(Builtin::Abs, vec![x]),
        UnaryOp::Sign => W::call(Builtin::Sign, vec![x]),
        UnaryOp::Relu => W::call(Builtin::Max, vec![x, zero(dt)]),
        UnaryOp::Recip => one(dt).bin(BinOp::Div, x),
        UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Tanh | UnaryOp::Sigmoid
            if dt == DType::I32 =>
        {
            unary(op, x.convert(Scalar::F32), DType::F32).convert(Scalar::I32)
        }
        UnaryOp::Exp => W::call(Builtin::Exp, vec![x]),
        UnaryOp::Log => W::call(Builtin::Log, vec![x]),
        UnaryOp::Sqrt => W::call(Builtin::Sqrt, vec![x]),
        // tanh(±15) is ±1 in f32; clamping avoids the NaN some drivers return for large |x|.
        UnaryOp::Tanh => W::call(
            Builtin::Tanh,
            vec![W::call(
                Builtin::Clamp,
                vec![x, W::f32(-15.0), W::f32(15.0)],
            )],
        ),
        UnaryOp::Sigmoid => W::f32(1.0).bin(
            BinOp::Div,
            W::f32(1.0).bin(BinOp::Add, W::call(Builtin::Exp, vec![x.un(UnOp::Neg)])),
        ),
    }
}

/// `op(a, b)` for operands of dtype `dt`; comparisons give 1/0 in `dt`.
fn binary(op: BinaryOp, a: W, b: W, dt: DType) -> W {
    let cmp = |o: BinOp| {
        W::call(
            Builtin::Select,
            vec![zero(dt), one(dt), a.clone().bin(o, b.clone())],
        )
    };
    match op {
        BinaryOp::Add => a.bin(BinOp::Add, b),
        BinaryOp::Sub => a.bin(BinOp::Sub, b),
        BinaryOp::Mul => a.bin(BinOp::Mul, b),
        BinaryOp::Div => a.bin(BinOp::Div, b),
        BinaryOp::Max => W::call(Builtin::Max, vec![a, b]),
        BinaryOp::Min => W::call(Builtin::Min, vec![a, b]),
        BinaryOp::Pow if dt == DType::I32 => W::call(
            Builtin::Pow,
            vec![a.convert(Scalar::F32), b.convert(Scalar::F32)],
        )
        .convert(Scalar::I32),
        BinaryOp::Pow => W::call(Builtin::Pow, vec![a, b]),
        BinaryOp::Lt => cmp(BinOp::Lt),
        BinaryOp::Le => cmp(BinOp::Le),
        BinaryOp::Gt => cmp(BinOp::Gt),
        BinaryOp::Ge => cmp(BinOp::Ge),
        BinaryOp::Eq => cmp(BinOp::Eq),
        BinaryOp::Ne => cmp(BinOp::Ne),
    }
}

/// Builds the module of an elementwise or reduce kernel.
pub(super) fn generated_module(
    kernel: &Kernel,
    read_only: &dyn Fn(usize) -> bool,
) -> Result<Module, CodegenError> {
    let mut g = Gen {
        kernel,
        stmts: Vec::new(),
    };
    let threads = u32::try_from(kernel.threads).map_err(|_| CodegenError::Unsupported {
        label: kernel.label.clone(),
        what: format!("{} threads do not fit u32 indexing", kernel.threads),
    })?;
    if kernel.workgroup_size == 0 {
        return Err(g.malformed("workgroup size 0".into()));
    }
    // gid = global_id.x + global_id.y * (num_workgroups.x * WG); out-of-range threads return.
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
    g.stmts.push(Stmt::If(
        gid.clone().bin(BinOp::Ge, W::u32(threads)),
        vec![Stmt::Return],
        vec![],
    ));

    let out_dt = kernel.args[kernel.args.len() - 1].dtype;
    let (result, result_dt, what) = match &kernel.op {
        KernelOp::Elementwise { shape, body } => {
            let idx = g.unravel("i", &gid, shape)?;
            let r = g.body(body, "e", None, &mut |g, _, view| {
                g.view_index(view, shape, &idx, &gid)
            })?;
            (
                r,
                body.dtype(),
                format!("elementwise {shape:?}, {} exprs", body.nodes.len()),
            )
        }
        KernelOp::Reduce {
            in_shape,
            axes,
            kind,
            prologue,
            epilogue,
        } => {
            if axes.iter().any(|&a| a >= in_shape.len()) {
                return Err(g.malformed(format!(
                    "reduce axes {axes:?} out of range for {in_shape:?}"
                )));
            }
            let reduced = |d: usize| axes.contains(&d);
            let out_shape: Vec<usize> = (0..in_shape.len())
                .map(|d| if reduced(d) { 1 } else { in_shape[d] })
                .collect();
            let red_dims: Vec<usize> = axes.iter().map(|&a| in_shape[a]).collect();
            let count: u64 = red_dims.iter().map(|&d| d as u64).product();
            let out_idx = g.unravel("i", &gid, &out_shape)?;
            // Part of each prologue load's index that depends only on the output element.
            let mut bases = Vec::new();
            for (i, node) in prologue.nodes.iter().enumerate() {
                if let Expr::Load { view, .. } = &node.expr {
                    if view.strides.len() != in_shape.len() {
                        return Err(g.malformed(format!(
                            "prologue load p{i} has a rank-{} view",
                            view.strides.len()
                        )));
                    }
                    let kept: Vec<Option<W>> = out_idx
                        .iter()
                        .enumerate()
                        .map(|(d, x)| x.clone().filter(|_| !reduced(d)))
                        .collect();
                    let off = (view.offset != 0)
                        .then(|| g.lit_u32(view.offset as u64).map(W::u32))
                        .transpose()?;
                    let base = g.view_terms(off, view, &kept)?;
                    bases.push((i, g.let_u32(format!("base{i}"), base)));
                }
            }
            let dt = prologue.dtype();
            let init = match (kind, dt) {
                (ReduceKind::Sum, _) => zero(dt),
                (ReduceKind::Max, DType::F32) => W::f32(f32::NEG_INFINITY),
                (ReduceKind::Max, DType::I32) => W::i32(i32::MIN),
            };
            g.stmts
                .push(Stmt::Var("acc".into(), Type::Scalar(scalar(dt)), init));
            // Loop over the reduced elements: r unravels over the reduced axes.
            let outer = std::mem::take(&mut g.stmts);
            let r = W::ident("r");
            let r_idx = g.unravel("r", &r, &red_dims)?;
            let mut full: Vec<Option<W>> = vec![None; in_shape.len()];
            for (k, &a) in axes.iter().enumerate() {
                full[a] = r_idx[k].clone();
            }
            let v = g.body(prologue, "p", None, &mut |g, i, view| {
                let base = bases.iter().find(|(j, _)| *j == i).map(|(_, b)| b.clone());
                g.view_terms(base, view, &full)
            })?;
            let acc = W::ident("acc");
            let combined = match kind {
                ReduceKind::Sum => acc.clone().bin(BinOp::Add, v),
                ReduceKind::Max => W::call(Builtin::Max, vec![acc.clone(), v]),
            };
            g.stmts.push(Stmt::Assign(acc.clone(), combined));
            let body = std::mem::replace(&mut g.stmts, outer);
            g.stmts.push(Stmt::ForRange {
                var: "r".into(),
                start: W::u32(0),
                end: W::u32(g.lit_u32(count)?),
                body,
            });
            let e = g.body(epilogue, "e", Some(&acc), &mut |g, _, view| {
                g.view_index(view, &out_shape, &out_idx, &gid)
            })?;
            (
                e,
                epilogue.dtype(),
                format!("reduce {kind:?} {in_shape:?} over {axes:?}"),
            )
        }
        KernelOp::MatMul { .. } => unreachable!("matmul kernels use the library shader"),
    };
    if result_dt != out_dt {
        return Err(g.malformed(format!(
            "the body gives {result_dt} but the output is {out_dt}"
        )));
    }
    let last = kernel.args.len() - 1;
    g.stmts
        .push(Stmt::Assign(W::ident(arg_name(last)).index(gid), result));

    Ok(Module {
        comments: vec![
            sanitize(&format!("kiln kernel `{}`", kernel.label)),
            sanitize(&format!(
                "{what}; {} threads, workgroup {}",
                kernel.threads, kernel.workgroup_size
            )),
        ],
        overrides: Vec::<Override>::new(),
        bindings: kernel
            .args
            .iter()
            .enumerate()
            .map(|(i, a)| Binding {
                group: 0,
                binding: i as u32,
                name: arg_name(i),
                access: if read_only(i) {
                    StorageAccess::Read
                } else {
                    StorageAccess::ReadWrite
                },
                ty: Type::RuntimeArray(scalar(a.dtype)),
            })
            .collect(),
        functions: vec![Function {
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
            body: g.stmts,
        }],
    })
}
