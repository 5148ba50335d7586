//! Keras `Adam`.

use super::{
    beta_hyper_params, betas_and_step, ema, one_minus, power, slot, Optimizer, OptimizerCommon,
    OptimizerConfig,
};
use crate::Result;
use kiln_ir::{Graph, NodeId};

/// Adam (Keras `Adam`, no amsgrad). With `t` the step count after this step, slots `m` and
/// `v`: `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g²`,
/// `lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)`, `w <- w - lr_t m / (sqrt(v) + epsilon)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    /// Learning rate (default 0.001) and gradient clipping.
    #[serde(flatten)]
    pub common: OptimizerCommon,
    /// Decay of the first moment (default 0.9).
    pub beta_1: f32,
    /// Decay of the second moment (default 0.999).
    pub beta_2: f32,
    /// Fuzz factor (default 1e-7).
    pub epsilon: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            common: OptimizerCommon::new(0.001),
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

impl Adam {
    /// Adam with the given learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        Adam {
            common: OptimizerCommon::new(learning_rate),
            ..Adam::default()
        }
    }

    /// Sets `beta_1` and `beta_2`.
    pub fn betas(mut self, beta_1: f32, beta_2: f32) -> Self {
        self.beta_1 = beta_1;
        self.beta_2 = beta_2;
        self
    }

    /// Sets `epsilon`.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }
}

impl Optimizer for Adam {
    fn config(&self) -> OptimizerConfig {
        OptimizerConfig::Adam(self.clone())
    }

    fn name(&self) -> &'static str {
        "adam"
    }

    fn hyper_params(&self) -> Vec<(String, f32)> {
        beta_hyper_params(&self.common, self.beta_1, self.beta_2)
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        self.common.update(g, self.name(), params, |g, lr, params| {
            let (b1, b2, t) = betas_and_step(g)?;
            let one_minus_b1 = one_minus(g, b1)?;
            let one_minus_b2 = one_minus(g, b2)?;
            // lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t), one scalar per step
            let b1t = power(g, b1, t)?;
            let b2t = power(g, b2, t)?;
            let c1 = one_minus(g, b1t)?;
            let c2 = one_minus(g, b2t)?;
            let s2 = g.sqrt(c2)?;
            let num = g.mul(lr, s2)?;
            let lr_t = g.div(num, c1)?;
            for &(w, dw) in params {
                let m = slot(g, w, "m")?;
                let v = slot(g, w, "v")?;
                let nm = ema(g, b1, one_minus_b1, m, dw)?;
                let g2 = g.square(dw)?;
                let nv = ema(g, b2, one_minus_b2, v, g2)?;
                let s = g.sqrt(nv)?;
                let den = g.add_scalar(s, self.epsilon as f64)?;
                let lm = g.mul(lr_t, nm)?;
                let step = g.div(lm, den)?;
                let nw = g.sub(w, step)?;
                g.assign(m, nm)?;
                g.assign(v, nv)?;
                g.assign(w, nw)?;
            }
            Ok(())
        })
    }
}
