//! `train_on_batch` / `test_on_batch` / `predict_on_batch` (CPU plan interpreter).

use kiln_layers::{Activation, Dense, Fit, HostTensor, Loss, Metric, Sequential, Sgd};
use kiln_opt::interp::CpuBackend;

fn t(shape: &[usize], v: &[f32]) -> HostTensor {
    HostTensor::f32(shape.to_vec(), v.to_vec()).unwrap()
}

fn mlp() -> Sequential {
    let mut m = Sequential::new(Box::new(CpuBackend::new())).seed(3);
    m.add(Dense::new(3).activation(Activation::Tanh).input_dim(2))
        .unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    m.compile(
        Loss::CategoricalCrossentropy,
        Sgd::new(0.5).momentum(0.9),
        &[Metric::Accuracy],
    )
    .unwrap();
    m
}

fn xy() -> (HostTensor, HostTensor) {
    (
        t(&[4, 2], &[0.1, 0.2, 1.5, -1.8, -0.3, 0.4, 1.9, 1.2]),
        t(&[4, 2], &[0., 1., 1., 0., 0., 1., 1., 0.]),
    )
}

#[test]
fn train_on_batch_equals_one_step_of_fit_on_the_same_batch() {
    let (x, y) = xy();
    let mut a = mlp();
    let mut b = mlp();
    assert_eq!(a.get_weights().unwrap(), b.get_weights().unwrap());
    let fit = Fit {
        epochs: 1,
        batch_size: 4,
        shuffle: false,
        verbose: false,
        ..Fit::default()
    };
    for step in 0..3 {
        let h = a.fit(&x, &y, fit.clone()).unwrap();
        let logs = b.train_on_batch(&x, &y).unwrap();
        assert_eq!(a.get_weights().unwrap(), b.get_weights().unwrap(), "{step}");
        assert_eq!(logs["loss"], h.history["loss"][0]);
        assert_eq!(logs["accuracy"], h.history["accuracy"][0]);
    }
}

/// `Dense(1)` linear, MSE, SGD(0.1), `w = b = 0`, `x = [1, 2]`, `y = [2, 4]`.
fn linear() -> Sequential {
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(Dense::new(1).activation(Activation::Linear).input_dim(1))
        .unwrap();
    m.compile(Loss::MeanSquaredError, Sgd::new(0.1), &[])
        .unwrap();
    m.set_weights(&[t(&[1, 1], &[0.0]), t(&[1], &[0.0])])
        .unwrap();
    m
}

#[test]
fn batch_methods_match_hand_derivation() {
    let x = t(&[2, 1], &[1.0, 2.0]);
    let y = t(&[2, 1], &[2.0, 4.0]);
    let mut m = linear();
    // p = 0: loss ((0-2)² + (0-4)²) / 2 = 10; no update
    assert!((m.test_on_batch(&x, &y).unwrap()["loss"] - 10.0).abs() < 1e-6);
    assert_eq!(m.get_weights().unwrap()[0].to_f32(), [0.0]);
    // the returned loss is the pre-update one; dL/dw = -(2·1 + 4·2) = -10, dL/db = -6
    assert!((m.train_on_batch(&x, &y).unwrap()["loss"] - 10.0).abs() < 1e-6);
    let w = m.get_weights().unwrap();
    assert!((w[0].to_f32()[0] - 1.0).abs() < 1e-6);
    assert!((w[1].to_f32()[0] - 0.6).abs() < 1e-6);
    // w = 1, b = 0.6: p = [1.6, 2.6]
    let p = m.predict_on_batch(&x).unwrap();
    assert_eq!(p.shape.dims(), [2, 1]);
    let p = p.to_f32();
    assert!(
        (p[0] - 1.6).abs() < 1e-6 && (p[1] - 2.6).abs() < 1e-6,
        "{p:?}"
    );
    // p - y = [-0.4, -1.4]: loss (0.16 + 1.96) / 2 = 1.06
    assert!((m.test_on_batch(&x, &y).unwrap()["loss"] - 1.06).abs() < 1e-6);
    assert_eq!(m.predict(&x, 1).unwrap(), m.predict_on_batch(&x).unwrap());
}

#[test]
fn batch_methods_check_their_input() {
    let mut m = linear();
    let bad = t(&[2, 3], &[0.0; 6]);
    let y = t(&[2, 1], &[0.0; 2]);
    assert!(m.train_on_batch(&bad, &y).is_err());
    assert!(m.predict_on_batch(&bad).is_err());
    let mut fresh = Sequential::new(Box::new(CpuBackend::new()));
    fresh
        .add(Dense::new(1).activation(Activation::Linear).input_dim(1))
        .unwrap();
    let x = t(&[2, 1], &[1.0, 2.0]);
    assert!(fresh.train_on_batch(&x, &y).is_err());
    assert!(fresh.learning_rate().is_err());
    assert_eq!(fresh.predict_on_batch(&x).unwrap().shape.dims(), [2, 1]);
}
