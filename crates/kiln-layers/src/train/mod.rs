//! **Train: the runtime.** [`Sequential`] binds a [`crate::layers::Stack`] to a device
//! ([`kiln_opt::Backend`]), compiles its graphs into plans (one per mode and batch size, through
//! the plan cache) and runs them: the `fit` loop with its [`callbacks`] and [`progress`] bar,
//! `evaluate` and `predict`, the host's view of the device state (weights, learning rate,
//! accumulators), checkpoints and model files ([`io`]), `summary` and diagrams.
//!
//! ## Invariants
//! - Depends on [`crate::layers`] (graphs) and [`crate::vars`] (variable names), never the
//!   other way; not on [`crate::data`].
//! - One training step is one plan run; nothing is read back per step (loss and metrics
//!   accumulate on the device, the host reads them once per epoch or when a callback asks).
//! - The module graph has no cycles: `model` ← `plans`, `state` ← `callbacks` ← `progress` ←
//!   `fit`; `history` and `options` are leaves.

pub mod callbacks;
pub mod distributed;
mod fit;
mod history;
pub mod io;
mod model;
pub mod numerics;
mod options;
mod plans;
pub mod progress;
mod state;
mod visualize;

pub use callbacks::{
    Callback, CallbackContext, CsvLogger, EarlyStopping, FitParams, LambdaCallback,
    ModelCheckpoint, MonitorMode, ReduceLrOnPlateau, TerminateOnNan,
};
pub use distributed::{
    shard_range, Collective, CollectiveError, DistributedStats, SingleProcess, ThreadGroup,
};
pub use history::{History, Logs};
pub use io::{load_model, load_model_from_bytes, saved_variables, CompileConfig, ModelConfig};
pub use model::Sequential;
pub use options::{Fit, Verbosity};
pub use progress::ProgressBar;

/// The loaded plans of a model, by (mode, batch size).
type PlanMap = std::collections::HashMap<(crate::Mode, usize), Box<dyn kiln_opt::Executable>>;
/// How each plan of a model was obtained.
type CacheLog = Vec<(crate::Mode, usize, kiln_opt::cache::CacheOutcome)>;
