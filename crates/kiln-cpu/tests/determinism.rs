//! The native backend's promises beyond the values: the same bits on any thread count, and
//! errors (never panics) for plans that fail validation.

use kiln_cpu::NativeBackend;
use kiln_ir::{autodiff, DType, Graph};
use kiln_opt::kernel::KernelOp;
use kiln_opt::plan::Step;
use kiln_opt::{compile, Backend, CompileOptions, HostTensor, Plan};
use std::sync::Arc;

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A 2-layer MLP (batch 256, 48 → 128 → 10, softmax cross-entropy) trained by SGD with
/// momentum, big enough that every kernel kind splits into several tasks.
fn train_graph() -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", [256, 48], DType::F32).unwrap();
    let y = g.input("y", [256, 10], DType::F32).unwrap();
    let w1 = g.param("w1", [48, 128], DType::F32).unwrap();
    let b1 = g.param("b1", [128], DType::F32).unwrap();
    let w2 = g.param("w2", [128, 10], DType::F32).unwrap();
    let h = g.matmul(x, w1).unwrap();
    let h = g.add(h, b1).unwrap();
    let h = g.tanh(h).unwrap();
    let z = g.matmul(h, w2).unwrap();
    let lp = g.log_softmax(z, 1).unwrap();
    let t = g.mul(lp, y).unwrap();
    let s = g.sum_all(t).unwrap();
    let loss = g.mul_scalar(s, -1.0 / 256.0).unwrap();
    g.output("loss", loss).unwrap();
    let grads = autodiff::grad(&mut g, loss, &[w1, b1, w2]).unwrap();
    for ((p, d), pname) in [w1, b1, w2].into_iter().zip(grads).zip(["w1", "b1", "w2"]) {
        let name = format!("{pname}_m");
        let shape = g.node(p).shape.clone();
        let m = g.param(&name, shape.dims().to_vec(), DType::F32).unwrap();
        let m9 = g.mul_scalar(m, 0.9).unwrap();
        let nm = g.add(m9, d).unwrap();
        let step = g.mul_scalar(nm, 0.1).unwrap();
        let np = g.sub(p, step).unwrap();
        g.assign(m, nm).unwrap();
        g.assign(p, np).unwrap();
    }
    g
}

fn train(threads: usize) -> Vec<Vec<f32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let g = train_graph();
        let mut b = NativeBackend::new();
        let plan = Arc::new(compile(&g, &CompileOptions::default(), &b.limits()).unwrap());
        b.write_param(
            "w1",
            &HostTensor::f32([48, 128], values(48 * 128, 1)).unwrap(),
        )
        .unwrap();
        b.write_param("w2", &HostTensor::f32([128, 10], values(1280, 2)).unwrap())
            .unwrap();
        let mut exe = b.load(plan).unwrap();
        let x = HostTensor::f32([256, 48], values(256 * 48, 3)).unwrap();
        let y: Vec<f32> = (0..256 * 10)
            .map(|i| if i % 10 == (i / 10) % 7 { 1.0 } else { 0.0 })
            .collect();
        let y = HostTensor::f32([256, 10], y).unwrap();
        let mut losses = vec![];
        for _ in 0..5 {
            losses.push(exe.run(&[&x, &y]).unwrap()[0].to_f32()[0]);
        }
        assert!(losses[4] < losses[0], "training does not train: {losses:?}");
        let mut out: Vec<Vec<f32>> = ["w1", "b1", "w2", "w1_m", "b1_m", "w2_m"]
            .iter()
            .map(|n| b.read_param(n).unwrap().to_f32())
            .collect();
        out.push(losses);
        out
    })
}

#[test]
fn training_gives_the_same_bits_on_1_and_4_threads() {
    let one = train(1);
    let four = train(4);
    for (a, b) in one.iter().zip(&four) {
        let (a, b): (Vec<u32>, Vec<u32>) = (
            a.iter().map(|x| x.to_bits()).collect(),
            b.iter().map(|x| x.to_bits()).collect(),
        );
        assert_eq!(a, b);
    }
    // and the same bits as a second run on 4 threads
    assert_eq!(four, train(4));
}

