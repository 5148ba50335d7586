//! [`Sequential`]: a [`Stack`] of layers bound to a device, and the setup of `compile`.
//!
//! The other methods of `Sequential` are split by job: [`super::plans`] (the plan-cache
//! driver), [`super::state`] (the host's view of the device state: weights, learning rate,
//! accumulators), [`super::fit`] (the training loop, `evaluate`, `predict`) and
//! [`super::io`] (save / load).

use super::{CacheLog, PlanMap};
use crate::layers::{Compiled, Layer, Metric, Mode, Optimizer, Stack};
use crate::{vars, LayerError, Loss, Result};
use kiln_ir::Graph;
use kiln_opt::cache::PlanCache;
use kiln_opt::{Backend, HostTensor};
use std::collections::HashMap;

/// A linear stack of layers (Keras `Sequential`), bound to a device.
pub struct Sequential {
    pub(super) device: Box<dyn Backend>,
    pub(super) stack: Stack,
    pub(super) seed: u64,
    pub(super) compiled: Option<Compiled>,
    pub(super) plans: PlanMap,
    pub(super) weights_ready: bool,
    pub(super) cache: PlanCache,
    /// A bad `KILN_CACHE*` value found by [`Sequential::new`], reported by the first compile
    /// (cleared by `with_plan_cache`).
    pub(super) cache_env_error: Option<kiln_opt::EnvError>,
    pub(super) cache_log: CacheLog,
    /// Host copy of the learning-rate variable (known after `compile`, kept by
    /// `set_learning_rate`), so reading it costs no device round trip.
    pub(super) lr: Option<f32>,
    /// How many times `set_learning_rate` was called (to tell whether a fit changed it).
    pub(super) lr_changes: u64,
    /// Whether `fit` checks every step for non-finite values (`None`: `KILN_CHECK_NUMERICS`).
    pub(super) check_numerics: Option<bool>,
    pub(super) collective: Option<Box<dyn super::Collective>>,
    pub(super) dist_stats: super::DistributedStats,
}

impl Sequential {
    /// An empty model on `device`, with seed 0.
    pub fn new(device: Box<dyn Backend>) -> Self {
        let (cache, cache_env_error) = match PlanCache::try_from_env() {
            Ok(c) => (c, None),
            Err(e) => (PlanCache::disabled(), Some(e)),
        };
        Sequential {
            device,
            stack: Stack::default(),
            seed: 0,
            compiled: None,
            plans: HashMap::new(),
            weights_ready: false,
            cache,
            cache_env_error,
            cache_log: vec![],
            lr: None,
            lr_changes: 0,
            check_numerics: None,
            collective: None,
            dist_stats: Default::default(),
        }
    }

    /// Sets the seed of weight initialization and shuffling (before the first `compile`).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The device description.
    pub fn device(&self) -> String {
        self.device.describe()
    }

    /// Gives the device back with everything on it — weights, optimizer state and the device
    /// code of the loaded plans — e.g. to build the next model of a hyper-parameter search
    /// on it without compiling device code again (a model of the same structure reuses the
    /// plans' pipelines). A model built on it later gets fresh weights at `compile`; call
    /// [`Sequential::reset_optimizer_state`] for a fresh optimizer too.
    pub fn into_device(self) -> Box<dyn Backend> {
        self.device
    }

    /// Appends a layer, checking that it fits the previous layer's output.
    pub fn add(&mut self, layer: impl Layer + 'static) -> Result<()> {
        self.add_boxed(Box::new(layer))
    }

    /// [`Sequential::add`] for a boxed layer (e.g. one rebuilt from a configuration).
    pub fn add_boxed(&mut self, mut layer: Box<dyn Layer>) -> Result<()> {
        layer.fit_device(&self.device.limits());
        self.stack.push(layer)?;
        self.plans.clear();
        self.weights_ready = false;
        Ok(())
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> Option<&[usize]> {
        self.stack.input_shape()
    }

    /// Per-sample output shape.
    pub fn output_shape(&self) -> Option<&[usize]> {
        self.stack.output_shape()
    }

    /// Configures training (Keras `compile`) and initializes the weights on the device.
    pub fn compile(
        &mut self,
        loss: Loss,
        optimizer: impl Optimizer + 'static,
        metrics: &[Metric],
    ) -> Result<()> {
        self.compile_boxed(loss, Box::new(optimizer), metrics)
    }

    /// [`Sequential::compile`] with a boxed optimizer (e.g. one rebuilt from a
    /// configuration).
    pub fn compile_boxed(
        &mut self,
        loss: Loss,
        optimizer: Box<dyn Optimizer>,
        metrics: &[Metric],
    ) -> Result<()> {
        let outputs = self
            .output_shape()
            .ok_or_else(|| {
                LayerError::Usage("compile: the model has no layers; add() some first".into())
            })?
            .iter()
            .product();
        let resolved: Vec<(&'static str, Metric)> = metrics
            .iter()
            .map(|m| (m.name(), m.resolve(loss, outputs)))
            .collect();
        for (name, m) in &resolved {
            if m.sparse_labels() != loss.sparse_labels() {
                return Err(LayerError::Usage(if loss.sparse_labels() {
                    format!(
                        "compile: metric `{name}` compares predictions with labels of their \
                         shape, but {} takes class ids [batch, 1]; hint: use \
                         `sparse_categorical_accuracy` (or `accuracy`)",
                        loss.name()
                    )
                } else {
                    format!(
                        "compile: metric `{name}` takes class-id labels [batch, 1], but {} \
                         takes labels shaped like the output; hint: use \
                         sparse_categorical_crossentropy, or `accuracy`",
                        loss.name()
                    )
                }));
            }
        }
        if let Some((argument, value, expected)) = optimizer.config().invalid_hyper_parameter() {
            return Err(LayerError::argument(
                optimizer.name(),
                argument,
                value,
                expected,
            ));
        }
        self.lr = None;
        for (name, v) in optimizer.hyper_params() {
            self.device
                .write_param(&name, &HostTensor::f32([], vec![v])?)?;
            if name == vars::optimizer::LEARNING_RATE {
                self.lr = Some(v);
            }
        }
        self.compiled = Some(Compiled {
            loss,
            optimizer,
            requested: metrics.to_vec(),
            metrics: resolved,
        });
        self.plans.clear();
        self.init_weights()
    }

    /// Writes fresh initial weights to the device (seeded per layer and weight), once per
    /// structure.
    pub(super) fn init_weights(&mut self) -> Result<()> {
        if self.weights_ready {
            return Ok(());
        }
        // An InputLayer (no weights) does not shift the other layers' seeds.
        let offset = self
            .stack
            .entries()
            .first()
            .map_or(0, |e| usize::from(e.layer.is_input()));
        for (li, e) in self.stack.entries().iter().enumerate() {
            let li = li.saturating_sub(offset);
            for (pi, (p, name)) in e.params.iter().zip(e.weight_names()).enumerate() {
                let seed = kiln_ir::random::mix64(self.seed ^ ((li as u64) << 32 | pi as u64));
                let v = p.init.values_for(&p.shape, p.fan_in, p.fan_out, seed);
                self.device
                    .write_param(&name, &HostTensor::f32(p.shape.clone(), v)?)?;
            }
        }
        self.weights_ready = true;
        Ok(())
    }

    /// Builds the graph of `mode` for `batch` samples.
    pub fn graph(&self, mode: Mode, batch: usize) -> Result<Graph> {
        self.stack
            .graph(mode, batch, self.seed, self.compiled.as_ref())
    }
}
