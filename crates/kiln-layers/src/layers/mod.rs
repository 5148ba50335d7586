//! **Layers: graph building.** Everything here appends nodes to a [`kiln_ir::Graph`] and
//! nothing runs: the [`Layer`] trait and the layers (each file holds a layer *and* its
//! serializable configuration), activations, initializers, regularizers, losses, metrics,
//! the optimizers (their updates are graph assignments), and [`Stack`], which turns a list
//! of layers plus the training setup into the graph of one [`Mode`] and batch size.
//!
//! ## Invariants
//! - No device, no plan, no host data beyond constants: this module depends on `kiln-ir`,
//!   [`crate::vars`] and `crate::error` only (not on `train` or `data`).
//! - Device variables are created only by the names in [`crate::vars`].
//! - Building the same stack twice gives the same graph, node for node (plans are cached by
//!   the graph's hash).
//! - [`LayerConfig`] is the closed list of layers: the one place that names them all (a
//!   saved model's JSON is a list of them).

mod activation_layer;
mod activations;
mod config;
mod dense;
mod dropout;
mod flatten;
mod initializers;
mod input;
mod layer;
mod losses;
mod metrics;
mod optimizers;
mod recurrent;
pub mod regularizers;
mod stack;
mod train_context;

pub use activation_layer::{ActivationConfig, ActivationLayer};
pub use activations::{Activation, SELU_ALPHA, SELU_SCALE};
pub use config::LayerConfig;
pub use dense::{Dense, DenseConfig};
pub use dropout::{Dropout, DropoutConfig};
pub use flatten::{Flatten, FlattenConfig};
pub use initializers::{Initializer, TRUNCATED_NORMAL_STDDEV};
pub use input::{Input, InputLayer, InputLayerConfig};
pub(crate) use layer::{check_declared, keras_shape};
pub use layer::{Layer, ParamSpec};
pub use losses::{Loss, EPSILON};
pub use metrics::Metric;
pub use optimizers::{
    slot_name, Adadelta, Adagrad, Adam, Adamax, Nadam, Optimizer, OptimizerCommon, OptimizerConfig,
    RmsProp, Sgd, ITERATIONS_VARIABLE, LR_VARIABLE, NADAM_SCHEDULE_VARIABLE,
};
pub use recurrent::{
    Embedding, EmbeddingConfig, Gru, GruConfig, Lstm, LstmConfig, OneHot, OneHotConfig, SimpleRnn,
    SimpleRnnConfig,
};
pub use regularizers::Regularizer;
pub use stack::{grad_bucket_name, Compiled, Entry, Mode, Stack, GRAD_BUCKET_ELEMS};
pub use train_context::TrainContext;
