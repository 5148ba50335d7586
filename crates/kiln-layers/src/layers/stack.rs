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
    /// A data-parallel rank's share of a training step: forward + loss + metrics +
    /// backward on rows `offset..offset + batch` of a global batch of `global` rows; the
    /// gradients are the outputs, flattened and concatenated into the buckets of
    /// [`Stack::grad_buckets`]. Dropout noise is drawn for the global batch and sliced, so a
    /// sample's mask depends on its place in the global batch, not on the rank.
    Gradients {
        /// First row of this shard in the global batch.
        offset: usize,
        /// Rows of the global batch.
        global: usize,
    },
    /// The optimizer update alone, from gradients given as inputs `grads/<k>` (the buckets
    /// of [`Stack::grad_buckets`]).
    Update,
}

impl Mode {
    /// The [`kiln_opt::PlanKind`] its plans are compiled as.
    pub fn plan_kind(self) -> kiln_opt::PlanKind {
        use kiln_opt::PlanKind;
        match self {
            Mode::Predict => PlanKind::Predict,
            Mode::Evaluate => PlanKind::Evaluate,
            Mode::Train => PlanKind::Train,
            Mode::Gradients { .. } => PlanKind::Gradients,
            Mode::Update => PlanKind::Update,
        }
    }
}

/// Elements per gradient bucket (4 MiB of f32): a data-parallel step reads each bucket back
/// and all-reduces it as one message. A weight larger than this has a bucket of its own.
pub const GRAD_BUCKET_ELEMS: usize = 1 << 20;

