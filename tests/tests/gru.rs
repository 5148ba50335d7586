//! The GRU and SimpleRNN layers against PyTorch: forward values and gradients of a fixed small
//! case (`crates/kiln-layers/tests/golden/gen_gru_golden.py`, torch.nn.GRU / torch.nn.RNN in
//! float64 with Keras's weight layouts; sample 1 is an all-padding, all-zero sequence) in the
//! f64 evaluator, on the CPU plan interpreter and on the GPU; finite differences on top; the
//! dispatch counts per timestep; typed build errors; and a small model that learns, trains the
//! same on GPU and CPU, round-trips its weights and reloads bit-identically.

#[allow(dead_code)]
#[path = "../../crates/kiln-layers/tests/golden/gru_golden.rs"]
mod gru_golden;
#[allow(dead_code)]
#[path = "../../crates/kiln-layers/tests/golden/simple_rnn_golden.rs"]
mod rnn_golden;

use kiln_ir::eval::{eval, Feeds, Tensor};
use kiln_ir::testing::Tolerance;
use kiln_ir::{autodiff, DType, Graph, NodeId};
use kiln_layers::{Gru, Layer, SimpleRnn};
use kiln_opt::{compile, Backend, CompileOptions, HostTensor};
use std::sync::Arc;

/// Makes a fresh layer.
type NewLayer = fn() -> Box<dyn Layer>;

/// One golden case: the layer, its sizes, inputs, weights and PyTorch's results.
struct Case {
    /// Build the unrolled graph instead of the fused recurrence.
    unroll: bool,
    name: &'static str,
    layer: fn(bool) -> Box<dyn Layer>,
    gates: usize,
    bias_shape: Vec<usize>,
    b: usize,
    t: usize,
    f: usize,
    u: usize,
    x: &'static [f64],
    kernel: &'static [f64],
    recurrent: &'static [f64],
    bias: &'static [f64],
    wout: &'static [f64],
    /// h, d_x, d_kernel, d_recurrent, d_bias
    want: [(&'static str, &'static [f64]); 5],
}

fn gru_case() -> Case {
    use gru_golden::*;
    Case {
        name: "gru",
        layer: |unroll| Box::new(Gru::new(U).return_sequences(true).unroll(unroll)),
        unroll: false,
        gates: 3,
        bias_shape: vec![2, 3 * U],
        b: B,
        t: T,
        f: F,
        u: U,
        x: X,
        kernel: KERNEL,
        recurrent: RECURRENT,
        bias: BIAS,
        wout: WOUT,
        want: [
            ("h", H_SEQ),
            ("d_x", D_X),
            ("d_kernel", D_KERNEL),
            ("d_recurrent", D_RECURRENT),
            ("d_bias", D_BIAS),
        ],
    }
}

fn rnn_case() -> Case {
    use rnn_golden::*;
    Case {
        name: "simple_rnn",
        layer: |unroll| Box::new(SimpleRnn::new(U).return_sequences(true).unroll(unroll)),
        unroll: false,
        gates: 1,
        bias_shape: vec![U],
        b: B,
        t: T,
        f: F,
        u: U,
        x: X,
        kernel: KERNEL,
        recurrent: RECURRENT,
        bias: BIAS,
        wout: WOUT,
        want: [
            ("h", H_SEQ),
            ("d_x", D_X),
            ("d_kernel", D_KERNEL),
            ("d_recurrent", D_RECURRENT),
            ("d_bias", D_BIAS),
        ],
    }
}

/// Each layer fused (the persistent recurrence, the default) and unrolled (`unroll(true)`).
fn cases() -> [Case; 4] {
    let unrolled = |c: Case| Case { unroll: true, ..c };
    [
        gru_case(),
        rnn_case(),
        unrolled(gru_case()),
        unrolled(rnn_case()),
    ]
}

impl Case {
    /// The case's name in messages: the layer, and `unrolled` when it is.
    fn label(&self) -> String {
        format!(
            "{}{}",
            self.name,
            if self.unroll { " unrolled" } else { "" }
        )
    }

