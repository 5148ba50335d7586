//! The harnesses of kiln's fuzz targets (`fuzz/`), shared with the tests that replay their
//! corpora, so that CI runs exactly what the fuzzer ran.
//!
//! The promise they check: **a plan [`Plan::validate`] accepts never panics a backend.**
//! Arbitrary bytes are framed as a plan file with a valid header and checksum (so mutations
//! reach the body instead of dying at the checksum), decoded, validated against the
//! reference interpreter's limits, then loaded and run on it with zero-filled inputs.

use crate::backend::{Backend, HostTensor};
use crate::interp::CpuBackend;
use crate::kernel::KernelOp;
use crate::{codec, Plan};
use std::sync::Arc;

/// Largest total of buffer elements a fuzzed plan may declare to be run (a harness resource
/// bound: a valid plan may legitimately ask for gigabytes).
pub const MAX_RUN_ELEMENTS: usize = 1 << 22;
/// Largest total of kernel threads (times body size) a fuzzed plan may need to be run.
pub const MAX_RUN_WORK: u64 = 1 << 24;

/// What happened to one fuzz input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The body did not decode or failed validation: a typed error, as it should.
    Rejected,
    /// Valid, but larger than the harness runs ([`MAX_RUN_ELEMENTS`], [`MAX_RUN_WORK`]).
    TooLarge,
    /// Valid; loading or running returned a typed error.
    RunError,
    /// Valid, loaded and ran.
    Ran,
}

/// Runs `body` (an encoded plan body) through decode, validate and the reference
/// interpreter. Panics only on a kiln bug.
pub fn plan_body(body: &[u8]) -> Outcome {
    let file = codec::frame(body, 0);
    let Ok(plan) = codec::decode(&file, None) else {
        return Outcome::Rejected;
    };
    run_plan(plan)
}

/// Validates `plan` for the reference interpreter and, when valid and small enough, loads and
/// runs it with zero-filled inputs.
pub fn run_plan(plan: Plan) -> Outcome {
    let mut backend = CpuBackend::new();
    if plan.validate(&backend.limits()).is_err() {
        return Outcome::Rejected;
    }
    let elements: usize = plan.buffers.iter().map(|b| b.len).sum();
    let work: u64 = plan
        .kernels
        .iter()
        .map(|k| work_of(&k.op))
        .fold(0u64, u64::saturating_add);
    if elements > MAX_RUN_ELEMENTS || work > MAX_RUN_WORK {
        return Outcome::TooLarge;
    }
    let inputs: Vec<HostTensor> = plan
        .inputs
        .iter()
        .map(|s| HostTensor::zeros(s.shape.clone(), s.dtype))
        .collect();
    let Ok(mut exe) = backend.load(Arc::new(plan)) else {
        return Outcome::RunError;
    };
    let refs: Vec<&HostTensor> = inputs.iter().collect();
    match exe.run(&refs) {
        Ok(_) => Outcome::Ran,
        Err(_) => Outcome::RunError,
    }
}

/// Scalar operations the reference interpreter spends on `op` (an estimate, saturating).
fn work_of(op: &KernelOp) -> u64 {
    let prod = |xs: &[usize]| xs.iter().fold(1u64, |a, &x| a.saturating_mul(x as u64));
    match op {
        KernelOp::Elementwise { shape, body, .. } => {
            prod(shape).saturating_mul(1 + body.nodes.len() as u64)
        }
        KernelOp::Reduce {
            in_shape,
            stages,
            epilogue,
            broadcast,
            ..
        } => {
            let per: usize = stages.iter().map(|s| s.body.nodes.len() + 1).sum::<usize>()
                + broadcast.nodes.len()
                + epilogue.nodes.len()
                + 1;
            prod(in_shape).saturating_mul(per as u64)
        }
        KernelOp::MatMul {
            batch,
            m,
            n,
            k,
            epilogue,
            sums,
            ..
        } => prod(&[*batch, *m, *n])
            .saturating_mul((*k + epilogue.nodes.len() + 1) as u64)
            .saturating_add(
                sums.as_ref()
                    .map_or(0, |s| prod(&[*k + s.body.nodes.len() + 1, *n])),
            ),
        KernelOp::ScatterAdd {
            rows, cols, count, ..
        } => prod(&[*rows + *count, *cols]),
        KernelOp::Recurrence {
            cell, batch, steps, ..
        } => prod(&[*batch, *steps, cell.units, cell.gates() * cell.units + 8]),
    }
}
