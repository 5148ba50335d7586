//! The LSTM layer against PyTorch: forward values and gradients of a fixed small case
//! (`crates/kiln-layers/tests/golden/gen_lstm_golden.py`, torch.nn.LSTM in float64; sample 1
//! is an all-padding, all-zero sequence) in the f64 evaluator, on the CPU plan interpreter
//! and on the GPU; finite differences on top; and the dispatch counts of the compiled
//! training step.

#[allow(dead_code)]
#[path = "../../crates/kiln-layers/tests/golden/lstm_golden.rs"]
mod golden;

use golden::*;
use kiln_ir::eval::{eval, Feeds, Tensor};
use kiln_ir::testing::Tolerance;
use kiln_ir::{autodiff, DType, Graph, NodeId};
use kiln_layers::{Layer, Lstm};

/// `loss = Σ lstm(x) ⊙ wout`, the gradients of x and the three weights as outputs; the layer
/// fused (the persistent recurrence, the default) or unrolled.
fn graph(unroll: bool) -> (Graph, NodeId, Vec<NodeId>) {
    let mut g = Graph::new();
    let x = g.input("x", [B, T, F], DType::F32).unwrap();
    let mut lstm = Lstm::new(U).return_sequences(true).unroll(unroll);
    assert_eq!(lstm.build("lstm", &[T, F]).unwrap(), vec![T, U]);
    let params: Vec<NodeId> = lstm
        .params()
        .iter()
        .map(|p| {
            g.param(&format!("lstm/{}", p.name), p.shape.clone(), DType::F32)
                .unwrap()
        })
        .collect();
    let h = lstm.forward(&mut g, x, &params).unwrap();
    let w = g.input("wout", [B, T, U], DType::F32).unwrap();
    let hw = g.mul(h, w).unwrap();
    let loss = g.sum_all(hw).unwrap();
    let mut wrt = vec![x];
    wrt.extend(&params);
    let grads = autodiff::grad(&mut g, loss, &wrt).unwrap();
    g.output("h", h).unwrap();
    for (name, d) in ["d_x", "d_kernel", "d_recurrent", "d_bias"]
        .iter()
        .zip(&grads)
    {
        g.output(*name, *d).unwrap();
    }
    (g, loss, grads)
}

