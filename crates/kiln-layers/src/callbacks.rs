//! Training callbacks (Keras `tf.keras.callbacks`), run by
//! [`Sequential::fit_with_callbacks`].
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

use crate::model::{Logs, Sequential};
use crate::progress::Verbosity;
use crate::{HostTensor, LayerError, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

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
    /// training pass.
    pub fn running_logs(&mut self) -> Result<Logs> {
        if self.seen == 0 {
            return Ok(Logs::new());
        }
        let logs = self.model.read_accumulators(self.seen)?;
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

/// Whether a monitored quantity should decrease or increase (Keras `mode`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum MonitorMode {
    /// Increase for names containing `acc` (EarlyStopping: ending in `acc`, `accuracy`,
    /// `auc`), else decrease — as each Keras callback decides.
    #[default]
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

fn warn_missing(who: &str, monitor: &str, logs: &Logs) {
    eprintln!(
        "warning: {who} conditioned on metric `{monitor}` which is not available. Available \
         metrics are: {}",
        logs.keys().cloned().collect::<Vec<_>>().join(",")
    );
}

fn io_error(who: &str, path: &Path, e: std::io::Error) -> LayerError {
    LayerError::Usage(format!("{who}: {}: {e}", path.display()))
}

type EpochEndFn<'a> = Box<dyn FnMut(usize, &Logs) + 'a>;
type IndexFn<'a> = Box<dyn FnMut(usize) + 'a>;
type TrainEndFn<'a> = Box<dyn FnMut(&Logs) + 'a>;

/// Closures as a callback (Keras `LambdaCallback`). Closures may borrow local state:
///
/// ```
/// # use kiln_layers::LambdaCallback;
/// let mut losses = vec![];
/// let mut cb = LambdaCallback::new().on_epoch_end(|_, logs| losses.push(logs["loss"]));
/// ```
#[derive(Default)]
pub struct LambdaCallback<'a> {
    train_begin: Option<Box<dyn FnMut() + 'a>>,
    train_end: Option<TrainEndFn<'a>>,
    epoch_begin: Option<IndexFn<'a>>,
    epoch_end: Option<EpochEndFn<'a>>,
    batch_begin: Option<IndexFn<'a>>,
    batch_end: Option<IndexFn<'a>>,
}

impl<'a> LambdaCallback<'a> {
    /// A callback doing nothing until closures are set.
    pub fn new() -> Self {
        Self::default()
    }
    /// `f()` before training.
    pub fn on_train_begin(mut self, f: impl FnMut() + 'a) -> Self {
        self.train_begin = Some(Box::new(f));
        self
    }
    /// `f(last epoch logs)` after training.
    pub fn on_train_end(mut self, f: impl FnMut(&Logs) + 'a) -> Self {
        self.train_end = Some(Box::new(f));
        self
    }
    /// `f(epoch)` before each epoch.
    pub fn on_epoch_begin(mut self, f: impl FnMut(usize) + 'a) -> Self {
        self.epoch_begin = Some(Box::new(f));
        self
    }
    /// `f(epoch, logs)` after each epoch.
    pub fn on_epoch_end(mut self, f: impl FnMut(usize, &Logs) + 'a) -> Self {
        self.epoch_end = Some(Box::new(f));
        self
    }
    /// `f(batch)` before each training step.
    pub fn on_batch_begin(mut self, f: impl FnMut(usize) + 'a) -> Self {
        self.batch_begin = Some(Box::new(f));
        self
    }
    /// `f(batch)` after each training step (no logs: nothing is read back per step).
    pub fn on_batch_end(mut self, f: impl FnMut(usize) + 'a) -> Self {
        self.batch_end = Some(Box::new(f));
        self
    }
}

impl Callback for LambdaCallback<'_> {
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext<'_>) -> Result<()> {
        if let Some(f) = &mut self.train_begin {
            f();
        }
        Ok(())
    }
    fn on_train_end(&mut self, _ctx: &mut CallbackContext<'_>, logs: &Logs) -> Result<()> {
        if let Some(f) = &mut self.train_end {
            f(logs);
        }
        Ok(())
    }
    fn on_epoch_begin(&mut self, _ctx: &mut CallbackContext<'_>, epoch: usize) -> Result<()> {
        if let Some(f) = &mut self.epoch_begin {
            f(epoch);
        }
        Ok(())
    }
    fn on_epoch_end(
        &mut self,
        _ctx: &mut CallbackContext<'_>,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        if let Some(f) = &mut self.epoch_end {
            f(epoch, logs);
        }
        Ok(())
    }
    fn on_batch_begin(&mut self, _ctx: &mut CallbackContext<'_>, batch: usize) -> Result<()> {
        if let Some(f) = &mut self.batch_begin {
            f(batch);
        }
        Ok(())
    }
    fn on_batch_end(&mut self, _ctx: &mut CallbackContext<'_>, batch: usize) -> Result<()> {
        if let Some(f) = &mut self.batch_end {
            f(batch);
        }
        Ok(())
    }
}

