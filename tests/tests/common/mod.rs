//! Shared by the end-to-end tests (each includes it with `mod common;`).
//!
//! A model or example test is a body taking a [`Device`] factory (called for every model it
//! builds), registered with [`on_every_device!`]: `NAME::wgpu` runs it on [`device`],
//! `NAME::native` on the native CPU backend — one test kit, every backend.

/// Makes a fresh device for one model of a test.
pub type Device = fn() -> Box<dyn kiln::Backend>;

/// The default device for an end-to-end test: a wgpu adapter; with `KILN_REQUIRE_GPU=1` a
/// missing adapter fails the test, otherwise the CPU plan interpreter runs it (one line says
/// so).
pub fn device() -> Box<dyn kiln::Backend> {
    match kiln::gpu_device() {
        Ok(d) => d,
        Err(e) if std::env::var("KILN_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("KILN_REQUIRE_GPU=1 but no GPU adapter: {e}")
        }
        Err(e) => {
            eprintln!("no GPU adapter ({e}); running on the CPU plan interpreter");
            Box::new(kiln::opt::interp::CpuBackend::new())
        }
    }
}

/// The native CPU backend (`kiln-cpu`, on rayon's global pool).
pub fn native() -> Box<dyn kiln::Backend> {
    kiln::native_device()
}

/// `on_every_device!(body)`, where `body` is a `fn(Device)` at the test file's root: defines
/// the tests `body::wgpu` ([`device`]) and `body::native` ([`native`]).
macro_rules! on_every_device {
    ($body:ident) => {
        mod $body {
            #[test]
            fn wgpu() {
                super::$body($crate::common::device)
            }

            #[test]
            fn native() {
                super::$body($crate::common::native)
            }
        }
    };
}
pub(crate) use on_every_device;
