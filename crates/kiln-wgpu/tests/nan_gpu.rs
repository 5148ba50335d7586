//! NaN semantics on the GPU (lavapipe in CI): `relu`, `tanh` (whose input kiln clamps),
//! `maximum`, `minimum` and max-reductions (serial and workgroup-tree) propagate NaN like
//! the f64 reference evaluator, IEEE 754 and Keras — WGSL's `max` and `clamp` alone would
//! return the other operand.

use kiln_opt::Backend;
use kiln_wgpu::test_backend;

#[test]
fn nan_propagates_on_the_gpu() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    let n = kiln_opt::testing::check_nan_table(&mut backend).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{n} NaN cases on {}", backend.describe());
}
