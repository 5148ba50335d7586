//! The CPU plan interpreter against the f64 reference, and plan-level behaviour.

use kiln_ir::{autodiff, DType, Graph};
use kiln_opt::interp::CpuBackend;
use kiln_opt::{compile, Backend, CompileOptions, HostTensor};
use std::sync::Arc;

#[test]
fn op_table_forward_and_backward_match_reference() {
    let mut b = CpuBackend::new();
    let n = kiln_opt::testing::check_op_table(&mut b).unwrap();
    assert!(n >= 70, "compared only {n} tensors");
}

#[test]
fn params_persist_and_assignments_apply_after_outputs() {
    // w <- w - 0.5 * dL/dw with L = sum(w * x); the output must see the old w.
    let mut g = Graph::new();
    let x = g.input("x", [3], DType::F32).unwrap();
    let w = g.param("w", [3], DType::F32).unwrap();
    let p = g.mul(w, x).unwrap();
    let l = g.sum_all(p).unwrap();
    let dw = autodiff::grad(&mut g, l, &[w]).unwrap()[0];
    let step = g.mul_scalar(dw, 0.5).unwrap();
    let nw = g.sub(w, step).unwrap();
    g.output("loss", l).unwrap();
    g.assign(w, nw).unwrap();
    let mut b = CpuBackend::new();
    let plan = Arc::new(compile(&g, &CompileOptions::default(), &b.limits()).unwrap());
    b.write_param("w", &HostTensor::f32([3], vec![1.0, 2.0, 3.0]).unwrap())
        .unwrap();
    let mut exe = b.load(plan).unwrap();
    let xv = HostTensor::f32([3], vec![1.0, 1.0, 2.0]).unwrap();
    let out = exe.run(&[&xv]).unwrap();
    assert_eq!(out[0].to_f32(), vec![9.0]); // 1 + 2 + 6 with the old w
    assert_eq!(b.read_param("w").unwrap().to_f32(), vec![0.5, 1.5, 2.0]);
    let out = exe.run(&[&xv]).unwrap();
    assert_eq!(out[0].to_f32(), vec![6.0]); // 0.5 + 1.5 + 4
                                            // wrong input shape is an error, not a panic
    let bad = HostTensor::f32([2], vec![1.0, 1.0]).unwrap();
    assert!(exe.run(&[&bad]).is_err());
    assert!(exe.run(&[]).is_err());
}

#[test]
fn oversized_tensor_is_refused_at_compile_time() {
    let mut g = Graph::new();
    let x = g.input("big_x", [1 << 20, 64], DType::F32).unwrap();
    let y = g.exp(x).unwrap();
    g.output("y", y).unwrap();
    let err = compile(
        &g,
        &CompileOptions::default(),
        &kiln_opt::DeviceLimits::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("big_x") && msg.contains("268435456"), "{msg}");
}

#[test]
fn random_graphs_match_the_reference() {
    use kiln_ir::testing::Tolerance;
    for seed in 0..std::env::var("KILN_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400u64)
    {
        let (g, feeds) = kiln_opt::testing::random_graph(seed, 20 + (seed % 3) as usize * 10);
        if std::env::var("KILN_TRACE_SEED").is_ok() {
            eprintln!("seed {seed}\n{g}");
        }
        // odd seeds compile for WebGPU's default limits (8 storage buffers per stage)
        let mut b = if seed % 2 == 1 {
            CpuBackend::with_limits(kiln_opt::DeviceLimits::default())
        } else {
            CpuBackend::new()
        };
        let tol = Tolerance {
            rel: 1e-4,
            abs: 1e-4,
        };
        if let Err(e) = kiln_opt::testing::check_graph(&mut b, &g, &feeds, tol) {
            panic!("seed {seed}: {e}\n{g}");
        }
    }
}

#[test]
fn every_pass_preserves_the_graphs_values() {
    use kiln_opt::passes::{
        EliminateCommonSubexpressions, EliminateDeadNodes, FoldConstants, Pass, RewriteLogSoftmax,
    };
    let passes: [&dyn Pass; 4] = [
        &FoldConstants,
        &EliminateCommonSubexpressions,
        &RewriteLogSoftmax,
        &EliminateDeadNodes,
    ];
    let mut graphs: Vec<(kiln_ir::Graph, kiln_ir::eval::Feeds)> = (0..200)
        .map(|s| kiln_opt::testing::random_graph(s, 20))
        .collect();
    graphs.extend(
        kiln_opt::testing::composite_graphs()
            .into_iter()
            .map(|(_, g, f)| (g, f)),
    );
    for (i, (g, feeds)) in graphs.iter().enumerate() {
        let want = kiln_ir::eval::run(g, feeds).unwrap();
        for pass in passes {
            let h = pass.run(g).unwrap();
            kiln_ir::verify(&h)
                .unwrap_or_else(|e| panic!("graph {i}: {} broke the graph: {e}", pass.name()));
            let got = kiln_ir::eval::run(&h, feeds).unwrap();
            for ((n, a), (_, b)) in got
                .outputs
                .iter()
                .chain(&got.updates)
                .zip(want.outputs.iter().chain(&want.updates))
            {
                // passes fold constants in f32, so compare under the f32 tolerance
                kiln_ir::testing::Tolerance {
                    rel: 1e-5,
                    abs: 1e-6,
                }
                .check(
                    &format!("graph {i}, {} changed {n}", pass.name()),
                    &a.data,
                    &b.data,
                )
                .unwrap();
            }
        }
    }
}
