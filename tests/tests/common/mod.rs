//! Shared by the end-to-end tests (each includes it with `mod common;`).

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
