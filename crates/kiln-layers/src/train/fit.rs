//! The training loop (`fit`, with callbacks), `evaluate`, `predict` and their one-batch
//! forms, and the checks of the data they are given.

use super::callbacks::{Callback, CallbackContext, FitParams};
use super::{Fit, History, Logs, ProgressBar, Sequential, Verbosity};
use crate::layers::Mode;
use crate::{LayerError, Result};
use kiln_opt::HostTensor;

fn rows(t: &HostTensor) -> usize {
    t.shape.dims().first().copied().unwrap_or(0)
}

/// Gathers rows `idx` of `t` into a new f32 tensor (i32 values converted), touching only
/// those rows: a training step's host work is O(batch), whatever the data-set size.
pub(super) fn gather_rows(t: &HostTensor, idx: &[usize]) -> HostTensor {
    let row: usize = t.shape.dims()[1..].iter().product();
    let mut dims = t.shape.dims().to_vec();
    dims[0] = idx.len();
    let mut v = Vec::with_capacity(idx.len() * row);
    for &i in idx {
        let rows = i * row..(i + 1) * row;
        match &t.data {
            kiln_opt::HostData::F32(src) => v.extend_from_slice(&src[rows]),
            kiln_opt::HostData::I32(src) => v.extend(src[rows].iter().map(|&x| x as f32)),
        }
    }
    HostTensor {
        shape: dims.into(),
        data: kiln_opt::HostData::F32(v),
    }
}

/// `batch_size` of `function` is at least 1.
fn check_batch_size(function: &str, batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(LayerError::argument(
            function,
            "batch_size",
            0,
            "must be at least 1",
        ));
    }
    Ok(())
}

impl Sequential {
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
        if let Some(first) = self.stack.entries().iter().find(|e| !e.layer.is_input()) {
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

    /// Runs one step of `mode` on rows `idx` of `(x, y)` (all of them, uncopied, for `None`).
    pub(super) fn run_step(
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
            // data-parallel: each rank takes its shard of every batch, the sums are reduced
            let shard = &chunk[self.shard_of(chunk.len())];
            if !shard.is_empty() {
                self.run_step(mode, x, y, Some(shard))?;
            }
        }
        self.read_epoch_logs(idx.len())
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
        if self.collective.is_some() {
            // data-parallel: every rank takes its shard of the batch
            let idx: Vec<usize> = (0..rows(x)).collect();
            if mode == Mode::Train {
                self.distributed_step(x, &y, &idx)?;
            } else {
                let shard = &idx[self.shard_of(idx.len())];
                if !shard.is_empty() {
                    self.run_step(mode, x, &y, Some(shard))?;
                }
            }
            return self.read_epoch_logs(rows(x));
        }
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
        let split = opts.validation_split;
        if !(0.0..1.0).contains(&split) {
            return Err(LayerError::argument(
                "fit",
                "validation_split",
                split,
                "must be in [0, 1): the fraction of the samples held out",
            ));
        }
        let y = &*self.prepare_y(y)?;
        let n = rows(x);
        let (n_train, val) = if let Some((vx, vy)) = &opts.validation_data {
            self.check_xy(vx, Some(vy))?;
            let vy = self.prepare_y(vy)?.into_owned();
            (n, Some((vx.clone(), vy, (0..rows(vx)).collect::<Vec<_>>())))
        } else if opts.validation_split > 0.0 {
            let nv = ((n as f64) * split) as usize;
            (n - nv, Some((x.clone(), y.clone(), (n - nv..n).collect())))
        } else {
            (n, None)
        };
        if n_train == 0 {
            return Err(LayerError::Data("no training samples".into()));
        }
        let check_numerics = self.check_numerics_on()?;
        let distributed = self.collective.is_some();
        if distributed {
            // every replica starts from rank 0's weights
            self.broadcast_weights()?;
        }
        let verbosity = opts.verbosity.resolve(opts.verbose);
        // the progress bar is rank 0's
        let mut bar = (verbosity != Verbosity::Silent && self.is_chief())
            .then(|| ProgressBar::new(verbosity));
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
            ctx.local_seen = 0;
            ctx.steps_run = 0;
            ctx.latest = None;
            ctx.model.reset_accumulators()?;
            each(&mut ctx, &mut |cb, ctx| cb.on_epoch_begin(ctx, epoch))?;
            for (b, chunk) in order.chunks(opts.batch_size).enumerate() {
                each(&mut ctx, &mut |cb, ctx| cb.on_batch_begin(ctx, b))?;
                if distributed {
                    ctx.model.distributed_step(x, y, chunk)?;
                    ctx.local_seen += ctx.model.shard_of(chunk.len()).len();
                } else if check_numerics {
                    let (xb, yb) = (gather_rows(x, chunk), gather_rows(y, chunk));
                    ctx.model.checked_step(epoch, b, &xb, &yb)?;
                    ctx.local_seen += chunk.len();
                } else {
                    ctx.model.run_step(Mode::Train, x, y, Some(chunk))?;
                    ctx.local_seen += chunk.len();
                }
                ctx.seen += chunk.len();
                ctx.steps_run += 1;
                ctx.latest = None;
                each(&mut ctx, &mut |cb, ctx| cb.on_batch_end(ctx, b))?;
                if distributed {
                    // a stop asked on any rank stops every rank after this batch
                    ctx.stop = ctx.model.any_rank_stops(ctx.stop)?;
                }
                if ctx.stop {
                    break;
                }
            }
            let mut logs = ctx.model.read_epoch_logs(ctx.seen)?;
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
            if distributed {
                ctx.stop = ctx.model.any_rank_stops(ctx.stop)?;
            }
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
        check_batch_size("evaluate", batch_size)?;
        if rows(x) == 0 {
            return Err(LayerError::argument(
                "evaluate",
                "x",
                "0 samples",
                "must hold at least one sample (the mean over no samples is undefined)",
            ));
        }
        let y = &*self.prepare_y(y)?;
        let idx: Vec<usize> = (0..rows(x)).collect();
        self.run_batches(Mode::Evaluate, x, y, &idx, batch_size)
    }

    /// Model outputs for `x`, `[n, ..output]` (Keras `predict`).
    pub fn predict(&mut self, x: &HostTensor, batch_size: usize) -> Result<HostTensor> {
        self.check_xy(x, None)?;
        check_batch_size("predict", batch_size)?;
        self.init_weights()?;
        let n = rows(x);
        let mut out = Vec::new();
        let idx: Vec<usize> = (0..n).collect();
        for chunk in idx.chunks(batch_size) {
            let xb = gather_rows(x, chunk);
            let r = self.plan(Mode::Predict, chunk.len())?.run(&[&xb])?;
            out.extend(r[0].to_f32());
        }
        let mut dims = vec![n];
        dims.extend(self.output_shape().unwrap_or(&[]));
        Ok(HostTensor::f32(dims, out)?)
    }
}
