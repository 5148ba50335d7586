//! Keras `Adadelta`.

use super::{ema, hyper, one_minus, slot, Optimizer, OptimizerCommon, OptimizerConfig};
use crate::{vars, Result};
use kiln_ir::{Graph, NodeId};

/// Adadelta (Keras `Adadelta`): with slots `accum_grad` and `accum_var`,
/// `accum_grad <- rho accum_grad + (1 - rho) g²`,
/// `u = sqrt(accum_var + epsilon) / sqrt(accum_grad + epsilon) * g`,
/// `accum_var <- rho accum_var + (1 - rho) u²`, `w <- w - lr u`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adadelta {
    /// Learning rate (default 0.001) and gradient clipping.
    #[serde(flatten)]
    pub common: OptimizerCommon,
    /// Decay rate (default 0.95).
    pub rho: f32,
    /// Fuzz factor (default 1e-7).
    pub epsilon: f32,
}

impl Default for Adadelta {
    fn default() -> Self {
        Adadelta {
            common: OptimizerCommon::new(0.001),
            rho: 0.95,
            epsilon: 1e-7,
        }
    }
}

impl Adadelta {
    /// Adadelta with the given learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        Adadelta {
            common: OptimizerCommon::new(learning_rate),
            ..Adadelta::default()
        }
    }

    /// Sets `rho`.
    pub fn rho(mut self, rho: f32) -> Self {
        self.rho = rho;
        self
    }
}

impl Optimizer for Adadelta {
    fn config(&self) -> OptimizerConfig {
        OptimizerConfig::Adadelta(self.clone())
    }

    fn name(&self) -> &'static str {
        "adadelta"
    }

    fn hyper_params(&self) -> Vec<(String, f32)> {
        self.common
            .hyper_params(&[(vars::optimizer::RHO, self.rho)])
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        self.common.update(g, self.name(), params, |g, lr, params| {
            let rho = hyper(g, vars::optimizer::RHO)?;
            let one_minus_rho = one_minus(g, rho)?;
            let eps = self.epsilon as f64;
            for &(w, dw) in params {
                let ag = slot(g, w, "accum_grad")?;
                let av = slot(g, w, "accum_var")?;
                let g2 = g.square(dw)?;
                let nag = ema(g, rho, one_minus_rho, ag, g2)?;
                let av_e = g.add_scalar(av, eps)?;
                let num = g.sqrt(av_e)?;
                let ag_e = g.add_scalar(nag, eps)?;
                let den = g.sqrt(ag_e)?;
                let ratio = g.div(num, den)?;
                let u = g.mul(ratio, dw)?;
                let u2 = g.square(u)?;
                let nav = ema(g, rho, one_minus_rho, av, u2)?;
                let step = g.mul(lr, u)?;
                let nw = g.sub(w, step)?;
                g.assign(ag, nag)?;
                g.assign(av, nav)?;
                g.assign(w, nw)?;
            }
            Ok(())
        })
    }
}
