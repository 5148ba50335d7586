//! [`TrainContext`]: the noise a layer may draw in a training step.

use crate::{vars, Result};
use kiln_ir::{Graph, NodeId};

/// What a layer may use in a training step beyond its weights: fresh noise per step.
///
/// The model keeps a step counter variable ([`TrainContext::STEP_VARIABLE`], advanced by
/// every training step); each [`TrainContext::uniform`] call draws from its own stream of
/// the model's seed at that step, so masks change from step to step, are the same bits on
/// every device, and a reloaded model continues the sequence.
pub struct TrainContext {
    step: Option<NodeId>,
    seed: u32,
    streams: u32,
    /// `(batch, offset, global)`: this graph computes rows `offset..offset + batch` of a
    /// global batch of `global` rows (a data-parallel shard).
    shard: Option<(usize, usize, usize)>,
}

impl TrainContext {
    /// Name of the step counter variable ([`vars::NOISE_STEP`]).
    pub const STEP_VARIABLE: &'static str = vars::NOISE_STEP;

    /// A context drawing from `seed` at the step held by the i32 `[1]` node `step`.
    pub fn new(step: NodeId, seed: u32) -> Self {
        TrainContext {
            step: Some(step),
            seed,
            streams: 0,
            shard: None,
        }
    }

    /// The context of a data-parallel shard: this graph's `batch` rows are rows
    /// `offset..offset + batch` of a global batch of `global`. Noise whose first axis is the
    /// batch is drawn for the global batch and sliced, so every sample gets the mask it
    /// would get in single-process training on that global batch, whichever rank holds it.
    pub fn sharded(mut self, batch: usize, offset: usize, global: usize) -> Self {
        self.shard = Some((batch, offset, global));
        self
    }

    /// A context that creates the model's step counter variable (and its increment) in the
    /// graph the first time noise is drawn: a training step without dropout has none.
    pub fn lazy(seed: u32) -> Self {
        TrainContext {
            step: None,
            seed,
            streams: 0,
            shard: None,
        }
    }

    fn step(&mut self, g: &mut Graph) -> Result<NodeId> {
        if let Some(s) = self.step {
            return Ok(s);
        }
        // f32 like every saved variable (exact up to 2^24 steps)
        let step = g.param(vars::NOISE_STEP, [1], kiln_ir::DType::F32)?;
        let one = g.full(1.0, [1], kiln_ir::DType::F32);
        let next = g.add(step, one)?;
        g.assign(step, next)?;
        let step = g.cast(step, kiln_ir::DType::I32)?;
        self.step = Some(step);
        Ok(step)
    }

    /// Uniform `[0, 1)` noise of `shape`, from a stream no other call of this step uses.
    pub fn uniform(&mut self, g: &mut Graph, shape: &[usize]) -> Result<NodeId> {
        let step = self.step(g)?;
        self.streams += 1;
        let key = kiln_ir::random::hash32(self.seed ^ kiln_ir::random::hash32(self.streams));
        match self.shard {
            Some((batch, offset, global))
                if shape.first() == Some(&batch) && (batch, offset) != (global, 0) =>
            {
                let mut whole = shape.to_vec();
                whole[0] = global;
                let u = g.random_uniform(key, step, whole)?;
                Ok(g.slice(u, 0, offset, batch)?)
            }
            _ => Ok(g.random_uniform(key, step, shape.to_vec())?),
        }
    }

    /// An inverted-dropout mask of `shape`: `1 / (1 - rate)` where kept, 0 where dropped
    /// (each element dropped with probability `rate`), as Keras scales at training time.
    pub fn dropout_mask(&mut self, g: &mut Graph, shape: &[usize], rate: f64) -> Result<NodeId> {
        let u = self.uniform(g, shape)?;
        let r = g.scalar(rate);
        let keep = g.binary(kiln_ir::BinaryOp::Ge, u, r)?;
        Ok(g.mul_scalar(keep, 1.0 / (1.0 - rate))?)
    }
}
