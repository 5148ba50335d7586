//! Reduce kernels: one thread per output element folds the reduced axes in a sequential
//! loop (or, with `tree > 1`, one workgroup per output element folds strided shares and
//! combines them in a fixed tree in workgroup memory); no atomics, so results are
//! deterministic. A kernel runs its stages in order (each folds body values into fresh
//! accumulators `acc{j}` and may read the earlier stages' accumulators), then the epilogue
//! at the output element, then the broadcast body over the reduced elements again. The
//! part of each load's index that depends only on the output element (`<phase>base<i>`) is
//! hoisted out of the loops.

use super::body::zero;
use super::state::Gen;
use super::{scalar, CodegenError};
use crate::wgsl::{BinOp, Builtin, Expr as W, Scalar, Stmt, Type};
use kiln_ir::DType;
use kiln_plan::kernel::{Body, Expr, KernelOp, ReduceKind, Store};

/// Emits the statements of a reduce kernel after the thread index `gid`; returns the
/// kernel's one-line description.
pub(super) fn reduce(g: &mut Gen<'_>, gid: &W) -> Result<String, CodegenError> {
    let kernel = g.kernel;
    let KernelOp::Reduce {
        in_shape,
        axes,
        stages,
        epilogue,
        stores,
        broadcast,
        broadcast_stores,
        tree,
    } = &kernel.op
    else {
        unreachable!("reduce() is only called for reduce kernels")
    };
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
        return Err(g.malformed("a reduce kernel needs stages whose folds name body values".into()));
    }
    let reduced = |d: usize| axes.contains(&d);
    let out_shape: Vec<usize> = (0..in_shape.len())
        .map(|d| if reduced(d) { 1 } else { in_shape[d] })
        .collect();
    let per_output = (*tree).max(1) as u64;
    if let Some(e) = g.too_many(out_shape.iter().map(|&d| d as u64).product::<u64>() * per_output) {
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
                ReduceKind::Max => {
                    super::body::nan_propagating(Builtin::Max, acc.clone(), v, dt, 1)
                }
            };
            tail.push(Stmt::Assign(acc.clone(), combined));
        }
        let earlier = accs.clone();
        let pass = reduce_loop(
            g,
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
                        ReduceKind::Max => super::body::nan_propagating(
                            Builtin::Max,
                            at(lid.clone()),
                            other,
                            dt,
                            1,
                        ),
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
            g,
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
    Ok(format!(
        "reduce {in_shape:?} over {axes:?}; {} stages, {} accumulators; stores: {} output, {} broadcast",
        stages.len(),
        accs.len(),
        stores.len(),
        broadcast_stores.len()
    ))
}

impl Gen<'_> {
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
