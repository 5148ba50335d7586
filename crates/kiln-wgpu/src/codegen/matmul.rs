//! Matmul kernels: a hand-written library kernel from `shaders/` (chosen by the
//! [`MatMulVariant`] and the [`Target`]) appended to a generated part that declares the
//! bindings, the offset functions `a_off` / `b_off`, the operand readers `load_a` /
//! `load_b` (and their 4-wide forms `load_a4` / `load_b4`) and the fused `epilogue`
//! function. Shapes and strides become override constants; the launch geometry is
//! [`super::matmul_dispatch`].

use super::state::{u32_param, Gen};
use super::{
    arg_name, sanitize, BindingSlot, CodegenError, KernelSource, Target, MATMUL_REGISTER_GROUP,
    MATMUL_REGISTER_TILE, MATMUL_REGISTER_WGSL, MATMUL_SUBGROUP_WGSL, MATMUL_TILED_WGSL,
    MATMUL_TILED_WIDE_WGSL, MATMUL_TILED_WORKGROUP,
};
use crate::wgsl::{BinOp, Const, Expr as W, Function, Literal, Module, Param, Scalar, Stmt, Type};
use kiln_ir::DType;
use kiln_plan::kernel::{ColumnSums, Kernel, KernelOp, MatMulVariant, MatOperand};

/// A matmul kernel: the generated part ([`matmul_prelude`] plus the `TM`/`TN4` block
/// constants of the register-blocked kernel), then the library file of its variant,
/// verbatim. Shapes and strides become override constants.
pub(super) fn matmul_source(
    kernel: &Kernel,
    bindings: Vec<BindingSlot>,
    target: &Target,
) -> Result<KernelSource, CodegenError> {
    let KernelOp::MatMul {
        batch,
        m,
        n,
        k,
        a,
        b,
        tile,
        variant,
        ..
    } = &kernel.op
    else {
        unreachable!("matmul_source is only called for matmul kernels")
    };
    let unsupported = |what: String| CodegenError::Unsupported {
        label: kernel.label.clone(),
        what,
    };
    let (prelude, offsets) = matmul_prelude(kernel, target)?;
    let library = match variant {
        MatMulVariant::RegisterBlocked => {
            if *tile != MATMUL_REGISTER_TILE || kernel.workgroup_size == 0 {
                return Err(unsupported(format!(
                    "register-blocked matmul with tile {tile:?} and workgroup {} (the library kernel is {MATMUL_REGISTER_TILE:?}, any workgroup size)",
                    kernel.workgroup_size
                )));
            }
            if target.subgroup_size == Some(MATMUL_REGISTER_GROUP)
                && kernel.workgroup_size.is_multiple_of(MATMUL_REGISTER_GROUP)
            {
                MATMUL_SUBGROUP_WGSL
            } else {
                MATMUL_REGISTER_WGSL
            }
        }
        MatMulVariant::WorkgroupTiled | MatMulVariant::WorkgroupTiledWide => {
            if *tile != variant.tile() || kernel.workgroup_size != MATMUL_TILED_WORKGROUP {
                return Err(unsupported(format!(
                    "{variant:?} matmul with tile {tile:?} and workgroup {} (the library kernel is {:?} x {MATMUL_TILED_WORKGROUP})",
                    kernel.workgroup_size,
                    variant.tile()
                )));
            }
            if *variant == MatMulVariant::WorkgroupTiled {
                MATMUL_TILED_WGSL
            } else {
                MATMUL_TILED_WIDE_WGSL
            }
        }
    };
    let mut values: Vec<(&'static str, usize)> = vec![
        ("M", *m),
        ("N", *n),
        ("K", *k),
        ("BATCH", *batch),
        ("A_BS", a.batch_stride),
        ("A_RS", a.row_stride),
        ("A_CS", a.col_stride),
        ("B_BS", b.batch_stride),
        ("B_RS", b.row_stride),
        ("B_CS", b.col_stride),
    ];
    if *variant == MatMulVariant::RegisterBlocked {
        values.push(("WG", kernel.workgroup_size as usize));
    }
    if let Some((name, v)) = values.iter().find(|(_, v)| *v > u32::MAX as usize) {
        return Err(unsupported(format!(
            "{name} = {v} does not fit u32 indexing"
        )));
    }
    Ok(KernelSource {
        wgsl: format!("{prelude}\n{library}"),
        constants: values.iter().map(|&(name, v)| (name, v as f64)).collect(),
        bindings,
        offsets,
    })
}

