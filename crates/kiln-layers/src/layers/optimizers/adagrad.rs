//! Keras `Adagrad`.

use super::{slot, Optimizer, OptimizerCommon, OptimizerConfig};
use crate::Result;
use kiln_ir::{Graph, NodeId};

/// Adagrad (Keras `Adagrad`): with the accumulator `acc` (starting at
/// `initial_accumulator_value`), `acc <- acc + g²`, `w <- w - lr g / (sqrt(acc) + epsilon)`.
///
/// The device variable `optimizer/<param>/accumulator` holds `acc - initial_accumulator_value`
/// (so that it starts at zero like every new variable).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adagrad {
    /// Learning rate (default 0.001) and gradient clipping.
    #[serde(flatten)]
    pub common: OptimizerCommon,
    /// Starting value of the accumulators (default 0.1).
    pub initial_accumulator_value: f32,
    /// Fuzz factor (default 1e-7).
    pub epsilon: f32,
}

impl Default for Adagrad {
    fn default() -> Self {
        Adagrad {
            common: OptimizerCommon::new(0.001),
            initial_accumulator_value: 0.1,
            epsilon: 1e-7,
        }
    }
}

impl Adagrad {
    /// Adagrad with the given learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        Adagrad {
            common: OptimizerCommon::new(learning_rate),
            ..Adagrad::default()
        }
    }

    /// Sets the starting value of the accumulators.
    pub fn initial_accumulator_value(mut self, value: f32) -> Self {
        self.initial_accumulator_value = value;
        self
    }
}

impl Optimizer for Adagrad {
    fn config(&self) -> OptimizerConfig {
        OptimizerConfig::Adagrad(self.clone())
    }

    fn name(&self) -> &'static str {
        "adagrad"
    }

    fn hyper_params(&self) -> Vec<(String, f32)> {
        self.common.hyper_params(&[])
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        self.common.update(g, self.name(), params, |g, lr, params| {
            for &(w, dw) in params {
                // stored = acc - init: stored <- stored + g², acc_new = stored_new + init
                let stored = slot(g, w, "accumulator")?;
                let g2 = g.square(dw)?;
                let ns = g.add(stored, g2)?;
                let acc = g.add_scalar(ns, self.initial_accumulator_value as f64)?;
                let s = g.sqrt(acc)?;
                let den = g.add_scalar(s, self.epsilon as f64)?;
                let lg = g.mul(lr, dw)?;
                let step = g.div(lg, den)?;
                let nw = g.sub(w, step)?;
                g.assign(stored, ns)?;
                g.assign(w, nw)?;
            }
            Ok(())
        })
    }
}
