//! NaN propagation on the native backend: relu, tanh, maximum, minimum (plain, fused, as a
//! GEMM epilogue) and max-reductions give NaN where the f64 reference does — the shared
//! table of `kiln_opt::testing`, the one the interpreter and kiln-wgpu run.

#[test]
fn nan_table_native() {
    let mut backend = kiln_cpu::NativeBackend::new();
    let n = kiln_opt::testing::check_nan_table(&mut backend).unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 9, "{n} cases");
}
