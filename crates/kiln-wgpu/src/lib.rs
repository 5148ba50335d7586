//! # kiln-wgpu: plans on any GPU through wgpu and WGSL
//!
//! This crate runs a compiled [`kiln_opt::Plan`] on a wgpu device. It is the only kiln crate
//! that touches wgpu, naga, pollster or bytemuck, and it knows nothing of layers: it executes
//! any valid plan through the [`kiln_opt::Backend`] trait.
//!
//! ## Model
//! - **Shaders come from data.** Each [`kiln_opt::kernel::Kernel`] is turned into WGSL by
//!   [`codegen`]: elementwise and reduce kernels are built as a typed syntax tree
//!   ([`wgsl`]) and printed once, with every shape, stride and offset baked in as a
//!   literal; matmul uses the hand-written library kernel `shaders/matmul.wgsl`,
//!   parameterized by WGSL `override` constants. Generation is deterministic, so modules are
//!   deduplicated by source text.
//! - **Validate before the driver sees it.** Every shader is parsed and validated by naga
//!   ([`validate`]) before a module is created, and every wgpu creation runs inside an error
//!   scope, so a bad shader or plan is a typed error carrying the WGSL, never a panic. Tests
//!   also translate each shader to SPIR-V, MSL, HLSL and GLSL (portability without the
//!   hardware).
//! - **Load once, run cheaply.** [`WgpuBackend::load`](kiln_opt::Backend::load) creates all
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
//! - Thread numbering is `gid = global_id.x + global_id.y * (num_workgroups.x * WG)`, the
//!   `Step::Dispatch` convention; every kernel bounds-checks `gid` against its thread count.
//! - Binding `i` of group 0 is storage; the kernel output is bound `read_write`, inputs
//!   `read` (unless the same dispatch also writes their buffer).
//! - Device buffers have usage `STORAGE | COPY_DST | COPY_SRC` and are at least 4 bytes.
//! - No workgroup barriers or atomics: reductions are sequential per output element, so
//!   results are deterministic run to run.
//!
//! ```no_run
//! use kiln_opt::Backend;
//! let backend = kiln_wgpu::WgpuBackend::new().expect("a GPU adapter");
//! println!("running on {}", backend.describe());
//! ```

mod backend;
pub mod codegen;
pub mod device;
mod executor;
pub mod validate;
pub mod wgsl;

pub use backend::{test_backend, WgpuBackend};
pub use codegen::{kernel_source, kernel_wgsl, KernelSource};
pub use device::{Gpu, WgpuError};
pub use executor::WgpuExecutable;
pub use validate::{
    check_portable, translate_all, validate_wgsl, ShaderError, Translations, ValidatedShader,
};