    /// `loss = Σ layer(x) ⊙ wout`, with h and the gradients of x and the three weights as
    /// outputs.
    fn graph(&self) -> (Graph, NodeId, Vec<NodeId>) {
        let (b, t, f, u) = (self.b, self.t, self.f, self.u);
        let mut g = Graph::new();
        let x = g.input("x", [b, t, f], DType::F32).unwrap();
        let mut layer = (self.layer)(self.unroll);
        assert_eq!(layer.build(self.name, &[t, f]).unwrap(), vec![t, u]);
        let params: Vec<NodeId> = layer
            .params()
            .iter()
            .map(|p| {
                g.param(
                    &format!("{}/{}", self.name, p.name),
                    p.shape.clone(),
                    DType::F32,
                )
                .unwrap()
            })
            .collect();
        let h = layer.forward(&mut g, x, &params).unwrap();
        let w = g.input("wout", [b, t, u], DType::F32).unwrap();
        let hw = g.mul(h, w).unwrap();
        let loss = g.sum_all(hw).unwrap();
        let mut wrt = vec![x];
        wrt.extend(&params);
        let grads = autodiff::grad(&mut g, loss, &wrt).unwrap();
        g.output("h", h).unwrap();
        for ((name, _), d) in self.want[1..].iter().zip(&grads) {
            g.output(*name, *d).unwrap();
        }
        (g, loss, grads)
    }

    /// The feeds the gradients are taken for: x and the three weights.
    fn leaves(&self) -> [String; 4] {
        let w = |n: &str| format!("{}/{n}", self.name);
        ["x".into(), w("kernel"), w("recurrent_kernel"), w("bias")]
    }

    fn feeds(&self) -> Feeds {
        let (b, t, f, u, k) = (self.b, self.t, self.f, self.u, self.gates * self.u);
        let tensor = |s: &[usize], v: &[f64]| Tensor::new(s.to_vec(), v.to_vec()).unwrap();
        let [x, kernel, recurrent, bias] = self.leaves();
        [
            (x, tensor(&[b, t, f], self.x)),
            ("wout".into(), tensor(&[b, t, u], self.wout)),
            (kernel, tensor(&[f, k], self.kernel)),
            (recurrent, tensor(&[u, k], self.recurrent)),
            (bias, tensor(&self.bias_shape, self.bias)),
        ]
        .into_iter()
        .collect()
    }

    /// Compiles the graph, runs it once on `backend` and checks every output against
    /// PyTorch's values directly; returns the largest absolute error.
    fn check_plan(&self, backend: &mut dyn Backend) -> f64 {
        let (g, _, _) = self.graph();
        let feeds = self.feeds();
        let plan = Arc::new(compile(&g, &CompileOptions::default(), &backend.limits()).unwrap());
        let host = |t: &Tensor| {
            HostTensor::f32(t.shape.clone(), t.data.iter().map(|&v| v as f32).collect()).unwrap()
        };
        for slot in &plan.params {
            backend
                .write_param(&slot.name, &host(&feeds[&slot.name]))
                .unwrap();
        }
        let inputs: Vec<HostTensor> = plan.inputs.iter().map(|s| host(&feeds[&s.name])).collect();
        let refs: Vec<&HostTensor> = inputs.iter().collect();
        let mut exe = backend.load(plan.clone()).unwrap();
        let got = exe.run(&refs).unwrap();
        let tol = Tolerance::f32_sum(self.gates * self.u);
        let mut worst: f64 = 0.0;
        for ((name, out), t) in g.outputs().iter().map(|o| &o.0).zip(&self.want).zip(&got) {
            assert_eq!(name, out.0);
            let got = t.to_f64();
            tol.check(&format!("{} {name}", self.name), &got, out.1)
                .unwrap();
            for (a, b) in got.iter().zip(out.1) {
                worst = worst.max((a - b).abs());
            }
        }
        worst
    }
}

#[test]
fn f64_forward_and_gradients_match_pytorch() {
    for case in cases() {
        let (g, loss, _) = case.graph();
        let mut outs: Vec<NodeId> = g.outputs().iter().map(|o| o.1).collect();
        outs.push(loss);
        let got = eval(&g, &outs, &case.feeds()).unwrap();
        let tol = Tolerance {
            rel: 1e-9,
            abs: 1e-12,
        };
        for ((name, want), got) in case.want.iter().zip(&got) {
            tol.check(&format!("{} {name}", case.label()), &got.data, want)
                .unwrap();
        }
        let want_loss = match case.name {
            "gru" => gru_golden::LOSS,
            _ => rnn_golden::LOSS,
        };
        tol.check("loss", &got[5].data, &[want_loss]).unwrap();
    }
}

