//! `KernelIr` (v2) → WGSL.
//!
//! Elementwise and reduce kernels are generated whole with the typed writer
//! ([`crate::wgsl`]). A matmul kernel is a hand-written library kernel from `shaders/`
//! (chosen by [`MatMulVariant`] and the [`Target`]) appended to a generated part that declares the bindings,
//! the operand readers `load_a` / `load_b`, the register-block constants and the fused
//! `epilogue` function (see [`matmul_source`] and the comment at the top of each library
//! file). Generation is deterministic: the same [`Kernel`] always gives the same text, so
//! shader modules can be deduplicated (and cached) by source.
//!
//! Conventions shared by every kernel:
//! - binding `i` of group 0 is kernel arg `i` (`arg0`, `arg1`, ...), a runtime-sized
//!   `array<f32>` or `array<i32>`, `read` when the arg's access is `Read`, `read_write` when
//!   it is `Write` or `ReadWrite` (args are distinct buffers);
//! - a body is SSA: one `let` per expression (`e0`, `e1`, ...), evaluated in order, then the
//!   body's stores `arg[offset + flat] = value` (so every load of an element happens before
//!   its stores, which makes element-for-element in-place updates safe);
//! - elementwise and reduce kernels number threads `gid = global_id.x + global_id.y *
//!   (num_workgroups.x * WG)` (the `Step::Dispatch` convention), bounds-checked against
//!   `Kernel::threads`; shapes, strides and offsets are literals;
//! - matmul kernels number *workgroups* `w = workgroup_id.x + workgroup_id.y *
//!   num_workgroups.x` and take shapes and strides as `override` constants; see
//!   [`matmul_dispatch`] for the launch each variant needs.
//!
//! Reduce kernels run one thread per output element and fold the reduced axes in a
//! sequential loop (no atomics), so their results are deterministic.
//!
//! A recurrence kernel (a whole LSTM, GRU or SimpleRNN layer over time, forward or BPTT)
//! is one persistent kernel: each workgroup owns rows of the batch and loops over the steps,
//! the state in workgroup memory, one barrier per step (see `recurrence`).
//!
//! One module per kernel family — `elementwise`, `reduce`, `scatter`, `recurrence`, `matmul` —
//! on shared parts: `state` (the `Gen` a kernel is built in and its index
//! arithmetic), `body` (body and store emission, op by op) and `generate` (the frame of
//! every generated kernel: thread index, bounds check, module). A new family is one new
//! module here plus its arm in `generate` or [`kernel_source_for`].

mod body;
mod elementwise;
mod generate;
mod matmul;
mod recurrence;
mod reduce;
mod scatter;
mod state;

use crate::wgsl::{Module, Scalar};
use generate::generated_module;
use kiln_ir::DType;
use kiln_plan::kernel::{Access, Kernel, KernelOp, MatMulVariant};
use matmul::matmul_source;

/// Name of the entry point of every kernel.
pub const ENTRY_POINT: &str = "main";

/// The register-blocked library matmul, portable version (`shaders/matmul_register.wgsl`).
pub const MATMUL_REGISTER_WGSL: &str = include_str!("../../../../shaders/matmul_register.wgsl");

/// The register-blocked library matmul with subgroup broadcasts
/// (`shaders/matmul_subgroup.wgsl`): same launch as [`MATMUL_REGISTER_WGSL`], used where
/// [`Target::subgroup_size`] is 8.
pub const MATMUL_SUBGROUP_WGSL: &str = include_str!("../../../../shaders/matmul_subgroup.wgsl");

/// The workgroup-tiled library matmul (`shaders/matmul_tiled.wgsl`).
pub const MATMUL_TILED_WGSL: &str = include_str!("../../../../shaders/matmul_tiled.wgsl");

/// The wide workgroup-tiled library matmul (`shaders/matmul_tiled_wide.wgsl`): 128 x 128
/// per workgroup, for large products on GPUs.
pub const MATMUL_TILED_WIDE_WGSL: &str = include_str!("../../../../shaders/matmul_tiled_wide.wgsl");

