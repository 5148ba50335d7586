//! Data-parallel training (Keras's `MultiWorkerMirroredStrategy` in spirit): every rank of a
//! [`Collective`] holds a replica of the model and trains on its shard of each global batch;
//! the gradients are summed across ranks before one optimizer update, identical on every
//! rank.
//!
//! ## How a step runs
//! 1. Every rank cuts the same global batch (the same shuffled order: it depends on the seed
//!    and the epoch only) into `size` contiguous shards of sizes differing by at most one
//!    ([`shard_range`]) and runs the [`Mode::Gradients`] plan on its own: forward, loss,
//!    metrics, backward. Its outputs are the gradients packed into buckets
//!    ([`crate::layers::Stack::grad_buckets`]): one read-back per bucket, none per tensor.
//! 2. Each bucket, weighted by the shard's rows, is summed across the ranks
//!    ([`Collective::all_reduce_sum`]: in rank order, so every rank gets the same bits)
//!    and divided by the global batch: the mean gradient of the global batch, as one
//!    process would compute it up to float summation order.
//! 3. The [`Mode::Update`] plan applies the optimizer to those gradients.
//!
//! Dropout noise is drawn for the global batch and sliced
//! ([`crate::TrainContext::sharded`]): a sample's mask is a function of (seed, step, its
//! index in the global batch), whichever rank holds it, so a run on `n` ranks trains the
//! same model as one process on the same global batches.
//!
//! ## What runs where
//! - At the start of `fit`, rank 0's weights are broadcast to every rank.
//! - The progress bar runs on rank 0 only; callbacks run on every rank (so that decisions
//!   such as early stopping are taken identically) with the epoch logs reduced across the
//!   ranks; [`ModelCheckpoint`](crate::ModelCheckpoint) and [`CsvLogger`](crate::CsvLogger)
//!   write on rank 0 only. A stop asked on any rank stops every rank after the same batch.
//! - `evaluate` and the validation of `fit` shard their batches the same way and reduce the
//!   sums.
//!
//! A failing collective (a rank that died or hangs) is a [`LayerError::Distributed`] naming
//! the ranks; the transport decides how long it waits (kiln's MPI transport: a timeout).

use super::Sequential;
use crate::layers::{grad_bucket_name, Mode};
use crate::{vars, LayerError, Result};
use kiln_opt::HostTensor;
use std::ops::Range;

/// Why a collective operation failed: which rank saw it, and what it saw (which peer ranks
/// did not answer, after how long).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("rank {rank} of {size}: {message}")]
pub struct CollectiveError {
    /// The rank that reports the failure.
    pub rank: usize,
    /// Ranks in the group.
    pub size: usize,
    /// What happened, naming the peer ranks involved.
    pub message: String,
}

/// A group of processes that train one model together: the transport of data-parallel
/// training. kiln's MPI transport is `kiln::dist::Mpi` (cargo feature `mpi`);
/// [`SingleProcess`] is the group of one.
///
/// Every method is collective: every rank calls it, in the same order, with buffers of the
/// same length.
pub trait Collective: Send {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Ranks in the group.
    fn size(&self) -> usize;
    /// Replaces `data` on every rank with the element-wise sum over the ranks, added in rank
    /// order (rank 0's value first), so that every rank gets the same bits, run after run.
    fn all_reduce_sum(&mut self, data: &mut [f32]) -> std::result::Result<(), CollectiveError>;
    /// [`Collective::all_reduce_sum`] in f64 (loss and metric sums, counters).
    fn all_reduce_sum_f64(&mut self, data: &mut [f64]) -> std::result::Result<(), CollectiveError>;
    /// Replaces `data` on every rank with rank `root`'s.
    fn broadcast(
        &mut self,
        root: usize,
        data: &mut [f32],
    ) -> std::result::Result<(), CollectiveError>;
    /// Payload bytes this rank has sent so far (gradient buckets, logs, weights).
    fn bytes_sent(&self) -> u64 {
        0
    }
    /// Whether a group of one still trains through the split (gradients, then update) plans.
    /// By default it does not: alone, a rank runs the fused training step, which is faster
    /// and computes the same; [`SingleProcess`] says yes (it exists to run the split step).
    fn split_when_alone(&self) -> bool {
        false
    }
}

