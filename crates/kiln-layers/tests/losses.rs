//! `mae`, `sparse_categorical_crossentropy` and the `mse` / `mae` /
//! `sparse_categorical_accuracy` metrics against hand-derived f64 values (on the CPU plan
//! interpreter). The references are computed here from the weights, never by the model.

use kiln_layers::{Activation, Dense, Fit, HostTensor, LayerError, Loss, Metric, Sequential, Sgd};
use kiln_opt::interp::CpuBackend;

/// Inputs (4 samples × 2 features).
const X: [[f64; 2]; 4] = [[1.0, 2.0], [-1.0, 0.5], [0.3, -0.7], [2.0, 1.0]];
/// Kernel `[2, 3]` and bias `[3]`.
const W: [[f64; 3]; 2] = [[0.5, -0.3, 0.8], [0.2, 0.4, -0.6]];
const B: [f64; 3] = [0.1, -0.2, 0.05];
/// Class ids.
const LABELS: [usize; 4] = [0, 1, 2, 2];

fn t(shape: &[usize], v: Vec<f64>) -> HostTensor {
    HostTensor::f32(shape.to_vec(), v.into_iter().map(|x| x as f32).collect()).unwrap()
}

fn x() -> HostTensor {
    t(&[4, 2], X.iter().flatten().copied().collect())
}

fn model(act: Activation, loss: Loss, metrics: &[Metric], lr: f32) -> Sequential {
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(Dense::new(3).activation(act).input_dim(2)).unwrap();
    m.compile(loss, Sgd::new(lr), metrics).unwrap();
    m.set_weights(&[
        t(&[2, 3], W.iter().flatten().copied().collect()),
        t(&[3], B.to_vec()),
    ])
    .unwrap();
    m
}

/// `z = x W + b` per sample.
fn logits() -> Vec<[f64; 3]> {
    X.iter()
        .map(|x| {
            let mut z = B;
            for (j, zj) in z.iter_mut().enumerate() {
                *zj += x[0] * W[0][j] + x[1] * W[1][j];
            }
            z
        })
        .collect()
}

fn softmax(z: &[f64; 3]) -> [f64; 3] {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e = z.map(|v| (v - m).exp());
    let s: f64 = e.iter().sum();
    e.map(|v| v / s)
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "{what}: got {got}, expected {want}"
    );
}

fn one_epoch_full_batch(m: &mut Sequential, x: &HostTensor, y: &HostTensor) {
    let fit = Fit {
        epochs: 1,
        batch_size: 4,
        shuffle: false,
        verbose: false,
        ..Fit::default()
    };
    m.fit(x, y, fit).unwrap();
}

#[test]
fn sparse_crossentropy_from_softmax_logits_and_its_update() {
    let z = logits();
    // L = -1/N Σ log softmax(z_i)[c_i]
    let n = X.len() as f64;
    let want: f64 = -z
        .iter()
        .zip(LABELS)
        .map(|(z, c)| softmax(z)[c].ln())
        .sum::<f64>()
        / n;
    // labels as f32 [4], f32 [4, 1] and i32 [4]
    let ys = [
        t(&[4], LABELS.iter().map(|&c| c as f64).collect()),
        t(&[4, 1], LABELS.iter().map(|&c| c as f64).collect()),
        HostTensor::i32([4], LABELS.iter().map(|&c| c as i32).collect()).unwrap(),
    ];
    for y in &ys {
        let mut m = model(
            Activation::Softmax,
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
            0.1,
        );
        let logs = m.evaluate(&x(), y, 4).unwrap();
        close("sparse CE", logs["loss"], want, 1e-5);
        // argmax per row vs labels, counted by hand below
        let hits = z
            .iter()
            .zip(LABELS)
            .filter(|(z, c)| {
                let am = (0..3).max_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap();
                am == *c
            })
            .count();
        close("accuracy", logs["accuracy"], hits as f64 / n, 1e-6);
        // one SGD step: dL/dz = (softmax(z) - onehot) / N; dW = xᵀ dz; db = Σ dz
        one_epoch_full_batch(&mut m, &x(), y);
        let mut dw = [[0.0; 3]; 2];
        let mut db = [0.0; 3];
        for ((xi, zi), c) in X.iter().zip(&z).zip(LABELS) {
            let p = softmax(zi);
            for j in 0..3 {
                let d = (p[j] - if j == c { 1.0 } else { 0.0 }) / n;
                db[j] += d;
                dw[0][j] += xi[0] * d;
                dw[1][j] += xi[1] * d;
            }
        }
        let w = m.get_weights().unwrap();
        let (k, b) = (w[0].to_f64(), w[1].to_f64());
        for j in 0..3 {
            close("W0", k[j], W[0][j] - 0.1 * dw[0][j], 1e-6);
            close("W1", k[3 + j], W[1][j] - 0.1 * dw[1][j], 1e-6);
            close("b", b[j], B[j] - 0.1 * db[j], 1e-6);
        }
    }
}

