//! Scatter-add kernels: `dst[index[i], c] += src[i, c]` into a zeroed `[rows, cols]`
//! tensor. A thread per column and block of rows (`KernelOp::ScatterAdd`'s launch) zeroes
//! its rows, then adds every position of its rows in order, keeping the running sum of the
//! current row in a register while the index repeats (no atomics, so results are
//! deterministic and the same for any number of blocks); an out-of-range index adds
//! nothing.

use super::body::convert;
use super::state::Gen;
use super::CodegenError;
use crate::wgsl::{BinOp, Builtin, Expr as W, Scalar, Stmt, Type};
use kiln_ir::DType;
use kiln_plan::kernel::KernelOp;

/// Emits the statements of a scatter-add kernel after the thread index `gid` (the column);
/// returns the kernel's one-line description.
pub(super) fn scatter_add(g: &mut Gen<'_>, gid: &W) -> Result<String, CodegenError> {
    let kernel = g.kernel;
    let KernelOp::ScatterAdd {
        rows,
        cols,
        count,
        index,
        src,
        dst,
    } = &kernel.op
    else {
        unreachable!("scatter_add() is only called for scatter-add kernels")
    };
    // whole blocks of rows for every column
    if *cols == 0 || !kernel.threads.is_multiple_of(*cols as u64) {
        return Err(g.malformed(format!(
            "scatter-add of {cols} columns launches {} threads (a multiple of the columns)",
            kernel.threads
        )));
    }
    // f32 indices are converted as the elementwise cast converts them
    let float_index = kernel.args.get(index.arg as usize).map(|a| a.dtype) == Some(DType::F32);
    let index_dtype = if float_index { DType::F32 } else { DType::I32 };
    for (d, dt, write) in [
        (index, index_dtype, false),
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
    // this thread's column and block of rows [r0, r1) (`threads` = cols · blocks)
    let blocks = (kernel.threads / (*cols).max(1) as u64).max(1) as usize;
    let per_block = rows.div_ceil(blocks).max(1);
    g.stmts.push(Stmt::Let(
        "c".into(),
        Type::Scalar(Scalar::U32),
        gid.clone().bin(BinOp::Rem, lit(g, *cols)?),
    ));
    g.stmts.push(Stmt::Let(
        "r0".into(),
        Type::Scalar(Scalar::U32),
        gid.clone()
            .bin(BinOp::Div, lit(g, *cols)?)
            .bin(BinOp::Mul, lit(g, per_block)?),
    ));
    g.stmts.push(Stmt::Let(
        "r1".into(),
        Type::Scalar(Scalar::U32),
        W::call(
            Builtin::Min,
            vec![
                W::ident("r0").bin(BinOp::Add, lit(g, per_block)?),
                lit(g, *rows)?,
            ],
        ),
    ));
    // element `row * cols + c` of a `[_, cols]` operand at element offset `off`
    let row_el = |g: &Gen, off: usize, row: W| -> Result<W, CodegenError> {
        with_off(
            g,
            off,
            row.bin(BinOp::Mul, lit(g, *cols)?)
                .bin(BinOp::Add, W::ident("c")),
        )
    };
    // zero this thread's rows of its column
    let zero_at = row_el(g, dst.offset, W::ident("r"))?;
    g.stmts.push(Stmt::ForRange {
        var: "r".into(),
        start: W::ident("r0"),
        end: W::ident("r1"),
        body: vec![Stmt::Assign(
            g.element(dst.arg as usize, zero_at),
            W::f32(0.0),
        )],
    });
    // then add every position of its rows in order; the running sum of row `cur` stays in
    // `acc` until the index changes (`cur == rows`: none yet)
    g.stmts.push(Stmt::Var(
        "cur".into(),
        Type::Scalar(Scalar::U32),
        lit(g, *rows)?,
    ));
    g.stmts.push(Stmt::Var(
        "acc".into(),
        Type::Scalar(Scalar::F32),
        W::f32(0.0),
    ));
    let i = W::ident("i");
    let ix_at = with_off(g, index.offset, i.clone())?;
    let src_at = row_el(g, src.offset, i)?;
    let cur_at = row_el(g, dst.offset, W::ident("cur"))?;
    let flush = Stmt::If(
        W::ident("cur").bin(BinOp::Lt, lit(g, *rows)?),
        vec![Stmt::Assign(
            g.element(dst.arg as usize, cur_at.clone()),
            W::ident("acc"),
        )],
        vec![],
    );
    let body = vec![
        Stmt::Let(
            "ix".into(),
            Type::Scalar(Scalar::U32),
            W::Convert(
                Scalar::U32,
                Box::new({
                    let ix = g.element(index.arg as usize, ix_at);
                    if float_index {
                        convert(ix, DType::I32, 1)
                    } else {
                        ix
                    }
                }),
            ),
        ),
        Stmt::If(
            W::ident("ix")
                .bin(BinOp::Ge, W::ident("r0"))
                .bin(BinOp::And, W::ident("ix").bin(BinOp::Lt, W::ident("r1"))),
            vec![
                Stmt::If(
                    W::ident("ix").bin(BinOp::Ne, W::ident("cur")),
                    vec![
                        flush.clone(),
                        Stmt::Assign(W::ident("cur"), W::ident("ix")),
                        Stmt::Assign(W::ident("acc"), g.element(dst.arg as usize, cur_at)),
                    ],
                    vec![],
                ),
                Stmt::Assign(
                    W::ident("acc"),
                    W::ident("acc").bin(BinOp::Add, g.element(src.arg as usize, src_at)),
                ),
            ],
            vec![],
        ),
    ];
    g.stmts.push(Stmt::ForRange {
        var: "i".into(),
        start: W::u32(0),
        end: lit(g, *count)?,
        body,
    });
    g.stmts.push(flush);
    Ok(format!(
        "scatter-add {count} positions into [{rows}, {cols}]"
    ))
}
