//! Stage 4: column sums join their product. A dense layer's weight gradient is
//! `xᵀ · dy` and its bias gradient `Σ_rows dy`: the same operand `dy`, reduced over the
//! same rows. After [`super::emit`] the bias gradient is a reduce kernel of its own (with
//! the optimizer's update in its epilogue); here such a kernel — one stage, one sum, of a
//! plain load of the product's right operand `B` over its `[k, n]` with the rows reduced —
//! is folded into the product's kernel as [`ColumnSums`] (one dispatch fewer).
//!
//! The plan is final at this point (buffers, offsets, temp lifetimes), so the checks are on
//! element ranges ([`step_ranges`]): the reduction moves to the product's step only when no
//! step in between writes what it reads or touches what it writes, when it touches nothing
//! the product writes and writes nothing the product reads (the two run in one kernel, in
//! any order), when it writes no temporary, and when the merged kernel stays within the
//! device's bindings. Temporaries it reads stay live until the product's step.

use crate::kernel::{Access, ColumnSums, Expr, KernelOp, ReduceKind};
use crate::plan::{BufferKind, Plan, Step};
use crate::DeviceLimits;
use kiln_plan::schedule::{step_ranges, Range};

/// Folds every eligible column-sum reduction into its product (see the module page).
pub(super) fn merge_column_sums(plan: &mut Plan, limits: &DeviceLimits) {
    while let Some((m, r)) = find(plan, limits) {
        merge(plan, m, r);
    }
    // drop kernels no step runs any more
    let mut used = vec![None; plan.kernels.len()];
    let mut kernels = Vec::with_capacity(plan.kernels.len());
    for step in &mut plan.steps {
        if let Step::Dispatch { kernel, .. } = step {
            let k = *kernel as usize;
            let id = *used[k].get_or_insert_with(|| {
                kernels.push(plan.kernels[k].clone());
                kernels.len() - 1
            });
            *kernel = id as u32;
        }
    }
    plan.kernels = kernels;
    plan.stats.kernels = plan.kernels.len();
    plan.stats.dispatches = plan
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Dispatch { .. }))
        .count();
}

fn overlaps(a: &[Range], b: &[Range]) -> bool {
    a.iter().any(|x| {
        b.iter()
            .any(|y| x.buffer == y.buffer && x.start < y.end && y.start < x.end)
    })
}

/// `(product step, reduction step)` of the first eligible pair.
fn find(plan: &Plan, limits: &DeviceLimits) -> Option<(usize, usize)> {
    let dispatch = |s: usize| match &plan.steps[s] {
        Step::Dispatch {
            kernel, buffers, ..
        } => Some((&plan.kernels[*kernel as usize], buffers)),
        Step::Copy { .. } => None,
    };
    for r in 0..plan.steps.len() {
        let Some((rk, rbufs)) = dispatch(r) else {
            continue;
        };
        let KernelOp::Reduce {
            in_shape,
            axes,
            stages,
            broadcast_stores,
            ..
        } = &rk.op
        else {
            continue;
        };
        let [stage] = stages.as_slice() else {
            continue;
        };
        let ([fold], [node]) = (stage.folds.as_slice(), stage.body.nodes.as_slice()) else {
            continue;
        };
        let Expr::Load { arg, view } = &node.expr else {
            continue;
        };
        if fold.kind != ReduceKind::Sum
            || fold.value != 0
            || !stage.stores.is_empty()
            || !broadcast_stores.is_empty()
            || in_shape.len() != 2
            || axes.as_slice() != [0]
            || view.strides.len() != 2
        {
            continue;
        }
        let Some(&src) = rbufs.get(*arg as usize) else {
            continue;
        };
        let (rreads, rwrites) = step_ranges(plan, &plan.steps[r]);
        if rwrites
            .iter()
            .any(|w| plan.buffers[w.buffer as usize].kind == BufferKind::Temp)
        {
            continue;
        }
        for m in 0..plan.steps.len() {
            let Some((mk, mbufs)) = dispatch(m) else {
                continue;
            };
            let KernelOp::MatMul {
                batch,
                n,
                k,
                b,
                sums: None,
                ..
            } = &mk.op
            else {
                continue;
            };
            if *batch != 1
                || [*k, *n] != in_shape[..]
                || mbufs.get(b.arg as usize) != Some(&src)
                || b.offset != view.offset
                || [b.row_stride, b.col_stride] != view.strides[..]
            {
                continue;
            }
            let (mreads, mwrites) = step_ranges(plan, &plan.steps[m]);
            if overlaps(&rwrites, &mreads) || overlaps(&rwrites, &mwrites) {
                continue;
            }
            if overlaps(&rreads, &mwrites) {
                continue;
            }
            let between = (m.min(r) + 1)..m.max(r);
            let clear = between.clone().all(|s| {
                let (sr, sw) = step_ranges(plan, &plan.steps[s]);
                !overlaps(&rreads, &sw) && !overlaps(&rwrites, &sr) && !overlaps(&rwrites, &sw)
            });
            if !clear {
                continue;
            }
            let mut bound: Vec<_> = mbufs.clone();
            for bf in rbufs {
                if !bound.contains(bf) {
                    bound.push(*bf);
                }
            }
            if bound.len() > limits.max_storage_buffers_per_shader_stage as usize {
                continue;
            }
            return Some((m, r));
        }
    }
    None
}

