//! Keras `ReduceLROnPlateau`.

use super::monitor::AutoRule;
use super::{Callback, CallbackContext, Monitor, MonitorMode};
use crate::train::Logs;
use crate::{LayerError, Result};

/// Multiplies the learning rate by `factor` when a monitored quantity has stopped improving
/// for `patience` epochs (Keras `ReduceLROnPlateau`, same defaults: `val_loss`, factor 0.1,
/// patience 10, auto mode, `min_delta` 1e-4, cooldown 0, `min_lr` 0). It writes the
/// learning-rate device variable between epochs — the compiled plans read it, so nothing is
/// recompiled — and adds the epoch's learning rate to the logs as `lr`, as Keras does.
#[derive(Clone, Debug)]
pub struct ReduceLrOnPlateau {
    monitor: Monitor,
    factor: f64,
    patience: usize,
    cooldown: usize,
    min_lr: f64,
    verbose: bool,
    wait: usize,
    cooldown_counter: usize,
}

impl Default for ReduceLrOnPlateau {
    fn default() -> Self {
        ReduceLrOnPlateau {
            monitor: Monitor::new("val_loss", AutoRule::ContainsAcc).min_delta(1e-4),
            factor: 0.1,
            patience: 10,
            cooldown: 0,
            min_lr: 0.0,
            verbose: false,
            wait: 0,
            cooldown_counter: 0,
        }
    }
}

impl ReduceLrOnPlateau {
    /// Monitors `monitor` (Keras default `val_loss`).
    pub fn new(monitor: &str) -> Self {
        let mut r = Self::default();
        r.monitor.key = monitor.into();
        r
    }
    /// `new_lr = lr * factor` (default 0.1; must be below 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }
    /// Epochs without improvement before reducing (default 10).
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }
    /// Direction of improvement (default auto: increase if the name contains `acc`).
    pub fn mode(mut self, mode: MonitorMode) -> Self {
        self.monitor.mode = mode;
        self
    }
    /// Minimum change counted as an improvement (default 1e-4).
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.monitor.min_delta = min_delta;
        self
    }
    /// Epochs to wait after a reduction before counting again (default 0).
    pub fn cooldown(mut self, cooldown: usize) -> Self {
        self.cooldown = cooldown;
        self
    }
    /// Lower bound of the learning rate (default 0).
    pub fn min_lr(mut self, min_lr: f64) -> Self {
        self.min_lr = min_lr;
        self
    }
    /// Print a line at each reduction (default false).
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }
}

impl Callback for ReduceLrOnPlateau {
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext<'_>) -> Result<()> {
        if self.factor >= 1.0 {
            return Err(LayerError::Usage(format!(
                "ReduceLrOnPlateau does not support a factor >= 1.0, got {}",
                self.factor
            )));
        }
        self.monitor.reset();
        self.cooldown_counter = 0;
        self.wait = 0;
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        ctx: &mut CallbackContext<'_>,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        let old_lr = ctx.learning_rate()?;
        logs.insert("lr".into(), old_lr as f64);
        let Some(current) = self.monitor.value("Learning rate reduction", logs) else {
            return Ok(());
        };
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        // Keras asks `in_cooldown()` again after the decrement.
        if self.monitor.is_better(current) {
            self.monitor.set_best(current);
            self.wait = 0;
        } else if self.cooldown_counter == 0 {
            self.wait += 1;
            if self.wait >= self.patience {
                // Keras compares and multiplies in float32, the variable's dtype.
                if old_lr > self.min_lr as f32 {
                    let new_lr = (old_lr * self.factor as f32).max(self.min_lr as f32);
                    ctx.set_learning_rate(new_lr)?;
                    if self.verbose {
                        println!(
                            "\nEpoch {}: ReduceLROnPlateau reducing learning rate to {new_lr}.",
                            epoch + 1
                        );
                    }
                    self.cooldown_counter = self.cooldown;
                    self.wait = 0;
                }
            }
        }
        Ok(())
    }
}
