//! The models and data of `kiln-dp` — the small models its `check` trains (the MPI tests'
//! reference and multi-rank runs) and the benchmark's — shared with
//! `tests/tests/data_parallel.rs`, which includes this file, so that the in-process and the
//! MPI checks train the very same models on the very same data.

use kiln::{Activation, Adam, Dense, Embedding, HostTensor, Loss, Lstm, Metric, Sequential, Sgd};

/// A model of the data-parallel checks and benchmark.
#[derive(Clone, Copy, Debug)]
pub enum Model {
    /// Dense(16, tanh) -> Dense(2, softmax), plain SGD.
    Sgd,
    /// The same with Adam and clipnorm 1.
    Adam,
    /// Embedding(12, 4) -> LSTM(8, dropout 0.2, recurrent dropout 0.1) -> Dense(2), Adam.
    Lstm,
    /// A 784-256-10 MLP with Adam (benchmark).
    Mlp,
    /// Embedding(5000, 32) -> LSTM(100) -> Dense(1): the IMDB tutorial's model on 80 tokens
    /// (benchmark).
    Imdb,
}

/// `which`, seeded and compiled, on `dev`.
pub fn build(dev: Box<dyn kiln::Backend>, which: Model) -> kiln::Result<Sequential> {
    let mut m = Sequential::new(dev).seed(5);
    let loss = Loss::SparseCategoricalCrossentropy;
    match which {
        Model::Sgd | Model::Adam => {
            m.add(Dense::new(16).activation(Activation::Tanh).input_dim(3))?;
            m.add(Dense::new(2).activation(Activation::Softmax))?;
        }
        Model::Lstm => {
            m.add(Embedding::new(12, 4).input_length(6))?;
            m.add(Lstm::new(8).dropout(0.2).recurrent_dropout(0.1))?;
            m.add(Dense::new(2).activation(Activation::Softmax))?;
        }
        Model::Mlp => {
            m.add(Dense::new(256).activation(Activation::Relu).input_dim(784))?;
            m.add(Dense::new(10).activation(Activation::Softmax))?;
        }
        Model::Imdb => {
            m.add(Embedding::new(5000, 32).input_length(80))?;
            m.add(Lstm::new(100))?;
            m.add(Dense::new(1).activation(Activation::Sigmoid))?;
        }
    }
    match which {
        Model::Sgd => m.compile(loss, Sgd::new(0.2), &[Metric::Accuracy])?,
        Model::Adam => m.compile(loss, Adam::new(0.01).clipnorm(1.0), &[Metric::Accuracy])?,
        Model::Imdb => m.compile(
            Loss::BinaryCrossentropy,
            Adam::new(0.001),
            &[Metric::Accuracy],
        )?,
        _ => m.compile(loss, Adam::new(0.01), &[Metric::Accuracy])?,
    }
    Ok(m)
}

/// `n` generated samples for `which`: `x [n, features]`, `y [n, 1]` (class ids, or the
/// binary label for `Imdb`).
pub fn data(which: Model, n: usize) -> kiln::Result<(HostTensor, HostTensor)> {
    let (cols, x, y): (usize, Vec<f32>, Vec<f32>) = match which {
        Model::Sgd | Model::Adam => {
            let x: Vec<f32> = (0..n * 3)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect();
            let y = (0..n)
                .map(|r| f32::from(x[r * 3] + 0.5 * x[r * 3 + 1] > 0.1))
                .collect();
            (3, x, y)
        }
        Model::Lstm => {
            let x: Vec<f32> = (0..n * 6).map(|i| ((i * 7 + i / 6) % 12) as f32).collect();
            let y = (0..n)
                .map(|r| f32::from(x[r * 6..r * 6 + 6].contains(&3.0)))
                .collect();
            (6, x, y)
        }
        Model::Mlp => {
            let x: Vec<f32> = (0..n * 784)
                .map(|i| ((i * 31) % 255) as f32 / 255.0)
                .collect();
            let y = (0..n).map(|r| (r % 10) as f32).collect();
            (784, x, y)
        }
        Model::Imdb => {
            let x: Vec<f32> = (0..n * 80).map(|i| ((i * 7919) % 5000) as f32).collect();
            let y = (0..n).map(|r| (r % 2) as f32).collect();
            (80, x, y)
        }
    };
    Ok((HostTensor::f32([n, cols], x)?, HostTensor::f32([n, 1], y)?))
}
