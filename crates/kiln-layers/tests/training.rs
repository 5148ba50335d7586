//! Layer API numbers against hand-derived references (on the CPU plan interpreter; the GPU
//! runs the same plans in the end-to-end tests).

use kiln_layers::{Activation, Dense, Fit, HostTensor, LayerError, Loss, Metric, Sequential, Sgd};
use kiln_opt::interp::CpuBackend;

fn t(shape: &[usize], v: &[f32]) -> HostTensor {
    HostTensor::f32(shape.to_vec(), v.to_vec()).unwrap()
}

fn one_step(
    loss: Loss,
    act: Activation,
    w: &[f32],
    b: &[f32],
    x: &[f32],
    y: &[f32],
    units: usize,
) -> (Vec<HostTensor>, f64) {
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(Dense::new(units).activation(act).input_dim(2))
        .unwrap();
    m.compile(loss, Sgd::new(0.01), &[]).unwrap();
    m.set_weights(&[t(&[2, units], w), t(&[units], b)]).unwrap();
    let xs = t(&[1, 2], x);
    let ys = t(&[1, units], y);
    let before = m.evaluate(&xs, &ys, 1).unwrap()["loss"];
    let fit = Fit {
        epochs: 1,
        batch_size: 1,
        verbose: false,
        ..Fit::default()
    };
    m.fit(&xs, &ys, fit).unwrap();
    (m.get_weights().unwrap(), before)
}

fn close(a: &[f32], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((*x as f64 - y).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

#[test]
fn sgd_step_on_mse_matches_hand_derivation() {
    // p = 1*0.5 + 2*(-0.5) + 0 = -0.5; loss = (1 - p)^2 = 2.25; dL/dp = -2 (y - p) = -3
    // dW = x * dL/dp = [-3, -6]; db = -3; W' = W - 0.01 dW; b' = b - 0.01 db
    let (w, loss) = one_step(
        Loss::MeanSquaredError,
        Activation::Linear,
        &[0.5, -0.5],
        &[0.0],
        &[1.0, 2.0],
        &[1.0],
        1,
    );
    assert!((loss - 2.25).abs() < 1e-6, "{loss}");
    close(&w[0].to_f32(), &[0.53, -0.44]);
    close(&w[1].to_f32(), &[0.03]);
}

#[test]
fn binary_crossentropy_on_softmax_matches_formula() {
    // z = x W + b = [0.3, -0.1]; p = softmax(z); loss = -mean(y log p + (1-y) log(1-p))
    let z = [0.3f64, -0.1];
    let e: Vec<f64> = z.iter().map(|v| (v - 0.3f64).exp()).collect();
    let p: Vec<f64> = e.iter().map(|v| v / (e[0] + e[1])).collect();
    let y = [0.0f64, 1.0];
    let want = -((y[0] * p[0].ln() + (1.0 - y[0]) * (1.0 - p[0]).ln())
        + (y[1] * p[1].ln() + (1.0 - y[1]) * (1.0 - p[1]).ln()))
        / 2.0;
    let (_, loss) = one_step(
        Loss::BinaryCrossentropy,
        Activation::Softmax,
        &[0.3, -0.1, 0.0, 0.0],
        &[0.0, 0.0],
        &[1.0, 0.0],
        &[0.0, 1.0],
        2,
    );
    assert!((loss - want).abs() < 1e-6, "{loss} vs {want}");
}

fn circle_model(seed: u64) -> Sequential {
    let mut m = Sequential::new(Box::new(CpuBackend::new())).seed(seed);
    m.add(Dense::new(3).activation(Activation::Tanh).input_dim(2))
        .unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    m.compile(
        Loss::CategoricalCrossentropy,
        Sgd::new(0.1),
        &[Metric::Accuracy],
    )
    .unwrap();
    m
}

fn data(n: usize) -> (HostTensor, HostTensor) {
    let mut x = vec![];
    let mut y = vec![];
    for i in 0..n {
        let a = (i as f32 * 0.37).sin() * 2.0;
        let b = (i as f32 * 0.91).cos() * 2.0;
        x.extend([a, b]);
        y.extend(if a * a + b * b < 1.0 {
            [0.0, 1.0]
        } else {
            [1.0, 0.0]
        });
    }
    (t(&[n, 2], &x), t(&[n, 2], &y))
}

#[test]
fn short_last_batch_gives_the_same_result() {
    let (x, y) = data(10);
    let mut m = circle_model(3);
    let full = m.evaluate(&x, &y, 10).unwrap();
    let ragged = m.evaluate(&x, &y, 4).unwrap(); // 4 + 4 + 2
    for k in ["loss", "accuracy"] {
        assert!(
            (full[k] - ragged[k]).abs() < 1e-6,
            "{k}: {} vs {}",
            full[k],
            ragged[k]
        );
    }
    let p1 = m.predict(&x, 10).unwrap().to_f32();
    let p2 = m.predict(&x, 3).unwrap().to_f32();
    assert_eq!(p1, p2);
}

#[test]
fn same_seed_same_bits() {
    let (x, y) = data(40);
    let fit = Fit {
        epochs: 3,
        batch_size: 8,
        verbose: false,
        ..Fit::default()
    };
    let mut a = circle_model(7);
    let mut b = circle_model(7);
    a.fit(&x, &y, fit.clone()).unwrap();
    b.fit(&x, &y, fit).unwrap();
    let (wa, wb) = (a.get_weights().unwrap(), b.get_weights().unwrap());
    assert_eq!(wa, wb);
    let c = circle_model(8).get_weights().unwrap();
    assert_ne!(wa, c);
}

#[test]
fn bad_input_is_a_clear_error() {
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    let e = m.add(Dense::new(4)).unwrap_err();
    assert!(
        e.to_string().contains("dense_1") && e.to_string().contains("input_dim"),
        "{e}"
    );
    m.add(Dense::new(4).input_dim(3)).unwrap();
    let e = m.add(Dense::new(2).input_dim(5)).unwrap_err();
    assert!(
        matches!(e, LayerError::Shape { .. }) && e.to_string().contains("dense_2"),
        "{e}"
    );
    let (x, y) = data(5);
    assert!(matches!(
        m.fit(&x, &y, Fit::default()),
        Err(LayerError::Data(_))
    ));
    m.compile(Loss::MeanSquaredError, Sgd::default(), &[])
        .unwrap();
    let e = m.fit(&x, &y, Fit::default()).unwrap_err();
    assert!(
        e.to_string().contains("[5, 2]") && e.to_string().contains("[n, 3]"),
        "{e}"
    );
    assert!(m.set_weights(&[t(&[1], &[0.0])]).is_err());
}
