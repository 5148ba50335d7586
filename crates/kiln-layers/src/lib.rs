//! # kiln-layers: the Keras-like model API
//!
//! A [`Sequential`] model is a stack of [`Layer`]s bound to a device (any
//! [`kiln_opt::Backend`]). `compile(loss, optimizer, metrics)` records the training setup and
//! initializes the weights *on the device*; `fit` / `evaluate` / `predict` build one graph per
//! (mode, batch size) — for training: forward, loss, metrics, autodiff backward and the
//! optimizer update — compile it once into a plan and replay it batch after batch.
//!
//! ## Three parts
//! - [`layers`] — **graph building**: the [`Layer`] trait and the layers (each file holds a
//!   layer and its serializable config), activations, initializers, regularizers, losses,
//!   metrics, optimizers (their updates are graph assignments) and
//!   [`layers::Stack`], which turns the layers and the `compile` setup into the graph of one
//!   [`Mode`] and batch size. It never sees a device.
//! - [`train`] — **the runtime**: [`Sequential`] binds a stack to a device, compiles its
//!   graphs into plans through the plan cache and runs them: the `fit` loop with its
//!   [`callbacks`] and [`progress`] bar, `evaluate`, `predict`, the host's view of the device
//!   state (weights, learning rate, accumulators), model files ([`io`]), `summary`, diagrams.
//! - [`data`] — **host-side data**: [`preprocessing`] (Keras's utilities, the tokenizer,
//!   splits) and [`datasets`] (the bundled data sets).
//!
//! The dependencies go one way: `train` uses `layers`; `layers` uses neither `train` nor
//! `data`; `data` uses neither. [`vars`] names every device variable; [`LayerError`] is the
//! crate's one error type.
//!
//! ## Invariants
//! - One training step is one plan run: the update is part of the graph (assignments), so
//!   weights never leave the device during `fit`. Data-parallel training
//!   ([`train::distributed`], [`Sequential::distribute`]) is the exception: a step is a
//!   gradient plan, an all-reduce of the gradient buckets on the host, and an update plan.
//! - Weights are device variables named `<layer>/<weight>` (`dense_1/kernel`), shared by the
//!   train, evaluate and predict plans. Every device-variable name is built by [`vars`] and
//!   nowhere else; the names are the model file format.
//! - Seeded and deterministic: initializers and shuffling use counter-based streams derived
//!   from the model seed.
//! - A short last batch gets its own plan (cached), so it computes exactly what a full batch
//!   of that size would.
//! - This crate never names a GPU API; it reaches devices only through the `Backend` trait.
//! - Errors name the layer and the shapes, with a hint; user input never panics. Arguments
//!   out of their domain (`batch_size` 0, `validation_split` outside `[0, 1)`, a negative
//!   or NaN learning rate, `input_dim(0)`...) are [`LayerError::InvalidArgument`] before
//!   anything runs.
//! - Non-finite training is detected on the device: every training step checks its own
//!   loss and records the first non-finite step next to the loss accumulator, so
//!   [`TerminateOnNan`] names the epoch, the step and the first non-finite variable without
//!   a per-step readback; `KILN_CHECK_NUMERICS=1` (or [`Sequential::set_check_numerics`])
//!   checks every step and names the first kernel that produced a NaN or an infinity
//!   ([`train::numerics`]).
//! - Model files ([`io`]) are byte-reproducible and carry a checksum per tensor, verified on
//!   load; a file lacking a weight its structure needs is an error naming it, never a
//!   random weight; [`fuzzing`] holds the harness of the model-file fuzz target.
//!
//! ## What is supported (Keras names, defaults and formulas)
//! - **Layers**: [`Dense`] (with `kernel_regularizer` / `bias_regularizer`), [`Flatten`],
//!   [`ActivationLayer`] (Keras's `Activation` layer), [`InputLayer`] / [`Input`] (declares
//!   the input shape; no `summary()` row).
//! - **Sequence layers**: [`Lstm`], [`Gru`] (`reset_after=True`, = PyTorch's `nn.GRU`),
//!   [`SimpleRnn`] (Keras weight layouts, `return_sequences`, `dropout`,
//!   `recurrent_dropout`), [`Embedding`], [`OneHot`].
//! - **Activations** ([`Activation`]): `linear`, `relu`, `tanh`, `sigmoid`, `softmax`,
//!   `softplus` (stable `max(x, 0) + log1p(e^-|x|)`), `softsign`, `hard_sigmoid` (Keras 2's
//!   `clip(0.2 x + 0.5, 0, 1)`), `elu` (alpha 1), `selu`, `gelu` (exact erf form, Keras's
//!   default `approximate=False`, through a Chebyshev fit of `erfc` with relative error
//!   < 1.2e-7), `exponential`.
//! - **Initializers** ([`Initializer`]): `zeros`, `ones`, `constant`, `uniform`
//!   (`RandomUniform(-0.05, 0.05)`), `normal` (`RandomNormal(0, 0.05)`), `truncated_normal`,
//!   `glorot_uniform` (default for kernels), `glorot_normal`, `lecun_uniform`,
//!   `lecun_normal`, `he_uniform`, `he_normal` (the normal ones truncated as Keras's
//!   `VarianceScaling`), `orthogonal` (sign-corrected QR, gain 1).
//! - **Losses** ([`Loss`]): `mse`, `mae`, `binary_crossentropy`, `categorical_crossentropy`,
//!   `sparse_categorical_crossentropy` (integer labels `[batch]` or `[batch, 1]`, f32 or
//!   i32); crossentropies after a softmax/sigmoid are computed from the logits.
//! - **Metrics** ([`Metric`]): `accuracy` (resolved as Keras does: binary, sparse categorical
//!   or categorical), `binary_accuracy`, `categorical_accuracy`,
//!   `sparse_categorical_accuracy`, `mse`, `mae`.
//! - **Regularizers** ([`Regularizer`]): `L1`, `L2`, `L1L2` (Keras default factor 0.01),
//!   added to the loss that is minimized and reported.
//! - **Optimizers**: [`Sgd`] (momentum, Nesterov), [`RmsProp`], [`Adam`], [`Adagrad`],
//!   [`Adadelta`], [`Adamax`], [`Nadam`], each with Keras 2's `clipnorm` / `clipvalue`.
//! - **Diagrams**: [`Sequential::to_dot`] and [`Sequential::plot_model`] (Graphviz).