fn small_plan() -> Plan {
    let mut g = Graph::new();
    let x = g.input("x", [4, 8], DType::F32).unwrap();
    let w = g.param("w", [8, 3], DType::F32).unwrap();
    let y = g.matmul(x, w).unwrap();
    let y = g.relu(y).unwrap();
    let s = g.sum_all(y).unwrap();
    g.output("y", y).unwrap();
    g.output("s", s).unwrap();
    compile(
        &g,
        &CompileOptions::default(),
        &NativeBackend::new().limits(),
    )
    .unwrap()
}

#[test]
fn bad_plans_are_errors_not_panics() {
    let mut damaged: Vec<(&str, Plan)> = vec![];
    let mut p = small_plan();
    p.format_version += 1;
    damaged.push(("format version", p));
    let mut p = small_plan();
    if let Some(Step::Dispatch { kernel, .. }) = p.steps.first_mut() {
        *kernel = 99;
    }
    damaged.push(("missing kernel", p));
    let mut p = small_plan();
    for b in &mut p.buffers {
        b.len = 1;
    }
    damaged.push(("short buffers", p));
    let mut p = small_plan();
    for k in &mut p.kernels {
        if let KernelOp::MatMul { a, .. } = &mut k.op {
            a.offset = 1 << 40;
        }
    }
    damaged.push(("operand far outside", p));
    let mut p = small_plan();
    for k in &mut p.kernels {
        match &mut k.op {
            KernelOp::MatMul { stores, .. } | KernelOp::Elementwise { stores, .. } => {
                for s in stores {
                    s.value = 77;
                }
            }
            KernelOp::Reduce { stages, .. } => stages.clear(),
            _ => {}
        }
    }
    damaged.push(("dangling values", p));
    for (what, plan) in damaged {
        let mut b = NativeBackend::new();
        assert!(b.load(Arc::new(plan)).is_err(), "{what} was accepted");
    }
    // the undamaged plan loads and runs
    let mut b = NativeBackend::new();
    let mut exe = b.load(Arc::new(small_plan())).unwrap();
    let x = HostTensor::f32([4, 8], vec![1.0; 32]).unwrap();
    assert_eq!(exe.run(&[&x]).unwrap().len(), 2);
    assert!(exe.run(&[]).is_err());
}

#[test]
fn reductions_fold_in_the_interpreters_order() {
    // row-wise (innermost axis reduced) and column-wise (outer axis reduced) reductions
    // fold each output sequentially, as the interpreter does: the same bits
    let mut g = Graph::new();
    let x = g.input("x", [300, 70], DType::F32).unwrap();
    let rows = g.sum(x, &[1], false).unwrap();
    let cols = g.sum(x, &[0], false).unwrap();
    let colmax = g.max(x, &[0], false).unwrap();
    g.output("rows", rows).unwrap();
    g.output("cols", cols).unwrap();
    g.output("colmax", colmax).unwrap();
    let xv = HostTensor::f32([300, 70], values(300 * 70, 9)).unwrap();
    let mut outs = vec![];
    let backends: Vec<Box<dyn Backend>> = vec![
        Box::new(NativeBackend::new()),
        Box::new(kiln_opt::interp::CpuBackend::new()),
    ];
    for mut b in backends {
        let plan = Arc::new(compile(&g, &CompileOptions::default(), &b.limits()).unwrap());
        let mut exe = b.load(plan).unwrap();
        let o: Vec<Vec<u32>> = exe
            .run(&[&xv])
            .unwrap()
            .iter()
            .map(|t| t.to_f32().iter().map(|v| v.to_bits()).collect())
            .collect();
        outs.push(o);
    }
    assert_eq!(outs[0], outs[1]);
}