#[test]
fn sparse_crossentropy_on_probabilities_normalizes_and_clips() {
    // last layer sigmoid: p = sigmoid(z), normalized to sum 1, clipped to [1e-7, 1 - 1e-7]
    let z = logits();
    let n = X.len() as f64;
    let want: f64 = -z
        .iter()
        .zip(LABELS)
        .map(|(z, c)| {
            let p = z.map(|v| 1.0 / (1.0 + (-v).exp()));
            let s: f64 = p.iter().sum();
            (p[c] / s).clamp(1e-7, 1.0 - 1e-7).ln()
        })
        .sum::<f64>()
        / n;
    let mut m = model(
        Activation::Sigmoid,
        Loss::SparseCategoricalCrossentropy,
        &[Metric::SparseCategoricalAccuracy],
        0.1,
    );
    let y = t(&[4], LABELS.iter().map(|&c| c as f64).collect());
    let logs = m.evaluate(&x(), &y, 4).unwrap();
    close("sparse CE (probabilities)", logs["loss"], want, 1e-5);
    assert!(logs.contains_key("sparse_categorical_accuracy"));
}

#[test]
fn mae_loss_value_and_update() {
    // linear Dense(3): p = z; targets y; L = mean |y - p| over 12 elements
    let z = logits();
    let y: Vec<[f64; 3]> = vec![
        [1.2, 0.0, 0.5], // no target equals its prediction (|y - p| has a kink there)
        [0.0, -1.0, 2.0],
        [0.3, 0.3, 0.3],
        [2.0, 1.0, 0.0],
    ];
    let n_el = 12.0;
    let want: f64 = z
        .iter()
        .zip(&y)
        .flat_map(|(z, y)| (0..3).map(move |j| (y[j] - z[j]).abs()))
        .sum::<f64>()
        / n_el;
    // metrics: mse = mean (y - p)², mae = the loss
    let want_mse: f64 = z
        .iter()
        .zip(&y)
        .flat_map(|(z, y)| (0..3).map(move |j| (y[j] - z[j]).powi(2)))
        .sum::<f64>()
        / n_el;
    let mut m = model(
        Activation::Linear,
        Loss::MeanAbsoluteError,
        &[Metric::MeanSquaredError, Metric::MeanAbsoluteError],
        0.5,
    );
    let yt = t(&[4, 3], y.iter().flatten().copied().collect());
    let logs = m.evaluate(&x(), &yt, 4).unwrap();
    close("mae", logs["loss"], want, 1e-6);
    close("mae metric", logs["mae"], want, 1e-6);
    close("mse metric", logs["mse"], want_mse, 1e-6);
    // the metrics are sample-weighted over batches: batch 3 then 1 gives the same means
    let logs = m.evaluate(&x(), &yt, 3).unwrap();
    close("mse metric, batches 3 + 1", logs["mse"], want_mse, 1e-6);
    // dL/dp = -sign(y - p) / 12
    one_epoch_full_batch(&mut m, &x(), &yt);
    let mut dw = [[0.0; 3]; 2];
    let mut db = [0.0; 3];
    for ((xi, zi), yi) in X.iter().zip(&z).zip(&y) {
        for j in 0..3 {
            let d = -(yi[j] - zi[j]).signum() / n_el;
            db[j] += d;
            dw[0][j] += xi[0] * d;
            dw[1][j] += xi[1] * d;
        }
    }
    let w = m.get_weights().unwrap();
    let (k, b) = (w[0].to_f64(), w[1].to_f64());
    for j in 0..3 {
        close("W0", k[j], W[0][j] - 0.5 * dw[0][j], 1e-6);
        close("W1", k[3 + j], W[1][j] - 0.5 * dw[1][j], 1e-6);
        close("b", b[j], B[j] - 0.5 * db[j], 1e-6);
    }
}

