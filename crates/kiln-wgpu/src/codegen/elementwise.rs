//! Elementwise kernels: one thread per element of the iteration shape (or per four
//! elements). With `vector == 4` the body is evaluated on `vec4` values: thread `gid`
//! handles elements `4*gid .. 4*gid + 4`; a load with stride 1 on the innermost non-unit axis
//! reads `arg[e / 4u]` from an `array<vec4<T>>` binding, a load with stride 0 there splats one
//! element, and stores write `arg[e / 4u]` (kiln-opt's `elementwise_vector` decides when this
//! is legal; the generator re-checks it).

use super::state::Gen;
use super::CodegenError;
use crate::wgsl::{BinOp, Expr as W};
use kiln_plan::kernel::{Expr, KernelOp};

/// Emits the statements of an elementwise kernel after the thread index `gid`; returns the
/// kernel's one-line description.
pub(super) fn elementwise(g: &mut Gen<'_>, gid: &W) -> Result<String, CodegenError> {
    let kernel = g.kernel;
    let KernelOp::Elementwise {
        shape,
        body,
        stores,
        vector,
    } = &kernel.op
    else {
        unreachable!("elementwise() is only called for elementwise kernels")
    };
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
    if let Some(e) = g.too_many(numel / *vector as u64) {
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
    Ok(format!(
        "elementwise {shape:?} x{vector}, {} exprs, {} stores",
        body.nodes.len(),
        stores.len()
    ))
}
