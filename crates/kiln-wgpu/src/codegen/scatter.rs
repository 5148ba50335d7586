//! Scatter-add kernels: `dst[index[i], c] += src[i, c]` into a zeroed `[rows, cols]`
//! tensor. One thread per column `c` zeroes its column, then adds every position's row in
//! order (no atomics, so results are deterministic); an out-of-range index adds nothing.

use super::body::convert;
use super::state::Gen;
use super::CodegenError;
use crate::wgsl::{BinOp, Expr as W, Scalar, Stmt, Type};
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
    if let Some(e) = g.too_many(*cols as u64) {
        return Err(e);
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
    // element `row * cols + c` of a `[_, cols]` operand at element offset `off`
    let row_el = |g: &Gen, off: usize, row: W| -> Result<W, CodegenError> {
        with_off(
            g,
            off,
            row.bin(BinOp::Mul, lit(g, *cols)?)
                .bin(BinOp::Add, gid.clone()),
        )
    };
    // zero this thread's column
    let zero_at = row_el(g, dst.offset, W::ident("r"))?;
    g.stmts.push(Stmt::ForRange {
        var: "r".into(),
        start: W::u32(0),
        end: lit(g, *rows)?,
        body: vec![Stmt::Assign(
            g.element(dst.arg as usize, zero_at),
            W::f32(0.0),
        )],
    });
    // then add every position's value in order
    let i = W::ident("i");
    let ix_at = with_off(g, index.offset, i.clone())?;
    let src_at = row_el(g, src.offset, i)?;
    let dst_at = row_el(g, dst.offset, W::ident("ix"))?;
    let at = W::ident("at");
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
            W::ident("ix").bin(BinOp::Lt, lit(g, *rows)?),
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
        end: lit(g, *count)?,
        body,
    });
    Ok(format!(
        "scatter-add {count} positions into [{rows}, {cols}]"
    ))
}
