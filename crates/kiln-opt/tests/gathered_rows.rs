//! `GatheredRowsMatMul`: products of gathered rows (an embedding or one-hot input feeding a
//! projection) become a gather of a product and a product of a scatter-add where that costs
//! less on the device. The rewritten graphs compute what the originals compute (the f64
//! evaluator on both), and each device's pricing picks the rewrites its kernels favour.

use kiln_ir::eval::{Feeds, Tensor};
use kiln_ir::{autodiff, DType, Graph, NodeId, Op};
use kiln_opt::gather_matmul::GatheredRowsMatMul;
use kiln_opt::passes::{EliminateCommonSubexpressions, EliminateDeadNodes, Pass};
use kiln_opt::scatter_matmul::ScatterBeforeMatMul;
use kiln_opt::{AdapterClass, DeviceLimits};

fn limits(adapter_class: AdapterClass, persistent_kernels: bool) -> DeviceLimits {
    DeviceLimits {
        adapter_class,
        persistent_kernels,
        ..DeviceLimits::default()
    }
}

/// The native CPU backend, a CPU rasterizer (lavapipe), a discrete GPU.
fn devices() -> [(&'static str, DeviceLimits); 3] {
    [
        ("native", limits(AdapterClass::Cpu, true)),
        ("rasterizer", limits(AdapterClass::Cpu, false)),
        ("gpu", limits(AdapterClass::DiscreteGpu, true)),
    ]
}

/// The compiler's passes around the rewrite, in its pipeline's order.
fn optimize(g: &Graph, l: &DeviceLimits) -> Graph {
    let passes: [&dyn Pass; 4] = [
        &ScatterBeforeMatMul::for_device(l),
        &GatheredRowsMatMul::for_device(l),
        &EliminateCommonSubexpressions,
        &EliminateDeadNodes,
    ];
    let mut g = g.clone();
    for p in passes {
        g = p.run(&g).unwrap();
        kiln_ir::verify(&g).unwrap();
    }
    g
}

/// `tanh(reshape(gather(table, cast(x))) · w)` over `positions` indices, a sum as the loss, one SGD step on `w` and (unless the table is a constant identity) the table.
/// Returns the graph.
fn projection(positions: [usize; 2], rows: usize, k: usize, c: usize, onehot: bool) -> Graph {
    let n = positions[0] * positions[1];
    let mut g = Graph::new();
    let x = g.input("x", positions, DType::F32).unwrap();
    let table = if onehot {
        assert_eq!(rows, k);
        let eye = (0..k * k)
            .map(|i| if i / k == i % k { 1.0 } else { 0.0 })
            .collect();
        g.constant(eye, [k, k], DType::F32).unwrap()
    } else {
        g.param("table", [rows, k], DType::F32).unwrap()
    };
    let w = g.param("w", [k, c], DType::F32).unwrap();
    let idx = g.cast(x, DType::I32).unwrap();
    let e = g.gather(table, idx).unwrap();
    let e = g.reshape(e, [n, k]).unwrap();
    let p = g.matmul(e, w).unwrap();
    let t = g.tanh(p).unwrap();
    g.output("out", t).unwrap();
    // weighted, so that the adjoint differs per element (small graphs: the tutorials'
    // shapes are only priced, and a constant of their size is slow to compare)
    let l = if n * c <= 10_000 {
        let weights = (0..n * c).map(|i| ((i % 7) as f64 - 3.0) / 4.0).collect();
        let lw = g.constant(weights, [n, c], DType::F32).unwrap();
        g.mul(t, lw).unwrap()
    } else {
        t
    };
    let loss = g.sum_all(l).unwrap();
    let params: Vec<NodeId> = if onehot { vec![w] } else { vec![table, w] };
    let grads = autodiff::grad(&mut g, loss, &params).unwrap();
    for (p, d) in params.into_iter().zip(grads) {
        let step = g.mul_scalar(d, 0.1).unwrap();
        let np = g.sub(p, step).unwrap();
        g.assign(p, np).unwrap();
    }
    g
}

/// Feeds for `g`: indices in `-1 ..= rows` (so one row past the table and a negative one
/// occur: they read zeros and their gradients are dropped), small values elsewhere.
fn feeds(g: &Graph, rows: usize) -> Feeds {
    let mut f = Feeds::new();
    for (i, (_, n)) in g.iter().enumerate() {
        let (name, k) = match &n.op {
            Op::Input { name } | Op::Param { name } => (name.clone(), n.shape.numel()),
            _ => continue,
        };
        let data = if name == "x" {
            (0..k)
                .map(|j| ((j * 5 + 3) % (rows + 2)) as f64 - 1.0)
                .collect()
        } else {
            (0..k)
                .map(|j| ((i * 7 + j * 13) % 17) as f64 / 8.0 - 1.0)
                .collect()
        };
        f.insert(name, Tensor::new(n.shape.clone(), data).unwrap());
    }
    f
}

/// Every output and update of `a` and `b` agree to f64 rounding.
fn assert_same_values(a: &Graph, b: &Graph, feeds: &Feeds, what: &str) {
    let ra = kiln_ir::eval::run(a, feeds).unwrap();
    let rb = kiln_ir::eval::run(b, feeds).unwrap();
    let pairs = ra
        .outputs
        .iter()
        .zip(&rb.outputs)
        .chain(ra.updates.iter().zip(&rb.updates));
    let mut checked = 0;
    for ((na, ta), (nb, tb)) in pairs {
        assert_eq!(na, nb, "{what}");
        assert_eq!(ta.shape, tb.shape, "{what}: {na}");
        for (x, y) in ta.data.iter().zip(&tb.data) {
            assert!(
                (x - y).abs() <= 1e-12 * (1.0 + x.abs()),
                "{what}: {na}: {x} vs {y}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 2, "{what}: nothing compared");
}

/// The `[m, k] · [k, n]` shapes of the graph's products.
fn products(g: &Graph) -> Vec<[usize; 3]> {
    g.iter()
        .filter(|(_, n)| n.op == Op::MatMul)
        .map(|(_, n)| {
            let a = g.shape(n.inputs[0]).dims();
            [a[0], a[1], n.shape.dims()[1]]
        })
        .collect()
}

/// The shapes of the graph's gathers' and scatter-adds' results.
fn of(g: &Graph, op: Op) -> Vec<Vec<usize>> {
    g.iter()
        .filter(|(_, n)| n.op == op)
        .map(|(_, n)| n.shape.dims().to_vec())
        .collect()
}

#[test]
fn onehot_projections_pick_rows_of_the_kernel() {
    // 12 positions, 20 classes, 5 columns
    let g = projection([3, 4], 20, 20, 5, true);
    let f = feeds(&g, 20);
    for (device, l) in devices() {
        let o = optimize(&g, &l);
        assert_same_values(&g, &o, &f, device);
        // the forward reads the kernel's rows: a gather of `w`, no one-hot product
        assert!(of(&o, Op::Gather).contains(&vec![12, 5]), "{device}:\n{o}");
        assert!(!products(&o).contains(&[12, 20, 5]), "{device}:\n{o}");
        // the gradient: scattered on the native backend; on GPUs (a serial scatter-add)
        // and rasterizers (scalarized) it stays the one-hot product
        let scatter = device == "native";
        assert_eq!(
            of(&o, Op::ScatterAdd) == [vec![20, 5]],
            scatter,
            "{device}:\n{o}"
        );
        assert_eq!(
            products(&o).contains(&[20, 12, 5]),
            !scatter,
            "{device}:\n{o}"
        );
    }
}

#[test]
fn embedding_projections_share_the_tables_scatter_add() {
    // 12 positions over a [3, 4] table, projected to 5 columns
    let g = projection([3, 4], 3, 4, 5, false);
    let f = feeds(&g, 3);
    for (device, l) in devices() {
        let o = optimize(&g, &l);
        assert_same_values(&g, &o, &f, device);
    }
    for device in ["native", "gpu"] {
        let l = &devices().into_iter().find(|d| d.0 == device).unwrap().1;
        let o = optimize(&g, l);
        // one scatter-add of the projection's adjoint, read by both gradients: the
        // table's ([3, 5] · wᵀ) and the kernel's (tableᵀ · [3, 5])
        assert_eq!(of(&o, Op::ScatterAdd), [vec![3, 5]], "{device}:\n{o}");
        let p = products(&o);
        assert!(
            p.contains(&[3, 5, 4]) && p.contains(&[4, 3, 5]),
            "{device}: {p:?}\n{o}"
        );
        assert!(!p.contains(&[4, 12, 5]), "{device}: {p:?}");
    }
}

#[test]
fn the_tutorials_shapes_are_priced_per_device() {
    // IMDB: 64 x 500 positions, Embedding(5000, 32), LSTM(100)'s input kernel [32, 400]
    let g = projection([64, 500], 5000, 32, 400, false);
    for (device, l) in devices() {
        let o = optimize(&g, &l);
        let p = products(&o);
        let scatters = of(&o, Op::ScatterAdd);
        match device {
            // a gathered element costs ~50 multiply-adds: the forward keeps its
            // [32000, 32] product; the kernel's gradient is tableᵀ · (the shared scatter)
            "native" => {
                assert!(p.contains(&[32000, 32, 400]), "{p:?}");
                assert!(p.contains(&[32, 5000, 400]) && !p.contains(&[32, 32000, 400]));
                assert_eq!(scatters, [vec![5000, 400]]);
            }
            // both rewritten: a [5000, 32] · [32, 400] product gathered
            "gpu" => {
                assert!(p.contains(&[5000, 32, 400]) && !p.contains(&[32000, 32, 400]));
                assert!(p.contains(&[32, 5000, 400]) && !p.contains(&[32, 32000, 400]));
                assert!(of(&o, Op::Gather).contains(&vec![32000, 400]));
                assert_eq!(scatters, [vec![5000, 400]]);
            }
            // scalarized gathers and scatters: nothing rewritten (nor scattered first)
            _ => {
                assert!(p.contains(&[32000, 32, 400]) && p.contains(&[32, 32000, 400]));
                assert_eq!(scatters, [vec![5000, 32]], "{device}");
            }
        }
    }
    // the char-LSTM: 128 x 40 positions, 57 classes one-hot, LSTM(128)'s kernel [57, 512]
    let g = projection([128, 40], 57, 57, 512, true);
    for (device, l) in devices() {
        let o = optimize(&g, &l);
        let p = products(&o);
        assert!(!p.contains(&[5120, 57, 512]), "{device}: {p:?}");
        assert!(of(&o, Op::Gather).contains(&vec![5120, 512]), "{device}");
        // the gradient: a scatter-add on the CPUs, the one-hot product on GPUs
        assert_eq!(
            p.contains(&[57, 5120, 512]),
            device == "gpu",
            "{device}: {p:?}"
        );
        assert_eq!(of(&o, Op::ScatterAdd) == [vec![57, 512]], device != "gpu");
    }
}
