//! The unit-circle task of the Keras MLP tutorial: data and the two models.

use kiln::ir::random::Rng;
use kiln::{Activation, Dense, HostTensor, Loss, Metric, Sequential, Sgd};

/// `n` points uniform in [-2, 2]², one-hot labels `[outside, inside]` of the unit circle.
pub fn make_data(n: usize, seed: u64) -> (HostTensor, HostTensor) {
    let mut rng = Rng::new(seed);
    let mut x = Vec::with_capacity(2 * n);
    let mut y = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let (a, b) = (rng.uniform(-2.0, 2.0) as f32, rng.uniform(-2.0, 2.0) as f32);
        let inside = a * a + b * b < 1.0;
        x.extend([a, b]);
        y.extend(if inside { [0.0, 1.0] } else { [1.0, 0.0] });
    }
    (
        HostTensor::f32([n, 2], x).expect("2n values"),
        HostTensor::f32([n, 2], y).expect("2n values"),
    )
}

/// The linear model: `Dense(2)`, mse, SGD.
pub fn linear_model(device: Box<dyn kiln::Backend>, seed: u64) -> kiln::Result<Sequential> {
    let mut m = Sequential::new(device).seed(seed);
    m.add(Dense::new(2).input_dim(2))?;
    m.compile(Loss::MeanSquaredError, Sgd::default(), &[Metric::Accuracy])?;
    Ok(m)
}

/// The deep model: `Dense(3, tanh) → Dense(3, tanh) → Dense(2, softmax)`, binary
/// crossentropy, SGD with `lr`.
pub fn deep_model(device: Box<dyn kiln::Backend>, seed: u64, lr: f32) -> kiln::Result<Sequential> {
    let mut m = Sequential::new(device).seed(seed);
    m.add(Dense::new(3).activation(Activation::Tanh).input_dim(2))?;
    m.add(Dense::new(3).activation(Activation::Tanh))?;
    m.add(Dense::new(2).activation(Activation::Softmax))?;
    m.compile(Loss::BinaryCrossentropy, Sgd::new(lr), &[Metric::Accuracy])?;
    Ok(m)
}
