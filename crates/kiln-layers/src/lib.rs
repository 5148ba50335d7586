//! # kiln-layers: the Keras-like model API
//!
//! A [`Sequential`] model is a stack of [`Layer`]s bound to a device (any
//! [`kiln_opt::Backend`]). `compile(loss, optimizer, metrics)` records the training setup and
//! initializes the weights *on the device*; `fit` / `evaluate` / `predict` build one graph per
//! (mode, batch size) — for training: forward, loss, metrics, autodiff backward and the
//! optimizer update — compile it once into a plan and replay it batch after batch.
//!
//! ## Invariants
//! - One training step is one plan run: the update is part of the graph (assignments), so
//!   weights never leave the device during `fit`.
//! - Weights are device variables named `<layer>/<weight>` (`dense_1/kernel`), shared by the
//!   train, evaluate and predict plans.
//! - Seeded and deterministic: initializers and shuffling use counter-based streams derived
//!   from the model seed.
//! - A short last batch gets its own plan (cached), so it computes exactly what a full batch
//!   of that size would.
//! - This crate never names a GPU API; it reaches devices only through the `Backend` trait.
//! - Errors name the layer and the shapes, with a hint; user input never panics.

mod activation;
pub mod callbacks;
pub mod datasets;
mod error;
mod init;
pub mod io;
pub mod layers;
mod losses;
mod model;
mod optimizers;
pub mod preprocessing;
pub mod progress;
pub mod regularizers;
mod visualize;

pub use activation::Activation;
pub use callbacks::{
    Callback, CallbackContext, CsvLogger, EarlyStopping, FitParams, LambdaCallback,
    ModelCheckpoint, MonitorMode, ReduceLrOnPlateau, TerminateOnNan,
};
pub use datasets::{Dataset, DatasetError, TextDataset};
pub use error::{LayerError, Result};
pub use init::Initializer;
pub use io::{
    load_model, saved_variables, ActivationConfig, CompileConfig, DenseConfig, FlattenConfig,
    InputLayerConfig, LayerConfig, ModelConfig,
};
pub use kiln_opt::HostTensor;
pub use layers::{ActivationLayer, Dense, Flatten, Input, InputLayer, Layer, ParamSpec};
pub use losses::{Loss, Metric, EPSILON};
pub use model::{Fit, History, Logs, Mode, Sequential};
pub use optimizers::{
    slot_name, Adadelta, Adagrad, Adam, Adamax, Nadam, Optimizer, OptimizerConfig, RmsProp, Sgd,
    ITERATIONS_VARIABLE, LR_VARIABLE, NADAM_SCHEDULE_VARIABLE,
};
pub use preprocessing::{to_categorical, PreprocessingError, Tokenizer};
pub use progress::{ProgressBar, Verbosity};
pub use regularizers::Regularizer;
