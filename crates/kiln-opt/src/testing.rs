//! Backend conformance checks, written once and run per backend (the CPU interpreter here,
//! wgpu in `kiln-wgpu`'s tests): every op-table case, forward and backward, compiled to a
//! plan and compared with the f64 reference evaluator under a named tolerance.

use crate::{compile, Backend, CompileOptions, HostTensor, Result};
use kiln_ir::eval::{eval, Feeds};
use kiln_ir::testing::{all_cases, OpCase, Tolerance};
use kiln_ir::{autodiff, DType, Graph, NodeId, OpKind};
use std::sync::Arc;

/// Weights of the scalar test loss `sum(out * w)`.
pub fn loss_weights(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.3 + 0.17 * i as f64 * if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect()
}

/// The scalar test loss `sum(out * w)` with [`loss_weights`].
pub fn weighted_loss(g: &mut Graph, out: NodeId) -> Result<NodeId> {
    let s = g.shape(out).clone();
    let w = g.constant(loss_weights(s.numel()), s, DType::F32)?;
    let p = g.mul(out, w)?;
    Ok(g.sum_all(p)?)
}

/// The graph of one op-table case: output `out`, and for differentiable cases the gradient
/// of `sum(out * w)` with respect to every leaf as outputs `d_<leaf>`.
pub fn case_graph(case: &OpCase) -> Result<(Graph, Vec<NodeId>)> {
    let mut g = Graph::new();
    let (leaves, out) = case.build(&mut g)?;
    g.output("out", out)?;
    let mut wanted = vec![out];
    if case.differentiable && !leaves.is_empty() {
        let loss = weighted_loss(&mut g, out)?;
        let grads = autodiff::grad(&mut g, loss, &leaves)?;
        for ((name, _, _), d) in case.golden.inputs.iter().zip(grads) {
            g.output(format!("d_{name}"), d)?;
            wanted.push(d);
        }
    }
    Ok((g, wanted))
}

/// The tolerance for comparing a case on an f32 device with the f64 reference.
pub fn case_tolerance(case: &OpCase) -> Tolerance {
    match case.kind {
        OpKind::MatMul | OpKind::Reduce(_) => Tolerance::f32_sum(8),
        _ => Tolerance::F32,
    }
}

