//! Weight regularizers and gradient clipping against hand-derived f64 values.
//!
//! The model is `Dense(1)` (linear) on 2 features with mean squared error, one full-batch
//! step on the CPU plan interpreter. With `p_i = w·x_i + b` and `L = 1/N Σ (p_i - y_i)²`,
//! `dL/dw_j = 2/N Σ (p_i - y_i) x_ij`, `dL/db = 2/N Σ (p_i - y_i)`; an L2 penalty `l Σ w²`
//! adds `2 l w`, an L1 penalty `l Σ |w|` adds `l sign(w)`.

use kiln_layers::{
    Adam, Dense, Fit, HostTensor, LayerError, Optimizer, Regularizer, Sequential, Sgd,
};
use kiln_opt::interp::CpuBackend;

const X: [[f64; 2]; 4] = [[1.0, 2.0], [-1.5, 0.5], [0.3, -0.7], [2.0, 1.0]];
const Y: [f64; 4] = [1.0, -0.5, 0.2, 0.8];
const W: [f64; 2] = [0.4, -0.6];
const B: f64 = 0.3;

fn data() -> (HostTensor, HostTensor) {
    (
        HostTensor::f32([4, 2], X.iter().flatten().map(|&v| v as f32).collect()).unwrap(),
        HostTensor::f32([4, 1], Y.iter().map(|&v| v as f32).collect()).unwrap(),
    )
}

/// (data loss, [dL/dw0, dL/dw1, dL/db]) at `W`, `B`.
fn data_loss_and_grad() -> (f64, [f64; 3]) {
    let n = X.len() as f64;
    let mut loss = 0.0;
    let mut g = [0.0; 3];
    for (x, y) in X.iter().zip(Y) {
        let e = W[0] * x[0] + W[1] * x[1] + B - y;
        loss += e * e / n;
        g[0] += 2.0 / n * e * x[0];
        g[1] += 2.0 / n * e * x[1];
        g[2] += 2.0 / n * e;
    }
    (loss, g)
}

fn model(dense: Dense, opt: impl Optimizer + 'static) -> Sequential {
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(dense.input_dim(2)).unwrap();
    m.compile(kiln_layers::Loss::MeanSquaredError, opt, &[])
        .unwrap();
    m.set_weights(&[
        HostTensor::f32([2, 1], W.iter().map(|&v| v as f32).collect()).unwrap(),
        HostTensor::f32([1], vec![B as f32]).unwrap(),
    ])
    .unwrap();
    m
}

/// (evaluated loss before the step, [w0, w1, b] after one full-batch step).
fn step(m: &mut Sequential) -> (f64, [f64; 3]) {
    let (x, y) = data();
    let before = m.evaluate(&x, &y, 4).unwrap()["loss"];
    let fit = Fit {
        epochs: 1,
        batch_size: 4,
        shuffle: false,
        verbose: false,
        ..Fit::default()
    };
    m.fit(&x, &y, fit).unwrap();
    let w = m.get_weights().unwrap();
    let (k, b) = (w[0].to_f64(), w[1].to_f64());
    (before, [k[0], k[1], b[0]])
}

fn close(what: &str, got: &[f64], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() < 2e-6 * (1.0 + w.abs()),
            "{what}: {got:?} vs {want:?}"
        );
    }
}

#[test]
fn l2_kernel_penalty_in_loss_and_update() {
    let lr = 0.1;
    let l = 0.01;
    let mut m = model(
        Dense::new(1).kernel_regularizer(Regularizer::l2()),
        Sgd::new(lr),
    );
    let (loss, after) = step(&mut m);
    let (dl, g) = data_loss_and_grad();
    let penalty = l * (W[0] * W[0] + W[1] * W[1]);
    close("loss", &[loss], &[dl + penalty]);
    let want = [
        W[0] - lr as f64 * (g[0] + 2.0 * l * W[0]),
        W[1] - lr as f64 * (g[1] + 2.0 * l * W[1]),
        B - lr as f64 * g[2], // the bias is not penalized
    ];
    close("weights", &after, &want);
}

#[test]
fn l1_and_l1l2_penalties_including_the_bias() {
    let lr = 0.1f64;
    let (dl, g) = data_loss_and_grad();
    // L1(0.05) on the kernel, L1L2(0.02, 0.03) on the bias
    let mut m = model(
        Dense::new(1)
            .kernel_regularizer(Regularizer::L1(0.05))
            .bias_regularizer(Regularizer::L1L2 { l1: 0.02, l2: 0.03 }),
        Sgd::new(lr as f32),
    );
    let (loss, after) = step(&mut m);
    let penalty = 0.05 * (W[0].abs() + W[1].abs()) + 0.02 * B.abs() + 0.03 * B * B;
    close("loss", &[loss], &[dl + penalty]);
    let want = [
        W[0] - lr * (g[0] + 0.05 * W[0].signum()),
        W[1] - lr * (g[1] + 0.05 * W[1].signum()),
        B - lr * (g[2] + 0.02 * B.signum() + 2.0 * 0.03 * B),
    ];
    close("weights", &after, &want);
}