/// `KernelOp::MatMul::tile` of the register-blocked kernel (fixed): a group of
/// [`MATMUL_REGISTER_GROUP`] invocations computes a 32 x 32 patch of the output, 32 rows by
/// 4 columns per invocation (in the subgroup version; the portable one splits the patch
/// into 16 x 8 blocks).
pub const MATMUL_REGISTER_TILE: [u32; 2] = MatMulVariant::RegisterBlocked.tile();

/// Invocations per group of the register-blocked kernel (one patch of
/// `MATMUL_REGISTER_TILE[0]` squared outputs; one subgroup in the subgroup version).
pub const MATMUL_REGISTER_GROUP: u32 = 8;

/// Workgroup size [`matmul_dispatch`] picks for the register-blocked kernel (any multiple of
/// [`MATMUL_REGISTER_GROUP`] works; other sizes run the portable version).
pub const MATMUL_REGISTER_WORKGROUP: u32 = 64;

/// What codegen may assume of the device beyond core WGSL.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Target {
    /// `Some(s)`: the device has the `SUBGROUP` feature and every compute subgroup has
    /// exactly `s` invocations (the adapter's minimum and maximum subgroup sizes agree).
    /// With `Some(8)` the register-blocked matmul uses `shaders/matmul_subgroup.wgsl`.
    pub subgroup_size: Option<u32>,
    /// Stores of f32 values write 0 in place of values below 2^-60 in magnitude (so neither
    /// they nor their products reach the subnormal range); set for CPU adapters, whose FPUs
    /// handle subnormal operands ~100x slower and whose driver (llvmpipe) does not enable
    /// flush-to-zero. (GPUs flush subnormals in hardware.) Measured: the IMDB LSTM train
    /// step, whose gradients vanish over 500 steps, went from 4.9 s to 1.4 s on lavapipe.
    pub flush_subnormals: bool,
}

/// Register block of one invocation of the workgroup-tiled kernel (fixed).
pub const MATMUL_TILED_TILE: [u32; 2] = MatMulVariant::WorkgroupTiled.tile();

/// Workgroup size of the workgroup-tiled kernels (fixed: 16 x 16 invocations, 64 x 64 tile,
/// 128 x 128 in the wide one).
pub const MATMUL_TILED_WORKGROUP: u32 = 256;

/// Why a kernel has no shader.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodegenError {
    /// The kernel breaks a structural rule of `KernelIr`.
    #[error("kernel `{label}` is malformed: {what}")]
    Malformed {
        /// Kernel label.
        label: String,
        /// What is wrong.
        what: String,
    },
    /// The kernel is valid but this backend cannot run it.
    #[error("kernel `{label}` is not supported by the wgpu backend: {what}")]
    Unsupported {
        /// Kernel label.
        label: String,
        /// What is missing.
        what: String,
    },
}

/// One storage binding of a shader: which kernel arg it binds and how.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct BindingSlot {
    /// Index into `Kernel::args` (and into `Step::Dispatch::buffers`).
    pub arg: u32,
    /// Bound `read` (true) or `read_write` (false).
    pub read_only: bool,
}

/// A ready-to-compile shader for one kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSource {
    /// WGSL text.
    pub wgsl: String,
    /// Pipeline-overridable constants to set at pipeline creation.
    pub constants: Vec<(&'static str, f64)>,
    /// Binding `i` of group 0 is `bindings[i]` (always kernel arg `i`).
    pub bindings: Vec<BindingSlot>,
    /// The kernel's uniform offset table (`u32`s, whole `vec4`s), bound at binding
    /// `bindings.len()` when not empty. Element offsets live here rather than in the text, so
    /// kernels that differ only in where their tensors live share a shader and a pipeline.
    pub offsets: Vec<u32>,
}

impl KernelSource {
    /// The shader text without its leading comment lines (which name the kernel): the key
    /// that shader modules and pipelines are shared by.
    pub fn code(&self) -> &str {
        let mut rest = self.wgsl.as_str();
        while rest.starts_with("//") || rest.starts_with('\n') {
            match rest.find('\n') {
                Some(i) => rest = &rest[i + 1..],
                None => return "",
            }
        }
        rest
    }
}

