//! # kiln-wgpu: plans on any GPU through wgpu and WGSL
//!
//! This crate runs a compiled [`kiln_plan::Plan`] on a wgpu device. It is the only kiln crate
//! that touches wgpu, naga, pollster or bytemuck, and it knows nothing of layers: it executes
//! any valid plan through the [`kiln_plan::Backend`] trait.
//!
//! ## Model
//! - **Shaders come from data.** Each [`kiln_plan::kernel::Kernel`] (KernelIr v2) is turned
//!   into WGSL by [`codegen`]. Elementwise and reduce kernels are built whole as a typed
//!   syntax tree ([`wgsl`]) and printed once, with every shape, stride and offset baked in as
//!   a literal. A matmul kernel is a hand-written library kernel from `shaders/`
//!   (`matmul_register.wgsl` for `MatMulVariant::RegisterBlocked`, or
//!   `matmul_subgroup.wgsl` where the device has subgroups of exactly 8 invocations, see
//!   [`codegen::Target`]; `matmul_tiled.wgsl` for
//!   `WorkgroupTiled`, `matmul_tiled_wide.wgsl` for `WorkgroupTiledWide`, embedded with `include_str!`, shapes and strides as `override`
//!   constants) appended to a generated part: the bindings, the operand readers `load_a`,
//!   `load_b`, `load_a4`, `load_b4` (4-wide `vec4` loads when the operand is contiguous and
//!   aligned, strided reads otherwise) and `fn epilogue(acc, b, i, j)`, the kernel's fused
//!   epilogue body and stores. Generation is deterministic, so modules are deduplicated by
//!   source text.
//! - **Bindings follow the kernel's args.** Binding `i` of group 0 is arg `i`, bound `read`
//!   for `Access::Read` and `read_write` for `Write`/`ReadWrite`. Bodies are SSA: every
//!   expression of an element is evaluated (all loads) before its stores, so a kernel may
//!   update a buffer element for element in place and may write several outputs.
//! - **Validate before the driver sees it.** Every shader is parsed and validated by naga
//!   ([`validate`]) before a module is created, and every wgpu creation runs inside an error
//!   scope, so a bad shader or plan is a typed error carrying the WGSL, never a panic. Tests
//!   also translate each shader to SPIR-V, MSL, HLSL and GLSL (portability without the
//!   hardware).
//! - **Load once, run cheaply.** [`WgpuBackend::load`](kiln_plan::Backend::load) creates all
//!   buffers, pipelines, bind groups and the staging buffer of a plan. A run writes the
//!   inputs, records one command encoder (all dispatches in schedule order, param copies,
//!   output copies), submits once and maps one staging buffer.
//! - **Variables live in the backend.** Params are a name → buffer registry shared by every
//!   plan loaded on the backend (a training plan and a predict plan see the same weights),
//!   created zero-filled on first mention and kept on the device between runs.
//!
//! ## Invariants
//! - `Executable::run` creates no buffers, pipelines or bind groups
//!   ([`WgpuBackend::buffers_created`] counts every buffer, to assert it).
//! - The args of a dispatch are distinct buffers: a plan binding one buffer to two args of
//!   which one is written is rejected at load.
//! - Thread numbering is `gid = global_id.x + global_id.y * (num_workgroups.x * WG)`, the
//!   `Step::Dispatch` convention; elementwise, reduce and register-blocked matmul kernels
//!   bounds-check `gid` (the matmul: its group `gid / 8`) against their thread count (the
//!   subgroup matmul numbers groups as workgroup index * (WG / 8) + subgroup id, the same
//!   count when every subgroup holds 8 invocations). The workgroup-tiled matmul numbers
//!   workgroups the same way (`gid / 256`). [`codegen::matmul_dispatch`] gives the
//!   `tile`, `workgroup_size` and `threads` of each matmul variant; load checks that a
//!   dispatch launches enough workgroups.
//! - Device buffers have usage `STORAGE | COPY_DST | COPY_SRC` and a size rounded up to a
//!   multiple of 16 bytes (so `array<vec4<f32>>` views cover every element).
//! - No atomics; reductions are sequential per output element and every matmul output sums
//!   over `k` in increasing order, so results are deterministic run to run. Workgroup
//!   memory and barriers appear in the workgroup-tiled matmul, tree reductions (fixed
//!   combine order) and recurrences (a workgroup owns whole batch rows and steps through
//!   time; every pair's dot products run in a fixed order).
//!
//! ```no_run
//! use kiln_plan::Backend;
//! let backend = kiln_wgpu::WgpuBackend::new().expect("a GPU adapter");
//! println!("running on {}", backend.describe());
//! ```

#![warn(missing_docs)]

mod backend;
pub mod codegen;
pub mod device;
mod executor;
mod pipeline_cache;
pub mod validate;
pub mod wgsl;

pub use backend::{list_adapters, test_backend, AdapterReport, WgpuBackend};
pub use codegen::{kernel_source, kernel_wgsl, KernelSource};
pub use device::{Gpu, WgpuError};
pub use executor::WgpuExecutable;
pub use validate::{
    check_portable, translate_all, validate_wgsl, ShaderError, Translations, ValidatedShader,
};
