//! The digits task: scikit-learn's 8 × 8 UCI optical digits (`digits.csv.gz`, 1797 images,
//! values 0..16) classified by a Keras MLP — `Dense(100, relu) → Dense(10, softmax)`,
//! categorical crossentropy on `to_categorical` labels — on a 25 % stratified holdout (the
//! reference: scikit-learn's `MLPClassifier(100)` gets ~97.8 %).

use kiln::preprocessing::{argmax_rows, to_categorical};
use kiln::{Activation, Adam, Dense, HostTensor, Loss, Metric, Optimizer, RmsProp, Sequential};

/// Fraction of the images held out (stratified).
pub const TEST_FRACTION: f64 = 0.25;
/// Hidden units (scikit-learn's `MLPClassifier` default).
pub const HIDDEN: usize = 100;
/// Classes.
pub const CLASSES: usize = 10;
/// Pixel values run 0..16.
pub const SCALE: f32 = 16.0;

/// The split data: `x` scaled to [0, 1], `y` one-hot, `labels` the class indices.
pub struct Data {
    /// Training images, f32 `[n, 64]`.
    pub x_train: HostTensor,
    /// Training labels, one-hot f32 `[n, 10]`.
    pub y_train: HostTensor,
    /// Training class indices.
    pub labels_train: Vec<usize>,
    /// Holdout images.
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

/// Loads `digits.csv.gz` from [`kiln::datasets::data_dir`] (errors clearly when it is
/// missing) and splits it, stratified, with `seed`.
pub fn load(seed: u64) -> Result<Data, Box<dyn std::error::Error>> {
    let d = kiln::datasets::digits()?;
    let (train, test) = d.split(TEST_FRACTION, seed)?;
    Ok(Data {
        x_train: scaled(&train.x, SCALE),
        y_train: to_categorical(&train.y, Some(CLASSES))?,
        labels_train: train.y,
        x_test: scaled(&test.x, SCALE),
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

/// `Dense(100, relu, input_dim=64) → Dense(10, softmax)`, categorical crossentropy, `opt`,
/// accuracy.
pub fn model(device: Box<dyn kiln::Backend>, seed: u64, opt: Opt) -> kiln::Result<Sequential> {
    let mut m = Sequential::new(device).seed(seed);
    m.add(
        Dense::new(HIDDEN)
            .activation(Activation::Relu)
            .input_dim(64),
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
