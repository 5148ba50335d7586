//! The one plan validator: [`Plan::validate`] is run by every executor on load (decoded
//! file, fresh compile and cache hit alike). A plan it accepts never makes a backend read or
//! write out of bounds, loop past a limit or panic; a plan it rejects is rejected by every
//! backend with the same [`PlanError`].
//!
//! Two layers: [`structure`] (indices, dtypes, ranks, accumulators, launch contracts, the
//! read/write range of every step, liveness — device independent, also run by the codec
//! after decoding) and the device checks of [`Plan::validate`] (binding sizes, storage
//! buffers per kernel, workgroup sizes and counts).

use crate::backend::DeviceLimits;
use crate::codec::MAX_BUFFER_ELEMENTS;
use crate::kernel::{Body, Expr, KernelOp};
use crate::plan::{BufferKind, Plan, Step, PLAN_FORMAT_VERSION};
use crate::schedule;
use crate::PlanError;
use kiln_ir::DType;

fn check_body(
    body: &Body,
    nargs: usize,
    rank: usize,
    accs: usize,
    what: &str,
) -> Result<(), String> {
    for (i, n) in body.nodes.iter().enumerate() {
        let before = |x: u32| {
            if (x as usize) < i {
                Ok(())
            } else {
                Err(format!(
                    "{what}: expression {i} uses {x}, which is not before it"
                ))
            }
        };
        match &n.expr {
            Expr::Load { arg, view } => {
                if *arg as usize >= nargs {
                    return Err(format!("{what}: load of arg {arg} of {nargs}"));
                }
                if view.strides.len() != rank {
                    return Err(format!(
                        "{what}: view of rank {} in a rank-{rank} phase",
                        view.strides.len()
                    ));
                }
            }
            Expr::Gather {
                arg, view, index, ..
            } => {
                before(*index)?;
                if *arg as usize >= nargs || view.strides.len() != rank {
                    return Err(format!("{what}: gather from arg {arg} of {nargs}"));
                }
            }
            Expr::Random {
                counter, strides, ..
            } => {
                before(*counter)?;
                if strides.len() != rank {
                    return Err(format!("{what}: random strides of rank {}", strides.len()));
                }
            }
            Expr::Const(_) => {}
            Expr::Unary(_, a) | Expr::Cast(a) => before(*a)?,
            Expr::Binary(_, a, b) => {
                before(*a)?;
                before(*b)?;
            }
            Expr::Select(c, a, b) => {
                before(*c)?;
                before(*a)?;
                before(*b)?;
            }
            Expr::Acc(j) => {
                if *j as usize >= accs {
                    return Err(format!("{what}: accumulator {j} of {accs}"));
                }
            }
        }
    }
    Ok(())
}

fn check_stores(
    stores: &[crate::kernel::Store],
    body: &Body,
    nargs: usize,
    rank: usize,
    what: &str,
) -> Result<(), String> {
    for s in stores {
        if s.strides.as_ref().is_some_and(|st| st.len() != rank) {
            return Err(format!(
                "{what}: a store has {} strides over a rank-{rank} iteration shape",
                s.strides.as_ref().map_or(0, |st| st.len())
            ));
        }
        if s.arg as usize >= nargs || s.value as usize >= body.nodes.len() {
            return Err(format!(
                "{what}: store of value {} into arg {}",
                s.value, s.arg
            ));
        }
    }
    Ok(())
}

/// Largest element count of any shape or iteration space in a plan: every later size
/// computation (in the validator and in backends) then fits in `u64`/`usize` without
/// overflow.
pub const MAX_ITERATION_ELEMENTS: u64 = 1 << 40;

/// The product of `dims`, when the product of its non-zero dims is at most
/// [`MAX_ITERATION_ELEMENTS`] (so that the product of any subset of `dims` is bounded too:
/// `[0, 2^40, 2^40]` holds no element, but its last two dims alone overflow).
fn bounded(dims: &[usize]) -> Option<u64> {
    dims.iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d.max(1) as u64))
        .filter(|&n| n <= MAX_ITERATION_ELEMENTS)?;
    Some(dims.iter().map(|&d| d as u64).product())
}

