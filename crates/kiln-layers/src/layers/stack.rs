//! [`Stack`]: a model's layers in order, and the graph they build for one [`Mode`] and batch
//! size — forward, loss and metrics (accumulated on the device), autodiff backward and the
//! optimizer update. The training runtime ([`crate::train`]) compiles these graphs into
//! plans; this file never sees a device.

use super::{Layer, Loss, Metric, Optimizer, ParamSpec, TrainContext};
use crate::{vars, LayerError, Result};
use kiln_ir::{autodiff, DType, Graph, NodeId};
use std::collections::HashMap;

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

/// A layer of a [`Stack`], built: its unique name, shapes and weights.
pub struct Entry {
    /// Unique name (`dense_1`), the prefix of its weights' variable names.
    pub name: String,
    /// The layer.
    pub layer: Box<dyn Layer>,
    /// Per-sample input shape.
    pub input: Vec<usize>,
    /// Per-sample output shape.
    pub output: Vec<usize>,
    /// Its weights, in [`Layer::params`] order.
    pub params: Vec<ParamSpec>,
}

impl Entry {
    /// The device-variable names of its weights ([`vars::weight`]), in order.
    pub fn weight_names(&self) -> impl Iterator<Item = String> + '_ {
        self.params
            .iter()
            .map(|p| vars::weight(&self.name, &p.name))
    }
}

/// The training setup given to `compile`: what the graphs of `Evaluate` and `Train` add to
/// the forward pass.
pub struct Compiled {
    /// Loss.
    pub loss: Loss,
    /// Optimizer.
    pub optimizer: Box<dyn Optimizer>,
    /// (name shown in logs, resolved metric)
    pub metrics: Vec<(&'static str, Metric)>,
    /// The metrics as given to `compile` (for the saved configuration).
    pub requested: Vec<Metric>,
}

/// A model's layers in order, with their unique names (Keras's `dense_1`, `lstm_2`...).
#[derive(Default)]
pub struct Stack {
    entries: Vec<Entry>,
    name_counts: HashMap<&'static str, usize>,
}

impl Stack {
    /// The layers, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> Option<&[usize]> {
        self.entries.first().map(|e| e.input.as_slice())
    }

    /// Per-sample output shape.
    pub fn output_shape(&self) -> Option<&[usize]> {
        self.entries.last().map(|e| e.output.as_slice())
    }

    /// `(variable name, shape)` of every weight, in layer order.
    pub fn weight_specs(&self) -> Vec<(String, Vec<usize>)> {
        self.entries
            .iter()
            .flat_map(|e| {
                e.weight_names()
                    .zip(e.params.iter().map(|p| p.shape.clone()))
            })
            .collect()
    }

    /// Appends a layer, naming it and checking that it fits the previous layer's output.
    pub fn push(&mut self, mut layer: Box<dyn Layer>) -> Result<()> {
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
        if layer.is_input() && !self.entries.is_empty() {
            return Err(LayerError::Shape {
                layer: name,
                message: format!(
                    "an InputLayer must be the first layer, the model already has {} \
                     (input {:?}); hint: add it before every other layer",
                    self.entries.len(),
                    self.input_shape().unwrap_or(&[])
                ),
            });
        }
        let input = match self.entries.last() {
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
        self.entries.push(Entry {
            name,
            layer,
            input,
            output,
            params,
        });
        Ok(())
    }

    /// Builds the graph of `mode` for `batch` samples; `seed` is the model's (dropout noise),
    /// `compiled` the training setup (needed by every mode but `Predict`).
    pub fn graph(
        &self,
        mode: Mode,
        batch: usize,
        seed: u64,
        compiled: Option<&Compiled>,
    ) -> Result<Graph> {
        let first = self
            .entries
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
        let n_layers = self.entries.len();
        // a training step draws its noise (dropout masks) at the model's step counter, which
        // the context creates (and advances) on first use
        let mut ctx = (mode == Mode::Train).then(|| {
            TrainContext::lazy((kiln_ir::random::mix64(seed ^ 0x006e_6f69_7365) >> 32) as u32)
        });
        for (li, e) in self.entries.iter().enumerate() {
            let ids = e
                .params
                .iter()
                .zip(e.weight_names())
                .map(|(p, name)| g.param(&name, p.shape.clone(), DType::F32))
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
        let cfg = compiled.ok_or_else(|| {
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
        let acc = g.param(vars::metrics::LOSS_SUM, [], DType::F32)?;
        let weighted = g.mul_scalar(loss, batch as f64)?;
        let next = g.add(acc, weighted)?;
        g.assign(acc, next)?;
        for (i, (_, m)) in cfg.metrics.iter().enumerate() {
            let s = m.batch_sum(&mut g, h, y, logits)?;
            let acc = g.param(&vars::metrics::sum(i), [], DType::F32)?;
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
}