/// The group of one process: every collective is the identity. A model distributed over it
/// trains through the split (gradients, then update) plans of a data-parallel step — the
/// single-process reference of a multi-rank run.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&mut self, _: &mut [f32]) -> std::result::Result<(), CollectiveError> {
        Ok(())
    }
    fn all_reduce_sum_f64(&mut self, _: &mut [f64]) -> std::result::Result<(), CollectiveError> {
        Ok(())
    }
    fn broadcast(&mut self, _: usize, _: &mut [f32]) -> std::result::Result<(), CollectiveError> {
        Ok(())
    }
    fn split_when_alone(&self) -> bool {
        true
    }
}

/// Rows of a global batch of `n` that rank `rank` of `size` trains on: contiguous, in rank
/// order, sizes differing by at most one (the first `n % size` ranks take one more).
pub fn shard_range(n: usize, size: usize, rank: usize) -> Range<usize> {
    let size = size.max(1);
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// What a data-parallel fit has moved, for benchmarks and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DistributedStats {
    /// Data-parallel training steps run.
    pub steps: u64,
    /// Gradient elements all-reduced per step (the model's weight count).
    pub grad_elems_per_step: u64,
    /// Gradient buckets per step (one read-back and one all-reduce each).
    pub buckets_per_step: u64,
    /// Payload bytes this rank sent in the gradient all-reduces of those steps (what the
    /// transport reports; the weight broadcast and the log reductions not included).
    pub grad_bytes_sent: u64,
}

impl Sequential {
    /// Trains data-parallel over `group` from now on: `fit` shards each global batch
    /// (`Fit::batch_size` is the global batch) across the ranks and all-reduces the
    /// gradients; see [`crate::train::distributed`]. Every rank must build the same model
    /// (same layers, seed, `compile`) and call `fit` with the same data and options.
    pub fn distribute(&mut self, group: Box<dyn Collective>) {
        self.collective = Some(group);
    }

    /// Ends data-parallel training and gives the group back (e.g. to end it cleanly).
    pub fn take_collective(&mut self) -> Option<Box<dyn Collective>> {
        self.collective.take()
    }

    /// `(rank, size)` of the group this model trains over, if [`Sequential::distribute`]d.
    pub fn rank_and_size(&self) -> Option<(usize, usize)> {
        self.collective.as_ref().map(|c| (c.rank(), c.size()))
    }

    /// Whether this process is rank 0 (or not distributed): the one that prints and writes
    /// files.
    pub fn is_chief(&self) -> bool {
        self.collective.as_ref().is_none_or(|c| c.rank() == 0)
    }

    /// What data-parallel training has moved so far.
    pub fn distributed_stats(&self) -> DistributedStats {
        self.dist_stats
    }

    /// Payload bytes this rank has sent through its group so far (0 when not distributed).
    pub fn bytes_sent(&self) -> u64 {
        self.collective.as_ref().map_or(0, |c| c.bytes_sent())
    }

    fn group(&mut self) -> Result<&mut Box<dyn Collective>> {
        self.collective
            .as_mut()
            .ok_or_else(|| LayerError::Usage("the model is not distributed".into()))
    }

    /// The shard of `global` rows this rank takes (all of them when not distributed).
    pub(super) fn shard_of(&self, global: usize) -> Range<usize> {
        match &self.collective {
            Some(c) => shard_range(global, c.size(), c.rank()),
            None => 0..global,
        }
    }

    /// Sums `values` over the ranks (nothing to do when not distributed).
    pub(super) fn reduce_sums(&mut self, values: &mut [f64]) -> Result<()> {
        if let Some(c) = self.collective.as_mut() {
            c.all_reduce_sum_f64(values)?;
        }
        Ok(())
    }

