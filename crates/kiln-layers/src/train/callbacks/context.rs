//! The [`Callback`] trait and what a callback sees: [`CallbackContext`], [`FitParams`].

use crate::train::{Logs, Sequential, Verbosity};
use crate::{HostTensor, Result};

/// What a fit looks like, for callbacks (Keras `Callback.params`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FitParams {
    /// Number of epochs (`Fit::epochs`).
    pub epochs: usize,
    /// Training steps (batches) per epoch.
    pub steps: usize,
    /// Training samples per epoch.
    pub samples: usize,
    /// Effective verbosity.
    pub verbosity: Verbosity,
}

/// What a callback may see and change while a model trains: the model (weights, learning
/// rate), the running logs, and the request to stop (Keras `model.stop_training = True`).
pub struct CallbackContext<'m> {
    pub(crate) model: &'m mut Sequential,
    pub(crate) stop: bool,
    pub(crate) params: FitParams,
    /// Training samples and steps run in the current epoch.
    pub(crate) seen: usize,
    /// Of those, the samples this rank trained on (all of them unless data-parallel).
    pub(crate) local_seen: usize,
    pub(crate) steps_run: usize,
    /// Running logs read at the current batch, if a callback read them.
    pub(crate) latest: Option<Logs>,
}

impl<'m> CallbackContext<'m> {
    /// A context on `model` outside any fit (to drive callbacks by hand, e.g. in tests).
    pub fn new(model: &'m mut Sequential) -> Self {
        CallbackContext {
            model,
            stop: false,
            params: FitParams::default(),
            seen: 0,
            local_seen: 0,
            steps_run: 0,
            latest: None,
        }
    }

    /// The model being trained.
    pub fn model(&mut self) -> &mut Sequential {
        self.model
    }

    /// Asks `fit` to stop after the current batch (Keras `model.stop_training = True`); the
    /// epoch still ends normally (validation, `on_epoch_end`, history).
    pub fn stop_training(&mut self) {
        self.stop = true;
    }

    /// Whether a callback asked to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop
    }

    /// Epochs, steps per epoch, samples.
    pub fn params(&self) -> &FitParams {
        &self.params
    }

    /// This process's rank in data-parallel training (0 otherwise).
    pub fn rank(&self) -> usize {
        self.model.rank_and_size().map_or(0, |r| r.0)
    }

    /// Whether this process is rank 0 (or training alone): the one that writes files.
    pub fn is_chief(&self) -> bool {
        self.model.is_chief()
    }

    /// Training steps run so far in the current epoch.
    pub fn steps_run(&self) -> usize {
        self.steps_run
    }

    /// The learning-rate variable ([`LR_VARIABLE`](crate::LR_VARIABLE)); known on the host
    /// after `compile`, so reading it normally costs no device round trip.
    pub fn learning_rate(&mut self) -> Result<f32> {
        self.model.learning_rate()
    }

    /// Writes the learning-rate variable on the device; the compiled plans read it, so the
    /// next step uses it without recompiling.
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.model.set_learning_rate(lr)
    }

    /// The model's weights, read from the device (waits for it).
    pub fn get_weights(&mut self) -> Result<Vec<HostTensor>> {
        self.model.get_weights()
    }

    /// Replaces the model's weights.
    pub fn set_weights(&mut self, weights: &[HostTensor]) -> Result<()> {
        self.model.set_weights(weights)
    }

    /// Running means of the loss and metrics over the current epoch's training samples so
    /// far, read from the device accumulators: **waits for the device**. Empty outside a
    /// training pass. In data-parallel training these are this rank's samples (the epoch
    /// logs are the whole group's).
    pub fn running_logs(&mut self) -> Result<Logs> {
        if self.local_seen == 0 {
            return Ok(Logs::new());
        }
        let logs = self.model.read_accumulators(self.local_seen)?;
        self.latest = Some(logs.clone());
        Ok(logs)
    }

    /// The running logs some callback read at the current batch (no device access).
    pub fn latest_logs(&self) -> Option<&Logs> {
        self.latest.as_ref()
    }
}

/// A training hook (Keras `Callback`). Every method defaults to doing nothing; an error stops
/// `fit` and is returned by it.
pub trait Callback {
    /// Before the first epoch.
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext<'_>) -> Result<()> {
        Ok(())
    }
    /// After the last epoch (or the stop); `logs` are the last epoch's.
    fn on_train_end(&mut self, _ctx: &mut CallbackContext<'_>, _logs: &Logs) -> Result<()> {
        Ok(())
    }
    /// Before epoch `epoch` (0-based).
    fn on_epoch_begin(&mut self, _ctx: &mut CallbackContext<'_>, _epoch: usize) -> Result<()> {
        Ok(())
    }
    /// After epoch `epoch` and its validation: `logs` holds `loss`, metrics and `val_*`
    /// (epoch means); callbacks may add entries (they reach the history).
    fn on_epoch_end(
        &mut self,
        _ctx: &mut CallbackContext<'_>,
        _epoch: usize,
        _logs: &mut Logs,
    ) -> Result<()> {
        Ok(())
    }
    /// Before training step `batch` (0-based within the epoch).
    fn on_batch_begin(&mut self, _ctx: &mut CallbackContext<'_>, _batch: usize) -> Result<()> {
        Ok(())
    }
    /// After training step `batch` was queued. Nothing has been read back: see
    /// [`CallbackContext::running_logs`] and [`CallbackContext::latest_logs`].
    fn on_batch_end(&mut self, _ctx: &mut CallbackContext<'_>, _batch: usize) -> Result<()> {
        Ok(())
    }
}
