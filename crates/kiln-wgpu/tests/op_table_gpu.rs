//! The op table and seeded random graphs on the GPU: every case of
//! `kiln_ir::testing::all_cases()`, forward and (for differentiable cases) the gradient of
//! `sum(out * W)` for every leaf, and random fused graphs with param assignments, compiled by
//! `kiln_opt::compile` for this device's limits, run through the wgpu executor and compared
//! with the f64 reference evaluator under the named f32 tolerances.
//!
//! The loops are `kiln_opt::testing::{check_op_table, check_graph}`, written once and run per
//! backend (the CPU interpreter runs the same functions in kiln-opt's tests).

use kiln_ir::testing::Tolerance;
use kiln_opt::Backend;
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
        backend.describe()
    );
    assert!(compared >= 40, "only {compared} tensors were compared");
}

#[test]
fn random_fused_graphs_match_the_reference_on_the_gpu() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    let seeds: u64 = std::env::var("KILN_GPU_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    for seed in 0..seeds {
        let (g, feeds) = kiln_opt::testing::random_graph(seed, 20 + (seed % 3) as usize * 10);
        let tol = Tolerance {
            rel: 1e-4,
            abs: 1e-4,
        };
        if let Err(e) = kiln_opt::testing::check_graph(&mut backend, &g, &feeds, tol) {
            panic!("seed {seed}: {e}\n{g}");
        }
    }
}

#[test]
fn softmax_family_matches_the_reference_on_the_gpu() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    for (name, g, feeds) in kiln_opt::testing::composite_graphs() {
        // param names repeat across the graphs: give each its own backend variables
        let tol = Tolerance {
            rel: 1e-4,
            abs: 1e-5,
        };
        backend
            .write_param(
                "w",
                &kiln_opt::HostTensor::f32([3, 4], vec![1.0; 12]).unwrap(),
            )
            .unwrap();
        if let Err(e) = kiln_opt::testing::check_graph(&mut backend, &g, &feeds, tol) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn long_reductions_are_exact_on_the_gpu() {
    // lavapipe stops loops after 65,535 iterations; the compiler splits longer reductions
    let Some(mut backend) = test_backend() else {
        return;
    };
    let mut g = kiln_ir::Graph::new();
    let x = g.input("x", [200_000], kiln_ir::DType::F32).unwrap();
    let s = g.sum_all(x).unwrap();
    let m = g.max(x, &[0], false).unwrap();
    g.output("sum", s).unwrap();
    g.output("max", m).unwrap();
    let mut feeds = kiln_ir::eval::Feeds::new();
    let data: Vec<f64> = (0..200_000)
        .map(|i| if i == 123_456 { 7.0 } else { 1.0 })
        .collect();
    feeds.insert(
        "x".into(),
        kiln_ir::eval::Tensor::new([200_000], data).unwrap(),
    );
    kiln_opt::testing::check_graph(&mut backend, &g, &feeds, Tolerance { rel: 0.0, abs: 0.0 })
        .unwrap();
}
