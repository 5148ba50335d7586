//! Fusion and memory-planning tests in the style of tinygrad's `check_schedule`: each graph
//! compiles to a known number of kernels, and its plan (run on the CPU interpreter) equals
//! the f64 reference.

use kiln_ir::eval::{Feeds, Tensor};
use kiln_ir::testing::Tolerance;
use kiln_ir::{autodiff, DType, Graph, NodeId};
use kiln_opt::interp::CpuBackend;
use kiln_opt::kernel::{Access, KernelOp};
use kiln_opt::{compile, schedule, Backend, CompileOptions, DeviceLimits, Plan, Step};

const TOL: Tolerance = Tolerance {
    rel: 1e-5,
    abs: 1e-5,
};

fn feeds_for(g: &Graph) -> Feeds {
    let mut f = Feeds::new();
    for (i, (_, n)) in g.iter().enumerate() {
        if let kiln_ir::Op::Input { name } | kiln_ir::Op::Param { name } = &n.op {
            let k = n.shape.numel();
            let data = (0..k)
                .map(|j| ((i * 7 + j * 13) % 17) as f64 / 8.0 - 1.0)
                .collect();
            f.insert(name.clone(), Tensor::new(n.shape.clone(), data).unwrap());
        }
    }
    f
}

/// Compiles with the CPU limits, checks numbers against the reference, returns the plan.
fn check(g: &Graph) -> Plan {
    let mut b = CpuBackend::new();
    kiln_opt::testing::check_graph(&mut b, g, &feeds_for(g), TOL).unwrap();
    let plan = compile(g, &CompileOptions::default(), &b.limits()).unwrap();
    schedule::check_plan(&plan).unwrap();
    plan
}

fn input(g: &mut Graph, name: &str, shape: &[usize]) -> NodeId {
    g.input(name, shape.to_vec(), DType::F32).unwrap()
}

#[test]
fn elementwise_chain_with_broadcast_is_one_kernel() {
    let mut g = Graph::new();
    let a = input(&mut g, "a", &[3, 4]);
    let b = input(&mut g, "b", &[3, 4]);
    let c = input(&mut g, "c", &[4]);
    let ab = g.mul(a, b).unwrap();
    let s = g.add(ab, c).unwrap();
    let t = g.tanh(s).unwrap();
    let y = g.mul_scalar(t, 0.5).unwrap();
    g.output("y", y).unwrap();
    assert_eq!(check(&g).dispatch_count(), 1);
}

#[test]
fn softmax_is_at_most_two_kernels() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[8, 10]);
    let y = g.softmax(x, 1).unwrap();
    g.output("y", y).unwrap();
    assert!(check(&g).dispatch_count() <= 2);
}

#[test]
fn mse_loss_is_one_kernel() {
    let mut g = Graph::new();
    let p = input(&mut g, "p", &[16, 3]);
    let y = input(&mut g, "y", &[16, 3]);
    let d = g.sub(y, p).unwrap();
    let d2 = g.square(d).unwrap();
    let l = g.mean_all(d2).unwrap();
    g.output("loss", l).unwrap();
    assert_eq!(check(&g).dispatch_count(), 1);
}

#[test]
fn softmax_cross_entropy_is_at_most_two_kernels_plus_the_batch_sum() {
    let mut g = Graph::new();
    let z = input(&mut g, "z", &[8, 10]);
    let y = input(&mut g, "y", &[8, 10]);
    let ls = g.log_softmax(z, 1).unwrap();
    let t = g.mul(y, ls).unwrap();
    let s = g.sum_all(t).unwrap();
    let l = g.mul_scalar(s, -1.0 / 8.0).unwrap();
    g.output("loss", l).unwrap();
    // row max, row logsumexp, batch sum
    assert!(check(&g).dispatch_count() <= 3);
}