fn feeds() -> Feeds {
    let t = |s: &[usize], v: &[f64]| Tensor::new(s.to_vec(), v.to_vec()).unwrap();
    [
        ("x", t(&[B, T, F], X)),
        ("wout", t(&[B, T, U], WOUT)),
        ("lstm/kernel", t(&[F, 4 * U], KERNEL)),
        ("lstm/recurrent_kernel", t(&[U, 4 * U], RECURRENT)),
        ("lstm/bias", t(&[4 * U], BIAS)),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect()
}

const WANT: [(&str, &[f64]); 5] = [
    ("h", H_SEQ),
    ("d_x", D_X),
    ("d_kernel", D_KERNEL),
    ("d_recurrent", D_RECURRENT),
    ("d_bias", D_BIAS),
];

const PATHS: [(bool, &str); 2] = [(false, "fused"), (true, "unrolled")];

#[test]
fn f64_forward_and_gradients_match_pytorch() {
    for (unroll, path) in PATHS {
        let (g, _, _) = graph(unroll);
        let outs: Vec<NodeId> = g.outputs().iter().map(|o| o.1).collect();
        let got = eval(&g, &outs, &feeds()).unwrap();
        let tol = Tolerance {
            rel: 1e-9,
            abs: 1e-12,
        };
        for ((name, want), got) in WANT.iter().zip(&got) {
            tol.check(&format!("{path} {name}"), &got.data, want)
                .unwrap();
        }
    }
}

/// The recurrent kernel's gradient `Σₜ hₜ₋₁ᵀ·dzₜ` is built as ONE product over all steps
/// (`[U, B·T]·[B·T, 4U]`; unrolled, reading the step adjoints where the input projection's
/// adjoint already holds them; fused, reading `h_in` from the recurrence's trace and `dz`
/// from its backward, both strided views), not T − 1 products and adds; the golden values
/// above check its numbers.
#[test]
fn recurrent_kernel_gradient_is_one_product_over_all_steps() {
    for (unroll, rows) in [(false, B * T), (true, B * T)] {
        let (g, _, grads) = graph(unroll);
        let d = g.node(grads[2]);
        assert_eq!(d.op, kiln_ir::Op::MatMul, "d_recurrent is {:?}", d.op);
        let k = g.shape(d.inputs[1]).dims()[0];
        assert_eq!(k, rows, "the product reduces over every (sample, step) row");
    }
}

#[test]
fn gradients_match_finite_differences() {
    for (unroll, _) in PATHS {
        finite_differences(unroll);
    }
}

fn finite_differences(unroll: bool) {
    let (g, loss, grads) = graph(unroll);
    let base = feeds();
    let eps = 1e-6;
    for (leaf, d) in ["x", "lstm/kernel", "lstm/recurrent_kernel", "lstm/bias"]
        .iter()
        .zip(&grads)
    {
        let analytic = eval(&g, &[*d], &base).unwrap().remove(0).data;
        // every element of the small tensors, every 3rd of the kernels
        for i in (0..analytic.len()).step_by(if analytic.len() > 30 { 3 } else { 1 }) {
            let mut p = base.clone();
            p.get_mut(*leaf).unwrap().data[i] += eps;
            let mut m = base.clone();
            m.get_mut(*leaf).unwrap().data[i] -= eps;
            let lp = eval(&g, &[loss], &p).unwrap()[0].data[0];
            let lm = eval(&g, &[loss], &m).unwrap()[0].data[0];
            let fd = (lp - lm) / (2.0 * eps);
            Tolerance::FINITE_DIFF
                .check(&format!("{leaf}[{i}]"), &[analytic[i]], &[fd])
                .unwrap();
        }
    }
}

#[test]
fn compiled_plan_matches_on_the_cpu_interpreter() {
    for (unroll, _) in PATHS {
        let (g, _, _) = graph(unroll);
        let mut cpu = kiln_opt::interp::CpuBackend::new();
        kiln_opt::testing::check_graph(&mut cpu, &g, &feeds(), Tolerance::f32_sum(4 * U)).unwrap();
    }
}

#[test]
fn compiled_plan_matches_on_the_native_backend() {
    for (unroll, _) in PATHS {
        let (g, _, _) = graph(unroll);
        let mut native = kiln::cpu::NativeBackend::new();
        kiln_opt::testing::check_graph(&mut native, &g, &feeds(), Tolerance::f32_sum(4 * U))
            .unwrap();
    }
}

#[test]
fn compiled_plan_matches_on_the_gpu() {
    for (unroll, _) in PATHS {
        let Some(mut gpu) = kiln::gpu::test_backend() else {
            return;
        };
        let (g, _, _) = graph(unroll);
        kiln_opt::testing::check_graph(&mut gpu, &g, &feeds(), Tolerance::f32_sum(4 * U)).unwrap();
    }
}

/// The char-LSTM training step (40 steps, vocab 57, LSTM(128), RMSprop). Fused (the
/// default): one-hot, the projection, one persistent recurrence, the dense layer and softmax
/// to predict (5); to train also the loss and accuracy (the softmax's row pass takes the
/// per-sample sums, then one reduction over the batch), the dense gradients (2: `dh` and
/// `dW`, the bias gradient riding in `dW`'s kernel as its column sums), the recurrence's
/// backward (reading only the last step's `h` adjoint: no zero fills), `dr = H_inᵀ·dZ` (with
/// the LSTM bias gradient as its column sums) and the input kernel's gradient, the optimizer
/// updates riding in the products' epilogues: 11, whatever the length (issue 13's target:
/// 12). Unrolled: per timestep 2 forward
/// dispatches (recurrent matmul with the projection in its epilogue; the cell) and 1
/// backward (`dz·Uᵀ` with the cell's backward in its epilogue), plus a constant: 136 in all.
#[test]
fn train_step_dispatch_counts() {
    let t = 40;
    let (predict, train) = (count(t, false, Mode::Predict), count(t, false, Mode::Train));
    println!("fused: predict {predict} dispatches, train {train} dispatches for T = {t}");
    assert!(predict <= 5, "fused predict: {predict} dispatches");
    assert!(train <= 11, "fused train: {train} dispatches");
    assert_eq!(
        (predict, train),
        (
            count(2 * t, false, Mode::Predict),
            count(2 * t, false, Mode::Train)
        ),
        "fused: the dispatch count grows with the sequence"
    );
    let predict = count(t, true, Mode::Predict);
    let train = count(t, true, Mode::Train);
    println!("unrolled: predict {predict} dispatches, train {train} dispatches for T = {t}");
    assert!(predict <= 2 * t + 4, "predict: {predict} dispatches");
    assert!(train <= 3 * t + 20, "train: {train} dispatches");
}

use kiln::Mode;

/// Dispatches of the char-LSTM model's plan for `mode` at batch 128.
fn count(t: usize, unroll: bool, mode: Mode) -> usize {
    use kiln::{Dense, Loss, Metric, OneHot, RmsProp, Sequential};
    {
        let mut m = Sequential::new(Box::new(kiln_opt::interp::CpuBackend::new()));
        m.add(OneHot::new(57).input_length(t)).unwrap();
        m.add(Lstm::new(128).unroll(unroll)).unwrap();
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
    }
}

/// A stacked recurrent model with embedding and dropout, as the tutorials build them:
/// `Embedding → LSTM(return_sequences) → LSTM(dropout) → Dense`. On the GPU, epochs after the
/// first compile no plans and create no buffers; the GPU's losses match the CPU
/// interpreter's; a saved and reloaded model predicts bit-identically.
#[test]
fn stacked_lstms_train_without_new_buffers_and_reload_exactly() {
    use kiln::{Dense, Embedding, Fit, HostTensor, Loss, Metric, Sequential};
    let Some(backend) = kiln::gpu::test_backend() else {
        return;
    };
    let gpu = backend.gpu().clone();
    let build = |device: Box<dyn kiln::Backend>| {
        let mut m = Sequential::new(device).seed(4);
        m.add(Embedding::new(30, 8).input_length(12)).unwrap();
        m.add(Lstm::new(16).return_sequences(true)).unwrap();
        m.add(Lstm::new(8).dropout(0.2).recurrent_dropout(0.1))
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
    let mut m = build(Box::new(backend));
    let s = m.summary();
    assert!(
        s.contains("(None, 12, 16)") && s.contains("(None, 8)"),
        "{s}"
    );
    // label: does the sequence contain token 7
    let n = 96;
    let xs: Vec<f32> = (0..n * 12)
        .map(|i| ((i * 7 + i / 12) % 30) as f32)
        .collect();
    let ys: Vec<f32> = (0..n)
        .map(|r| f32::from(xs[r * 12..(r + 1) * 12].contains(&7.0)))
        .collect();
    let x = HostTensor::f32([n, 12], xs).unwrap();
    let y = HostTensor::f32([n, 1], ys).unwrap();
    let fit = |epochs| Fit {
        epochs,
        batch_size: 32,
        shuffle: false,
        verbose: false,
        ..Fit::default()
    };
    m.fit(&x, &y, fit(1)).unwrap();
    let (buffers, plans) = (gpu.buffers_created(), m.plan_cache_log().len());
    let h = m.fit(&x, &y, fit(2)).unwrap();
    assert_eq!(
        gpu.buffers_created(),
        buffers,
        "buffers created after the first epoch"
    );
    assert_eq!(
        m.plan_cache_log().len(),
        plans,
        "plans compiled after the first epoch"
    );
    let mut c = build(Box::new(kiln_opt::interp::CpuBackend::new()));
    c.fit(&x, &y, fit(1)).unwrap();
    let hc = c.fit(&x, &y, fit(2)).unwrap();
    for (a, b) in h.history["loss"].iter().zip(&hc.history["loss"]) {
        assert!((a - b).abs() < 1e-3, "gpu loss {a} vs cpu loss {b}");
    }
    let dir = std::env::temp_dir().join(format!("kiln-lstm-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    m.save(&path).unwrap();
    let want = m.predict(&x, 32).unwrap();
    let mut r = kiln::load_model(&path, Box::new(kiln::gpu::WgpuBackend::new().unwrap())).unwrap();
    assert_eq!(r.predict(&x, 32).unwrap(), want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The IMDB tutorial's model (`Embedding(5000, 32) → LSTM(100) → Dense(1, sigmoid)`, 500
/// steps, Adam, accuracy) on `backend`, compiled; the LSTM fused or unrolled.
fn imdb_model(backend: kiln_opt::interp::CpuBackend, unroll: bool) -> kiln::Sequential {
    use kiln::{Dense, Embedding, Loss, Metric, Sequential};
    let mut m = Sequential::new(Box::new(backend));
    m.add(Embedding::new(5000, 32).input_length(500)).unwrap();
    m.add(Lstm::new(100).unroll(unroll)).unwrap();
    m.add(Dense::new(1).activation(kiln::Activation::Sigmoid))
        .unwrap();
    m.compile(
        Loss::BinaryCrossentropy,
        kiln::Adam::default(),
        &[Metric::Accuracy],
    )
    .unwrap();
    m
}

/// The IMDB tutorial's training step (`Embedding(5000, 32) → LSTM(100) → Dense(1, sigmoid)`,
/// 500 steps, Adam, batch 64): 1,517 dispatches unrolled; fused 12, issue 13's target (the
/// loss and the dense bias gradient share one reduction over the batch, whose epilogue also
/// advances Adam's step counter and computes its bias correction once; the LSTM bias
/// gradient rides in the kernel of `dr` as its column sums; the embedding's gradient
/// scatters the gates' adjoint into the table's rows first, reading the float indices
/// itself, then multiplies by the input kernel with the Adam update in that product's
/// epilogue).
#[test]
fn imdb_train_step_dispatch_count() {
    let count = |unroll: bool| {
        let mut m = imdb_model(kiln_opt::interp::CpuBackend::new(), unroll);
        let plan = m.plan_for(Mode::Train, 64).unwrap();
        if std::env::var("KILN_SHOW").is_ok() {
            println!("{}", plan.summary());
        }
        plan.stats.dispatches
    };
    let (fused, unrolled) = (count(false), count(true));
    println!("IMDB train step: fused {fused} dispatches, unrolled {unrolled}");
    assert!(fused <= 12, "fused: {fused} dispatches");
    assert!(unrolled >= 1000, "unrolled: {unrolled} dispatches");
}

/// The tutorials' training steps as a discrete GPU gets them (`AdapterClass::DiscreteGpu`:
/// persistent recurrences, workgroup-tree reductions, the GPU pricing of the gathered-rows
/// and scatter-first rewrites), with 16 storage buffers per shader stage and with as many as
/// NVIDIA's Vulkan driver reports: at most 12 dispatches each, issue 13's target. (With
/// WebGPU's minimum of 8 storage buffers the fuser splits IMDB's step into 22.)
#[test]
fn gpu_class_train_steps_are_at_most_12_dispatches() {
    use kiln::{Dense, Loss, OneHot, RmsProp, Sequential};
    for storage_buffers in [16, 1 << 20] {
        let limits = kiln_opt::DeviceLimits {
            adapter_class: kiln_opt::AdapterClass::DiscreteGpu,
            max_storage_buffers_per_shader_stage: storage_buffers,
            max_storage_buffer_binding_size: 2 << 30,
            max_buffer_size: 4 << 30,
            max_compute_workgroup_size_x: 1024,
            max_compute_invocations_per_workgroup: 1024,
            max_compute_workgroup_storage_size: 49152,
            ..kiln_opt::DeviceLimits::default()
        };
        let backend = || Box::new(kiln_opt::interp::CpuBackend::with_limits(limits.clone()));
        let mut imdb = imdb_model(*backend(), false);
        let mut chars = Sequential::new(backend());
        chars.add(OneHot::new(59).input_length(40)).unwrap();
        chars.add(Lstm::new(128)).unwrap();
        chars
            .add(Dense::new(59).activation(kiln::Activation::Softmax))
            .unwrap();
        chars
            .compile(Loss::CategoricalCrossentropy, RmsProp::new(0.01), &[])
            .unwrap();
        for (name, model, batch) in [("IMDB", &mut imdb, 64), ("char-LSTM", &mut chars, 128)] {
            let plan = model.plan_for(Mode::Train, batch).unwrap();
            let recurrences = plan
                .kernels
                .iter()
                .filter(|k| matches!(k.op, kiln_opt::kernel::KernelOp::Recurrence { .. }))
                .count();
            assert_eq!(
                recurrences,
                2,
                "{name}: forward and BPTT\n{}",
                plan.summary()
            );
            assert!(
                plan.stats.dispatches <= 12,
                "{name}, {storage_buffers} storage buffers: {} dispatches\n{}",
                plan.stats.dispatches,
                plan.summary()
            );
        }
    }
}
