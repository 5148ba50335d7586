//! Lowering: IR graph → fused kernels, a static memory plan and a schedule.
//!
//! Four stages, each its own module:
//! 1. [`fuse`] walks the graph in arena (topological) order and places every node into a
//!    *group* — a kernel under construction — or into a view of another value. Elementwise
//!    nodes join the latest group that already computes one of their operands at the same
//!    index (a register value), reductions adopt the elementwise group that computes their
//!    input as their prologue, and elementwise consumers of a reduction or a matmul join its
//!    epilogue (or, broadcast back over the reduced axes, its broadcast phase). Values needed
//!    outside their group are stored to symbolic tensors. Groups run in creation order and a
//!    node only joins a group whose inputs are all produced by earlier groups, so the kernel
//!    graph is acyclic by construction.
//! 2. [`memory`] gives every temporary tensor a liveness interval over the group order and
//!    packs the tensors into as few arena buffers as the binding limit allows (first fit, by
//!    size), aligned to 64 elements. Inputs, outputs, params and constants are pinned in
//!    their own buffers.
//! 3. [`emit`] turns groups into [`Kernel`](crate::kernel::Kernel)s with concrete bindings
//!    and offsets, and builds the [`Plan`].
//! 4. [`sums`] folds a reduction that sums a product's right operand over its rows (a bias
//!    gradient beside its weight gradient) into the product's kernel.

mod emit;
mod fuse;
mod memory;
mod sums;

use crate::{DeviceLimits, Plan, Result};
use kiln_ir::Graph;

/// Threads per workgroup of generated reduce kernels (small, so that few output elements
/// still spread over several workgroups).
pub const WORKGROUP_SIZE: u32 = 64;
/// Threads per workgroup of elementwise kernels (fewer, larger workgroups: faster on
/// lavapipe for large tensors; tiny kernels are one workgroup either way).
pub const ELEMENTWISE_WORKGROUP_SIZE: u32 = 256;
/// Arena offsets are multiples of this many elements (256 bytes).
pub const ARENA_ALIGN: usize = 64;

/// Lowers a verified graph into a plan for a device with `limits`. Without `plan_memory`
/// every temporary gets its own region (no reuse).
pub fn lower(g: &Graph, limits: &DeviceLimits, plan_memory: bool) -> Result<Plan> {
    let fused = fuse::fuse(g, limits)?;
    let layout = memory::plan(&fused, limits, plan_memory)?;
    let mut plan = emit::emit(g, &fused, &layout, limits)?;
    sums::merge_column_sums(&mut plan, limits);
    Ok(plan)
}