#[test]
fn matmul_takes_bias_and_activation_in_its_epilogue() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[5, 7]);
    let w = input(&mut g, "w", &[7, 3]);
    let b = input(&mut g, "b", &[3]);
    let xw = g.matmul(x, w).unwrap();
    let z = g.add(xw, b).unwrap();
    let y = g.relu(z).unwrap();
    g.output("y", y).unwrap();
    assert_eq!(check(&g).dispatch_count(), 1);
}

#[test]
fn transposed_operands_are_read_in_place() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[7, 5]);
    let w = input(&mut g, "w", &[3, 7]);
    let xt = g.transpose(x).unwrap();
    let wt = g.transpose(w).unwrap();
    let y = g.matmul(xt, wt).unwrap();
    g.output("y", y).unwrap();
    let plan = check(&g);
    assert_eq!(plan.dispatch_count(), 1);
    let KernelOp::MatMul { a, b, .. } = &plan.kernels[0].op else {
        panic!("expected a matmul")
    };
    assert_eq!((a.row_stride, a.col_stride), (1, 5));
    assert_eq!((b.row_stride, b.col_stride), (1, 7));
}

#[test]
fn sgd_update_is_fused_in_place_into_the_gradient_kernel() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[4, 3]);
    let w = g.param("w", [3, 2], DType::F32).unwrap();
    let y = g.matmul(x, w).unwrap();
    let l = g.mean_all(y).unwrap();
    let dw = autodiff::grad(&mut g, l, &[w]).unwrap()[0];
    let step = g.mul_scalar(dw, 0.1).unwrap();
    let nw = g.sub(w, step).unwrap();
    g.output("loss", l).unwrap();
    g.assign(w, nw).unwrap();
    let plan = check(&g);
    assert!(
        plan.steps.iter().all(|s| !matches!(s, Step::Copy { .. })),
        "update went through a copy"
    );
    let wbuf = plan.params[0].buffer;
    let writers = plan
        .steps
        .iter()
        .filter(|s| match s {
            Step::Dispatch {
                kernel, buffers, ..
            } => buffers
                .iter()
                .zip(&plan.kernels[*kernel as usize].args)
                .any(|(b, a)| *b == wbuf && a.access != Access::Read),
            _ => false,
        })
        .count();
    assert_eq!(writers, 1);
}

#[test]
fn a_kernel_that_would_bind_too_many_buffers_is_split() {
    let mut g = Graph::new();
    let xs: Vec<NodeId> = (0..12)
        .map(|i| input(&mut g, &format!("x{i}"), &[6]))
        .collect();
    let mut acc = g.tanh(xs[0]).unwrap();
    for &x in &xs[1..] {
        acc = g.add(acc, x).unwrap();
    }
    g.output("y", acc).unwrap();
    let limits = DeviceLimits {
        max_storage_buffers_per_shader_stage: 8,
        ..CpuBackend::new().limits()
    };
    let plan = compile(&g, &CompileOptions::default(), &limits).unwrap();
    assert!(plan.dispatch_count() >= 2);
    for k in &plan.kernels {
        assert!(
            k.args.len() <= 8,
            "{} binds {} buffers",
            k.label,
            k.args.len()
        );
    }
    let mut b = CpuBackend::new();
    kiln_opt::testing::check_graph(&mut b, &g, &feeds_for(&g), TOL).unwrap();
}

