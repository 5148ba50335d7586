//! NaN semantics on the CPU plan interpreter: `relu`, `tanh`, `maximum`, `minimum` and
//! max-reductions propagate NaN (IEEE 754, Keras), matching the f64 reference evaluator.
//! The same table runs on the GPU in kiln-wgpu's `nan_gpu` test.

use kiln_opt::interp::CpuBackend;

#[test]
fn nan_propagates_on_the_cpu_interpreter() {
    let mut backend = CpuBackend::new();
    let n = kiln_opt::testing::check_nan_table(&mut backend).unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 9, "only {n} NaN cases");
}
