//! `Sequential`: a stack of layers compiled into plans (one per mode and batch size) and run
//! through a [`Backend`].

use crate::callbacks::{Callback, CallbackContext, FitParams};
use crate::layers::{Layer, ParamSpec};
use crate::progress::{ProgressBar, Verbosity};
use crate::{LayerError, Loss, Metric, Optimizer, Result, LR_VARIABLE};
use kiln_ir::{autodiff, DType, Graph, NodeId};
use kiln_opt::cache::{compile_cached, CacheOutcome, PlanCache};
use kiln_opt::{Backend, CompileOptions, Executable, HostTensor};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

/// Which graph a plan runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Forward only: `x -> y`.
    Predict,
    /// Forward + loss + metrics, no update.
    Evaluate,
    /// Forward + loss + metrics + backward + optimizer update: one training step.
    Train,
}

/// Metric values by name (`loss`, `accuracy`, `val_loss`...).
pub type Logs = BTreeMap<String, f64>;

/// Per-epoch logs returned by [`Sequential::fit`] (Keras `History.history`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Values per metric name, one per epoch.
    pub history: BTreeMap<String, Vec<f64>>,
}

impl History {
    /// The last epoch's value of `name`.
    pub fn last(&self, name: &str) -> Option<f64> {
        self.history.get(name).and_then(|v| v.last().copied())
    }
}

/// Options of [`Sequential::fit`] (Keras defaults).
#[derive(Clone, Debug)]
pub struct Fit {
    /// Passes over the data (default 1).
    pub epochs: usize,
    /// Samples per step (default 32).
    pub batch_size: usize,
    /// Reshuffle the training samples every epoch (default true).
    pub shuffle: bool,
    /// Print progress (default true); `false` silences every [`Verbosity`].
    pub verbose: bool,
    /// Progress style when `verbose` (Keras `verbose`: `Verbosity::from(0 | 1 | 2)`); the
    /// default `Auto` is the progress bar.
    pub verbosity: Verbosity,
    /// Held-out data evaluated after every epoch.
    pub validation_data: Option<(HostTensor, HostTensor)>,
    /// Fraction of the (unshuffled) training data, taken from its end, held out instead.
    pub validation_split: f64,
}

impl Default for Fit {
    fn default() -> Self {
        Fit {
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            verbose: true,
            verbosity: Verbosity::Auto,
            validation_data: None,
            validation_split: 0.0,
        }
    }
}

pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) layer: Box<dyn Layer>,
    pub(crate) input: Vec<usize>,
    pub(crate) output: Vec<usize>,
    pub(crate) params: Vec<ParamSpec>,
}

pub(crate) struct Compiled {
    pub(crate) loss: Loss,
    pub(crate) optimizer: Box<dyn Optimizer>,
    /// (name shown in logs, resolved metric)
    pub(crate) metrics: Vec<(&'static str, Metric)>,
    /// The metrics as given to `compile` (for the saved configuration).
    pub(crate) requested: Vec<Metric>,
}

/// A linear stack of layers (Keras `Sequential`), bound to a device.
pub struct Sequential {
    pub(crate) device: Box<dyn Backend>,
    pub(crate) layers: Vec<Entry>,
    name_counts: HashMap<&'static str, usize>,
    pub(crate) seed: u64,
    pub(crate) compiled: Option<Compiled>,
    plans: HashMap<(Mode, usize), Box<dyn Executable>>,
    weights_ready: bool,
    cache: PlanCache,
    cache_log: Vec<(Mode, usize, CacheOutcome)>,
    /// Host copy of the learning-rate variable (known after `compile`, kept by
    /// `set_learning_rate`), so reading it costs no device round trip.
    lr: Option<f32>,
    /// How many times `set_learning_rate` was called (to tell whether a fit changed it).
    lr_changes: u64,
}

/// Device variable accumulating the sample-weighted loss over a pass.
pub const LOSS_ACCUMULATOR: &str = "metrics/loss_sum";

/// Device variable accumulating metric `i` over a pass.
pub fn metric_accumulator(i: usize) -> String {
    format!("metrics/{i}_sum")
}

fn rows(t: &HostTensor) -> usize {
    t.shape.dims().first().copied().unwrap_or(0)
}

/// Gathers rows `idx` of `t` into a new tensor.
fn gather_rows(t: &HostTensor, idx: &[usize]) -> HostTensor {
    let row: usize = t.shape.dims()[1..].iter().product();
    let mut dims = t.shape.dims().to_vec();
    dims[0] = idx.len();
    let mut v = Vec::with_capacity(idx.len() * row);
    let src = t.to_f32();
    for &i in idx {
        v.extend_from_slice(&src[i * row..(i + 1) * row]);
    }
    HostTensor {
        shape: dims.into(),
        data: kiln_opt::HostData::F32(v),
    }
}

fn scalar(t: &HostTensor) -> f64 {
    t.to_f64().first().copied().unwrap_or(f64::NAN)
}

impl Sequential {
    /// An empty model on `device`, with seed 0.
    pub fn new(device: Box<dyn Backend>) -> Self {
        Sequential {
            device,
            layers: vec![],
            name_counts: HashMap::new(),
            seed: 0,
            compiled: None,
            plans: HashMap::new(),
            weights_ready: false,
            cache: PlanCache::from_env(),
            cache_log: vec![],
            lr: None,
            lr_changes: 0,
        }
    }