/// Every shape and iteration space of the plan is bounded (checked first, so that no other
/// check can overflow).
fn sizes(plan: &Plan) -> Result<(), String> {
    for slot in plan.inputs.iter().chain(&plan.outputs).chain(&plan.params) {
        if bounded(&slot.shape.0).is_none() {
            return Err(format!("slot `{}` has shape {:?}", slot.name, slot.shape.0));
        }
    }
    for (ki, k) in plan.kernels.iter().enumerate() {
        let ok = match &k.op {
            KernelOp::Elementwise { shape, .. } => bounded(shape).is_some(),
            KernelOp::Reduce { in_shape, .. } => bounded(in_shape).is_some(),
            KernelOp::MatMul {
                batch, m, n, k: kk, ..
            } => {
                bounded(&[*batch, *m, *n]).is_some()
                    && bounded(&[*batch, *m, *kk]).is_some()
                    && bounded(&[*batch, *kk, *n]).is_some()
            }
            KernelOp::ScatterAdd {
                rows, cols, count, ..
            } => bounded(&[*rows, *cols]).is_some() && bounded(&[*count, *cols]).is_some(),
            KernelOp::Recurrence {
                cell, batch, steps, ..
            } => {
                bounded(&[*batch, *steps, cell.trace_width().max(cell.grad_width())]).is_some()
                    && bounded(&[cell.units, cell.gates(), cell.units]).is_some()
            }
        };
        if !ok {
            return Err(format!(
                "kernel {ki} (`{}`): iteration space over {MAX_ITERATION_ELEMENTS} elements",
                k.label
            ));
        }
    }
    Ok(())
}

/// Structural validation of a plan (no device limits; [`Plan::validate`] adds them): indices, dtypes, ranks, accumulator use, thread counts,
/// and that every range any step reads or writes lies inside its buffer.
pub fn structure(plan: &Plan) -> Result<(), PlanError> {
    structure_inner(plan).map_err(PlanError::from)
}

