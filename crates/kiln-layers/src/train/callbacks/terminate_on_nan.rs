//! Keras `TerminateOnNaN`.

use super::{Callback, CallbackContext};
use crate::train::Logs;
use crate::Result;

/// Stops training when the loss becomes NaN or infinite (Keras `TerminateOnNaN`).
///
/// Keras checks every batch; here a training step reads nothing back, so the loss is
/// checked at the end of each epoch (the epoch mean) and, during an epoch, at the batches
/// where another callback read the running logs (the progress bar's redraws on a terminal).
/// Put it after the progress bar (the default order) to see those reads.
#[derive(Clone, Debug, Default)]
pub struct TerminateOnNan {
    stopped: bool,
}

impl TerminateOnNan {
    /// A new callback.
    pub fn new() -> Self {
        Self::default()
    }
    /// Whether it stopped training.
    pub fn stopped(&self) -> bool {
        self.stopped
    }
}

impl Callback for TerminateOnNan {
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext<'_>) -> Result<()> {
        self.stopped = false;
        Ok(())
    }

    fn on_batch_end(&mut self, ctx: &mut CallbackContext<'_>, batch: usize) -> Result<()> {
        let loss = ctx.latest_logs().and_then(|l| l.get("loss")).copied();
        if loss.is_some_and(|l| !l.is_finite()) && !self.stopped {
            println!("Batch {batch}: Invalid loss, terminating training");
            self.stopped = true;
            ctx.stop_training();
        }
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        ctx: &mut CallbackContext<'_>,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        let loss = logs.get("loss").copied();
        if loss.is_some_and(|l| !l.is_finite()) && !self.stopped {
            println!("Epoch {epoch}: Invalid loss, terminating training");
            self.stopped = true;
            ctx.stop_training();
        }
        Ok(())
    }
}
