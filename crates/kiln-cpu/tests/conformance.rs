//! The native backend against the f64 reference evaluator: the op table, the composite and
//! vector graphs, and seeded random graphs — the shared kit of `kiln_opt::testing`, run as
//! it runs on the interpreter (kiln-opt's tests) and the GPU (kiln-wgpu's tests).

use kiln_cpu::NativeBackend;
use kiln_ir::testing::Tolerance;
use kiln_opt::{Backend, HostTensor};

#[test]
fn op_table_forward_and_backward_match_reference() {
    let mut b = NativeBackend::new();
    let n = kiln_opt::testing::check_op_table(&mut b).unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 70, "compared only {n} tensors");
}

#[test]
fn composite_graphs_match_the_reference() {
    let mut b = NativeBackend::new();
    for (name, g, feeds) in kiln_opt::testing::composite_graphs() {
        b.write_param("w", &HostTensor::f32([3, 4], vec![1.0; 12]).unwrap())
            .unwrap();
        let tol = Tolerance {
            rel: 1e-4,
            abs: 1e-5,
        };
        if let Err(e) = kiln_opt::testing::check_graph(&mut b, &g, &feeds, tol) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn vector_graphs_match_the_reference() {
    let mut b = NativeBackend::new();
    for (name, g, feeds, _) in kiln_opt::testing::vector_graphs() {
        let tol = Tolerance {
            rel: 1e-4,
            abs: 1e-5,
        };
        if let Err(e) = kiln_opt::testing::check_graph(&mut b, &g, &feeds, tol) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn random_graphs_match_the_reference() {
    for seed in 0..std::env::var("KILN_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400u64)
    {
        let (g, feeds) = kiln_opt::testing::random_graph(seed, 20 + (seed % 3) as usize * 10);
        // odd seeds compile for WebGPU's default limits (8 storage buffers per stage)
        let mut b = if seed % 2 == 1 {
            NativeBackend::with_limits(kiln_opt::DeviceLimits::default())
        } else {
            NativeBackend::new()
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
fn long_reductions_are_exact() {
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
    let mut b = NativeBackend::new();
    kiln_opt::testing::check_graph(&mut b, &g, &feeds, Tolerance { rel: 0.0, abs: 0.0 }).unwrap();
}