fn structure_inner(plan: &Plan) -> Result<(), String> {
    if plan.format_version != PLAN_FORMAT_VERSION {
        return Err(format!("format version {}", plan.format_version));
    }
    sizes(plan)?;
    for (i, b) in plan.buffers.iter().enumerate() {
        if b.len == 0 || b.len > MAX_BUFFER_ELEMENTS {
            return Err(format!("buffer {i} (`{}`) has {} elements", b.name, b.len));
        }
        if let BufferKind::Constant { values } = &b.kind {
            if values.len() != b.len {
                return Err(format!(
                    "constant buffer {i} has {} values for {} elements",
                    values.len(),
                    b.len
                ));
            }
        }
    }
    for (ki, k) in plan.kernels.iter().enumerate() {
        let n = k.args.len();
        let what = format!("kernel {ki} (`{}`)", k.label);
        if k.workgroup_size == 0 || k.workgroup_size > 1024 {
            return Err(format!("{what}: workgroup size {}", k.workgroup_size));
        }
        match &k.op {
            KernelOp::Elementwise {
                shape,
                body,
                stores,
                ..
            } => {
                check_body(body, n, shape.len(), 0, &what)?;
                check_stores(stores, body, n, shape.len(), &what)?;
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
                // checked: a hostile shape must not overflow the validator itself
                let outputs = in_shape
                    .iter()
                    .enumerate()
                    .filter(|(d, _)| !axes.contains(d))
                    .try_fold(1u64, |a, (_, &e)| a.checked_mul(e as u64))
                    .ok_or_else(|| format!("{what}: reduce shape {in_shape:?} overflows"))?;
                if *tree == 0
                    || (*tree > 1 && k.workgroup_size != *tree)
                    || k.threads < outputs.saturating_mul(*tree as u64)
                {
                    return Err(format!(
                        "{what}: reduce tree {tree} does not match its launch"
                    ));
                }
                if stages.is_empty()
                    || axes.iter().any(|&a| a >= in_shape.len())
                    || axes.windows(2).any(|w| w[0] >= w[1])
                {
                    return Err(format!("{what}: bad axes {axes:?} or no stages"));
                }
                let mut accs = 0;
                for st in stages {
                    check_body(&st.body, n, in_shape.len(), accs, &what)?;
                    check_stores(&st.stores, &st.body, n, in_shape.len(), &what)?;
                    if st
                        .folds
                        .iter()
                        .any(|f| f.value as usize >= st.body.nodes.len())
                    {
                        return Err(format!("{what}: fold of a missing value"));
                    }
                    accs += st.folds.len();
                }
                check_body(epilogue, n, in_shape.len(), accs, &what)?;
                check_stores(stores, epilogue, n, in_shape.len(), &what)?;
                check_body(broadcast, n, in_shape.len(), accs, &what)?;
                check_stores(broadcast_stores, broadcast, n, in_shape.len(), &what)?;
            }
            KernelOp::ScatterAdd {
                rows,
                cols,
                index,
                src,
                dst,
                ..
            } => {
                let dtype = |a: u32| k.args.get(a as usize).map(|a| a.dtype);
                if [index.arg, src.arg, dst.arg]
                    .iter()
                    .any(|&a| a as usize >= n)
                    || !matches!(dtype(index.arg), Some(DType::I32 | DType::F32))
                    || dtype(src.arg) != Some(DType::F32)
                    || dtype(dst.arg) != Some(DType::F32)
                    || !k
                        .args
                        .get(dst.arg as usize)
                        .is_some_and(|a| a.access.writes())
                    || k.threads < *cols as u64
                    // `cols` times the blocks of rows, at most one block per row
                    || (*cols > 0
                        && (!k.threads.is_multiple_of(*cols as u64)
                            || k.threads / *cols as u64 > (*rows).max(1) as u64))
                {
                    return Err(format!("{what}: scatter-add args or threads"));
                }
            }
            KernelOp::Recurrence {
                cell,
                batch,
                steps,
                xp,
                r,
                rb,
                mask,
                grad,
                adjoint,
                out,
                launch,
            } => {
                let mut used = vec![xp.arg, r.arg, out.arg];
                used.extend(rb.iter().chain(mask.iter()).map(|d| d.arg));
                used.extend(grad.iter().flatten().map(|d| d.arg));
                let wg = k.workgroup_size.max(1) as u64;
                let window = match grad {
                    None => *adjoint == kiln_ir::recurrence::Adjoint::full(cell, *steps),
                    Some(_) => {
                        kiln_ir::recurrence::Adjoint::of_dims(
                            cell,
                            *batch,
                            *steps,
                            &[*batch, adjoint.steps, adjoint.width],
                        ) == Some(*adjoint)
                    }
                };
                if cell.units == 0
                    || !window
                    || rb.is_some() != cell.rb_operand().is_some()
                    || mask.is_some() != cell.masked
                    || launch.rows == 0
                    || used.iter().any(|&a| a as usize >= n)
                    || used.iter().any(|&a| k.args[a as usize].dtype != DType::F32)
                    || !k.args[out.arg as usize].access.writes()
                    || k.threads
                        < (*batch as u64)
                            .div_ceil(launch.rows as u64)
                            .saturating_mul(wg)
                {
                    return Err(format!("{what}: recurrence cell, args or threads"));
                }
            }
            KernelOp::MatMul {
                batch,
                m,
                n: nn,
                a,
                b,
                tile,
                variant,
                epilogue,
                stores,
                sums,
                ..
            } => {
                if a.arg as usize >= n || b.arg as usize >= n {
                    return Err(format!("{what}: operand arg out of range"));
                }
                check_body(epilogue, n, 3, 1, &what)?;
                check_stores(stores, epilogue, n, 3, &what)?;
                if let Some(s) = sums {
                    if *batch != 1
                        || s.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(*nn)
                    {
                        return Err(format!(
                            "{what}: column sums over {:?} of a {batch}-batch product with {nn} columns",
                            s.shape
                        ));
                    }
                    check_body(&s.body, n, s.shape.len(), 1, &what)?;
                    check_stores(&s.stores, &s.body, n, s.shape.len(), &what)?;
                }
                let launch = variant.launch_in(k.workgroup_size, *batch, *m, *nn);
                if *tile != variant.tile()
                    || !variant.accepts_workgroup(k.workgroup_size)
                    || k.threads < launch.threads
                {
                    return Err(format!(
                        "{what}: tile {tile:?}, workgroups of {} and {} threads do not match the {variant:?} launch ({:?}, {} threads)",
                        k.workgroup_size, k.threads, variant.tile(), launch.threads
                    ));
                }
            }
        }
    }
    for (si, step) in plan.steps.iter().enumerate() {
        match step {
            Step::Dispatch {
                kernel,
                buffers,
                workgroups,
            } => {
                let k = plan
                    .kernels
                    .get(*kernel as usize)
                    .ok_or(format!("step {si}: kernel {kernel} does not exist"))?;
                if buffers.len() != k.args.len() {
                    return Err(format!(
                        "step {si}: {} buffers for {} args",
                        buffers.len(),
                        k.args.len()
                    ));
                }
                for (b, a) in buffers.iter().zip(&k.args) {
                    let buf = plan
                        .buffers
                        .get(b.0 as usize)
                        .ok_or(format!("step {si}: buffer {} does not exist", b.0))?;
                    if buf.dtype != a.dtype {
                        return Err(format!(
                            "step {si}: buffer {} is {}, the kernel binds {}",
                            b.0, buf.dtype, a.dtype
                        ));
                    }
                }
                // the shaders index threads over x and y (z is 1); every thread the kernel
                // needs must be launched
                let launched = (workgroups[0] as u64)
                    .saturating_mul(workgroups[1] as u64)
                    .saturating_mul(k.workgroup_size as u64);
                if workgroups.contains(&0) || workgroups[2] != 1 || launched < k.threads {
                    return Err(format!(
                        "step {si}: workgroups {workgroups:?} x {} launch {launched} threads but kernel `{}` needs {}",
                        k.workgroup_size, k.label, k.threads
                    ));
                }
            }
            Step::Copy { src, dst } => {
                let (s, d) = (
                    plan.buffers
                        .get(src.0 as usize)
                        .ok_or(format!("step {si}: bad copy source"))?,
                    plan.buffers
                        .get(dst.0 as usize)
                        .ok_or(format!("step {si}: bad copy target"))?,
                );
                if s.len != d.len || s.dtype != d.dtype || src == dst {
                    return Err(format!("step {si}: copy between mismatched buffers"));
                }
            }
        }
        let (reads, writes) = schedule::step_ranges(plan, step);
        for r in reads.iter().chain(&writes) {
            let len = plan.buffers.get(r.buffer as usize).map_or(0, |b| b.len);
            if r.end > len || r.start > r.end {
                return Err(format!(
                    "step {si}: range [{}, {}) of buffer {} (len {len})",
                    r.start, r.end, r.buffer
                ));
            }
        }
    }
    for slot in plan.inputs.iter().chain(&plan.outputs).chain(&plan.params) {
        let b = plan.buffers.get(slot.buffer.0 as usize).ok_or(format!(
            "slot `{}`: buffer {} does not exist",
            slot.name, slot.buffer.0
        ))?;
        if b.dtype != slot.dtype || slot.shape.numel() > b.len {
            return Err(format!("slot `{}` does not fit its buffer", slot.name));
        }
    }
    // a param buffer is exactly its variable: one slot of its size and dtype
    for (i, b) in plan.buffers.iter().enumerate() {
        if b.kind == BufferKind::Param {
            let mut slots = plan.params.iter().filter(|s| s.buffer.0 as usize == i);
            match (slots.next(), slots.next()) {
                (Some(s), None) if s.shape.numel() == b.len && s.dtype == b.dtype => {}
                _ => {
                    return Err(format!(
                        "param buffer {i} (`{}`) is not exactly one param slot of its size",
                        b.name
                    ))
                }
            }
        }
    }
    for s in &plan.params {
        if plan.buffers[s.buffer.0 as usize].kind != BufferKind::Param {
            return Err(format!(
                "param slot `{}` is not bound to a param buffer",
                s.name
            ));
        }
    }
    schedule::check_plan(plan)
}