/// Runs every op-table case on `backend` and compares each output with the f64 evaluator.
/// Returns the number of compared tensors; the error names the case and element.
pub fn check_op_table(backend: &mut dyn Backend) -> std::result::Result<usize, String> {
    let mut compared = 0;
    for case in all_cases() {
        let name = case.golden.name;
        let (g, wanted) = case_graph(&case).map_err(|e| format!("{name}: build: {e}"))?;
        let feeds: Feeds = case.feeds();
        let reference = eval(&g, &wanted, &feeds).map_err(|e| format!("{name}: eval: {e}"))?;
        let plan = compile(&g, &CompileOptions::default(), &backend.limits())
            .map_err(|e| format!("{name}: compile: {e}"))?;
        let plan = Arc::new(plan);
        for slot in &plan.params {
            let t = &feeds[&slot.name];
            let v = HostTensor::f32(t.shape.clone(), t.data.iter().map(|&x| x as f32).collect())
                .map_err(|e| e.to_string())?;
            backend
                .write_param(&slot.name, &v)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        let mut exe = backend
            .load(plan.clone())
            .map_err(|e| format!("{name}: load: {e}"))?;
        let inputs: Vec<HostTensor> = plan
            .inputs
            .iter()
            .map(|s| {
                let t = &feeds[&s.name];
                HostTensor::f32(t.shape.clone(), t.data.iter().map(|&x| x as f32).collect())
            })
            .collect::<Result<_>>()
            .map_err(|e| e.to_string())?;
        let refs: Vec<&HostTensor> = inputs.iter().collect();
        let got = exe.run(&refs).map_err(|e| format!("{name}: run: {e}"))?;
        let tol = case_tolerance(&case);
        for ((slot, t), want) in plan.outputs.iter().zip(&got).zip(&reference) {
            tol.check(&format!("{name}/{}", slot.name), &t.to_f64(), &want.data)?;
            compared += 1;
        }
    }
    Ok(compared)
}

/// Compiles `g`, runs it once on `backend` with `feeds` (params are written first), and
/// compares every output and every assigned param with the f64 reference [`kiln_ir::eval::run`].
pub fn check_graph(
    backend: &mut dyn Backend,
    g: &Graph,
    feeds: &Feeds,
    tol: Tolerance,
) -> std::result::Result<(), String> {
    let reference = kiln_ir::eval::run(g, feeds).map_err(|e| format!("eval: {e}"))?;
    let plan = compile(g, &CompileOptions::default(), &backend.limits())
        .map_err(|e| format!("compile: {e}"))?;
    let plan = Arc::new(plan);
    let host = |t: &kiln_ir::eval::Tensor, dt: DType| match dt {
        DType::F32 => HostTensor::f32(t.shape.clone(), t.data.iter().map(|&x| x as f32).collect()),
        DType::I32 => HostTensor::i32(t.shape.clone(), t.data.iter().map(|&x| x as i32).collect()),
    };
    for slot in &plan.params {
        let t = feeds
            .get(&slot.name)
            .ok_or(format!("no feed for param {}", slot.name))?;
        backend
            .write_param(&slot.name, &host(t, slot.dtype).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let mut exe = backend
        .load(plan.clone())
        .map_err(|e| format!("load: {e}"))?;
    let inputs: Vec<HostTensor> = plan
        .inputs
        .iter()
        .map(|s| {
            let t = feeds
                .get(&s.name)
                .ok_or(format!("no feed for input {}", s.name))?;
            host(t, s.dtype).map_err(|e| e.to_string())
        })
        .collect::<std::result::Result<_, String>>()?;
    let refs: Vec<&HostTensor> = inputs.iter().collect();
    let got = exe.run(&refs).map_err(|e| format!("run: {e}"))?;
    for ((name, want), t) in reference.outputs.iter().zip(&got) {
        tol.check(&format!("output {name}"), &t.to_f64(), &want.data)?;
    }
    for (name, want) in &reference.updates {
        let t = backend.read_param(name).map_err(|e| e.to_string())?;
        tol.check(&format!("updated param {name}"), &t.to_f64(), &want.data)?;
    }
    Ok(())
}

/// The `i`-th leaf of a vector case (its leaves are the graph's first nodes).
fn leaf(g: &Graph, i: usize) -> NodeId {
    g.id_at(i).expect("vector cases create their leaves first")
}

/// A seeded random graph of at most `max_nodes` computed nodes over small random shapes —
/// elementwise chains with broadcasting, reductions, matmuls, movement ops, several
/// outputs and param assignments — plus feeds for its inputs and params. Values stay in
/// ranges where every op is well conditioned, so plans can be compared with the f64
/// evaluator under the f32 tolerance.
pub fn random_graph(seed: u64, max_nodes: usize) -> (Graph, Feeds) {
    use kiln_ir::random::Rng;
    use kiln_ir::{BinaryOp, Shape, UnaryOp};
    let mut rng = Rng::new(seed);
    let mut g = Graph::new();
    let mut feeds = Feeds::new();
    let dims = [1usize, 2, 3, 4, 5];
    let pick = |rng: &mut Rng, n: usize| rng.below(n);
    let mut pool: Vec<NodeId> = vec![];
    let mut params: Vec<NodeId> = vec![];
    let n_leaves = 2 + pick(&mut rng, 3);
    for i in 0..n_leaves {
        let rank = 1 + pick(&mut rng, 3);
        let shape: Vec<usize> = (0..rank).map(|_| dims[1 + pick(&mut rng, 4)]).collect();
        let name = format!("s{seed}_leaf{i}");
        let id = if i % 2 == 1 {
            let p = g
                .param(&name, shape.clone(), DType::F32)
                .expect("fresh name");
            params.push(p);
            p
        } else {
            g.input(&name, shape.clone(), DType::F32)
                .expect("fresh name")
        };
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| rng.uniform(-1.5, 1.5)).collect();
        feeds.insert(
            name,
            kiln_ir::eval::Tensor {
                shape: Shape::new(shape),
                data,
            },
        );
        pool.push(id);
    }
    let unary = [
        UnaryOp::Neg,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Abs,
    ];
    let binary = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Max,
        BinaryOp::Min,
    ];
    let mut made = 0;
    let mut tries = 0;
    while made < max_nodes && tries < max_nodes * 20 {
        tries += 1;
        let a = pool[pick(&mut rng, pool.len())];
        let sa = g.shape(a).clone();
        let choice = if sa.rank() == 0 {
            pick(&mut rng, 5)
        } else {
            pick(&mut rng, 10)
        };
        let r = match choice {
            0 | 1 => g.unary(unary[pick(&mut rng, unary.len())], a),
            2..=4 => {
                // a partner of the same shape, a suffix shape (broadcast) or a scalar
                let cands: Vec<NodeId> = pool
                    .iter()
                    .copied()
                    .filter(|&b| {
                        let sb = g.shape(b);
                        sb.rank() <= sa.rank() && sa.0[sa.rank() - sb.rank()..] == sb.0[..]
                    })
                    .collect();
                let b = if cands.is_empty() || pick(&mut rng, 4) == 0 {
                    g.scalar(rng.uniform(-1.0, 1.0))
                } else {
                    cands[pick(&mut rng, cands.len())]
                };
                let op = binary[pick(&mut rng, binary.len())];
                if pick(&mut rng, 2) == 0 {
                    g.binary(op, a, b)
                } else {
                    g.binary(op, b, a)
                }
            }
            5 => {
                // division by a strictly positive denominator
                let d = g.abs(a).and_then(|d| g.add_scalar(d, 1.0));
                d.and_then(|d| {
                    let n = pool[pick(&mut rng, pool.len())];
                    if g.shape(n) == &sa {
                        g.div(n, d)
                    } else {
                        g.recip(d)
                    }
                })
            }
            6 => {
                let axis = pick(&mut rng, sa.rank());
                let keep = pick(&mut rng, 2) == 0;
                match pick(&mut rng, 3) {
                    0 => g.sum(a, &[axis], keep),
                    1 => g.mean(a, &[axis], keep),
                    _ => g.max(a, &[axis], keep),
                }
            }
            7 => {
                if sa.rank() >= 2 {
                    let k = sa.0[sa.rank() - 1];
                    let cands: Vec<NodeId> = pool
                        .iter()
                        .copied()
                        .filter(|&b| {
                            let sb = g.shape(b);
                            sb.rank() >= 2 && sb.0[sb.rank() - 2] == k && sb.rank() <= sa.rank()
                        })
                        .collect();
                    if cands.is_empty() {
                        g.transpose(a)
                    } else {
                        g.matmul(a, cands[pick(&mut rng, cands.len())])
                    }
                } else {
                    let n = sa.0[0];
                    g.reshape(a, [n, 1])
                }
            }
            8 => {
                if sa.rank() >= 2 {
                    let mut perm: Vec<usize> = (0..sa.rank()).collect();
                    rng.shuffle(&mut perm);
                    g.permute(a, &perm)
                } else {
                    g.reshape(a, [1, sa.0[0]])
                }
            }
            _ => {
                let mut d = vec![1 + pick(&mut rng, 3)];
                d.extend(&sa.0);
                g.broadcast_to(a, &Shape::new(d))
            }
        };
        if let Ok(id) = r {
            if !pool.contains(&id) {
                pool.push(id);
                made += 1;
            }
        }
    }
    // outputs: the last few nodes; assignments: params take a same-shape computed value
    let computed: Vec<NodeId> = pool[n_leaves..].to_vec();
    for (i, &id) in computed.iter().rev().take(3).enumerate() {
        let _ = g.output(format!("out{i}"), id);
    }
    for &p in &params {
        let same: Vec<NodeId> = computed
            .iter()
            .copied()
            .filter(|&c| g.shape(c) == g.shape(p))
            .collect();
        if let Some(&v) = same.last() {
            let _ = g.assign(p, v);
        }
    }
    if g.outputs().is_empty() {
        let _ = g.output("out_leaf", pool[0]);
    }
    (g, feeds)
}

/// Graphs of the numerically sensitive compositions — softmax, log-softmax, logsumexp and a
/// softmax cross-entropy with its gradient — over rows with large and tied logits, with their
/// feeds. Their plans exercise multi-stage reductions (one kernel per softmax).
pub fn composite_graphs() -> Vec<(String, Graph, Feeds)> {
    use kiln_ir::eval::Tensor;
    let x_data: Vec<f64> = vec![
        0.5, -1.2, 2.0, 0.3, //
        1000.0, 999.0, -1000.0, 0.0, //
        0.7, 0.7, 0.7, 0.7,
    ];
    let y_data: Vec<f64> = vec![0., 0., 1., 0., 1., 0., 0., 0., 0., 0., 0., 1.];
    let mut out = vec![];
    for which in ["softmax", "log_softmax", "logsumexp", "cross_entropy"] {
        let mut g = Graph::new();
        let x = g.input("x", [3, 4], DType::F32).expect("fresh");
        let w = g.param("w", [3, 4], DType::F32).expect("fresh");
        let xw = g.mul(x, w).expect("same shapes");
        let r = match which {
            "softmax" => g.softmax(xw, 1),
            "log_softmax" => g.log_softmax(xw, 1),
            "logsumexp" => g.logsumexp(xw, 1),
            _ => {
                let y = g.input("y", [3, 4], DType::F32).expect("fresh");
                let ls = g.log_softmax(xw, 1).expect("valid");
                let t = g.mul(y, ls).expect("same shapes");
                let s = g.sum_all(t).expect("valid");
                g.mul_scalar(s, -1.0 / 3.0)
            }
        }
        .expect("valid graph");
        g.output("out", r).expect("fresh name");
        let loss = if g.shape(r).numel() == 1 {
            r
        } else {
            weighted_loss(&mut g, r).expect("valid")
        };
        sgd_step(&mut g, loss, w);
        let mut feeds = Feeds::new();
        feeds.insert(
            "x".into(),
            Tensor {
                shape: [3, 4].into(),
                data: x_data.clone(),
            },
        );
        feeds.insert(
            "w".into(),
            Tensor {
                shape: [3, 4].into(),
                data: vec![1.0; 12],
            },
        );
        feeds.insert(
            "y".into(),
            Tensor {
                shape: [3, 4].into(),
                data: y_data.clone(),
            },
        );
        out.push((which.to_string(), g, feeds));
    }
    out.push(embedding_graph());
    out.push(embedding_projection_graph());
    out.push(onehot_projection_graph());
    out.push(dense_graph());
    out
}

/// The composite graphs' training step: output `d_w`, the gradient of `loss`, and assign
/// `w - 0.1 d_w` to `w`.
fn sgd_step(g: &mut Graph, loss: NodeId, w: NodeId) {
    let d = autodiff::grad(g, loss, &[w]).expect("differentiable")[0];
    g.output("d_w", d).expect("fresh name");
    let step = g.mul_scalar(d, 0.1).expect("valid");
    let nw = g.sub(w, step).expect("same shapes");
    g.assign(w, nw).expect("param");
}

/// An `Embedding` as the layers build it: indices fed as floats, cast to i32, the table's
/// rows gathered; its gradient is a scatter-add that reads the float indices itself (no
/// kernel for the cast), with repeated rows adding up and one row (1) never picked. The
/// table is the `w [3, 4]` of the other composite graphs.
fn embedding_graph() -> (String, Graph, Feeds) {
    use kiln_ir::eval::Tensor;
    let mut g = Graph::new();
    let x = g.input("x", [3, 4], DType::F32).expect("fresh");
    let w = g.param("w", [3, 4], DType::F32).expect("fresh");
    let i = g.cast(x, DType::I32).expect("valid");
    let e = g.gather(w, i).expect("valid");
    g.output("out", e).expect("fresh name");
    let loss = weighted_loss(&mut g, e).expect("valid");
    sgd_step(&mut g, loss, w);
    let mut feeds = Feeds::new();
    let rows = vec![0., 2., 2., 0., 0., 2., 0., 0., 2., 2., 0., 0.];
    feeds.insert("x".into(), Tensor::new(vec![3, 4], rows).expect("sized"));
    feeds.insert(
        "w".into(),
        Tensor::new(vec![3, 4], vec![1.0; 12]).expect("sized"),
    );
    ("embedding".into(), g, feeds)
}

/// An `Embedding` whose rows are projected (`gather(w, idx) · v`, as an LSTM's input
/// kernel reads them): the table's gradient is rewritten to scatter first and multiply after
/// ([`crate::scatter_matmul::ScatterBeforeMatMul`]: a scatter-add of the `[12, 5]` product
/// adjoint into 3 rows, then `[3, 5] · vᵀ`), the update riding in the product's epilogue.
fn embedding_projection_graph() -> (String, Graph, Feeds) {
    use kiln_ir::eval::Tensor;
    let mut g = Graph::new();
    let x = g.input("x", [3, 4], DType::F32).expect("fresh");
    let v = g.input("v", [4, 5], DType::F32).expect("fresh");
    let w = g.param("w", [3, 4], DType::F32).expect("fresh");
    let i = g.cast(x, DType::I32).expect("valid");
    let e = g.gather(w, i).expect("valid");
    let e2 = g.reshape(e, [12, 4]).expect("valid");
    let p = g.matmul(e2, v).expect("valid");
    let t = g.tanh(p).expect("valid");
    g.output("out", t).expect("fresh name");
    let loss = weighted_loss(&mut g, t).expect("valid");
    sgd_step(&mut g, loss, w);
    let mut feeds = Feeds::new();
    let rows = vec![0., 2., 2., 0., 0., 2., 0., 0., 2., 2., 0., 1.];
    feeds.insert("x".into(), Tensor::new(vec![3, 4], rows).expect("sized"));
    let vd = (0..20)
        .map(|k| ((k * 7 % 11) as f64 - 5.0) / 10.0)
        .collect();
    feeds.insert("v".into(), Tensor::new(vec![4, 5], vd).expect("sized"));
    let wd = (0..12).map(|k| ((k * 5 % 7) as f64 - 3.0) / 4.0).collect();
    feeds.insert("w".into(), Tensor::new(vec![3, 4], wd).expect("sized"));
    ("embedding_projection".into(), g, feeds)
}

/// A one-hot input projected and trained (`gather(eye, idx) · u`, as the char-LSTM's
/// `OneHot` feeds its LSTM; `u`, not `w`: the backends running these graphs one after the
/// other keep their params): [`crate::gather_matmul::GatheredRowsMatMul`] makes the forward
/// `gather(u, idx)` everywhere, and on the native CPU backend the gradient
/// `scatter_add(idx, dz)` (20 classes, 12 positions, repeated indices, 13 classes unused).
fn onehot_projection_graph() -> (String, Graph, Feeds) {
    use kiln_ir::eval::Tensor;
    const V: usize = 20;
    let mut g = Graph::new();
    let x = g.input("x", [3, 4], DType::F32).expect("fresh");
    let w = g.param("u", [V, 5], DType::F32).expect("fresh");
    let eye: Vec<f64> = (0..V * V)
        .map(|i| if i / V == i % V { 1.0 } else { 0.0 })
        .collect();
    let table = g.constant(eye, [V, V], DType::F32).expect("sized");
    let i = g.cast(x, DType::I32).expect("valid");
    let e = g.gather(table, i).expect("valid");
    let e2 = g.reshape(e, [12, V]).expect("valid");
    let p = g.matmul(e2, w).expect("valid");
    let t = g.tanh(p).expect("valid");
    g.output("out", t).expect("fresh name");
    let loss = weighted_loss(&mut g, t).expect("valid");
    sgd_step(&mut g, loss, w);
    let mut feeds = Feeds::new();
    let rows = vec![0., 7., 19., 7., 3., 15., 7., 0., 19., 12., 3., 7.];
    feeds.insert("x".into(), Tensor::new(vec![3, 4], rows).expect("sized"));
    let wd = (0..V * 5)
        .map(|k| ((k * 7 % 13) as f64 - 6.0) / 8.0)
        .collect();
    feeds.insert("u".into(), Tensor::new(vec![V, 5], wd).expect("sized"));
    ("onehot_projection".into(), g, feeds)
}

/// A dense layer `tanh(x · w + b)` trained one SGD step: the bias gradient (the column sums
/// of the activation's adjoint) rides in the kernel of the weight gradient `xᵀ · dz`
/// ([`crate::kernel::ColumnSums`]), its update with it.
fn dense_graph() -> (String, Graph, Feeds) {
    use kiln_ir::eval::Tensor;
    let mut g = Graph::new();
    let x = g.input("x", [5, 3], DType::F32).expect("fresh");
    let w = g.param("w", [3, 4], DType::F32).expect("fresh");
    let b = g.param("b", [4], DType::F32).expect("fresh");
    let xw = g.matmul(x, w).expect("valid");
    let be = g.broadcast_to(b, &[5, 4].into()).expect("valid");
    let z = g.add(xw, be).expect("same shapes");
    let t = g.tanh(z).expect("valid");
    g.output("out", t).expect("fresh name");
    let loss = weighted_loss(&mut g, t).expect("valid");
    let d = autodiff::grad(&mut g, loss, &[w, b]).expect("differentiable");
    for (name, p, dp) in [("d_w", w, d[0]), ("d_b", b, d[1])] {
        g.output(name, dp).expect("fresh name");
        let step = g.mul_scalar(dp, 0.1).expect("valid");
        let np = g.sub(p, step).expect("same shapes");
        g.assign(p, np).expect("param");
    }
    let mut feeds = Feeds::new();
    let xd = (0..15).map(|k| ((k * 3 % 5) as f64 - 2.0) / 3.0).collect();
    feeds.insert("x".into(), Tensor::new(vec![5, 3], xd).expect("sized"));
    let wd = (0..12).map(|k| ((k * 7 % 9) as f64 - 4.0) / 6.0).collect();
    feeds.insert("w".into(), Tensor::new(vec![3, 4], wd).expect("sized"));
    let bd = vec![0.1, -0.2, 0.3, -0.4];
    feeds.insert("b".into(), Tensor::new(vec![4], bd).expect("sized"));
    ("dense".into(), g, feeds)
}

/// Graphs exercising the vectorized elementwise path (see
/// [`crate::kernel::elementwise_vector`]): `(name, graph, feeds, expected width of every
/// elementwise kernel of its plan)`. Aligned contiguous loads, row broadcasts, column and
/// scalar splats, i32 arithmetic with comparisons and `where`, unary/binary math on vectors,
/// an in-place param update; transposed reads and sizes not divisible by 4 fall back to 1.
pub fn vector_graphs() -> Vec<(String, Graph, Feeds, u32)> {
    use kiln_ir::eval::Tensor;
    use kiln_ir::{BinaryOp, Shape};
    fn data(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let data = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 11) as f64 / (1u64 << 53) as f64;
                match dtype {
                    DType::F32 => 4.0 * u - 2.0,
                    DType::I32 => (u * 13.0).floor() - 6.0,
                }
            })
            .collect();
        Tensor {
            shape: Shape::new(shape.to_vec()),
            data,
        }
    }
    type Build = fn(&mut Graph) -> kiln_ir::Result<()>;
    type Leaves = Vec<(&'static str, Vec<usize>, DType)>;
    let cases: Vec<(&str, Leaves, Build, u32)> = vec![
        (
            "fma",
            vec![
                ("a", vec![64], DType::F32),
                ("b", vec![64], DType::F32),
                ("c", vec![64], DType::F32),
            ],
            |g| {
                let [a, b, c] = [0usize, 1, 2].map(|i| leaf(g, i));
                let ab = g.mul(a, b)?;
                let r = g.add(ab, c)?;
                g.output("out", r)
            },
            4,
        ),
        (
            "row_broadcast_and_column_splat",
            vec![
                ("x", vec![6, 8], DType::F32),
                ("row", vec![8], DType::F32),
                ("col", vec![6, 1], DType::F32),
            ],
            |g| {
                let [x, row, col] = [0usize, 1, 2].map(|i| leaf(g, i));
                let t = g.add(x, row)?;
                let u = g.mul(t, col)?;
                let k = g.scalar(0.5);
                let v = g.sub(u, k)?;
                g.output("out", v)
            },
            4,
        ),
        (
            "trailing_unit_axis",
            vec![
                ("x", vec![12, 1], DType::F32),
                ("y", vec![12, 1], DType::F32),
            ],
            |g| {
                let [x, y] = [0usize, 1].map(|i| leaf(g, i));
                let r = g.maximum(x, y)?;
                g.output("out", r)
            },
            4,
        ),
        (
            "i32_compare_select_cast",
            vec![
                ("a", vec![4, 4], DType::I32),
                ("b", vec![4, 4], DType::I32),
                ("f", vec![4, 4], DType::F32),
            ],
            |g| {
                let [a, b, f] = [0usize, 1, 2].map(|i| leaf(g, i));
                let lt = g.binary(BinaryOp::Lt, a, b)?;
                let ab = g.mul(a, b)?;
                let d = g.sub(a, b)?;
                let w = g.where_(lt, ab, d)?;
                let fi = g.cast(f, DType::I32)?;
                let s = g.add(w, fi)?;
                let m = g.abs(s)?;
                let e = g.binary(BinaryOp::Eq, m, a)?;
                let r = g.add(m, e)?;
                let rf = g.cast(r, DType::F32)?;
                let half = g.scalar(0.5);
                let h = g.mul(rf, half)?;
                g.output("i", r)?;
                g.output("f", h)
            },
            4,
        ),
        (
            "unary_and_binary_math",
            vec![
                ("x", vec![2, 3, 8], DType::F32),
                ("y", vec![2, 3, 8], DType::F32),
            ],
            |g| {
                let [x, y] = [0usize, 1].map(|i| leaf(g, i));
                let t = g.tanh(x)?;
                let s = g.sigmoid(y)?;
                let e = g.exp(t)?;
                let a = g.abs(y)?;
                let one = g.scalar(1.0);
                let a1 = g.add(a, one)?;
                let l = g.log(a1)?;
                let q = g.sqrt(a1)?;
                let r = g.recip(a1)?;
                let p = g.pow(a1, s)?;
                let sg = g.sign(x)?;
                let rl = g.relu(x)?;
                let ge = g.binary(BinaryOp::Ge, x, y)?;
                let sum = [l, q, r, p, sg, rl, ge, s]
                    .into_iter()
                    .try_fold(e, |acc, v| g.add(acc, v))?;
                let mn = g.minimum(sum, x)?;
                let ng = g.neg(mn)?;
                let dv = g.div(ng, a1)?;
                g.output("out", dv)
            },
            4,
        ),
        (
            "in_place_param_update",
            vec![("p", vec![3, 4], DType::F32), ("x", vec![3, 4], DType::F32)],
            |g| {
                let [p, x] = [0usize, 1].map(|i| leaf(g, i));
                let h = g.mul_scalar(p, 0.5)?;
                let n = g.add(h, x)?;
                g.assign(p, n)
            },
            4,
        ),
        (
            "transposed_read_falls_back",
            vec![("x", vec![4, 8], DType::F32), ("y", vec![8, 4], DType::F32)],
            |g| {
                let [x, y] = [0usize, 1].map(|i| leaf(g, i));
                let yt = g.transpose(y)?;
                let r = g.add(x, yt)?;
                g.output("out", r)
            },
            1,
        ),
        (
            "odd_sizes_fall_back",
            vec![("x", vec![8, 3], DType::F32), ("y", vec![7], DType::F32)],
            |g| {
                let [x, y] = [0usize, 1].map(|i| leaf(g, i));
                let e = g.exp(x)?;
                g.output("a", e)?;
                let s = g.mul(y, y)?;
                g.output("b", s)
            },
            1,
        ),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(ci, (name, leaves, build, width))| {
            let mut g = Graph::new();
            let mut feeds = Feeds::new();
            for (li, (leaf, shape, dt)) in leaves.iter().enumerate() {
                if name.starts_with("in_place") && *leaf == "p" {
                    g.param(leaf, shape.clone(), *dt).expect("fresh");
                } else {
                    g.input(leaf, shape.clone(), *dt).expect("fresh");
                }
                feeds.insert(
                    leaf.to_string(),
                    data(shape, (ci * 16 + li) as u64 + 1, *dt),
                );
            }
            build(&mut g).expect("valid graph");
            (name.to_string(), g, feeds, width)
        })
        .collect()
}