#[test]
fn gradients_match_finite_differences() {
    for case in cases() {
        let (g, loss, grads) = case.graph();
        let base = case.feeds();
        let eps = 1e-6;
        let mut worst: f64 = 0.0;
        for (leaf, d) in case.leaves().iter().zip(&grads) {
            let analytic = eval(&g, &[*d], &base).unwrap().remove(0).data;
            // every element of the small tensors, every 3rd of the larger ones
            for i in (0..analytic.len()).step_by(if analytic.len() > 30 { 3 } else { 1 }) {
                let mut p = base.clone();
                p.get_mut(leaf).unwrap().data[i] += eps;
                let mut m = base.clone();
                m.get_mut(leaf).unwrap().data[i] -= eps;
                let lp = eval(&g, &[loss], &p).unwrap()[0].data[0];
                let lm = eval(&g, &[loss], &m).unwrap()[0].data[0];
                let fd = (lp - lm) / (2.0 * eps);
                worst = worst.max((fd - analytic[i]).abs());
                Tolerance::FINITE_DIFF
                    .check(
                        &format!("{} {leaf}[{i}]", case.label()),
                        &[analytic[i]],
                        &[fd],
                    )
                    .unwrap();
            }
        }
        println!("{}: largest |fd - analytic| {worst:.2e}", case.label());
    }
}

#[test]
fn compiled_plan_matches_pytorch_on_the_cpu_interpreter() {
    for case in cases() {
        let mut cpu = kiln_opt::interp::CpuBackend::new();
        let worst = case.check_plan(&mut cpu);
        println!(
            "{} on the CPU interpreter: largest |error| {worst:.2e}",
            case.label()
        );
    }
}

#[test]
fn compiled_plan_matches_pytorch_on_the_native_backend() {
    for case in cases() {
        let mut native = kiln::cpu::NativeBackend::new();
        let worst = case.check_plan(&mut native);
        println!(
            "{} on the native backend: largest |error| {worst:.2e}",
            case.label()
        );
    }
}

#[test]
fn compiled_plan_matches_pytorch_on_the_gpu() {
    for case in cases() {
        let Some(mut gpu) = kiln::gpu::test_backend() else {
            return;
        };
        let worst = case.check_plan(&mut gpu);
        println!("{} on the GPU: largest |error| {worst:.2e}", case.label());
    }
}

/// A char-model training step (vocab 57, `OneHot → GRU(128) / SimpleRNN(128) → Dense`,
/// RMSprop): the dispatches each extra timestep adds, from plans of 20 and 40 steps. Fused,
/// none (5 to predict; to train 16 for the GRU, whose bias rows and column halves of its
/// backward add a few small kernels, and 11 for the SimpleRNN, as the LSTM). Unrolled, per step the forward is the recurrent
/// matmul (bias or projection in its epilogue) and one elementwise kernel; the budget is 2
/// forward and 4 backward.
#[test]
fn dispatches_per_timestep() {
    use kiln::{Dense, Loss, Metric, Mode, OneHot, RmsProp, Sequential};
    let count = |rnn: NewLayer, t: usize, mode: Mode| {
        let mut m = Sequential::new(Box::new(kiln_opt::interp::CpuBackend::new()));
        m.add(OneHot::new(57).input_length(t)).unwrap();
        m.add_boxed(rnn()).unwrap();
        m.add(Dense::new(57).activation(kiln::Activation::Softmax))
            .unwrap();
        m.compile(
            Loss::CategoricalCrossentropy,
            RmsProp::new(0.01),
            &[Metric::Accuracy],
        )
        .unwrap();
        let plan = m.plan_for(mode, 128).unwrap();
        if std::env::var("KILN_SHOW").is_ok() {
            println!("{}", plan.summary());
        }
        plan.stats.dispatches
    };
    // the fused recurrence: a constant number of dispatches, whatever the length
    let fused: [(&str, NewLayer); 2] = [
        ("GRU", || Box::new(Gru::new(128))),
        ("SimpleRNN", || Box::new(SimpleRnn::new(128))),
    ];
    for (name, rnn) in fused {
        let [p20, p40, t20, t40] = [
            (20, Mode::Predict),
            (40, Mode::Predict),
            (20, Mode::Train),
            (40, Mode::Train),
        ]
        .map(|(t, mode)| count(rnn, t, mode));
        println!(
            "fused {name}: T 20: predict {p20}, train {t20}; T 40: predict {p40}, train {t40}"
        );
        assert_eq!(
            (p20, t20),
            (p40, t40),
            "fused {name}: dispatches grow with T"
        );
        assert!(p40 <= 5, "fused {name} predict: {p40} dispatches");
        assert!(t40 <= 16, "fused {name} train: {t40} dispatches");
    }
    let layers: [(&str, NewLayer); 2] = [
        ("GRU", || Box::new(Gru::new(128).unroll(true))),
        ("SimpleRNN", || Box::new(SimpleRnn::new(128).unroll(true))),
    ];
    for (name, rnn) in layers {
        let [p20, p40, t20, t40] = [
            (20, Mode::Predict),
            (40, Mode::Predict),
            (20, Mode::Train),
            (40, Mode::Train),
        ]
        .map(|(t, mode)| count(rnn, t, mode));
        let (fwd, train) = ((p40 - p20) as f64 / 20.0, (t40 - t20) as f64 / 20.0);
        println!(
            "{name}: T 40: predict {p40}, train {t40} dispatches; per step: forward {fwd}, \
             backward {}",
            train - fwd
        );
        assert!(fwd <= 2.0, "{name}: {fwd} forward dispatches per step");
        assert!(
            train - fwd <= 4.0,
            "{name}: {} backward per step",
            train - fwd
        );
        assert!(p40 <= 2 * 40 + 4, "{name} predict: {p40} dispatches");
        assert!(t40 <= 6 * 40 + 20, "{name} train: {t40} dispatches");
    }
}

