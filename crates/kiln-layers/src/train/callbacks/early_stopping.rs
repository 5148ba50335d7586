//! Keras `EarlyStopping`.

use super::monitor::AutoRule;
use super::{Callback, CallbackContext, Monitor, MonitorMode};
use crate::train::Logs;
use crate::{HostTensor, Result};

/// Stops training when a monitored quantity has stopped improving (Keras `EarlyStopping`,
/// same defaults: `val_loss`, `min_delta` 0, `patience` 0, auto mode, no baseline, no
/// restoring). With `restore_best_weights`, the weights are read back (a device round trip)
/// at every improving epoch and written back when training stops.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    monitor: Monitor,
    patience: usize,
    baseline: Option<f64>,
    restore_best_weights: bool,
    start_from_epoch: usize,
    verbose: bool,
    wait: usize,
    stopped_epoch: usize,
    best_epoch: usize,
    best_weights: Option<Vec<HostTensor>>,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping {
            monitor: Monitor::new("val_loss", AutoRule::AccuracySuffix),
            patience: 0,
            baseline: None,
            restore_best_weights: false,
            start_from_epoch: 0,
            verbose: false,
            wait: 0,
            stopped_epoch: 0,
            best_epoch: 0,
            best_weights: None,
        }
    }
}

impl EarlyStopping {
    /// Monitors `monitor` (Keras default `val_loss`).
    pub fn new(monitor: &str) -> Self {
        EarlyStopping {
            monitor: Monitor::new(monitor, AutoRule::AccuracySuffix),
            ..Self::default()
        }
    }
    /// Epochs without improvement before stopping (default 0).
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }
    /// Minimum change counted as an improvement (default 0; its sign is ignored).
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.monitor.min_delta = min_delta.abs();
        self
    }
    /// Direction of improvement (default auto).
    pub fn mode(mut self, mode: MonitorMode) -> Self {
        self.monitor.mode = mode;
        self
    }
    /// Keep training only while the value beats `baseline` too.
    pub fn baseline(mut self, baseline: f64) -> Self {
        self.baseline = Some(baseline);
        self
    }
    /// Restore the weights of the best epoch when stopping (default false).
    pub fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore_best_weights = restore;
        self
    }
    /// Ignore the epochs before this one (warm-up; default 0).
    pub fn start_from_epoch(mut self, epoch: usize) -> Self {
        self.start_from_epoch = epoch;
        self
    }
    /// Print a line when stopping (default false).
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }
    /// The epoch (0-based) at which training was stopped, 0 if it was not (as Keras).
    pub fn stopped_epoch(&self) -> usize {
        self.stopped_epoch
    }
    /// The best monitored value so far.
    pub fn best(&self) -> f64 {
        self.monitor.best()
    }
    /// The epoch (0-based) of the best value.
    pub fn best_epoch(&self) -> usize {
        self.best_epoch
    }
    /// Epochs since the last improvement.
    pub fn wait(&self) -> usize {
        self.wait
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext<'_>) -> Result<()> {
        self.wait = 0;
        self.stopped_epoch = 0;
        self.monitor.reset();
        self.best_weights = None;
        self.best_epoch = 0;
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        ctx: &mut CallbackContext<'_>,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        let Some(current) = self.monitor.value("Early stopping", logs) else {
            return Ok(());
        };
        if epoch < self.start_from_epoch {
            return Ok(());
        }
        if self.restore_best_weights && self.best_weights.is_none() {
            // Keras: restore the weights after the first epoch if no progress is ever made.
            self.best_weights = Some(ctx.get_weights()?);
        }
        self.wait += 1;
        if self.monitor.is_better(current) {
            self.monitor.set_best(current);
            self.best_epoch = epoch;
            if self.restore_best_weights {
                self.best_weights = Some(ctx.get_weights()?);
            }
            if self
                .baseline
                .is_none_or(|b| self.monitor.improves(current, b))
            {
                self.wait = 0;
            }
            return Ok(());
        }
        if self.wait >= self.patience && epoch > 0 {
            self.stopped_epoch = epoch;
            ctx.stop_training();
            if let (true, Some(w)) = (self.restore_best_weights, &self.best_weights) {
                if self.verbose {
                    println!(
                        "Restoring model weights from the end of the best epoch: {}.",
                        self.best_epoch + 1
                    );
                }
                ctx.set_weights(w)?;
            }
        }
        Ok(())
    }

    fn on_train_end(&mut self, _ctx: &mut CallbackContext<'_>, _logs: &Logs) -> Result<()> {
        if self.stopped_epoch > 0 && self.verbose {
            println!("Epoch {}: early stopping", self.stopped_epoch + 1);
        }
        Ok(())
    }
}
