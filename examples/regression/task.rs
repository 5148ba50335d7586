//! The regression task of the "neural networks, deep learning, and keras" tutorial: data and
//! the two models (`Dense(2, relu) → Dense(1)` and four `Dense(32, relu)` → `Dense(1)`), both
//! mse + SGD.
//!
//! The tutorial's data are 749 Wikipedia pages (325 train, 424 validation) described by five
//! counts — sections, images, external links, languages, characters — normalized row-wise to
//! unit L2 norm (`keras.utils.normalize`), with a one-column continuous response. That corpus
//! is not available, so [`make_data`] draws a synthetic stand-in with the same shape and
//! preprocessing: page lengths log-normal around 30,000 characters, the other counts
//! proportional to the length with log-normal noise, and the response the page's internal
//! links per character (mean ≈ 0.03, variance ≈ 4e-4, the scale of the tutorial's losses). The
//! response is correlated with the normalized external-link count, but that feature is ~0.01
//! in size after normalization, so plain SGD at the tutorial's settings mostly learns the
//! response's mean — just as the tutorial's losses plateau.

use kiln::ir::random::Rng;
use kiln::preprocessing::normalize;
use kiln::{Activation, Dense, HostTensor, Loss, Sequential, Sgd};

/// Pages in the tutorial's corpus.
pub const N_PAGES: usize = 749;
/// The first `N_TRAIN` pages train, the rest validate (the tutorial's `x[:325]`).
pub const N_TRAIN: usize = 325;
/// Features per page.
pub const N_FEATURES: usize = 5;
/// Names of the features, in column order.
pub const FEATURES: [&str; N_FEATURES] = [
    "num_sections",
    "num_images",
    "num_elinks",
    "num_langs",
    "num_chars",
];

/// Training and validation sets: `x` f32 `[n, 5]` (rows of unit norm), `y` f32 `[n, 1]`.
pub struct Data {
    /// Training features.
    pub x_train: HostTensor,
    /// Training responses.
    pub y_train: HostTensor,
    /// Validation features.
    pub x_test: HostTensor,
    /// Validation responses.
    pub y_test: HostTensor,
}

/// The synthetic pages (see the module docs), split like the tutorial.
pub fn make_data(seed: u64) -> Data {
    let mut rng = Rng::new(seed);
    let mut x = Vec::with_capacity(N_PAGES * N_FEATURES);
    let mut y = Vec::with_capacity(N_PAGES);
    for _ in 0..N_PAGES {
        let chars = (10.3 + 0.7 * rng.normal()).exp().round();
        // internal links per character, the page's "link density"
        let density = (0.6 * rng.normal()).exp() / 40.0;
        let sections = (chars / 2500.0 * (0.3 * rng.normal()).exp())
            .round()
            .max(1.0);
        let images = (chars / 8000.0 * (0.8 * rng.normal()).exp()).floor();
        let elinks = (chars * density * 0.3 * (0.3 * rng.normal()).exp()).round();
        let langs = (3.0 + 0.8 * rng.normal()).exp().round();
        let ilinks = (chars * density * (0.2 * rng.normal()).exp()).round();
        x.extend([sections, images, elinks, langs, chars].map(|v| v as f32));
        y.push((ilinks / chars) as f32);
    }
    let x = HostTensor::f32([N_PAGES, N_FEATURES], x).expect("n × 5 values");
    let x = normalize(&x, -1, 2.0)
        .expect("a [n, 5] tensor normalizes")
        .to_f32();
    let cut = N_TRAIN * N_FEATURES;
    Data {
        x_train: HostTensor::f32([N_TRAIN, N_FEATURES], x[..cut].to_vec()).expect("rows"),
        y_train: HostTensor::f32([N_TRAIN, 1], y[..N_TRAIN].to_vec()).expect("rows"),
        x_test: HostTensor::f32([N_PAGES - N_TRAIN, N_FEATURES], x[cut..].to_vec()).expect("rows"),
        y_test: HostTensor::f32([N_PAGES - N_TRAIN, 1], y[N_TRAIN..].to_vec()).expect("rows"),
    }
}

/// The tutorial's first model: `Dense(2, relu, input_dim=5) → Dense(1)`, mse, SGD (Keras
/// default learning rate 0.01).
pub fn small_model(device: Box<dyn kiln::Backend>, seed: u64) -> kiln::Result<Sequential> {
    let mut m = Sequential::new(device).seed(seed);
    m.add(
        Dense::new(2)
            .activation(Activation::Relu)
            .input_dim(N_FEATURES),
    )?;
    m.add(Dense::new(1))?;
    m.compile(Loss::MeanSquaredError, Sgd::default(), &[])?;
    Ok(m)
}

/// The tutorial's deeper model: four `Dense(32, relu)` → `Dense(1)`, mse, SGD(0.01).
pub fn deep_model(device: Box<dyn kiln::Backend>, seed: u64) -> kiln::Result<Sequential> {
    let mut m = Sequential::new(device).seed(seed);
    m.add(
        Dense::new(32)
            .activation(Activation::Relu)
            .input_dim(N_FEATURES),
    )?;
    for _ in 0..3 {
        m.add(Dense::new(32).activation(Activation::Relu))?;
    }
    m.add(Dense::new(1))?;
    m.compile(Loss::MeanSquaredError, Sgd::default(), &[])?;
    Ok(m)
}

/// Mean squared error of predictions `p` against `y` (both `[n, 1]`), computed on the host.
pub fn mse(p: &HostTensor, y: &HostTensor) -> f64 {
    let (p, y) = (p.to_f32(), y.to_f32());
    let s: f64 = p
        .iter()
        .zip(&y)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    s / y.len().max(1) as f64
}

/// The mse on `y` of always predicting the mean of `train` (what a model that learned only
/// the bias achieves).
pub fn mean_baseline(train: &HostTensor, y: &HostTensor) -> f64 {
    let t = train.to_f32();
    let mean = t.iter().map(|&v| f64::from(v)).sum::<f64>() / t.len().max(1) as f64;
    let v = y.to_f32();
    v.iter()
        .map(|&b| (f64::from(b) - mean).powi(2))
        .sum::<f64>()
        / v.len().max(1) as f64
}

#[path = "../common/timing.rs"]
pub mod timing;
pub use timing::fit_timed;
