//! # kiln: a define-then-run tensor compiler with a Keras-like API
//!
//! You *shape* a static graph (by hand with [`ir::Graph`], or as a Keras-style
//! [`Sequential`] model), kiln *fires* it into a plan of kernels with a static memory plan, and
//! replays the plan on any GPU through wgpu — or on the CPU plan interpreter when no GPU
//! exists.
//!
//! This facade re-exports the crates and chooses the default device:
//! - [`ir`] (`kiln-ir`): the graph, builder, autodiff and the f64 reference evaluator;
//! - [`opt`] (`kiln-opt`): the compiler, plans, the CPU interpreter and the `Backend` trait;
//! - [`gpu`] (`kiln-wgpu`): the wgpu executor;
//! - the layer API (`kiln-layers`) at the top level.
//!
//! ## Invariants
//! - [`default_device`] never fails: no adapter ⇒ the CPU interpreter plus one warning line.
//! - Setting `KILN_DEVICE=cpu` forces the CPU interpreter; `KILN_REQUIRE_GPU=1` turns a missing
//!   adapter into an error in [`gpu_device`].

#![warn(missing_docs)]

pub use kiln_ir as ir;
pub use kiln_layers::*;
pub use kiln_opt as opt;
pub use kiln_wgpu as gpu;
pub mod npy;

pub use kiln_opt::{Backend, HostData};

/// The wgpu device, or the error explaining why there is none.
pub fn gpu_device() -> Result<Box<dyn Backend>, kiln_wgpu::WgpuError> {
    Ok(Box::new(kiln_wgpu::WgpuBackend::new()?))
}

/// The best available device: a wgpu adapter if one exists, else the CPU plan interpreter
/// (with a one-line warning on stderr). `KILN_DEVICE=cpu` forces the CPU.
pub fn default_device() -> Box<dyn Backend> {
    if std::env::var("KILN_DEVICE").as_deref() == Ok("cpu") {
        return Box::new(kiln_opt::interp::CpuBackend::new());
    }
    match gpu_device() {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "kiln: warning: no GPU adapter ({e}); falling back to the CPU plan interpreter"
            );
            Box::new(kiln_opt::interp::CpuBackend::new())
        }
    }
}
