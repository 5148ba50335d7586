//! Body and store emission shared by every kernel family: one `let` per body expression
//! (identical expressions are emitted once: a later copy is `let eN = eM`, so the loads that
//! fusion duplicates are read once), then the body's stores; and the WGSL of each unary and
//! binary op on scalar or `vec4` lanes.

use super::state::{Gen, LoadIndex, FLUSH_BELOW};
use super::{arg_name, scalar, CodegenError};
use crate::wgsl::{BinOp, Builtin, Expr as W, Scalar, Stmt, Type, UnOp};
use kiln_ir::{BinaryOp, DType, UnaryOp};
use kiln_plan::kernel::{Body, Expr, Store};

impl Gen<'_> {
    /// Emits `body` as `let {prefix}{i}` statements (nothing for an empty body). `accs` are
    /// the accumulators [`Expr::Acc`] may read in this phase, with their dtypes.
    pub(super) fn body(
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
    pub(super) fn stores(
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
}

/// 0 of `dt`.
pub(super) fn zero(dt: DType) -> W {
    match dt {
        DType::F32 => W::f32(0.0),
        DType::I32 => W::i32(0),
    }
}

/// `isnan(x)` lane for lane, for an f32 scalar or vector `x` of `width` lanes, on the bits:
/// `x != x` is no test (naga emits an *ordered* not-equal, false for NaN) and WGSL has no
/// `isnan`. With `b` the bits, `min(b, b ^ 0x80000000)` is `b` without its sign bit, above
/// `0x7f800000` (infinity) exactly for NaN.
fn is_nan(x: W, width: u32) -> W {
    let u = |v: u32| {
        if width == 1 {
            W::u32(v)
        } else {
            W::Construct(Type::Vec(width as u8, Scalar::U32), vec![W::u32(v)])
        }
    };
    let ty = if width == 1 {
        Type::Scalar(Scalar::U32)
    } else {
        Type::Vec(width as u8, Scalar::U32)
    };
    let bits = W::Bitcast(ty, Box::new(x));
    let magnitude = W::call(
        Builtin::Min,
        vec![bits.clone(), bits.bin(BinOp::Xor, u(0x8000_0000))],
    );
    magnitude.bin(BinOp::Gt, u(0x7f80_0000))
}

/// `f(a, b)` for `f` = `max` or `min` that is NaN when either operand is (IEEE 754-2019
/// `maximum`, Keras `tf.maximum`); WGSL's `max`/`min` may return the other operand. For f32
/// `a` and `b` (of `width` lanes) should be named values or loads (they are repeated); i32
/// needs nothing.
pub(super) fn nan_propagating(f: Builtin, a: W, b: W, dt: DType, width: u32) -> W {
    let plain = W::call(f, vec![a.clone(), b.clone()]);
    if dt != DType::F32 {
        return plain;
    }
    let b_nan = W::call(Builtin::Select, vec![plain, b.clone(), is_nan(b, width)]);
    W::call(Builtin::Select, vec![b_nan, a.clone(), is_nan(a, width)])
}

/// 1 of `dt`.
fn one(dt: DType) -> W {
    match dt {
        DType::F32 => W::f32(1.0),
        DType::I32 => W::i32(1),
    }
}

/// `dt` with `width` lanes (a scalar for 1, a `vecN` otherwise).
pub(super) fn vtype(dt: DType, width: u32) -> Type {
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
pub(super) fn convert(x: W, dt: DType, width: u32) -> W {
    if width == 1 {
        x.convert(scalar(dt))
    } else {
        W::Construct(vtype(dt, width), vec![x])
    }
}

/// `op(x)` in dtype `dt` on `width` lanes; transcendental ops on i32 compute in f32 and
/// truncate.
pub(super) fn unary(op: UnaryOp, x: W, dt: DType, width: u32) -> W {
    let k = |v: W| splat(v, dt, width);
    match op {
        UnaryOp::Neg => x.un(UnOp::Neg),
        UnaryOp::Abs => W::call(Builtin::Abs, vec![x]),
        UnaryOp::Sign => W::call(Builtin::Sign, vec![x]),
        // NaN stays NaN (as in Keras; WGSL's max may return the other operand)
        UnaryOp::Relu if dt == DType::F32 => W::call(
            Builtin::Select,
            vec![
                W::call(Builtin::Max, vec![x.clone(), k(zero(dt))]),
                x.clone(),
                is_nan(x, width),
            ],
        ),
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
        // tanh(±15) is ±1 in f32; clamping avoids the NaN some drivers return for large |x|,
        // and the select keeps a NaN operand NaN (the clamp would make it ±1)
        UnaryOp::Tanh => W::call(
            Builtin::Select,
            vec![
                W::call(
                    Builtin::Tanh,
                    vec![W::call(
                        Builtin::Clamp,
                        vec![x.clone(), k(W::f32(-15.0)), k(W::f32(15.0))],
                    )],
                ),
                x.clone(),
                is_nan(x, width),
            ],
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
        BinaryOp::Max => nan_propagating(Builtin::Max, a, b, dt, width),
        BinaryOp::Min => nan_propagating(Builtin::Min, a, b, dt, width),
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