#[test]
fn planned_memory_reuses_space_and_equals_the_unplanned_run() {
    for seed in 0..60 {
        let (g, feeds) = kiln_opt::testing::random_graph(seed, 30);
        let mut b = CpuBackend::new();
        let limits = b.limits();
        let planned = compile(&g, &CompileOptions::default(), &limits).unwrap();
        let unplanned = compile(
            &g,
            &CompileOptions {
                plan_memory: false,
                ..Default::default()
            },
            &limits,
        )
        .unwrap();
        assert!(planned.stats.temp_bytes <= unplanned.stats.temp_bytes);
        schedule::check_plan(&planned).unwrap();
        schedule::check_plan(&unplanned).unwrap();
        let run = |b: &mut CpuBackend, plan: Plan| {
            for s in &plan.params {
                let t = &feeds[&s.name];
                b.write_param(
                    &s.name,
                    &kiln_opt::HostTensor::f32(
                        t.shape.clone(),
                        t.data.iter().map(|&v| v as f32).collect(),
                    )
                    .unwrap(),
                )
                .unwrap();
            }
            let ins: Vec<kiln_opt::HostTensor> = plan
                .inputs
                .iter()
                .map(|s| {
                    let t = &feeds[&s.name];
                    kiln_opt::HostTensor::f32(
                        t.shape.clone(),
                        t.data.iter().map(|&v| v as f32).collect(),
                    )
                    .unwrap()
                })
                .collect();
            let refs: Vec<&kiln_opt::HostTensor> = ins.iter().collect();
            let names: Vec<String> = plan.params.iter().map(|s| s.name.clone()).collect();
            let mut exe = b.load(std::sync::Arc::new(plan)).unwrap();
            let out = exe.run(&refs).unwrap();
            let params: Vec<_> = names.iter().map(|n| b.read_param(n).unwrap()).collect();
            (out, params)
        };
        let a = run(&mut b, planned);
        let c = run(&mut b, unplanned);
        assert_eq!(a, c, "seed {seed}: planned and unplanned runs differ");
    }
}

#[test]
fn kernel_graph_renders_as_dot() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[4, 3]);
    let w = input(&mut g, "w", &[3, 2]);
    let y = g.matmul(x, w).unwrap();
    let s = g.softmax(y, 1).unwrap();
    g.output("s", s).unwrap();
    let dot = check(&g).to_dot();
    assert!(
        dot.starts_with("digraph plan {") && dot.contains("->") && dot.contains("matmul"),
        "{dot}"
    );
}

#[test]
fn log_of_softmax_is_rewritten_to_a_stable_log_softmax() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[2, 3]);
    let s = g.softmax(x, 1).unwrap();
    let l = g.log(s).unwrap();
    g.output("l", l).unwrap();
    let plan = check(&g);
    assert!(plan.dispatch_count() <= 2);
    // with a huge logit the naive form gives log(0) = -inf; the rewrite gives the exact value
    let mut b = CpuBackend::new();
    let plan = std::sync::Arc::new(compile(&g, &CompileOptions::default(), &b.limits()).unwrap());
    let mut exe = b.load(plan).unwrap();
    let xs = kiln_opt::HostTensor::f32([2, 3], vec![0.0, 1000.0, 0.0, 1.0, 2.0, 3.0]).unwrap();
    let out = exe.run(&[&xs]).unwrap()[0].to_f32();
    assert_eq!(out[0], -1000.0);
    assert_eq!(out[1], 0.0);
    let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    assert!((out[5] as f64 - (3.0 - lse)).abs() < 1e-5, "{out:?}");
}