/// How to launch a matmul kernel: what `Kernel::{tile, workgroup_size, threads}` must hold
/// (the one definition, in `kiln-plan`). `Step::Dispatch::workgroups` must then cover
/// `threads / workgroup_size` workgroups, numbered `x + y * groups_x` (the usual split of a
/// 1-D count into `[x, y, 1]`); extra workgroups do nothing.
pub use kiln_plan::kernel::MatMulLaunch;

/// The launch of a matmul with the preferred workgroup size of `variant` for these library
/// shaders ([`MATMUL_REGISTER_WORKGROUP`] register-blocked, [`MATMUL_TILED_WORKGROUP`]
/// workgroup-tiled), from [`MatMulVariant::launch_in`]:
///
/// - `RegisterBlocked`: tile [`MATMUL_REGISTER_TILE`] (fixed); one group of 8 invocations
///   per 32 x 32 output patch: `threads = batch * ceil(m / 32) * ceil(n / 32) * 8`,
///   workgroups = `ceil(threads / wg)`; group `g = thread / 8` (threads numbered as in
///   every generated kernel; in the subgroup version, workgroup index * wg / 8 + subgroup
///   id); groups past the end return.
/// - `WorkgroupTiled`: tile `[4, 4]`, workgroup size 256 (fixed); one workgroup per 64 x 64
///   output tile: workgroups = `batch * ceil(m / 64) * ceil(n / 64)`,
///   `threads = workgroups * 256` (workgroup index = thread / 256).
/// - `WorkgroupTiledWide`: tile `[8, 8]`, workgroup size 256; one workgroup per 128 x 128
///   output tile, otherwise as `WorkgroupTiled`.
pub fn matmul_dispatch(variant: MatMulVariant, batch: usize, m: usize, n: usize) -> MatMulLaunch {
    let wg = match variant {
        MatMulVariant::RegisterBlocked => MATMUL_REGISTER_WORKGROUP,
        MatMulVariant::WorkgroupTiled | MatMulVariant::WorkgroupTiledWide => MATMUL_TILED_WORKGROUP,
    };
    variant.launch_in(wg, batch, m, n)
}

/// The WGSL of `kernel`, as [`kernel_source`] generates it. A kernel that cannot be
/// generated gives a module holding only a comment with the reason (which fails pipeline
/// creation); use [`kernel_source`] for the typed error.
pub fn kernel_wgsl(kernel: &Kernel) -> String {
    match kernel_source(kernel) {
        Ok(src) => src.wgsl,
        Err(e) => Module {
            comments: vec![sanitize(&e.to_string())],
            ..Module::default()
        }
        .to_string(),
    }
}

/// Generates the portable shader of `kernel` ([`kernel_source_for`] with the default
/// [`Target`]: core WGSL only).
pub fn kernel_source(kernel: &Kernel) -> Result<KernelSource, CodegenError> {
    kernel_source_for(kernel, &Target::default())
}

/// Generates the shader of `kernel` for a device described by `target`: WGSL text, override
/// constants and bindings.
pub fn kernel_source_for(kernel: &Kernel, target: &Target) -> Result<KernelSource, CodegenError> {
    let bindings = kernel
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| BindingSlot {
            arg: i as u32,
            read_only: a.access == Access::Read,
        })
        .collect();
    match &kernel.op {
        KernelOp::MatMul { .. } => matmul_source(kernel, bindings, target),
        _ => {
            let (module, offsets) = generated_module(kernel, target)?;
            Ok(KernelSource {
                wgsl: module.to_string(),
                constants: Vec::new(),
                bindings,
                offsets,
            })
        }
    }
}

pub(crate) fn scalar(dt: DType) -> Scalar {
    match dt {
        DType::F32 => Scalar::F32,
        DType::I32 => Scalar::I32,
    }
}

pub(crate) fn arg_name(i: usize) -> String {
    format!("arg{i}")
}

/// Keeps comment text on one printable line.
pub(crate) fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