#[test]
fn regularizers_serialize_and_are_checked() {
    let m = model(
        Dense::new(1)
            .kernel_regularizer(Regularizer::l1_l2())
            .bias_regularizer(Regularizer::L2(0.5)),
        Sgd::new(0.1),
    );
    let json = m.to_json();
    assert!(
        json.contains("kernel_regularizer") && json.contains("L1L2"),
        "{json}"
    );
    let m2 = Sequential::from_json(&json, Box::new(CpuBackend::new())).unwrap();
    assert_eq!(m2.config(), m.config());
    // JSON without the fields (older files) still loads
    let plain = model(Dense::new(1), Sgd::new(0.1)).to_json();
    assert!(!plain.contains("regularizer"));
    Sequential::from_json(&plain, Box::new(CpuBackend::new())).unwrap();
    assert_eq!(Regularizer::l2(), Regularizer::L2(0.01));
    assert_eq!(
        Regularizer::l1_l2(),
        Regularizer::L1L2 { l1: 0.01, l2: 0.01 }
    );

    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    let e = m
        .add(
            Dense::new(1)
                .input_dim(2)
                .kernel_regularizer(Regularizer::L2(-1.0)),
        )
        .unwrap_err();
    assert!(matches!(e, LayerError::Shape { .. }), "{e}");
    assert!(
        e.to_string().contains("dense_1") && e.to_string().contains("kernel"),
        "{e}"
    );
}

/// [dL/dw0, dL/dw1, dL/db] clipped as Keras 2 does per tensor: the kernel [g0, g1] and the
/// bias [g2] are separate tensors.
fn clip(g: [f64; 3], clipnorm: Option<f64>, clipvalue: Option<f64>) -> [f64; 3] {
    let mut k = [g[0], g[1]];
    let mut b = [g[2]];
    if let Some(c) = clipnorm {
        let nk = (k[0] * k[0] + k[1] * k[1]).sqrt();
        k = k.map(|v| v * c / nk.max(c));
        let nb = b[0].abs();
        b = b.map(|v| v * c / nb.max(c));
    }
    if let Some(v) = clipvalue {
        k = k.map(|x| x.clamp(-v, v));
        b = b.map(|x| x.clamp(-v, v));
    }
    [k[0], k[1], b[0]]
}

#[test]
fn clipnorm_and_clipvalue_with_sgd() {
    let (_, g) = data_loss_and_grad();
    let norm_k = (g[0] * g[0] + g[1] * g[1]).sqrt();
    // the kernel's norm is above 0.1 (clipped), the bias's |g| too; 10 clips nothing
    assert!(norm_k > 0.1 && g[2].abs() > 0.1, "{g:?}");
    let lr = 0.1f64;
    for (cn, cv) in [
        (Some(0.1), None),
        (Some(10.0), None),
        (None, Some(0.05)),
        (Some(0.1), Some(0.05)),
    ] {
        let mut opt = Sgd::new(lr as f32);
        if let Some(c) = cn {
            opt = opt.clipnorm(c as f32);
        }
        if let Some(v) = cv {
            opt = opt.clipvalue(v as f32);
        }
        let mut m = model(Dense::new(1), opt);
        let (_, after) = step(&mut m);
        // f32 hyper-parameters widened, as the model gets them
        let c = clip(g, cn.map(|c| c as f32 as f64), cv.map(|v| v as f32 as f64));
        let want = [W[0] - lr * c[0], W[1] - lr * c[1], B - lr * c[2]];
        close(&format!("clipnorm {cn:?} clipvalue {cv:?}"), &after, &want);
    }
}

#[test]
fn clipping_applies_before_adam() {
    // Adam's first step with clipped gradient c: m = 0.1 c, v = 0.001 c²,
    // lr_t = lr sqrt(1 - 0.999) / (1 - 0.9), w -= lr_t m / (sqrt v + eps)
    let (_, g) = data_loss_and_grad();
    let c = clip(g, Some(0.5f32 as f64), Some(0.2f32 as f64));
    let lr = 0.01f64;
    let (b1, b2, eps) = (0.9f32 as f64, 0.999f32 as f64, 1e-7f32 as f64);
    let mut m = model(
        Dense::new(1),
        Adam::new(lr as f32).clipnorm(0.5).clipvalue(0.2),
    );
    let (_, after) = step(&mut m);
    let lr_t = lr * (1.0 - b2).sqrt() / (1.0 - b1);
    let upd = |gi: f64| {
        let mm = (1.0 - b1) * gi;
        let vv = (1.0 - b2) * gi * gi;
        lr_t * mm / (vv.sqrt() + eps)
    };
    let want = [W[0] - upd(c[0]), W[1] - upd(c[1]), B - upd(c[2])];
    close("adam clipped", &after, &want);
}

#[test]
fn clipping_is_serialized_and_checked() {
    let m = model(Dense::new(1), Adam::default().clipnorm(1.0));
    let json = m.to_json();
    assert!(json.contains("\"clipnorm\": 1.0"), "{json}");
    assert!(!json.contains("clipvalue"), "{json}");
    let m2 = Sequential::from_json(&json, Box::new(CpuBackend::new())).unwrap();
    assert_eq!(m2.config(), m.config());

    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(Dense::new(1).input_dim(2)).unwrap();
    let e = m
        .compile(
            kiln_layers::Loss::MeanSquaredError,
            Sgd::default().clipnorm(0.0),
            &[],
        )
        .unwrap_err();
    assert!(
        matches!(&e, LayerError::InvalidArgument { argument, .. } if argument == "clipnorm"),
        "{e}"
    );
    let e = m
        .compile(
            kiln_layers::Loss::MeanSquaredError,
            Sgd::default().clipvalue(f32::NAN),
            &[],
        )
        .unwrap_err();
    assert!(e.to_string().contains("clipvalue"), "{e}");
}
