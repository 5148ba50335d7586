//! Keras `LambdaCallback`.

use super::{Callback, CallbackContext};
use crate::train::Logs;
use crate::Result;

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
