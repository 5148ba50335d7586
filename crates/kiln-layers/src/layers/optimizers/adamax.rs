//! Keras `Adamax`.

use super::{
    beta_hyper_params, betas_and_step, ema, one_minus, power, slot, Optimizer, OptimizerCommon,
    OptimizerConfig,
};
use crate::Result;
use kiln_ir::{Graph, NodeId};

/// Adamax (Keras `Adamax`): with `t` the step count after this step, slots `m` and `u`:
/// `m <- b1 m + (1 - b1) g`, `u <- max(b2 u, |g|)`,
/// `w <- w - lr / (1 - b1^t) * m / (u + epsilon)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adamax {
    /// Learning rate (default 0.001) and gradient clipping.
    #[serde(flatten)]
    pub common: OptimizerCommon,
    /// Decay of the first moment (default 0.9).
    pub beta_1: f32,
    /// Decay of the infinity norm (default 0.999).
    pub beta_2: f32,
    /// Fuzz factor (default 1e-7).
    pub epsilon: f32,
}

impl Default for Adamax {
    fn default() -> Self {
        Adamax {
            common: OptimizerCommon::new(0.001),
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

impl Adamax {
    /// Adamax with the given learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        Adamax {
            common: OptimizerCommon::new(learning_rate),
            ..Adamax::default()
        }
    }
}

impl Optimizer for Adamax {
    fn config(&self) -> OptimizerConfig {
        OptimizerConfig::Adamax(self.clone())
    }

    fn name(&self) -> &'static str {
        "adamax"
    }

    fn hyper_params(&self) -> Vec<(String, f32)> {
        beta_hyper_params(&self.common, self.beta_1, self.beta_2)
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        self.common.update(g, self.name(), params, |g, lr, params| {
            let (b1, b2, t) = betas_and_step(g)?;
            let one_minus_b1 = one_minus(g, b1)?;
            let b1t = power(g, b1, t)?;
            let c1 = one_minus(g, b1t)?;
            let lr_t = g.div(lr, c1)?;
            for &(w, dw) in params {
                let m = slot(g, w, "m")?;
                let u = slot(g, w, "u")?;
                let nm = ema(g, b1, one_minus_b1, m, dw)?;
                let bu = g.mul(b2, u)?;
                let ag = g.abs(dw)?;
                let nu = g.maximum(bu, ag)?;
                let den = g.add_scalar(nu, self.epsilon as f64)?;
                let lm = g.mul(lr_t, nm)?;
                let step = g.div(lm, den)?;
                let nw = g.sub(w, step)?;
                g.assign(m, nm)?;
                g.assign(u, nu)?;
                g.assign(w, nw)?;
            }
            Ok(())
        })
    }
}