#[test]
fn composites_are_single_reduce_kernels_and_match_the_reference() {
    for (name, g, feeds) in kiln_opt::testing::composite_graphs() {
        let mut b = CpuBackend::new();
        kiln_opt::testing::check_graph(
            &mut b,
            &g,
            &feeds,
            Tolerance {
                rel: 1e-4,
                abs: 1e-5,
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let plan = compile(&g, &CompileOptions::default(), &b.limits()).unwrap();
        // forward + backward + update of one softmax-like row computation
        assert!(plan.dispatch_count() <= 4, "{name}: {}", plan.summary());
    }
}

#[test]
fn long_reductions_are_split_below_the_device_loop_limit() {
    // llvmpipe stops loops after 65,535 iterations per invocation; 200,000-element
    // reductions (sum, mean, max) must still be exact and no kernel may loop longer
    let limits = DeviceLimits {
        max_loop_iterations: 65_535,
        ..CpuBackend::new().limits()
    };
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[2, 100_000]);
    let s = g.sum_all(x).unwrap();
    let m = g.mean(x, &[1], false).unwrap();
    let mx = g.max(x, &[0, 1], false).unwrap();
    g.output("sum", s).unwrap();
    g.output("mean", m).unwrap();
    g.output("max", mx).unwrap();
    let mut b = CpuBackend::with_limits(limits.clone());
    kiln_opt::testing::check_graph(
        &mut b,
        &g,
        &feeds_for(&g),
        Tolerance {
            rel: 1e-5,
            abs: 1e-3,
        },
    )
    .unwrap();
    let plan = compile(&g, &CompileOptions::default(), &limits).unwrap();
    for k in &plan.kernels {
        if let KernelOp::Reduce {
            in_shape,
            axes,
            stages,
            ..
        } = &k.op
        {
            let count: usize = axes.iter().map(|&a| in_shape[a]).product();
            assert!(
                count * (stages.len() + 1) <= 65_535,
                "{} folds {count} elements",
                k.label
            );
        }
    }
    // a prime length cannot be split: a typed error, not a wrong result
    let mut g = Graph::new();
    let x = input(&mut g, "x", &[65_537]);
    let s = g.sum_all(x).unwrap();
    g.output("s", s).unwrap();
    let err = compile(&g, &CompileOptions::default(), &limits)
        .unwrap_err()
        .to_string();
    assert!(err.contains("loop iterations"), "{err}");
}

/// A dense layer's bias gradient (the column sums of `dz`) rides in the kernel of its
/// weight gradient `xᵀ · dz`, its update with it: no reduce kernel over the rows is left.
#[test]
fn bias_gradients_ride_in_the_weight_gradient_product() {
    let (_, g, feeds) = kiln_opt::testing::composite_graphs()
        .into_iter()
        .find(|(n, _, _)| n == "dense")
        .unwrap();
    let mut b = CpuBackend::new();
    kiln_opt::testing::check_graph(&mut b, &g, &feeds, TOL).unwrap();
    let plan = compile(&g, &CompileOptions::default(), &b.limits()).unwrap();
    schedule::check_plan(&plan).unwrap();
    let with_sums: Vec<_> = plan
        .kernels
        .iter()
        .filter_map(|k| match &k.op {
            KernelOp::MatMul {
                m,
                n,
                k,
                sums: Some(s),
                ..
            } => Some((*m, *n, *k, s.shape.clone(), s.stores.len())),
            _ => None,
        })
        .collect();
    // d_w = xᵀ·dz: [3, 5]·[5, 4]; the sums write d_b and the updated b
    assert_eq!(
        with_sums,
        vec![(3, 4, 5, vec![1, 4], 2)],
        "{}",
        plan.summary()
    );
    assert!(
        !plan
            .kernels
            .iter()
            .any(|k| matches!(&k.op, KernelOp::Reduce { axes, .. } if axes.as_slice() == [0])),
        "{}",
        plan.summary()
    );
}

/// An embedding whose rows are projected: its gradient scatters the `[12, 5]` adjoint of the
/// projection into the table's 3 rows first, then multiplies by `vᵀ` ([3, 5]·[5, 4]), the
/// update in that product's epilogue.
#[test]
fn embedding_gradients_scatter_before_the_product() {
    let (_, g, feeds) = kiln_opt::testing::composite_graphs()
        .into_iter()
        .find(|(n, _, _)| n == "embedding_projection")
        .unwrap();
    let mut b = CpuBackend::new();
    kiln_opt::testing::check_graph(&mut b, &g, &feeds, TOL).unwrap();
    let plan = compile(&g, &CompileOptions::default(), &b.limits()).unwrap();
    schedule::check_plan(&plan).unwrap();
    let scatters: Vec<_> = plan
        .kernels
        .iter()
        .filter_map(|k| match &k.op {
            KernelOp::ScatterAdd {
                rows, cols, count, ..
            } => Some((*rows, *cols, *count)),
            _ => None,
        })
        .collect();
    assert_eq!(scatters, vec![(3, 5, 12)], "{}", plan.summary());
    assert!(
        plan.kernels.iter().any(|k| matches!(
            &k.op,
            KernelOp::MatMul { m: 3, n: 4, k: 5, stores, .. } if stores.len() == 2
        )),
        "{}",
        plan.summary()
    );
}