/// Stops training when a monitored quantity has stopped improving (Keras `EarlyStopping`,
/// same defaults: `val_loss`, `min_delta` 0, `patience` 0, auto mode, no baseline, no
/// restoring). With `restore_best_weights`, the weights are read back (a device round trip)
/// at every improving epoch and written back when training stops.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    monitor: String,
    min_delta: f64,
    patience: usize,
    mode: MonitorMode,
    baseline: Option<f64>,
    restore_best_weights: bool,
    start_from_epoch: usize,
    verbose: bool,
    wait: usize,
    stopped_epoch: usize,
    best: f64,
    best_epoch: usize,
    best_weights: Option<Vec<HostTensor>>,
    warned: bool,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping {
            monitor: "val_loss".into(),
            min_delta: 0.0,
            patience: 0,
            mode: MonitorMode::Auto,
            baseline: None,
            restore_best_weights: false,
            start_from_epoch: 0,
            verbose: false,
            wait: 0,
            stopped_epoch: 0,
            best: f64::INFINITY,
            best_epoch: 0,
            best_weights: None,
            warned: false,
        }
    }
}

impl EarlyStopping {
    /// Monitors `monitor` (Keras default `val_loss`).
    pub fn new(monitor: &str) -> Self {
        EarlyStopping {
            monitor: monitor.into(),
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
        self.min_delta = min_delta.abs();
        self
    }
    /// Direction of improvement (default auto).
    pub fn mode(mut self, mode: MonitorMode) -> Self {
        self.mode = mode;
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
        self.best
    }
    /// The epoch (0-based) of the best value.
    pub fn best_epoch(&self) -> usize {
        self.best_epoch
    }
    /// Epochs since the last improvement.
    pub fn wait(&self) -> usize {
        self.wait
    }

    fn greater(&self) -> bool {
        match self.mode {
            MonitorMode::Min => false,
            MonitorMode::Max => true,
            MonitorMode::Auto => {
                let m = &self.monitor;
                m.ends_with("acc") || m.ends_with("accuracy") || m.ends_with("auc")
            }
        }
    }

    fn is_improvement(&self, value: f64, reference: f64) -> bool {
        if self.greater() {
            value - self.min_delta > reference
        } else {
            value + self.min_delta < reference
        }
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext<'_>) -> Result<()> {
        self.wait = 0;
        self.stopped_epoch = 0;
        self.best = if self.greater() {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
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
        let Some(&current) = logs.get(&self.monitor) else {
            if !self.warned {
                warn_missing("Early stopping", &self.monitor, logs);
                self.warned = true;
            }
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
        if self.is_improvement(current, self.best) {
            self.best = current;
            self.best_epoch = epoch;
            if self.restore_best_weights {
                self.best_weights = Some(ctx.get_weights()?);
            }
            if self
                .baseline
                .is_none_or(|b| self.is_improvement(current, b))
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

/// Multiplies the learning rate by `factor` when a monitored quantity has stopped improving
/// for `patience` epochs (Keras `ReduceLROnPlateau`, same defaults: `val_loss`, factor 0.1,
/// patience 10, auto mode, `min_delta` 1e-4, cooldown 0, `min_lr` 0). It writes the
/// learning-rate device variable between epochs — the compiled plans read it, so nothing is
/// recompiled — and adds the epoch's learning rate to the logs as `lr`, as Keras does.
#[derive(Clone, Debug)]
pub struct ReduceLrOnPlateau {
    monitor: String,
    factor: f64,
    patience: usize,
    mode: MonitorMode,
    min_delta: f64,
    cooldown: usize,
    min_lr: f64,
    verbose: bool,
    best: f64,
    wait: usize,
    cooldown_counter: usize,
    warned: bool,
}

impl Default for ReduceLrOnPlateau {
    fn default() -> Self {
        ReduceLrOnPlateau {
            monitor: "val_loss".into(),
            factor: 0.1,
            patience: 10,
            mode: MonitorMode::Auto,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            verbose: false,
            best: f64::INFINITY,
            wait: 0,
            cooldown_counter: 0,
            warned: false,
        }
    }
}

impl ReduceLrOnPlateau {
    /// Monitors `monitor` (Keras default `val_loss`).
    pub fn new(monitor: &str) -> Self {
        ReduceLrOnPlateau {
            monitor: monitor.into(),
            ..Self::default()
        }
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
        self.mode = mode;
        self
    }
    /// Minimum change counted as an improvement (default 1e-4).
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = min_delta;
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

    fn greater(&self) -> bool {
        match self.mode {
            MonitorMode::Min => false,
            MonitorMode::Max => true,
            MonitorMode::Auto => self.monitor.contains("acc"),
        }
    }

    fn improves(&self, value: f64, best: f64) -> bool {
        if self.greater() {
            value > best + self.min_delta
        } else {
            value < best - self.min_delta
        }
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
        self.best = if self.greater() {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
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
        let Some(&current) = logs.get(&self.monitor) else {
            if !self.warned {
                warn_missing("Learning rate reduction", &self.monitor, logs);
                self.warned = true;
            }
            return Ok(());
        };
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        // Keras asks `in_cooldown()` again after the decrement.
        if self.improves(current, self.best) {
            self.best = current;
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

/// Writes the epoch logs to a CSV file (Keras `CSVLogger`): an `epoch` column (0-based),
/// then the log keys sorted, fixed at the first epoch; `NA` for a missing value. Values are
/// written as Python writes floats (`0.5`, `1.0`, `1e-05`, `nan`), lines end with `\n`
/// (Python's csv module writes `\r\n`). The file is truncated at the start of training, or
/// appended to with `append` (the header only if the file is empty); every row is one
/// `write` of a whole line, flushed, so a crash leaves complete lines.
pub struct CsvLogger {
    path: PathBuf,
    separator: char,
    append: bool,
    file: Option<File>,
    keys: Option<Vec<String>>,
    header: bool,
}

impl CsvLogger {
    /// Logs to `path`; `append` keeps what the file holds.
    pub fn new(path: impl Into<PathBuf>, append: bool) -> Self {
        CsvLogger {
            path: path.into(),
            separator: ',',
            append,
            file: None,
            keys: None,
            header: true,
        }
    }
    /// Field separator (default `,`).
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }
}

impl Callback for CsvLogger {
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext<'_>) -> Result<()> {
        let err = |e| io_error("CsvLogger", &self.path, e);
        let file = if self.append {
            self.header = match File::open(&self.path) {
                Ok(f) => {
                    let mut first = String::new();
                    BufReader::new(f).read_line(&mut first).map_err(err)?;
                    first.is_empty()
                }
                Err(_) => true,
            };
            OpenOptions::new()
                .append(true)
                .create(true)
                .open(&self.path)
                .map_err(err)?
        } else {
            self.header = true;
            File::create(&self.path).map_err(err)?
        };
        self.file = Some(file);
        self.keys = None;
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        _ctx: &mut CallbackContext<'_>,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        let keys = self
            .keys
            .get_or_insert_with(|| logs.keys().cloned().collect());
        let sep = self.separator.to_string();
        let mut text = String::new();
        if self.header {
            let mut cols = vec!["epoch".to_string()];
            cols.extend(keys.iter().cloned());
            text.push_str(&cols.join(&sep));
            text.push('\n');
            self.header = false;
        }
        let mut row = vec![epoch.to_string()];
        row.extend(keys.iter().map(|k| match logs.get(k) {
            Some(&v) => python_float(v),
            None => "NA".into(),
        }));
        text.push_str(&row.join(&sep));
        text.push('\n');
        if let Some(f) = &mut self.file {
            f.write_all(text.as_bytes())
                .and_then(|_| f.flush())
                .map_err(|e| io_error("CsvLogger", &self.path, e))?;
        }
        Ok(())
    }

    fn on_train_end(&mut self, _ctx: &mut CallbackContext<'_>, _logs: &Logs) -> Result<()> {
        self.file = None;
        Ok(())
    }
}

/// `repr(float)` of Python: shortest round-trip digits, scientific below 1e-4 and from 1e16.
pub fn python_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: `-1.2345e-5`.
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let body = if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else if exp + 1 >= n {
            format!("{digits}{}.0", "0".repeat((exp + 1 - n) as usize))
        } else {
            let (a, b) = digits.split_at((exp + 1) as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{esign}{:02}", exp.abs())
    }
}

type Saver<'a> = Box<dyn FnMut(&mut Sequential, &Path) -> Result<()> + 'a>;

/// Saves the model after every epoch, or only when the monitored value improves (Keras
/// `ModelCheckpoint`), with [`Sequential::save`] or a saving hook. `filepath` may hold
/// Keras's placeholders: `{epoch}` (1-based, with an optional integer spec such as
/// `{epoch:02d}`) and any log key (`{val_loss:.2f}`).
pub struct ModelCheckpoint<'a> {
    filepath: String,
    monitor: String,
    save_best_only: bool,
    mode: MonitorMode,
    verbose: bool,
    best: Option<f64>,
    saver: Saver<'a>,
    saved: Vec<PathBuf>,
}

impl ModelCheckpoint<'static> {
    /// Checkpoints the whole model ([`Sequential::save`]) to `filepath` (monitor `val_loss`,
    /// every epoch).
    pub fn new(filepath: &str) -> Self {
        ModelCheckpoint::with_saver(filepath, |model, path| model.save(path))
    }
}

impl<'a> ModelCheckpoint<'a> {
    /// Checkpoints through `saver(model, path)` instead of [`Sequential::save`] (e.g. to keep
    /// weights in memory, or another format).
    pub fn with_saver(
        filepath: &str,
        saver: impl FnMut(&mut Sequential, &Path) -> Result<()> + 'a,
    ) -> Self {
        ModelCheckpoint {
            filepath: filepath.into(),
            monitor: "val_loss".into(),
            save_best_only: false,
            mode: MonitorMode::Auto,
            verbose: false,
            best: None,
            saver: Box::new(saver),
            saved: vec![],
        }
    }
    /// The monitored value (default `val_loss`).
    pub fn monitor(mut self, monitor: &str) -> Self {
        self.monitor = monitor.into();
        self
    }
    /// Save only when the monitored value improves (default false).
    pub fn save_best_only(mut self, only: bool) -> Self {
        self.save_best_only = only;
        self
    }
    /// Direction of improvement (default auto: increase if the name contains `acc`).
    pub fn mode(mut self, mode: MonitorMode) -> Self {
        self.mode = mode;
        self
    }
    /// Print a line per save (default false).
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }
    /// The paths saved to, in order.
    pub fn saved(&self) -> &[PathBuf] {
        &self.saved
    }

    fn greater(&self) -> bool {
        match self.mode {
            MonitorMode::Min => false,
            MonitorMode::Max => true,
            MonitorMode::Auto => {
                self.monitor.contains("acc") || self.monitor.starts_with("fmeasure")
            }
        }
    }
}

/// Fills `{epoch}`, `{epoch:02d}`, `{key}`, `{key:.2f}` in a checkpoint path.
pub(crate) fn format_path(template: &str, epoch: usize, logs: &Logs) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map(|c| open + c).ok_or_else(|| {
            LayerError::Usage(format!("ModelCheckpoint: unclosed `{{` in `{template}`"))
        })?;
        let field = &rest[open + 1..close];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        let bad = || {
            LayerError::Usage(format!(
                "ModelCheckpoint: cannot format `{{{field}}}` in `{template}` (logs: {})",
                logs.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        };
        if name == "epoch" {
            let width: usize = match spec.strip_suffix('d').unwrap_or(spec) {
                "" => 0,
                w => w.trim_start_matches('0').parse().unwrap_or(0),
            };
            out.push_str(&format!("{:0width$}", epoch + 1));
        } else {
            let v = *logs.get(name).ok_or_else(bad)?;
            let prec = spec.strip_prefix('.').and_then(|s| s.strip_suffix('f'));
            match (spec, prec) {
                ("", _) => out.push_str(&python_float(v)),
                (_, Some(p)) => {
                    out.push_str(&format!("{v:.p$}", p = p.parse().map_err(|_| bad())?))
                }
                _ => return Err(bad()),
            }
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Callback for ModelCheckpoint<'_> {
    fn on_epoch_end(
        &mut self,
        ctx: &mut CallbackContext<'_>,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        let path = PathBuf::from(format_path(&self.filepath, epoch, logs)?);
        if self.save_best_only {
            let Some(&current) = logs.get(&self.monitor) else {
                eprintln!(
                    "warning: can save best model only with `{}` available, skipping",
                    self.monitor
                );
                return Ok(());
            };
            let better = match self.best {
                None => !current.is_nan(),
                Some(b) if self.greater() => current > b,
                Some(b) => current < b,
            };
            if !better {
                if self.verbose {
                    println!(
                        "\nEpoch {}: {} did not improve from {}",
                        epoch + 1,
                        self.monitor,
                        self.best.map(format_five).unwrap_or_default()
                    );
                }
                return Ok(());
            }
            if self.verbose {
                let from = self
                    .best
                    .map(format_five)
                    .unwrap_or_else(|| if self.greater() { "-inf" } else { "inf" }.into());
                println!(
                    "\nEpoch {}: {} improved from {from} to {}, saving model to {}",
                    epoch + 1,
                    self.monitor,
                    format_five(current),
                    path.display()
                );
            }
            self.best = Some(current);
        } else if self.verbose {
            println!("\nEpoch {}: saving model to {}", epoch + 1, path.display());
        }
        (self.saver)(ctx.model(), &path)?;
        self.saved.push(path);
        Ok(())
    }
}

fn format_five(v: f64) -> String {
    format!("{v:.5}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr() {
        // Values of Python's repr(float).
        for (v, want) in [
            (0.5, "0.5"),
            (1.0, "1.0"),
            (100.0, "100.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e16, "1.5e+16"),
            (123.456, "123.456"),
            (-0.25, "-0.25"),
            (0.30000001192092896, "0.30000001192092896"),
        ] {
            assert_eq!(python_float(v), want, "{v}");
        }
    }

    #[test]
    fn checkpoint_paths_format_like_keras() {
        let mut logs = Logs::new();
        logs.insert("val_loss".into(), 0.12345);
        assert_eq!(
            format_path("w.{epoch:02d}-{val_loss:.2f}.kiln", 4, &logs).unwrap(),
            "w.05-0.12.kiln"
        );
        assert_eq!(format_path("m{epoch}", 0, &logs).unwrap(), "m1");
        assert!(format_path("m{nope}", 0, &logs).is_err());
    }
}