impl Plan {
    /// Checks this plan against its own structure and against `limits`, the limits of the
    /// device that is to run it. Every executor calls it on load; see the module docs.
    pub fn validate(&self, limits: &DeviceLimits) -> Result<(), PlanError> {
        structure(self)?;
        device(self, limits).map_err(PlanError::from)
    }
}

/// The device checks of [`Plan::validate`].
fn device(plan: &Plan, limits: &DeviceLimits) -> Result<(), String> {
    let binding = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    for b in &plan.buffers {
        if b.bytes() > binding {
            return Err(format!(
                "buffer `{}` has {} bytes, the device binds at most {binding}",
                b.name,
                b.bytes()
            ));
        }
    }
    for (si, step) in plan.steps.iter().enumerate() {
        let Step::Dispatch {
            kernel,
            buffers,
            workgroups,
        } = step
        else {
            continue;
        };
        // `structure` checked that the kernel and buffers exist
        let Some(k) = plan.kernels.get(*kernel as usize) else {
            return Err(format!("step {si}: kernel {kernel} does not exist"));
        };
        if k.args.len() > limits.max_storage_buffers_per_shader_stage as usize {
            return Err(format!(
                "step {si}: kernel `{}` binds {} storage buffers, the device allows {}",
                k.label,
                k.args.len(),
                limits.max_storage_buffers_per_shader_stage
            ));
        }
        if k.workgroup_size > limits.max_compute_workgroup_size_x
            || k.workgroup_size > limits.max_compute_invocations_per_workgroup
        {
            return Err(format!(
                "step {si}: kernel `{}` has workgroups of {} invocations, the device allows {}",
                k.label,
                k.workgroup_size,
                limits
                    .max_compute_workgroup_size_x
                    .min(limits.max_compute_invocations_per_workgroup)
            ));
        }
        if let KernelOp::Recurrence {
            cell,
            steps,
            grad,
            launch,
            ..
        } = &k.op
        {
            // the shader's workgroup memory and loop count (an over-long loop is silently
            // cut short on llvmpipe)
            let per_row = if grad.is_some() {
                cell.gates() * cell.units
            } else {
                cell.units
            };
            let bytes = (launch.rows as u64)
                .saturating_mul(2 * per_row as u64)
                .saturating_mul(4);
            let iters = launch.iterations(cell, grad.is_some(), *steps, k.workgroup_size);
            if bytes > limits.max_compute_workgroup_storage_size as u64
                || iters > limits.max_loop_iterations
            {
                return Err(format!(
                    "step {si}: recurrence `{}` needs {bytes} bytes of workgroup memory and {iters} loop iterations, the device allows {} and {}",
                    k.label, limits.max_compute_workgroup_storage_size, limits.max_loop_iterations
                ));
            }
        }
        let max = limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&g| g > max) {
            return Err(format!(
                "step {si}: workgroups {workgroups:?} exceed the device limit {max} per dimension"
            ));
        }
        // Args are distinct buffers: WebGPU forbids binding one buffer both read-only and
        // writable in a dispatch, and the kernel's stores assume no aliasing between args.
        for (i, b) in buffers.iter().enumerate() {
            if let Some(j) = (0..i).find(|&j| {
                buffers[j] == *b && (k.args[i].access.writes() || k.args[j].access.writes())
            }) {
                return Err(format!(
                    "step {si} binds buffer {} to args {j} and {i} of `{}`, and one of them is written (args must be distinct buffers)",
                    b.0, k.label
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn a_zero_dim_does_not_hide_huge_ones() {
        // found by the plan_body fuzzer: a reduce over `[0, 2^40, 2^40]` keeping the last
        // two axes made the validator's own output count overflow
        assert_eq!(bounded(&[0, 1 << 40, 1 << 40]), None);
        assert_eq!(bounded(&[0, 5, 7]), Some(0));
        assert_eq!(bounded(&[3, 5, 7]), Some(105));
        assert_eq!(bounded(&[1 << 20, 1 << 20]), Some(1 << 40));
        assert_eq!(bounded(&[(1 << 20) + 1, 1 << 20]), None);
    }
}