/// Graphs whose inputs hold NaN, with the flat indices of every output that must be NaN:
/// `relu`, `tanh`, `maximum`, `minimum` (plain, fused, 4-wide and as a matmul epilogue) and
/// max-reductions (short, and long enough for a workgroup tree) propagate NaN, as IEEE 754
/// and Keras do. One table, run on every backend by [`check_nan_table`].
pub fn nan_graphs() -> Vec<(String, Graph, Feeds, Vec<usize>)> {
    use kiln_ir::eval::Tensor;
    let nan = f64::NAN;
    // 4 x 16: NaN at (0, 1) and (2, 15); the rest finite, both signs, some large
    let x_data: Vec<f64> = (0..64)
        .map(|i| match i {
            1 | 47 => nan,
            _ => ((i * 37 % 23) as f64 - 11.0) * if i % 5 == 0 { 10.0 } else { 0.5 },
        })
        .collect();
    let y_data: Vec<f64> = (0..64)
        .map(|i| if i == 5 { nan } else { (i % 7) as f64 - 3.0 })
        .collect();
    let elementwise_nans = vec![1, 47];
    let mut out = vec![];
    type Build = fn(&mut Graph, NodeId, NodeId) -> kiln_ir::Result<NodeId>;
    let cases: [(&str, Build, Vec<usize>); 8] = [
        ("relu", |g, x, _| g.relu(x), elementwise_nans.clone()),
        ("tanh", |g, x, _| g.tanh(x), elementwise_nans.clone()),
        (
            "relu_fused",
            |g, x, _| {
                let t = g.mul_scalar(x, 2.0)?;
                g.relu(t)
            },
            elementwise_nans.clone(),
        ),
        ("maximum", |g, x, y| g.maximum(x, y), vec![1, 5, 47]),
        ("minimum", |g, x, y| g.minimum(x, y), vec![1, 5, 47]),
        ("max_rows", |g, x, _| g.max(x, &[1], false), vec![0, 2]),
        ("max_cols", |g, x, _| g.max(x, &[0], false), vec![1, 15]),
        (
            "matmul_relu",
            |g, x, y| {
                let yt = g.permute(y, &[1, 0])?;
                let p = g.matmul(x, yt)?;
                g.relu(p)
            },
            // rows 0 and 2 of x hold NaN; column 0 of the product reads y row 0 (y[5] is NaN)
            (0..16)
                .filter(|&i| i / 4 == 0 || i / 4 == 2 || i % 4 == 0)
                .collect(),
        ),
    ];
    for (name, build, nans) in cases {
        let mut g = Graph::new();
        let x = g.input("x", [4, 16], DType::F32).expect("fresh");
        let y = g.input("y", [4, 16], DType::F32).expect("fresh");
        let r = build(&mut g, x, y).expect("valid graph");
        g.output("out", r).expect("fresh name");
        let mut feeds = Feeds::new();
        feeds.insert(
            "x".into(),
            Tensor::new([4, 16], x_data.clone()).expect("fits"),
        );
        feeds.insert(
            "y".into(),
            Tensor::new([4, 16], y_data.clone()).expect("fits"),
        );
        out.push((name.to_string(), g, feeds, nans));
    }
    // a long max-reduction (a workgroup tree on the GPU) with one NaN in the middle
    let n = 4096;
    let mut g = Graph::new();
    let x = g.input("x", [2, n], DType::F32).expect("fresh");
    let r = g.max(x, &[1], false).expect("valid");
    g.output("out", r).expect("fresh name");
    let data: Vec<f64> = (0..2 * n)
        .map(|i| if i == n / 2 { nan } else { (i % 101) as f64 })
        .collect();
    let mut feeds = Feeds::new();
    feeds.insert("x".into(), Tensor::new([2, n], data).expect("fits"));
    out.push(("max_long".into(), g, feeds, vec![0]));
    out
}

/// Runs every [`nan_graphs`] case on `backend`: the f64 reference must be NaN exactly at the
/// listed outputs, and the backend must match the reference (NaN where it is NaN). Returns
/// the number of cases.
pub fn check_nan_table(backend: &mut dyn Backend) -> std::result::Result<usize, String> {
    let tol = Tolerance {
        rel: 1e-4,
        abs: 1e-4,
    };
    let cases = nan_graphs();
    for (name, g, feeds, nans) in &cases {
        let reference = kiln_ir::eval::run(g, feeds).map_err(|e| format!("{name}: eval: {e}"))?;
        let want = &reference.outputs[0].1.data;
        let got_nans: Vec<usize> = (0..want.len()).filter(|&i| want[i].is_nan()).collect();
        if &got_nans != nans {
            return Err(format!(
                "{name}: the reference is NaN at {got_nans:?}, expected {nans:?}"
            ));
        }
        check_graph(backend, g, feeds, tol).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(cases.len())
}