#![warn(missing_docs)]

pub mod data;
mod error;
pub mod fuzzing;
pub mod layers;
pub mod train;
pub mod vars;

// The historical module paths (`kiln_layers::preprocessing::pad_sequences`...).
pub use data::{datasets, preprocessing};
pub use layers::regularizers;
pub use train::{callbacks, io, progress};

pub use data::datasets::{Dataset, DatasetError, TextDataset};
pub use data::preprocessing::{to_categorical, PreprocessingError, Tokenizer};
pub use error::{LayerError, ModelFileError, NonFinite, Result};
pub use kiln_opt::HostTensor;
pub use layers::{
    slot_name, Activation, ActivationConfig, ActivationLayer, Adadelta, Adagrad, Adam, Adamax,
    Dense, DenseConfig, Dropout, DropoutConfig, Embedding, EmbeddingConfig, Flatten, FlattenConfig,
    Gru, GruConfig, Initializer, Input, InputLayer, InputLayerConfig, Layer, LayerConfig, Loss,
    Lstm, LstmConfig, Metric, Mode, Nadam, OneHot, OneHotConfig, Optimizer, OptimizerCommon,
    OptimizerConfig, ParamSpec, Regularizer, RmsProp, Sgd, SimpleRnn, SimpleRnnConfig,
    TrainContext, EPSILON, ITERATIONS_VARIABLE, LR_VARIABLE, NADAM_SCHEDULE_VARIABLE, SELU_ALPHA,
    SELU_SCALE, TRUNCATED_NORMAL_STDDEV,
};
pub use train::{
    load_model, load_model_from_bytes, saved_variables, shard_range, Callback, CallbackContext,
    Collective, CollectiveError, CompileConfig, CsvLogger, DistributedStats, EarlyStopping, Fit,
    FitParams, History, LambdaCallback, Logs, ModelCheckpoint, ModelConfig, MonitorMode,
    ProgressBar, ReduceLrOnPlateau, Sequential, SingleProcess, TerminateOnNan, ThreadGroup,
    Verbosity,
};