    /// Uses `cache` for compiled plans instead of the one configured by the environment
    /// (`KILN_CACHE_DIR`, `KILN_CACHE=off`).
    pub fn with_plan_cache(mut self, cache: PlanCache) -> Self {
        self.cache = cache;
        self
    }

    /// How each plan of this model was obtained: `(mode, batch, hit or miss with reason)`.
    pub fn plan_cache_log(&self) -> &[(Mode, usize, CacheOutcome)] {
        &self.cache_log
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

    /// Puts the optimizer state on the device (slots, step counter, Nadam's schedule) back to
    /// its initial values, as a new Keras optimizer starts: kiln otherwise keeps it across
    /// `compile` calls on the same device. Hyper-parameters (the learning rate...) keep their
    /// values.
    pub fn reset_optimizer_state(&mut self) -> Result<()> {
        let keep: Vec<String> = self
            .compiled
            .as_ref()
            .map(|c| {
                c.optimizer
                    .hyper_params()
                    .into_iter()
                    .map(|h| h.0)
                    .collect()
            })
            .unwrap_or_default();
        for name in self.device.param_names() {
            // every state variable starts at zero (non-zero starts are stored offset)
            if name.starts_with("optimizer/") && !keep.contains(&name) {
                let t = self.device.read_param(&name)?;
                let zero = HostTensor::zeros(t.shape.clone(), t.dtype());
                self.device.write_param(&name, &zero)?;
            }
        }
        Ok(())
    }

    /// Appends a layer, checking that it fits the previous layer's output.
    pub fn add(&mut self, layer: impl Layer + 'static) -> Result<()> {
        self.add_boxed(Box::new(layer))
    }

    /// [`Sequential::add`] for a boxed layer (e.g. one rebuilt from a configuration).
    pub fn add_boxed(&mut self, mut layer: Box<dyn Layer>) -> Result<()> {
        let kind = layer.kind();
        let count = self.name_counts.get(kind).copied().unwrap_or(0) + 1;
        let base = if layer.is_input() {
            "input".to_string()
        } else if kind == "SimpleRNN" {
            "simple_rnn".to_string() // Keras's snake_case name
        } else {
            kind.to_lowercase()
        };
        let name = format!("{base}_{count}");
        if layer.is_input() && !self.layers.is_empty() {
            return Err(LayerError::Shape {
                layer: name,
                message: format!(
                    "an InputLayer must be the first layer, the model already has {} \
                     (input {:?}); hint: add it before every other layer",
                    self.layers.len(),
                    self.input_shape().unwrap_or(&[])
                ),
            });
        }
        let input = match self.layers.last() {
            Some(prev) => prev.output.clone(),
            None => layer.declared_input().ok_or_else(|| LayerError::Shape {
                layer: name.clone(),
                message: format!(
                    "{kind} is the first layer and the model's input shape is unknown; hint: \
                     add(InputLayer::new(&[..])) first, or declare it on the first layer \
                     (Dense(..).input_dim(n), Flatten::new().input_shape(&[..]))"
                ),
            })?,
        };
        let output = layer.build(&name, &input)?;
        let params = layer.params();
        for p in &params {
            p.init
                .check(&p.shape)
                .map_err(|message| LayerError::Shape {
                    layer: name.clone(),
                    message: format!("weight `{}`: {message}", p.name),
                })?;
        }
        for (i, r) in layer.regularizers() {
            let weight = params.get(i).map(|p| p.name.as_str()).unwrap_or("?");
            r.check().map_err(|message| LayerError::Shape {
                layer: name.clone(),
                message: format!("weight `{weight}`: {message}"),
            })?;
        }
        self.name_counts.insert(kind, count);
        self.layers.push(Entry {
            name,
            layer,
            input,
            output,
            params,
        });
        self.plans.clear();
        self.weights_ready = false;
        Ok(())
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> Option<&[usize]> {
        self.layers.first().map(|e| e.input.as_slice())
    }

    /// Per-sample output shape.
    pub fn output_shape(&self) -> Option<&[usize]> {
        self.layers.last().map(|e| e.output.as_slice())
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
        optimizer.config().check().map_err(|e| {
            LayerError::Usage(format!("compile: {} optimizer: {e}", optimizer.name()))
        })?;
        self.lr = None;
        for (name, v) in optimizer.hyper_params() {
            self.device
                .write_param(&name, &HostTensor::f32([], vec![v])?)?;
            if name == LR_VARIABLE {
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

    fn init_weights(&mut self) -> Result<()> {
        if self.weights_ready {
            return Ok(());
        }
        // An InputLayer (no weights) does not shift the other layers' seeds.
        let offset = self
            .layers
            .first()
            .map_or(0, |e| usize::from(e.layer.is_input()));
        for (li, e) in self.layers.iter().enumerate() {
            let li = li.saturating_sub(offset);
            for (pi, p) in e.params.iter().enumerate() {
                let seed = kiln_ir::random::mix64(self.seed ^ ((li as u64) << 32 | pi as u64));
                let v = p.init.values_for(&p.shape, p.fan_in, p.fan_out, seed);
                self.device.write_param(
                    &format!("{}/{}", e.name, p.name),
                    &HostTensor::f32(p.shape.clone(), v)?,
                )?;
            }
        }
        self.weights_ready = true;
        Ok(())
    }

    /// Builds the graph of `mode` for `batch` samples.
    pub fn graph(&self, mode: Mode, batch: usize) -> Result<Graph> {
        let first = self
            .layers
            .first()
            .ok_or_else(|| LayerError::Usage("the model has no layers".into()))?;
        let mut g = Graph::new();
        let mut dims = vec![batch];
        dims.extend(&first.input);
        let x = g.input("x", dims, DType::F32)?;
        let mut h = x;
        let mut logits = None;
        let mut trainable: Vec<NodeId> = vec![];
        let mut penalties: Vec<NodeId> = vec![];
        let n_layers = self.layers.len();
        // a training step draws its noise (dropout masks) at the model's step counter, which
        // the context creates (and advances) on first use
        let mut ctx = (mode == Mode::Train).then(|| {
            crate::TrainContext::lazy(
                (kiln_ir::random::mix64(self.seed ^ 0x006e_6f69_7365) >> 32) as u32,
            )
        });
        for (li, e) in self.layers.iter().enumerate() {
            let ids = e
                .params
                .iter()
                .map(|p| {
                    g.param(
                        &format!("{}/{}", e.name, p.name),
                        p.shape.clone(),
                        DType::F32,
                    )
                })
                .collect::<kiln_ir::Result<Vec<_>>>()?;
            trainable.extend(&ids);
            if mode != Mode::Predict {
                for (i, r) in e.layer.regularizers() {
                    let w = *ids.get(i).ok_or_else(|| LayerError::Shape {
                        layer: e.name.clone(),
                        message: format!("regularizer of weight #{i}, the layer has {}", ids.len()),
                    })?;
                    penalties.push(g.scoped(&e.name, |g| r.penalty(g, w))?);
                }
            }
            h = g.scoped(&e.name, |g| -> Result<NodeId> {
                if li + 1 == n_layers {
                    let (z, a) = e.layer.forward_logits(g, h, &ids)?;
                    logits = Some((z, a));
                    Ok(a.apply(g, z)?)
                } else if let Some(ctx) = ctx.as_mut() {
                    e.layer.forward_train(g, h, &ids, ctx)
                } else {
                    e.layer.forward(g, h, &ids)
                }
            })?;
        }
        if mode == Mode::Predict {
            g.output("y", h)?;
            return Ok(g);
        }
        let cfg = self.compiled.as_ref().ok_or_else(|| {
            LayerError::Usage("call compile(loss, optimizer, metrics) before fit/evaluate".into())
        })?;
        let mut yd = vec![batch];
        yd.extend(cfg.loss.label_shape(&g.shape(h).dims()[1..]));
        let y = g.input("y", yd, DType::F32)?;
        let mut loss = cfg.loss.batch_mean(&mut g, h, y, logits)?;
        // Keras adds the weight penalties to the loss it minimizes and reports.
        for p in penalties {
            loss = g.add(loss, p)?;
        }
        // Loss and metrics accumulate on the device (sample-weighted sums), so a step reads
        // nothing back; the host reads the accumulators once per pass.
        let acc = g.param(LOSS_ACCUMULATOR, [], DType::F32)?;
        let weighted = g.mul_scalar(loss, batch as f64)?;
        let next = g.add(acc, weighted)?;
        g.assign(acc, next)?;
        for (i, (_, m)) in cfg.metrics.iter().enumerate() {
            let s = m.batch_sum(&mut g, h, y, logits)?;
            let acc = g.param(&metric_accumulator(i), [], DType::F32)?;
            let next = g.add(acc, s)?;
            g.assign(acc, next)?;
        }
        if mode == Mode::Train {
            let grads = autodiff::grad(&mut g, loss, &trainable)?;
            let pairs: Vec<(NodeId, NodeId)> = trainable.into_iter().zip(grads).collect();
            cfg.optimizer.apply(&mut g, &pairs)?;
        }
        Ok(g)
    }

    fn plan(&mut self, mode: Mode, batch: usize) -> Result<&mut Box<dyn Executable>> {
        if !self.plans.contains_key(&(mode, batch)) {
            let g = self.graph(mode, batch)?;
            let (plan, outcome) = compile_cached(
                &g,
                &CompileOptions::default(),
                &self.device.limits(),
                &self.device.fingerprint(),
                &self.cache,
            )?;
            self.cache_log.push((mode, batch, outcome));
            let exe = self.device.load(Arc::new(plan))?;
            self.plans.insert((mode, batch), exe);
        }
        self.plans
            .get_mut(&(mode, batch))
            .ok_or_else(|| LayerError::Usage("plan cache".into()))
    }

    /// The compiled plan of `mode` at `batch` (compiling it if needed), for inspection.
    pub fn plan_for(&mut self, mode: Mode, batch: usize) -> Result<kiln_opt::Plan> {
        self.init_weights()?;
        Ok(self.plan(mode, batch)?.plan().clone())
    }

    fn check_xy(&self, x: &HostTensor, y: Option<&HostTensor>) -> Result<()> {
        let inp = self
            .input_shape()
            .ok_or_else(|| LayerError::Usage("the model has no layers".into()))?;
        if x.shape.rank() < 1 || &x.shape.dims()[1..] != inp {
            return Err(LayerError::Data(format!(
                "x has shape {}, the model expects [n, {}]",
                x.shape,
                inp.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(first) = self.layers.iter().find(|e| !e.layer.is_input()) {
            first.layer.check_input(&first.name, x)?;
        }
        if let Some(y) = y {
            let out = self.output_shape().unwrap_or(&[]);
            let sparse = self.sparse_labels();
            let want = self.label_shape();
            let fits = y.shape.rank() >= 1
                && rows(y) == rows(x)
                && (y.shape.dims()[1..] == want[..]
                    // sparse labels may drop their trailing 1: [n] for [n, 1]
                    || (sparse && y.shape.dims()[1..] == want[..want.len() - 1]));
            if !fits {
                let dims = |d: &[usize]| {
                    std::iter::once(rows(x).to_string())
                        .chain(d.iter().map(|d| d.to_string()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(LayerError::Data(if sparse {
                    format!(
                        "y has shape {}, expected [{}] or [{}]: one integer class id per \
                         sample for sparse_categorical_crossentropy (the model outputs {} \
                         classes); hint: for one-hot labels use categorical_crossentropy",
                        y.shape,
                        dims(&want[..want.len() - 1]),
                        dims(&want),
                        out.last().copied().unwrap_or(0)
                    )
                } else {
                    format!(
                        "y has shape {}, expected [{}] to match x and the model output",
                        y.shape,
                        dims(out)
                    )
                }));
            }
        }
        Ok(())
    }

    /// Whether the compiled loss takes class-id labels.
    fn sparse_labels(&self) -> bool {
        self.compiled
            .as_ref()
            .is_some_and(|c| c.loss.sparse_labels())
    }

    /// The per-sample label shape (the output's, or `[.., 1]` for class ids).
    fn label_shape(&self) -> Vec<usize> {
        let out = self.output_shape().unwrap_or(&[]);
        match &self.compiled {
            Some(c) => c.loss.label_shape(out),
            None => out.to_vec(),
        }
    }

    /// Labels as the plans take them: f32, and for sparse crossentropy `[n, .., 1]` with
    /// every value checked to be a class id in `0..k` (after [`Sequential::check_xy`]).
    fn prepare_y<'a>(&self, y: &'a HostTensor) -> Result<std::borrow::Cow<'a, HostTensor>> {
        use std::borrow::Cow;
        if !self.sparse_labels() {
            return Ok(match y.data {
                kiln_opt::HostData::F32(_) => Cow::Borrowed(y),
                _ => Cow::Owned(HostTensor::f32(y.shape.dims().to_vec(), y.to_f32())?),
            });
        }
        let k = self
            .output_shape()
            .and_then(|o| o.last())
            .copied()
            .unwrap_or(0);
        let v = y.to_f64();
        if let Some((i, bad)) = v
            .iter()
            .enumerate()
            .find(|(_, &c)| !(c >= 0.0 && c < k as f64 && c.fract() == 0.0))
        {
            return Err(LayerError::Data(format!(
                "y[{i}] = {bad} is not a class id in 0..{k}: sparse_categorical_crossentropy \
                 takes integer labels below the model's {k} outputs"
            )));
        }
        let mut dims = vec![rows(y)];
        dims.extend(self.label_shape());
        Ok(Cow::Owned(HostTensor::f32(
            dims,
            v.into_iter().map(|c| c as f32).collect(),
        )?))
    }

    /// Zeroes the loss and metric accumulators on the device.
    fn reset_accumulators(&mut self) -> Result<()> {
        let nm = self.compiled.as_ref().map(|c| c.metrics.len()).unwrap_or(0);
        let zero = HostTensor::f32([], vec![0.0])?;
        self.device.write_param(LOSS_ACCUMULATOR, &zero)?;
        for i in 0..nm {
            self.device.write_param(&metric_accumulator(i), &zero)?;
        }
        Ok(())
    }

    /// Runs one step of `mode` on rows `idx` of `(x, y)` (all of them, uncopied, for `None`).
    fn run_step(
        &mut self,
        mode: Mode,
        x: &HostTensor,
        y: &HostTensor,
        idx: Option<&[usize]>,
    ) -> Result<()> {
        match idx {
            Some(chunk) => {
                let xb = gather_rows(x, chunk);
                let yb = gather_rows(y, chunk);
                self.plan(mode, chunk.len())?.run(&[&xb, &yb])?;
            }
            None => {
                self.plan(mode, rows(x))?.run(&[x, y])?;
            }
        }
        Ok(())
    }

    /// Reads the accumulators (waits for the device) as means over `n` samples.
    pub(crate) fn read_accumulators(&mut self, n: usize) -> Result<Logs> {
        let n = n.max(1) as f64;
        let mut logs = Logs::new();
        logs.insert(
            "loss".into(),
            scalar(&self.device.read_param(LOSS_ACCUMULATOR)?) / n,
        );
        let names: Vec<&'static str> = self
            .compiled
            .as_ref()
            .map(|c| c.metrics.iter().map(|m| m.0).collect())
            .unwrap_or_default();
        for (i, name) in names.into_iter().enumerate() {
            let v = scalar(&self.device.read_param(&metric_accumulator(i))?);
            logs.insert(name.into(), v / n);
        }
        Ok(logs)
    }

    /// Runs `mode` over `idx` in batches; returns (sample-weighted mean loss, metric means).
    /// Nothing is read back per batch: the plans accumulate on the device and the host reads
    /// the accumulators once at the end.
    fn run_batches(
        &mut self,
        mode: Mode,
        x: &HostTensor,
        y: &HostTensor,
        idx: &[usize],
        batch: usize,
    ) -> Result<Logs> {
        self.reset_accumulators()?;
        for chunk in idx.chunks(batch.max(1)) {
            self.run_step(mode, x, y, Some(chunk))?;
        }
        self.read_accumulators(idx.len())
    }

    fn check_compiled(&self, what: &str) -> Result<()> {
        if self.compiled.is_none() {
            return Err(LayerError::Usage(format!(
                "call compile(loss, optimizer, metrics) before {what}"
            )));
        }
        Ok(())
    }

    /// The learning rate (the device variable [`LR_VARIABLE`]). Known on the host after
    /// `compile` and after [`Sequential::set_learning_rate`]; otherwise read from the device.
    pub fn learning_rate(&mut self) -> Result<f32> {
        self.check_compiled("learning_rate")?;
        if let Some(lr) = self.lr {
            return Ok(lr);
        }
        let lr = self.device.read_param(LR_VARIABLE)?.to_f32()[0];
        self.lr = Some(lr);
        Ok(lr)
    }

    /// Writes the learning-rate variable; the compiled training plans read it, so the next
    /// step uses it without recompiling (Keras `optimizer.learning_rate.assign`).
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.check_compiled("set_learning_rate")?;
        self.device
            .write_param(LR_VARIABLE, &HostTensor::f32([], vec![lr])?)?;
        self.lr = Some(lr);
        self.lr_changes += 1;
        Ok(())
    }

    /// Reads the device variable `name` (a weight `dense_1/kernel`, [`LR_VARIABLE`], an
    /// optimizer slot, an accumulator...); waits for the device.
    pub fn read_variable(&mut self, name: &str) -> Result<HostTensor> {
        Ok(self.device.read_param(name)?)
    }

    /// One training step on the whole of `(x, y)` as a single batch (Keras
    /// `train_on_batch`): returns the batch's loss and metrics, computed before the update.
    /// Reads them back, so it waits for the device.
    pub fn train_on_batch(&mut self, x: &HostTensor, y: &HostTensor) -> Result<Logs> {
        self.on_batch(Mode::Train, x, y)
    }

    /// Loss and metrics of `(x, y)` as a single batch, without updating (Keras
    /// `test_on_batch`). Reads them back.
    pub fn test_on_batch(&mut self, x: &HostTensor, y: &HostTensor) -> Result<Logs> {
        self.on_batch(Mode::Evaluate, x, y)
    }

    fn on_batch(&mut self, mode: Mode, x: &HostTensor, y: &HostTensor) -> Result<Logs> {
        self.check_xy(x, Some(y))?;
        self.check_compiled(if mode == Mode::Train {
            "train_on_batch"
        } else {
            "test_on_batch"
        })?;
        if rows(x) == 0 {
            return Err(LayerError::Data("empty batch".into()));
        }
        let y = self.prepare_y(y)?;
        self.reset_accumulators()?;
        self.run_step(mode, x, &y, None)?;
        self.read_accumulators(rows(x))
    }

    /// Model outputs for `x` as a single batch (Keras `predict_on_batch`).
    pub fn predict_on_batch(&mut self, x: &HostTensor) -> Result<HostTensor> {
        self.check_xy(x, None)?;
        self.init_weights()?;
        let n = rows(x);
        if n == 0 {
            return Err(LayerError::Data("empty batch".into()));
        }
        let r = self.plan(Mode::Predict, n)?.run(&[x])?;
        let mut dims = vec![n];
        dims.extend(self.output_shape().unwrap_or(&[]));
        Ok(HostTensor::f32(dims, r[0].to_f32())?)
    }

    /// Trains the model (Keras `fit`); returns the per-epoch history. Same as
    /// [`Sequential::fit_with_callbacks`] with no callbacks.
    pub fn fit(&mut self, x: &HostTensor, y: &HostTensor, opts: Fit) -> Result<History> {
        self.fit_with_callbacks(x, y, opts, &mut [])
    }

    /// Trains the model calling `callbacks` (Keras `fit(..., callbacks=[...])`), after the
    /// progress bar when `opts.verbose`. The callbacks stay the caller's, so their state
    /// (`EarlyStopping::stopped_epoch`...) can be read afterwards.
    ///
    /// The history holds, per epoch, the training loss and metrics (means over the epoch's
    /// samples), `val_*` with validation data, whatever callbacks add to the logs, and `lr`
    /// (the learning rate of each epoch) when a callback changed it during the fit.
    pub fn fit_with_callbacks(
        &mut self,
        x: &HostTensor,
        y: &HostTensor,
        opts: Fit,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<History> {
        self.check_xy(x, Some(y))?;
        self.check_compiled("fit")?;
        if opts.batch_size == 0 {
            return Err(LayerError::Data("batch_size must be at least 1".into()));
        }
        let y = &*self.prepare_y(y)?;
        let n = rows(x);
        let (n_train, val) = if let Some((vx, vy)) = &opts.validation_data {
            self.check_xy(vx, Some(vy))?;
            let vy = self.prepare_y(vy)?.into_owned();
            (n, Some((vx.clone(), vy, (0..rows(vx)).collect::<Vec<_>>())))
        } else if opts.validation_split > 0.0 {
            let nv = ((n as f64) * opts.validation_split.min(1.0)) as usize;
            (n - nv, Some((x.clone(), y.clone(), (n - nv..n).collect())))
        } else {
            (n, None)
        };
        if n_train == 0 {
            return Err(LayerError::Data("no training samples".into()));
        }
        let verbosity = opts.verbosity.resolve(opts.verbose);
        let mut bar = (verbosity != Verbosity::Silent).then(|| ProgressBar::new(verbosity));
        let seed = self.seed;
        let lr_changes = self.lr_changes;
        let mut ctx = CallbackContext::new(self);
        ctx.params = FitParams {
            epochs: opts.epochs,
            steps: n_train.div_ceil(opts.batch_size),
            samples: n_train,
            verbosity,
        };
        // The progress bar first, then the caller's callbacks (Keras's order).
        let mut each =
            |ctx: &mut CallbackContext<'_>,
             f: &mut dyn FnMut(&mut dyn Callback, &mut CallbackContext<'_>) -> Result<()>|
             -> Result<()> {
                if let Some(b) = &mut bar {
                    f(b, ctx)?;
                }
                for cb in callbacks.iter_mut() {
                    f(&mut **cb, ctx)?;
                }
                Ok(())
            };
        let mut history = History::default();
        // The learning rate of each epoch, as the host knows it (no device read).
        let mut epoch_lr: Vec<f64> = vec![];
        let mut last = Logs::new();
        let mut order: Vec<usize> = (0..n_train).collect();
        each(&mut ctx, &mut |cb, ctx| cb.on_train_begin(ctx))?;
        for epoch in 0..opts.epochs {
            if opts.shuffle {
                kiln_ir::random::Rng::new(kiln_ir::random::mix64(
                    seed ^ 0x5eed ^ ((epoch as u64) << 20),
                ))
                .shuffle(&mut order);
            }
            ctx.seen = 0;
            ctx.steps_run = 0;
            ctx.latest = None;
            ctx.model.reset_accumulators()?;
            each(&mut ctx, &mut |cb, ctx| cb.on_epoch_begin(ctx, epoch))?;
            for (b, chunk) in order.chunks(opts.batch_size).enumerate() {
                each(&mut ctx, &mut |cb, ctx| cb.on_batch_begin(ctx, b))?;
                ctx.model.run_step(Mode::Train, x, y, Some(chunk))?;
                ctx.seen += chunk.len();
                ctx.steps_run += 1;
                ctx.latest = None;
                each(&mut ctx, &mut |cb, ctx| cb.on_batch_end(ctx, b))?;
                if ctx.stop {
                    break;
                }
            }
            let mut logs = ctx.model.read_accumulators(ctx.seen)?;
            epoch_lr.push(ctx.model.lr.map_or(f64::NAN, f64::from));
            if let Some((vx, vy, vidx)) = &val {
                let vl = ctx
                    .model
                    .run_batches(Mode::Evaluate, vx, vy, vidx, opts.batch_size)?;
                for (k, v) in vl {
                    logs.insert(format!("val_{k}"), v);
                }
            }
            each(&mut ctx, &mut |cb, ctx| {
                cb.on_epoch_end(ctx, epoch, &mut logs)
            })?;
            if ctx.model.lr_changes != lr_changes && !logs.contains_key("lr") {
                logs.insert("lr".into(), epoch_lr[epoch]);
            }
            if logs.contains_key("lr") && !history.history.contains_key("lr") {
                // The learning rate became interesting this epoch: earlier epochs had the
                // values the host knew then.
                history
                    .history
                    .insert("lr".into(), epoch_lr[..epoch].to_vec());
            }
            for (k, v) in &logs {
                history.history.entry(k.clone()).or_default().push(*v);
            }
            last = logs;
            if ctx.stop {
                break;
            }
        }
        each(&mut ctx, &mut |cb, ctx| cb.on_train_end(ctx, &last))?;
        Ok(history)
    }

    /// Loss and metrics on `(x, y)` (Keras `evaluate`).
    pub fn evaluate(&mut self, x: &HostTensor, y: &HostTensor, batch_size: usize) -> Result<Logs> {
        self.check_xy(x, Some(y))?;
        self.check_compiled("evaluate")?;
        let y = &*self.prepare_y(y)?;
        let idx: Vec<usize> = (0..rows(x)).collect();
        self.run_batches(Mode::Evaluate, x, y, &idx, batch_size.max(1))
    }

    /// Model outputs for `x`, `[n, ..output]` (Keras `predict`).
    pub fn predict(&mut self, x: &HostTensor, batch_size: usize) -> Result<HostTensor> {
        self.check_xy(x, None)?;
        self.init_weights()?;
        let n = rows(x);
        let mut out = Vec::new();
        let idx: Vec<usize> = (0..n).collect();
        for chunk in idx.chunks(batch_size.max(1)) {
            let xb = gather_rows(x, chunk);
            let r = self.plan(Mode::Predict, chunk.len())?.run(&[&xb])?;
            out.extend(r[0].to_f32());
        }
        let mut dims = vec![n];
        dims.extend(self.output_shape().unwrap_or(&[]));
        Ok(HostTensor::f32(dims, out)?)
    }

    /// All weights in layer order (kernel, bias per Dense), read from the device.
    pub fn get_weights(&mut self) -> Result<Vec<HostTensor>> {
        self.init_weights()?;
        let names: Vec<String> = self
            .layers
            .iter()
            .flat_map(|e| {
                e.params
                    .iter()
                    .map(move |p| format!("{}/{}", e.name, p.name))
            })
            .collect();
        names
            .iter()
            .map(|n| Ok(self.device.read_param(n)?))
            .collect()
    }

    /// Replaces all weights (same order and shapes as [`Sequential::get_weights`]).
    pub fn set_weights(&mut self, weights: &[HostTensor]) -> Result<()> {
        let specs: Vec<(String, Vec<usize>)> = self
            .layers
            .iter()
            .flat_map(|e| {
                e.params
                    .iter()
                    .map(move |p| (format!("{}/{}", e.name, p.name), p.shape.clone()))
            })
            .collect();
        if specs.len() != weights.len() {
            return Err(LayerError::Data(format!(
                "set_weights: the model has {} weight tensors, got {}",
                specs.len(),
                weights.len()
            )));
        }
        for ((name, shape), w) in specs.iter().zip(weights) {
            if w.shape.dims() != shape.as_slice() {
                return Err(LayerError::Data(format!(
                    "set_weights: `{name}` has shape {:?}, got {}",
                    shape, w.shape
                )));
            }
        }
        self.init_weights()?;
        for ((name, _), w) in specs.iter().zip(weights) {
            self.device.write_param(name, w)?;
        }
        Ok(())
    }

    /// Keras's `summary()` table.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let rule = "_".repeat(65);
        let _ = writeln!(s, "Model: \"sequential\"\n{rule}");
        let _ = writeln!(
            s,
            "{:<29}{:<26}{:>10}",
            "Layer (type)", "Output Shape", "Param #"
        );
        let _ = writeln!(s, "{}", "=".repeat(65));
        let mut total = 0;
        // Keras shows no row for an InputLayer
        let shown: Vec<&Entry> = self.layers.iter().filter(|e| !e.layer.is_input()).collect();
        for (i, e) in shown.iter().enumerate() {
            let n: usize = e
                .params
                .iter()
                .map(|p| p.shape.iter().product::<usize>())
                .sum();
            total += n;
            let shape = crate::layers::keras_shape(&e.output);
            let _ = writeln!(
                s,
                "{:<29}{:<26}{:>10}",
                format!("{} ({})", e.name, e.layer.kind()),
                shape,
                n
            );
            let _ = writeln!(
                s,
                "{}",
                if i + 1 == shown.len() {
                    "=".repeat(65)
                } else {
                    rule.clone()
                }
            );
        }
        let _ = writeln!(
            s,
            "Total params: {total}\nTrainable params: {total}\nNon-trainable params: 0\n{rule}"
        );
        s
    }
}
