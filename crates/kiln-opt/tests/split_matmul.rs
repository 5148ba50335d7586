//! `SplitLongMatMuls`: a matmul whose contraction is longer than the device's loop limit
//! allows is split into in-order partial products — and computes what the f64 evaluator
//! computes. The stacked recurrent-weight gradient of autodiff relies on it.

use kiln_ir::eval::{Feeds, Tensor};
use kiln_ir::testing::Tolerance;
use kiln_ir::{DType, Graph};
use kiln_opt::interp::CpuBackend;
use kiln_opt::kernel::KernelOp;
use kiln_opt::{compile, Backend, CompileOptions, DeviceLimits};

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut r = kiln_ir::random::Rng::new(seed);
    (0..n).map(|_| r.uniform(-1.0, 1.0)).collect()
}

#[test]
fn long_contractions_are_split_below_the_device_loop_limit() {
    // max_loop_iterations 4,000 → contractions of at most 1,000: k = 2,500 is three products
    let limits = DeviceLimits {
        max_loop_iterations: 4_000,
        ..CpuBackend::new().limits()
    };
    let (m, k, n) = (3, 2_500, 5);
    let mut g = Graph::new();
    let a = g.input("a", [k, m], DType::F32).unwrap();
    let b = g.input("b", [k, n], DType::F32).unwrap();
    let at = g.transpose(a).unwrap(); // the recurrent-gradient shape: aᵀ·d
    let y = g.matmul(at, b).unwrap();
    g.output("y", y).unwrap();
    let plan = compile(&g, &CompileOptions::default(), &limits).unwrap();
    let ks: Vec<usize> = plan
        .kernels
        .iter()
        .filter_map(|kr| match &kr.op {
            KernelOp::MatMul { k, .. } => Some(*k),
            _ => None,
        })
        .collect();
    assert_eq!(ks, vec![834, 833, 833], "{}", plan.summary());
    let mut feeds = Feeds::new();
    feeds.insert("a".into(), Tensor::new([k, m], values(k * m, 1)).unwrap());
    feeds.insert("b".into(), Tensor::new([k, n], values(k * n, 2)).unwrap());
    let mut cpu = CpuBackend::with_limits(limits);
    kiln_opt::testing::check_graph(&mut cpu, &g, &feeds, Tolerance::f32_sum(k)).unwrap();
    // without a loop limit the product stays whole
    let whole = compile(&g, &CompileOptions::default(), &CpuBackend::new().limits()).unwrap();
    let mm = whole
        .kernels
        .iter()
        .filter(|kr| matches!(kr.op, KernelOp::MatMul { .. }))
        .count();
    assert_eq!(mm, 1);
}
