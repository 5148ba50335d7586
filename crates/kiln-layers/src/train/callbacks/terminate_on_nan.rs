//! Keras `TerminateOnNaN`.

use super::{Callback, CallbackContext};
use crate::train::Logs;
use crate::{LayerError, NonFinite, Result};

/// Stops training when the loss becomes NaN or infinite (Keras `TerminateOnNaN`).
///
/// Keras checks every batch; here a training step reads nothing back. Instead the training
/// plan checks its own loss on the device (an in-plan finite check that records the first
/// step whose loss was not finite, next to the loss accumulator), and this callback looks at
/// the running loss whenever the host reads it anyway: at the end of each epoch and, during
/// an epoch, at the batches where another callback read the running logs (the progress
/// bar's redraws on a terminal; put this callback after it, the default order). When it
/// fires it reads the recorded step and, once, every variable, and reports them
/// ([`TerminateOnNan::report`]): the epoch, the step whose loss first went non-finite and the
/// first variable (in model order) that is non-finite after it.
///
/// As Keras's, it stops training and `fit` returns normally; [`TerminateOnNan::raising`]
/// makes `fit` return [`LayerError::NonFinite`] instead.
#[derive(Clone, Debug, Default)]
pub struct TerminateOnNan {
    stopped: bool,
    raise: bool,
    epoch: usize,
    report: Option<NonFinite>,
}

impl TerminateOnNan {
    /// A new callback.
    pub fn new() -> Self {
        Self::default()
    }
    /// A callback that makes `fit` fail with [`LayerError::NonFinite`] when it fires.
    pub fn raising() -> Self {
        TerminateOnNan {
            raise: true,
            ..Self::default()
        }
    }
    /// Whether it stopped training.
    pub fn stopped(&self) -> bool {
        self.stopped
    }
    /// Where the loss first went non-finite, once it fired.
    pub fn report(&self) -> Option<&NonFinite> {
        self.report.as_ref()
    }

    fn fire(
        &mut self,
        ctx: &mut CallbackContext<'_>,
        loss: f64,
        batch: Option<usize>,
    ) -> Result<()> {
        let step = ctx.model.first_nonfinite_step()?;
        let variable = ctx.model.first_nonfinite_variable()?;
        let report = NonFinite {
            epoch: self.epoch,
            step,
            loss,
            variable,
            kernel: None,
        };
        match batch {
            Some(b) => println!("Batch {b}: Invalid loss, terminating training ({report})"),
            None => println!(
                "Epoch {}: Invalid loss, terminating training ({report})",
                self.epoch
            ),
        }
        self.stopped = true;
        ctx.stop_training();
        self.report = Some(report.clone());
        if self.raise {
            return Err(LayerError::NonFinite(report));
        }
        Ok(())
    }
}

impl Callback for TerminateOnNan {
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext<'_>) -> Result<()> {
        self.stopped = false;
        self.report = None;
        Ok(())
    }

    fn on_epoch_begin(&mut self, _ctx: &mut CallbackContext<'_>, epoch: usize) -> Result<()> {
        self.epoch = epoch;
        Ok(())
    }

    fn on_batch_end(&mut self, ctx: &mut CallbackContext<'_>, batch: usize) -> Result<()> {
        let loss = ctx.latest_logs().and_then(|l| l.get("loss")).copied();
        match loss {
            Some(l) if !l.is_finite() && !self.stopped => self.fire(ctx, l, Some(batch)),
            _ => Ok(()),
        }
    }

    fn on_epoch_end(
        &mut self,
        ctx: &mut CallbackContext<'_>,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        self.epoch = epoch;
        match logs.get("loss").copied() {
            Some(l) if !l.is_finite() && !self.stopped => self.fire(ctx, l, None),
            _ => Ok(()),
        }
    }
}