/// The name of gradient bucket `k` (an output of the [`Mode::Gradients`] plan, an input of
/// the [`Mode::Update`] plan).
pub fn grad_bucket_name(k: usize) -> String {
    format!("grads/{k}")
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

    /// How the gradients of a data-parallel step are packed: buckets of weight indices
    /// (into [`Stack::weight_specs`]), the last layer's weights first — the order backward
    /// produces them — each bucket at most [`GRAD_BUCKET_ELEMS`] elements unless one weight
    /// alone is larger.
    pub fn grad_buckets(&self) -> Vec<Vec<usize>> {
        let specs = self.weight_specs();
        let mut buckets: Vec<Vec<usize>> = vec![];
        let mut fill = 0usize;
        for i in (0..specs.len()).rev() {
            let n: usize = specs[i].1.iter().product();
            match buckets.last_mut() {
                Some(b) if fill + n <= GRAD_BUCKET_ELEMS => {
                    b.push(i);
                    fill += n;
                }
                _ => {
                    buckets.push(vec![i]);
                    fill = n;
                }
            }
        }
        buckets
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
        if self.entries.is_empty() && input.contains(&0) {
            // Keras and PyTorch refuse zero-sized dimensions when the layer is made (layers
            // that check their own input first keep their messages)
            let (argument, value) = match (kind, input.as_slice()) {
                ("Dense", [d]) => ("input_dim", d.to_string()),
                _ => ("input_shape", format!("{input:?}")),
            };
            return Err(LayerError::argument(
                kind,
                argument,
                value,
                "every dimension must be at least 1",
            ));
        }
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
        if mode == Mode::Update {
            return self.update_graph(compiled);
        }
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
        let training = matches!(mode, Mode::Train | Mode::Gradients { .. });
        let mut ctx = training.then(|| {
            let ctx =
                TrainContext::lazy((kiln_ir::random::mix64(seed ^ 0x006e_6f69_7365) >> 32) as u32);
            match mode {
                Mode::Gradients { offset, global } => ctx.sharded(batch, offset, global),
                _ => ctx,
            }
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
        if training {
            finite_check(&mut g, loss)?;
            let grads = autodiff::grad(&mut g, loss, &trainable)?;
            if mode == Mode::Train {
                let pairs: Vec<(NodeId, NodeId)> = trainable.into_iter().zip(grads).collect();
                cfg.optimizer.apply(&mut g, &pairs)?;
            } else {
                for (k, bucket) in self.grad_buckets().into_iter().enumerate() {
                    let flat = bucket
                        .iter()
                        .map(|&i| {
                            let n = g.shape(grads[i]).numel();
                            g.reshape(grads[i], [n])
                        })
                        .collect::<kiln_ir::Result<Vec<_>>>()?;
                    let packed = if flat.len() == 1 {
                        flat[0]
                    } else {
                        g.concat(&flat, 0)?
                    };
                    g.output(grad_bucket_name(k), packed)?;
                }
            }
        }
        Ok(g)
    }

    /// The [`Mode::Update`] graph: the gradient buckets as inputs, unpacked and given to the
    /// optimizer.
    fn update_graph(&self, compiled: Option<&Compiled>) -> Result<Graph> {
        let cfg = compiled.ok_or_else(|| {
            LayerError::Usage("call compile(loss, optimizer, metrics) before fit".into())
        })?;
        let specs = self.weight_specs();
        let mut g = Graph::new();
        let params = specs
            .iter()
            .map(|(name, shape)| g.param(name, shape.clone(), DType::F32))
            .collect::<kiln_ir::Result<Vec<_>>>()?;
        let mut grads: Vec<Option<NodeId>> = vec![None; specs.len()];
        for (k, bucket) in self.grad_buckets().into_iter().enumerate() {
            let len: usize = bucket
                .iter()
                .map(|&i| specs[i].1.iter().product::<usize>())
                .sum();
            let input = g.input(&grad_bucket_name(k), [len], DType::F32)?;
            let mut at = 0;
            for &i in &bucket {
                let n: usize = specs[i].1.iter().product();
                let part = if bucket.len() == 1 {
                    input
                } else {
                    g.slice(input, 0, at, n)?
                };
                grads[i] = Some(g.reshape(part, specs[i].1.clone())?);
                at += n;
            }
        }
        let pairs = params
            .into_iter()
            .zip(grads)
            .map(|(p, gr)| {
                gr.map(|gr| (p, gr))
                    .ok_or_else(|| LayerError::Usage("a weight without a gradient bucket".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        cfg.optimizer.apply(&mut g, &pairs)?;
        Ok(g)
    }
}

/// The in-plan finite check of a training step's loss, riding on the accumulators: counts
/// the steps ([`vars::metrics::STEPS`]) and records the first one whose loss is NaN or
/// infinite ([`vars::metrics::FIRST_NONFINITE`], 1-based, 0 for none). Scalar arithmetic
/// only: it fuses into the kernel that already updates the loss accumulator, so the step
/// costs no extra dispatch and reads nothing back.
fn finite_check(g: &mut Graph, loss: NodeId) -> Result<()> {
    use kiln_ir::BinaryOp;
    let steps = g.param(vars::metrics::STEPS, [], DType::F32)?;
    let first = g.param(vars::metrics::FIRST_NONFINITE, [], DType::F32)?;
    // |loss| <= MAX is false exactly for NaN and ±inf (every comparison with NaN is false)
    let magnitude = g.abs(loss)?;
    let largest = g.scalar(f32::MAX as f64);
    let finite = g.binary(BinaryOp::Le, magnitude, largest)?;
    let not_finite = g.neg(finite)?;
    let bad = g.add_scalar(not_finite, 1.0)?;
    // steps + 1, written as steps + finite + bad (= 1) so that the counter depends on the
    // loss and fuses into the kernel that computes it instead of running as its own
    let one = g.add(finite, bad)?;
    let step = g.add(steps, one)?;
    let zero = g.scalar(0.0);
    let none_yet = g.binary(BinaryOp::Eq, first, zero)?;
    let hit = g.mul(bad, none_yet)?;
    let record = g.mul(hit, step)?;
    let next = g.add(first, record)?;
    g.assign(steps, step)?;
    g.assign(first, next)?;
    Ok(())
}