    /// Whether any rank asked to stop (every rank gets the same answer).
    pub(super) fn any_rank_stops(&mut self, stop: bool) -> Result<bool> {
        let mut v = [f64::from(u8::from(stop))];
        self.reduce_sums(&mut v)?;
        Ok(v[0] > 0.0)
    }

    /// Gives every rank rank 0's weights.
    pub(super) fn broadcast_weights(&mut self) -> Result<()> {
        self.init_weights()?;
        let weights = self.get_weights()?;
        let mut flat: Vec<f32> = weights.iter().flat_map(|w| w.to_f32()).collect();
        self.group()?.broadcast(0, &mut flat)?;
        let mut at = 0;
        let mut out = Vec::with_capacity(weights.len());
        for w in &weights {
            let n = w.shape.numel();
            out.push(HostTensor::f32(
                w.shape.dims().to_vec(),
                flat[at..at + n].to_vec(),
            )?);
            at += n;
        }
        self.set_weights(&out)
    }

    /// One data-parallel training step on the global batch `chunk` (row indices of `x`, `y`).
    pub(super) fn distributed_step(
        &mut self,
        x: &HostTensor,
        y: &HostTensor,
        chunk: &[usize],
    ) -> Result<()> {
        if self
            .collective
            .as_ref()
            .is_some_and(|c| c.size() == 1 && !c.split_when_alone())
        {
            // alone (`mpirun -np 1`): the fused step computes the same, faster
            return self.run_step(Mode::Train, x, y, Some(chunk));
        }
        let global = chunk.len();
        let mine = self.shard_of(global);
        let buckets = self.stack.grad_buckets();
        let specs = self.stack.weight_specs();
        let lens: Vec<usize> = buckets
            .iter()
            .map(|b| {
                b.iter()
                    .map(|&i| specs[i].1.iter().product::<usize>())
                    .sum()
            })
            .collect();
        let mut grads: Vec<Vec<f32>> = if mine.is_empty() {
            // no rows for this rank: it adds nothing, but its noise counter steps as the
            // other ranks' do
            self.advance_noise_step()?;
            lens.iter().map(|&n| vec![0.0; n]).collect()
        } else {
            let rows = &chunk[mine.clone()];
            let xb = super::fit::gather_rows(x, rows);
            let yb = super::fit::gather_rows(y, rows);
            let mode = Mode::Gradients {
                offset: mine.start,
                global,
            };
            let outs = self.plan(mode, rows.len())?.run(&[&xb, &yb])?;
            // weighted by the shard's rows: the sum over ranks is the global batch's sum
            let w = rows.len() as f32;
            outs.iter()
                .map(|t| t.to_f32().into_iter().map(|v| v * w).collect())
                .collect()
        };
        if grads.len() != buckets.len() || grads.iter().zip(&lens).any(|(g, &n)| g.len() != n) {
            return Err(LayerError::Usage(format!(
                "the gradient plan returned {} buckets, the model has {}",
                grads.len(),
                buckets.len()
            )));
        }
        let scale = 1.0 / global as f32;
        let group = self.group()?;
        let before = group.bytes_sent();
        for g in grads.iter_mut() {
            group.all_reduce_sum(g)?;
            g.iter_mut().for_each(|v| *v *= scale);
        }
        let sent = group.bytes_sent() - before;
        let inputs = grads
            .into_iter()
            .map(|g| {
                let n = g.len();
                HostTensor::f32([n], g)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let refs: Vec<&HostTensor> = inputs.iter().collect();
        self.plan(Mode::Update, 0)?.run(&refs)?;
        self.dist_stats.steps += 1;
        self.dist_stats.grad_bytes_sent += sent;
        self.dist_stats.grad_elems_per_step = lens.iter().sum::<usize>() as u64;
        self.dist_stats.buckets_per_step = lens.len() as u64;
        Ok(())
    }

    /// Steps the dropout noise counter as a training step would (a rank with no rows).
    fn advance_noise_step(&mut self) -> Result<()> {
        if !self
            .device
            .param_names()
            .iter()
            .any(|n| n == vars::NOISE_STEP)
        {
            return Ok(());
        }
        let t = self.device.read_param(vars::NOISE_STEP)?;
        let next: Vec<f32> = t.to_f32().into_iter().map(|v| v + 1.0).collect();
        self.device.write_param(
            vars::NOISE_STEP,
            &HostTensor::f32(t.shape.dims().to_vec(), next)?,
        )?;
        Ok(())
    }
}

/// The gradient-bucket input names of the update plan, in order (for tools and tests).
pub fn grad_bucket_names(buckets: usize) -> Vec<String> {
    (0..buckets).map(grad_bucket_name).collect()
}

/// A group whose ranks are threads of one process ([`ThreadGroup::new`] makes all of them):
/// data-parallel training over several devices of one machine (Keras's
/// `MirroredStrategy`), and the in-process twin of the MPI transport for tests. Sums run in
/// rank order, as every transport's must.
pub struct ThreadGroup {
    rank: usize,
    shared: std::sync::Arc<ThreadShared>,
    sent: u64,
}

struct ThreadShared {
    size: usize,
    barrier: std::sync::Barrier,
    slots: std::sync::Mutex<Vec<Vec<f64>>>,
}

impl ThreadGroup {
    /// The `size` ranks of a new group, rank 0 first: give one to each thread.
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let size = size.max(1);
        let shared = std::sync::Arc::new(ThreadShared {
            size,
            barrier: std::sync::Barrier::new(size),
            slots: std::sync::Mutex::new(vec![vec![]; size]),
        });
        (0..size)
            .map(|rank| ThreadGroup {
                rank,
                shared: shared.clone(),
                sent: 0,
            })
            .collect()
    }

    /// Every rank's `data`, in rank order (values pass through f64 exactly).
    fn exchange(&mut self, data: Vec<f64>) -> std::result::Result<Vec<Vec<f64>>, CollectiveError> {
        let poisoned = |rank, size| CollectiveError {
            rank,
            size,
            message: "a peer thread panicked during a collective".into(),
        };
        let (rank, size) = (self.rank, self.shared.size);
        self.sent += (data.len() * 4) as u64;
        self.shared.barrier.wait();
        self.shared.slots.lock().map_err(|_| poisoned(rank, size))?[rank] = data;
        self.shared.barrier.wait();
        let all = self
            .shared
            .slots
            .lock()
            .map_err(|_| poisoned(rank, size))?
            .clone();
        self.shared.barrier.wait();
        Ok(all)
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn all_reduce_sum(&mut self, data: &mut [f32]) -> std::result::Result<(), CollectiveError> {
        let all = self.exchange(data.iter().map(|&v| f64::from(v)).collect())?;
        for (i, d) in data.iter_mut().enumerate() {
            let mut acc = all[0][i] as f32;
            for r in &all[1..] {
                acc += r[i] as f32;
            }
            *d = acc;
        }
        Ok(())
    }
    fn all_reduce_sum_f64(&mut self, data: &mut [f64]) -> std::result::Result<(), CollectiveError> {
        let all = self.exchange(data.to_vec())?;
        for (i, d) in data.iter_mut().enumerate() {
            *d = all.iter().map(|r| r[i]).sum();
        }
        Ok(())
    }
    fn broadcast(
        &mut self,
        root: usize,
        data: &mut [f32],
    ) -> std::result::Result<(), CollectiveError> {
        let mine = if self.rank == root {
            data.iter().map(|&v| f64::from(v)).collect()
        } else {
            vec![]
        };
        let all = self.exchange(mine)?;
        for (d, s) in data.iter_mut().zip(&all[root]) {
            *d = *s as f32;
        }
        Ok(())
    }
    fn bytes_sent(&self) -> u64 {
        self.sent
    }
}