/// The column sums of B in the register-blocked kernels: appended to the epilogue, the
/// call for output `[0, 0, j]` also sums column `j` of B over `p` in increasing order
/// (`colsum`), evaluates the sums' body at `j` and performs its stores. Every `j < N` has
/// exactly one such call (row 0 exists).
fn column_sums(
    g: &mut Gen<'_>,
    sums: &ColumnSums,
    b: &MatOperand,
    batch: usize,
    n: usize,
    k: usize,
) -> Result<(), CodegenError> {
    check_sums(g, sums, batch, n)?;
    let epilogue = std::mem::take(&mut g.stmts);
    let j = W::ident("j");
    let p = W::ident("colp");
    let mut at = p.clone();
    if b.row_stride != 1 {
        at = at.bin(BinOp::Mul, W::u32(g.lit_u32(b.row_stride as u64)?));
    }
    if b.col_stride != 0 {
        let term = if b.col_stride == 1 {
            j.clone()
        } else {
            j.clone()
                .bin(BinOp::Mul, W::u32(g.lit_u32(b.col_stride as u64)?))
        };
        at = at.bin(BinOp::Add, term);
    }
    if let Some(o) = g.offset(b.offset)? {
        at = o.bin(BinOp::Add, at);
    }
    let colsum = W::ident("colsum");
    g.stmts.push(Stmt::Var(
        "colsum".into(),
        Type::Scalar(Scalar::F32),
        W::f32(0.0),
    ));
    let load = g.element(b.arg as usize, at);
    g.stmts.push(Stmt::ForRange {
        var: "colp".into(),
        start: W::u32(0),
        end: W::u32(g.lit_u32(k as u64)?),
        body: vec![Stmt::Assign(
            colsum.clone(),
            colsum.clone().bin(BinOp::Add, load),
        )],
    });
    sums_body(g, sums)?;
    let body = std::mem::replace(&mut g.stmts, epilogue);
    g.stmts.push(Stmt::If(
        W::ident("i").bin(BinOp::Eq, W::u32(0)),
        body,
        vec![],
    ));
    Ok(())
}

/// The column sums of B in the workgroup-tiled kernel, which adds up each column from the
/// slabs of B it stages anyway (in the workgroups of the first row of tiles, `p` in
/// increasing order) and hands the sum to `fn column_sum(colsum: f32, j: u32)`: its body
/// is the sums' body at `j` and their stores. No sums: an empty function (and `SUMS`
/// false, so the library kernel skips the adding).
fn tiled_column_sums(
    g: &mut Gen<'_>,
    sums: Option<&ColumnSums>,
    batch: usize,
    n: usize,
) -> Result<Function, CodegenError> {
    let epilogue = std::mem::take(&mut g.stmts);
    if let Some(sums) = sums {
        check_sums(g, sums, batch, n)?;
        sums_body(g, sums)?;
    }
    let body = std::mem::replace(&mut g.stmts, epilogue);
    Ok(Function {
        name: "column_sum".into(),
        workgroup_size: None,
        params: vec![
            Param {
                builtin: None,
                name: "colsum".into(),
                ty: Type::Scalar(Scalar::F32),
            },
            u32_param("j"),
        ],
        ret: None,
        body,
    })
}

/// Column sums are of an unbatched product, one per column.
fn check_sums(g: &Gen<'_>, sums: &ColumnSums, batch: usize, n: usize) -> Result<(), CodegenError> {
    if batch != 1 || sums.shape.iter().product::<usize>() != n {
        return Err(g.malformed(format!(
            "column sums over {:?} of a {batch}-batch product with {n} columns",
            sums.shape
        )));
    }
    Ok(())
}

/// The sums' body evaluated at column `j` with the sum in `colsum`, and their stores.
fn sums_body(g: &mut Gen<'_>, sums: &ColumnSums) -> Result<(), CodegenError> {
    let (j, colsum) = (W::ident("j"), W::ident("colsum"));
    let shape = sums.shape.clone();
    let idx = g.unravel("sj", &j, &shape)?;
    g.body(
        &sums.body,
        "s",
        &[(colsum, DType::F32)],
        &mut |g, _, view| g.view_index(view, &shape, &idx, &j),
    )?;
    g.stores(&sums.stores, &sums.body, "s", &j, &idx)
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
fn matmul_prelude(kernel: &Kernel, target: &Target) -> Result<(Module, Vec<u32>), CodegenError> {
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
        sums,
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
    let tiled = variant.workgroup_tile().is_some();
    let mut sums_fn = None;
    if tiled {
        sums_fn = Some(tiled_column_sums(&mut g, sums.as_deref(), *batch, *n)?);
    } else if let Some(sums) = sums {
        column_sums(&mut g, sums, b, *batch, *n, *k)?;
    }
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
                "generated: bindings, load_a, load_b, load_a4 ({}), load_b4 ({}), epilogue{}; then the library kernel",
                if fast_a { "vec4" } else { "strided" },
                if fast_b { "vec4" } else { "strided" },
                if tiled { ", SUMS, column_sum" } else { "" }
            ),
        ],
        consts: if tiled {
            vec![Const {
                name: "SUMS".into(),
                ty: Scalar::Bool,
                value: Literal::Bool(sums.is_some()),
            }]
        } else {
            Vec::new()
        },
        overrides: Vec::new(),
        bindings: g.bindings(),
        uniforms,
        workgroup: Vec::new(),
        functions: g
            .helpers()
            .into_iter()
            .chain(functions)
            .chain(sums_fn)
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
