//! # kiln: a define-then-run tensor compiler with a Keras-like API
//!
//! You *shape* a static graph (by hand with [`ir::Graph`], or as a Keras-style
//! [`Sequential`] model), kiln *fires* it into a plan of kernels with a static memory plan, and
//! replays the plan on any GPU through wgpu — or on the CPU plan interpreter when no GPU
//! exists.
//!
//! This facade re-exports the crates and chooses the default device:
//! - [`ir`] (`kiln-ir`): the graph, builder, autodiff and the f64 reference evaluator;
//! - [`opt`] (`kiln-opt`): the compiler, plans, the reference interpreter and the `Backend`
//!   trait;
//! - [`gpu`] (`kiln-wgpu`): the wgpu executor;
//! - [`cpu`] (`kiln-cpu`): the native CPU backend;
//! - the layer API (`kiln-layers`) at the top level.
//!
//! ## Invariants
//! - [`default_device`] picks a real GPU adapter (discrete or integrated) first, else the
//!   native CPU backend — also when the only wgpu adapter is a software rasterizer
//!   (lavapipe, llvmpipe, SwiftShader, WARP): the native backend is faster there. No warning
//!   line: the CPU is a first-class device.
//! - `KILN_DEVICE=cpu|native|wgpu|reference` chooses explicitly (`cpu` and `native` are the
//!   native backend, `reference` the plan interpreter of `kiln_opt::interp`, `wgpu` a wgpu
//!   adapter or an error); any other value is an error naming the variable and the accepted
//!   values ([`try_default_device`]). `KILN_ADAPTER` set means wgpu with that adapter.
//! - `KILN_REQUIRE_GPU=1` turns a missing adapter into an error in [`gpu_device`]'s callers
//!   (the GPU tests use `kiln::gpu::test_backend()`).

#![warn(missing_docs)]

#[cfg(feature = "mpi")]
pub mod dist;
pub use kiln_cpu as cpu;
pub use kiln_ir as ir;
pub use kiln_layers::*;
pub use kiln_opt as opt;
pub use kiln_wgpu as gpu;
pub mod npy;

pub use kiln_opt::{Backend, HostData};

/// Why no device could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// `KILN_DEVICE` holds an unknown value.
    #[error("KILN_DEVICE=`{0}` is not a device; accepted values: cpu, native, wgpu, reference")]
    UnknownDevice(String),
    /// `KILN_DEVICE=wgpu` (or `KILN_ADAPTER`) but wgpu could not open an adapter.
    #[error(transparent)]
    Wgpu(#[from] kiln_wgpu::WgpuError),
}

/// A device kind `KILN_DEVICE` can name.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// A real GPU if there is one, else the native CPU backend (no `KILN_DEVICE`).
    Auto,
    /// The native CPU backend (`cpu`, `native`).
    Native,
    /// A wgpu adapter (`wgpu`).
    Wgpu,
    /// The reference plan interpreter (`reference`).
    Reference,
}

impl DeviceKind {
    /// Parses a `KILN_DEVICE` value.
    pub fn parse(value: &str) -> Result<DeviceKind, DeviceError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(DeviceKind::Auto),
            "cpu" | "native" => Ok(DeviceKind::Native),
            "wgpu" | "gpu" => Ok(DeviceKind::Wgpu),
            "reference" => Ok(DeviceKind::Reference),
            _ => Err(DeviceError::UnknownDevice(value.to_string())),
        }
    }

    /// The kind `KILN_DEVICE` names (`Auto` when unset).
    pub fn from_env() -> Result<DeviceKind, DeviceError> {
        match std::env::var("KILN_DEVICE") {
            Ok(v) => DeviceKind::parse(&v),
            Err(_) => Ok(DeviceKind::Auto),
        }
    }
}

/// The wgpu device, or the error explaining why there is none.
pub fn gpu_device() -> Result<Box<dyn Backend>, kiln_wgpu::WgpuError> {
    Ok(Box::new(kiln_wgpu::WgpuBackend::new()?))
}

/// The native CPU backend (on rayon's global pool).
pub fn native_device() -> Box<dyn Backend> {
    Box::new(kiln_cpu::NativeBackend::new())
}

/// A device of `kind`.
pub fn device(kind: DeviceKind) -> Result<Box<dyn Backend>, DeviceError> {
    match kind {
        DeviceKind::Native => Ok(native_device()),
        DeviceKind::Reference => Ok(Box::new(kiln_opt::interp::CpuBackend::new())),
        DeviceKind::Wgpu => Ok(gpu_device()?),
        DeviceKind::Auto if std::env::var_os("KILN_ADAPTER").is_some() => Ok(gpu_device()?),
        DeviceKind::Auto => match kiln_wgpu::WgpuBackend::new() {
            Ok(b)
                if matches!(
                    b.limits().adapter_class,
                    kiln_opt::AdapterClass::DiscreteGpu | kiln_opt::AdapterClass::IntegratedGpu
                ) =>
            {
                Ok(Box::new(b))
            }
            // no adapter, or only a software one: the native backend is faster
            _ => Ok(native_device()),
        },
    }
}

/// The device `KILN_DEVICE` asks for (see the crate page), or why it cannot be had.
pub fn try_default_device() -> Result<Box<dyn Backend>, DeviceError> {
    device(DeviceKind::from_env()?)
}

/// The best available device (see the crate page). A bad `KILN_DEVICE` value, or
/// `KILN_DEVICE=wgpu` without an adapter, prints the error and exits the process with status
/// 2; use [`try_default_device`] to handle it instead.
pub fn default_device() -> Box<dyn Backend> {
    match try_default_device() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kiln: error: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kiln_device_values() {
        assert_eq!(DeviceKind::parse("cpu").unwrap(), DeviceKind::Native);
        assert_eq!(DeviceKind::parse("native").unwrap(), DeviceKind::Native);
        assert_eq!(DeviceKind::parse("wgpu").unwrap(), DeviceKind::Wgpu);
        assert_eq!(
            DeviceKind::parse("reference").unwrap(),
            DeviceKind::Reference
        );
        let e = DeviceKind::parse("tpu").unwrap_err().to_string();
        assert!(e.contains("KILN_DEVICE") && e.contains("native") && e.contains("reference"));
        assert!(device(DeviceKind::Native)
            .unwrap()
            .describe()
            .contains("native"));
    }
}
