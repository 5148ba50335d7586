//! Keras `RMSprop`.

use super::{ema, hyper, one_minus, slot, Optimizer, OptimizerCommon, OptimizerConfig};
use crate::{vars, Result};
use kiln_ir::{Graph, NodeId};

/// RMSprop (Keras `RMSprop`, not centered, no momentum): with the mean square `a` (slot
/// `rms`), `a <- rho * a + (1 - rho) * g²`, `w <- w - lr * g / (sqrt(a) + epsilon)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RmsProp {
    /// Learning rate (default 0.001) and gradient clipping.
    #[serde(flatten)]
    pub common: OptimizerCommon,
    /// Decay of the mean square (default 0.9).
    pub rho: f32,
    /// Fuzz factor (default 1e-7).
    pub epsilon: f32,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp {
            common: OptimizerCommon::new(0.001),
            rho: 0.9,
            epsilon: 1e-7,
        }
    }
}

impl RmsProp {
    /// RMSprop with the given learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        RmsProp {
            common: OptimizerCommon::new(learning_rate),
            ..RmsProp::default()
        }
    }

    /// Sets `rho`.
    pub fn rho(mut self, rho: f32) -> Self {
        self.rho = rho;
        self
    }

    /// Sets `epsilon`.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }
}

impl Optimizer for RmsProp {
    fn config(&self) -> OptimizerConfig {
        OptimizerConfig::RmsProp(self.clone())
    }

    fn name(&self) -> &'static str {
        "rmsprop"
    }

    fn hyper_params(&self) -> Vec<(String, f32)> {
        self.common
            .hyper_params(&[(vars::optimizer::RHO, self.rho)])
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        self.common.update(g, self.name(), params, |g, lr, params| {
            let rho = hyper(g, vars::optimizer::RHO)?;
            let one_minus_rho = one_minus(g, rho)?;
            for &(w, dw) in params {
                let a = slot(g, w, "rms")?;
                let g2 = g.square(dw)?;
                let na = ema(g, rho, one_minus_rho, a, g2)?;
                let s = g.sqrt(na)?;
                let den = g.add_scalar(s, self.epsilon as f64)?;
                let lg = g.mul(lr, dw)?;
                let step = g.div(lg, den)?;
                let nw = g.sub(w, step)?;
                g.assign(a, na)?;
                g.assign(w, nw)?;
            }
            Ok(())
        })
    }
}