#[test]
fn accuracy_resolution_follows_keras() {
    assert_eq!(
        Metric::Accuracy.resolve(Loss::SparseCategoricalCrossentropy, 3),
        Metric::SparseCategoricalAccuracy
    );
    assert_eq!(
        Metric::Accuracy.resolve(Loss::CategoricalCrossentropy, 3),
        Metric::CategoricalAccuracy
    );
    assert_eq!(
        Metric::Accuracy.resolve(Loss::BinaryCrossentropy, 3),
        Metric::BinaryAccuracy
    );
    assert_eq!(
        Metric::Accuracy.resolve(Loss::MeanAbsoluteError, 1),
        Metric::BinaryAccuracy
    );
}

#[test]
fn sparse_accuracy_counts_argmax_hits() {
    // z rows' argmax: computed by hand from the constants; labels chosen so that exactly the
    // rows whose argmax is 2 are hits.
    let z = logits();
    let am: Vec<usize> = z
        .iter()
        .map(|z| (0..3).max_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap())
        .collect();
    let labels: Vec<f64> = am
        .iter()
        .map(|&a| if a == 2 { 2.0 } else { ((a + 1) % 3) as f64 })
        .collect();
    let hits = am.iter().filter(|&&a| a == 2).count() as f64 / 4.0;
    let mut m = model(
        Activation::Softmax,
        Loss::SparseCategoricalCrossentropy,
        &[Metric::SparseCategoricalAccuracy, Metric::Accuracy],
        0.1,
    );
    let logs = m.evaluate(&x(), &t(&[4, 1], labels), 4).unwrap();
    close(
        "sparse_categorical_accuracy",
        logs["sparse_categorical_accuracy"],
        hits,
        1e-6,
    );
    close("accuracy", logs["accuracy"], hits, 1e-6);
}

#[test]
fn bad_labels_are_clear_errors() {
    let mut m = model(
        Activation::Softmax,
        Loss::SparseCategoricalCrossentropy,
        &[],
        0.1,
    );
    let e = m
        .evaluate(&x(), &t(&[4], vec![0.0, 1.0, 3.0, 2.0]), 4)
        .unwrap_err();
    assert!(matches!(e, LayerError::Data(_)), "{e}");
    assert!(e.to_string().contains("y[2] = 3"), "{e}");
    let e = m
        .evaluate(&x(), &t(&[4], vec![0.0, 1.5, 1.0, 2.0]), 4)
        .unwrap_err();
    assert!(e.to_string().contains("y[1] = 1.5"), "{e}");
    // one-hot labels given to the sparse loss
    let e = m.evaluate(&x(), &t(&[4, 3], vec![0.0; 12]), 4).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("[4, 3]")
            && msg.contains("[4, 1]")
            && msg.contains("categorical_crossentropy"),
        "{msg}"
    );
    // metric / loss label mismatch at compile
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(Dense::new(3).activation(Activation::Softmax).input_dim(2))
        .unwrap();
    let e = m
        .compile(
            Loss::SparseCategoricalCrossentropy,
            Sgd::default(),
            &[Metric::MeanSquaredError],
        )
        .unwrap_err();
    assert!(
        matches!(e, LayerError::Usage(_)) && e.to_string().contains("`mse`"),
        "{e}"
    );
    let e = m
        .compile(
            Loss::CategoricalCrossentropy,
            Sgd::default(),
            &[Metric::SparseCategoricalAccuracy],
        )
        .unwrap_err();
    assert!(e.to_string().contains("sparse_categorical_accuracy"), "{e}");
}

#[test]
fn names_serialize_as_keras() {
    for (l, name) in [
        (Loss::MeanAbsoluteError, "mae"),
        (
            Loss::SparseCategoricalCrossentropy,
            "sparse_categorical_crossentropy",
        ),
    ] {
        assert_eq!(serde_json::to_string(&l).unwrap(), format!("\"{name}\""));
        assert_eq!(l.name(), name);
    }
    assert_eq!(
        serde_json::from_str::<Loss>("\"mean_absolute_error\"").unwrap(),
        Loss::MeanAbsoluteError
    );
    for (m, name) in [
        (Metric::MeanSquaredError, "mse"),
        (Metric::MeanAbsoluteError, "mae"),
        (
            Metric::SparseCategoricalAccuracy,
            "sparse_categorical_accuracy",
        ),
    ] {
        assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{name}\""));
        assert_eq!(m.name(), name);
    }
    // the compile arguments survive to_json / from_json
    let m = model(
        Activation::Softmax,
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
        0.1,
    );
    let m2 = Sequential::from_json(&m.to_json(), Box::new(CpuBackend::new())).unwrap();
    assert_eq!(m2.config().compile, m.config().compile);
    assert!(m.to_json().contains("sparse_categorical_crossentropy"));
}
