//! Training callbacks (Keras `tf.keras.callbacks`), run by
//! [`Sequential::fit_with_callbacks`](crate::Sequential::fit_with_callbacks).
//!
//! ## Cost model
//! A training step reads nothing back: the loss and metrics accumulate on the device. Epoch
//! hooks receive the epoch's logs, which `fit` reads once per epoch anyway. Batch hooks
//! receive only the batch index; [`CallbackContext::running_logs`] reads the running averages
//! from the device *on demand* (it waits for the device, so call it sparingly — the progress
//! bar does it at most every 0.25 s), and [`CallbackContext::latest_logs`] returns what
//! another callback already read at this batch, for free.
//!
//! ## Order
//! The progress bar (when `verbose`) runs first, then the callbacks in the order given; the
//! history is recorded after all of them, so values they add to the logs (`lr`) reach it, as
//! with Keras's `History` callback, which runs last.

mod checkpoint;
mod context;
mod csv_logger;
mod early_stopping;
mod lambda;
mod monitor;
mod reduce_lr;
mod terminate_on_nan;

pub use checkpoint::ModelCheckpoint;
pub use context::{Callback, CallbackContext, FitParams};
pub use csv_logger::{python_float, CsvLogger};
pub use early_stopping::EarlyStopping;
pub use lambda::LambdaCallback;
pub(crate) use monitor::Monitor;
pub use monitor::MonitorMode;
pub use reduce_lr::ReduceLrOnPlateau;
pub use terminate_on_nan::TerminateOnNan;

use crate::LayerError;
use std::path::Path;

/// A callback's file error, naming the callback and the path.
fn io_error(who: &str, path: &Path, e: std::io::Error) -> LayerError {
    LayerError::Usage(format!("{who}: {}: {e}", path.display()))
}