/// Typed build errors that name the layer and the problem.
#[test]
fn bad_configurations_are_typed_errors_naming_the_layer() {
    use kiln_layers::LayerError;
    let check = |mut layer: Box<dyn Layer>, input: &[usize], want: &str| match layer
        .build("rnn_7", input)
    {
        Err(LayerError::Shape { layer, message }) => {
            assert_eq!(layer, "rnn_7");
            assert!(message.contains(want), "{message}");
            assert!(message.contains("hint"), "{message}");
        }
        other => panic!("expected a shape error, got {other:?}"),
    };
    check(
        Box::new(Gru::new(4)),
        &[10],
        "GRU(4) expects a per-sample input [timesteps, features], got [10]",
    );
    check(Box::new(Gru::new(4)), &[2, 3, 4], "GRU(4) expects");
    check(Box::new(SimpleRnn::new(4)), &[10], "SimpleRNN(4) expects");
    check(
        Box::new(Gru::new(0)),
        &[5, 3],
        "GRU(0): units must be at least 1",
    );
    check(
        Box::new(SimpleRnn::new(0)),
        &[5, 3],
        "SimpleRNN(0): units must be at least 1",
    );
    check(
        Box::new(Gru::new(4).dropout(1.0)),
        &[5, 3],
        "GRU(4): dropout 1 must be in [0, 1)",
    );
    check(
        Box::new(SimpleRnn::new(4).recurrent_dropout(-0.1)),
        &[5, 3],
        "SimpleRNN(4): recurrent_dropout -0.1 must be in [0, 1)",
    );
    // in a model the error names the layer by its model name
    let mut m = kiln::Sequential::new(Box::new(kiln_opt::interp::CpuBackend::new()));
    m.add(kiln::Dense::new(4).input_dim(3)).unwrap();
    match m.add(Gru::new(8)) {
        Err(LayerError::Shape { layer, message }) => {
            assert_eq!(layer, "gru_1");
            assert!(message.contains("[4]"), "{message}");
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
}

/// `Embedding → GRU(return_sequences, recurrent_dropout) → SimpleRNN(dropout,
/// recurrent_dropout) → Dense`:
/// Keras's parameter counts; the loss falls and the task (does the sequence hold token 7)
/// is learnt; GPU and CPU losses agree; get/set_weights and save/load round-trip, the
/// reloaded model predicting bit-identically.
#[test]
fn stacked_gru_and_simple_rnn_learn_and_reload_exactly() {
    use kiln::{Dense, Embedding, Fit, Loss, Metric, Sequential};
    let build = |device: Box<dyn kiln::Backend>| {
        let mut m = Sequential::new(device).seed(5);
        m.add(Embedding::new(30, 8).input_length(12)).unwrap();
        m.add(Gru::new(16).return_sequences(true).recurrent_dropout(0.1))
            .unwrap();
        m.add(SimpleRnn::new(8).dropout(0.1).recurrent_dropout(0.1))
            .unwrap();
        m.add(Dense::new(1).activation(kiln::Activation::Sigmoid))
            .unwrap();
        m.compile(
            Loss::BinaryCrossentropy,
            kiln::Adam::new(0.01),
            &[Metric::Accuracy],
        )
        .unwrap();
        m
    };
    let gpu = kiln::gpu::test_backend();
    let mut c = build(Box::new(kiln_opt::interp::CpuBackend::new()));
    let s = c.summary();
    // Keras: GRU(16) on 8 features, reset_after: 3·(8·16 + 16·16 + 2·16) = 1248;
    // SimpleRNN(8) on 16: 16·8 + 8·8 + 8 = 200
    for want in [
        "gru_1 (GRU)",
        "(None, 12, 16)",
        "1248",
        "simple_rnn_1 (SimpleRNN)",
        "200",
        "Total params: 1697",
    ] {
        assert!(s.contains(want), "{want} not in\n{s}");
    }
    let n = 128;
    let xs: Vec<f32> = (0..n * 12)
        .map(|i| ((i * 7 + i / 12 + (i * i) % 5) % 30) as f32)
        .collect();
    let ys: Vec<f32> = (0..n)
        .map(|r| f32::from(xs[r * 12..(r + 1) * 12].contains(&7.0)))
        .collect();
    let pos = ys.iter().sum::<f32>() / n as f32;
    let x = HostTensor::f32([n, 12], xs).unwrap();
    let y = HostTensor::f32([n, 1], ys).unwrap();
    let fit = |epochs| Fit {
        epochs,
        batch_size: 32,
        shuffle: false,
        verbose: false,
        ..Fit::default()
    };
    let hc = c.fit(&x, &y, fit(12)).unwrap();
    let loss = &hc.history["loss"];
    let acc = c.evaluate(&x, &y, 32).unwrap()["accuracy"];
    println!(
        "CPU: loss {:.4} -> {:.4}, training accuracy {acc:.4} (positives {pos:.3})",
        loss[0],
        loss[loss.len() - 1],
    );
    assert!(loss[loss.len() - 1] < 0.5 * loss[0], "loss {loss:?}");
    assert!(acc >= 0.9, "accuracy {acc}");

    // get_weights / set_weights: Keras's shapes, and a copy predicts the same
    let w = c.get_weights().unwrap();
    let shapes: Vec<Vec<usize>> = w.iter().map(|t| t.shape.dims().to_vec()).collect();
    assert_eq!(
        shapes,
        vec![
            vec![30, 8],
            vec![8, 48],
            vec![16, 48],
            vec![2, 48],
            vec![16, 8],
            vec![8, 8],
            vec![8],
            vec![8, 1],
            vec![1]
        ]
    );
    let mut copy = build(Box::new(kiln_opt::interp::CpuBackend::new()));
    copy.set_weights(&w).unwrap();
    let want = c.predict(&x, 32).unwrap();
    assert_eq!(copy.predict(&x, 32).unwrap(), want);

    // save / load (structure JSON with "GRU" and "SimpleRNN")
    assert!(c.to_json().contains("\"GRU\"") && c.to_json().contains("\"SimpleRNN\""));
    let dir = std::env::temp_dir().join(format!("kiln-gru-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    c.save(&path).unwrap();
    let mut r = kiln::load_model(&path, Box::new(kiln_opt::interp::CpuBackend::new())).unwrap();
    assert_eq!(r.predict(&x, 32).unwrap(), want);
    let _ = std::fs::remove_dir_all(&dir);

    // the GPU trains the same (the dropout masks are the same bits on every device)
    if let Some(backend) = gpu {
        let mut g = build(Box::new(backend));
        let hg = g.fit(&x, &y, fit(3)).unwrap();
        for (a, b) in hg.history["loss"].iter().zip(&hc.history["loss"]) {
            assert!((a - b).abs() < 1e-3, "gpu loss {a} vs cpu loss {b}");
        }
    }
}