/// Folds the reduction of step `r` into the product of step `m` ([`find`] chose them).
fn merge(plan: &mut Plan, m: usize, r: usize) {
    let (
        Step::Dispatch {
            kernel: rk,
            buffers: rbufs,
            ..
        },
        Step::Dispatch {
            kernel: mk,
            buffers: mbufs,
            ..
        },
    ) = (plan.steps[r].clone(), plan.steps[m].clone())
    else {
        unreachable!("find() returns dispatch steps")
    };
    let (rread, _) = step_ranges(plan, &plan.steps[r]);
    let reduce = plan.kernels[rk as usize].clone();
    let mut product = plan.kernels[mk as usize].clone();
    let KernelOp::Reduce {
        in_shape,
        mut epilogue,
        mut stores,
        ..
    } = reduce.op
    else {
        unreachable!("find() returns a reduce kernel")
    };
    // the reduction's args in the product's bindings
    let mut buffers = mbufs;
    let mut map = Vec::with_capacity(rbufs.len());
    for (a, bf) in rbufs.iter().enumerate() {
        let access = reduce.args[a].access;
        match buffers.iter().position(|x| x == bf) {
            Some(i) => {
                let old = product.args[i].access;
                product.args[i].access = if old == access {
                    old
                } else {
                    Access::ReadWrite
                };
                map.push(i as u32);
            }
            None => {
                buffers.push(*bf);
                product.args.push(reduce.args[a].clone());
                map.push(product.args.len() as u32 - 1);
            }
        }
    }
    for node in &mut epilogue.nodes {
        if let Expr::Load { arg, .. } | Expr::Gather { arg, .. } = &mut node.expr {
            *arg = map[*arg as usize];
        }
    }
    for st in &mut stores {
        st.arg = map[st.arg as usize];
    }
    if let KernelOp::MatMul { sums, .. } = &mut product.op {
        *sums = Some(Box::new(ColumnSums {
            shape: vec![1, in_shape[1]],
            body: epilogue,
            stores,
        }));
    }
    product.nodes.extend(&reduce.nodes);
    plan.kernels.push(product);
    if let Step::Dispatch {
        kernel, buffers: b, ..
    } = &mut plan.steps[m]
    {
        *kernel = plan.kernels.len() as u32 - 1;
        *b = buffers;
    }
    plan.steps.remove(r);
    // temp lifetimes in the new step numbering: what the reduction read stays live until
    // the product's step; later steps move up by one
    for al in &mut plan.stats.allocations {
        let read = rread
            .iter()
            .any(|x| x.buffer == al.buffer && x.start < al.offset + al.len && al.offset < x.end);
        if read && al.first <= r && r <= al.last {
            al.last = al.last.max(m);
        }
        let shift = |x: usize| if x > r { x - 1 } else { x };
        al.first = shift(al.first);
        al.last = if al.last == r {
            r.saturating_sub(1).max(al.first)
        } else {
            shift(al.last)
        };
    }
}
