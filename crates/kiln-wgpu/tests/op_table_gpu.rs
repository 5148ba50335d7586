//! The op table on the GPU: every case of `kiln_ir::testing::all_cases()`, forward and (for
//! differentiable cases) the gradient of `sum(out * W)` for every leaf, compiled by
//! `kiln_opt::compile` for this device's limits, run through the wgpu executor and compared
//! with the f64 reference evaluator under the named f32 tolerances.
//!
//! The case loop is `kiln_opt::testing::check_op_table`, written once and run per backend
//! (the CPU interpreter runs the same function in kiln-opt's tests).

use kiln_wgpu::test_backend;

#[test]
fn every_op_table_case_matches_the_reference_on_the_gpu() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    let compared =
        kiln_opt::testing::check_op_table(&mut backend).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "op table on {}: {compared} tensors compared",
        kiln_opt::Backend::describe(&backend)
    );
    assert!(compared >= 40, "only {compared} tensors were compared");
}
