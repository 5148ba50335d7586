//! The MNIST task: a 5000-image MNIST subset (`mnist_5k.csv.gz`, 500 per class, 28 × 28
//! pixels 0..255) classified by a Keras MLP — `Dense(128, relu) → Dense(10, softmax)`,
//! categorical crossentropy on `to_categorical` labels, pixels / 255 — with a stratified
//! 4000/1000 split (the reference: an MLP(128) gets ~93.6 %).

use kiln::preprocessing::{argmax_rows, to_categorical};
use kiln::{Activation, Adam, Dense, HostTensor, Loss, Metric, Optimizer, RmsProp, Sequential};

/// Fraction of the images held out (stratified): 1000 of 5000.
pub const TEST_FRACTION: f64 = 0.2;
/// Hidden units.
pub const HIDDEN: usize = 128;
/// Classes.
pub const CLASSES: usize = 10;
/// Pixels per image.
pub const PIXELS: usize = 784;

/// The split data: `x` scaled to [0, 1], `y` one-hot, `labels` the class indices.
pub struct Data {
    /// Training images, f32 `[4000, 784]`.
    pub x_train: HostTensor,
    /// Training labels, one-hot f32 `[4000, 10]`.
    pub y_train: HostTensor,
    /// Training class indices.
    pub labels_train: Vec<usize>,
    /// Holdout images, f32 `[1000, 784]`.
    pub x_test: HostTensor,
    /// Holdout labels, one-hot.
    pub y_test: HostTensor,
    /// Holdout class indices.
    pub labels_test: Vec<usize>,
}

fn scaled(x: &HostTensor, by: f32) -> HostTensor {
    let v = x.to_f32().into_iter().map(|p| p / by).collect();
    HostTensor::f32(x.shape.dims().to_vec(), v).expect("same shape")
}

/// Loads `mnist_5k.csv.gz` from [`kiln::datasets::data_dir`] (errors clearly when it is
/// missing) and splits it 4000/1000, stratified, with `seed`.
pub fn load(seed: u64) -> Result<Data, Box<dyn std::error::Error>> {
    let d = kiln::datasets::mnist_5k()?;
    let (train, test) = d.split(TEST_FRACTION, seed)?;
    Ok(Data {
        x_train: scaled(&train.x, 255.0),
        y_train: to_categorical(&train.y, Some(CLASSES))?,
        labels_train: train.y,
        x_test: scaled(&test.x, 255.0),
        y_test: to_categorical(&test.y, Some(CLASSES))?,
        labels_test: test.y,
    })
}

/// Which optimizer trains the model.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Opt {
    /// Keras `RMSprop()` (learning rate 0.001).
    RmsProp,
    /// Keras `Adam()` (learning rate 0.001).
    Adam,
}

impl Opt {
    /// Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Opt::RmsProp => "RMSprop",
            Opt::Adam => "Adam",
        }
    }

    fn build(self) -> Box<dyn Optimizer> {
        match self {
            Opt::RmsProp => Box::new(RmsProp::default()),
            Opt::Adam => Box::new(Adam::default()),
        }
    }
}

/// `Dense(128, relu, input_dim=784) → Dense(10, softmax)`, categorical crossentropy, `opt`,
/// accuracy.
pub fn model(device: Box<dyn kiln::Backend>, seed: u64, opt: Opt) -> kiln::Result<Sequential> {
    let mut m = Sequential::new(device).seed(seed);
    m.add(
        Dense::new(HIDDEN)
            .activation(Activation::Relu)
            .input_dim(PIXELS),
    )?;
    m.add(Dense::new(CLASSES).activation(Activation::Softmax))?;
    m.compile_boxed(
        Loss::CategoricalCrossentropy,
        opt.build(),
        &[Metric::Accuracy],
    )?;
    Ok(m)
}

/// Fraction of rows of `p` whose argmax is the label.
pub fn accuracy(p: &HostTensor, labels: &[usize]) -> f64 {
    let pred = argmax_rows(p).expect("predictions are [n, k]");
    let hits = pred.iter().zip(labels).filter(|(a, b)| a == b).count();
    hits as f64 / labels.len().max(1) as f64
}

#[path = "../common/timing.rs"]
pub mod timing;
pub use timing::fit_timed;
