//! Keras `Nadam`.

use super::{
    beta_hyper_params, betas_and_step, ema, hyper, one_minus, power, slot, Optimizer,
    OptimizerCommon, OptimizerConfig,
};
use crate::{vars, Result};
use kiln_ir::{Graph, NodeId};

/// Nadam (Keras `Nadam`, with its momentum schedule, `schedule_decay = 0.004`). With `t` the
/// step count after this step: `mu_t = b1 (1 - 0.5 * 0.96^(0.004 t))`,
/// `mu_t1 = b1 (1 - 0.5 * 0.96^(0.004 (t + 1)))`, the schedule product
/// `ms <- ms * mu_t` (starting at 1), `ms_next = ms * mu_t1`;
/// slots `m`, `v`: `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g²`,
/// `m_bar = (1 - mu_t) g / (1 - ms) + mu_t1 m / (1 - ms_next)`,
/// `w <- w - lr m_bar / (sqrt(v / (1 - b2^t)) + epsilon)`.
///
/// The schedule product is one scalar variable, `optimizer/m_schedule`, holding `ms - 1`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Nadam {
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

impl Default for Nadam {
    fn default() -> Self {
        Nadam {
            common: OptimizerCommon::new(0.001),
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

impl Nadam {
    /// Nadam with the given learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        Nadam {
            common: OptimizerCommon::new(learning_rate),
            ..Nadam::default()
        }
    }
}

/// `b1 * (1 - 0.5 * 0.96^(0.004 * step))`
fn nadam_mu(g: &mut Graph, b1: NodeId, step: NodeId) -> Result<NodeId> {
    let base = g.scalar(0.96);
    let e = g.mul_scalar(step, 0.004)?;
    let p = power(g, base, e)?;
    let h = g.mul_scalar(p, 0.5)?;
    let f = one_minus(g, h)?;
    Ok(g.mul(b1, f)?)
}

impl Optimizer for Nadam {
    fn config(&self) -> OptimizerConfig {
        OptimizerConfig::Nadam(self.clone())
    }

    fn name(&self) -> &'static str {
        "nadam"
    }

    fn hyper_params(&self) -> Vec<(String, f32)> {
        beta_hyper_params(&self.common, self.beta_1, self.beta_2)
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        self.common.update(g, self.name(), params, |g, lr, params| {
            let (b1, b2, t) = betas_and_step(g)?;
            let t_next = g.add_scalar(t, 1.0)?;
            let mu_t = nadam_mu(g, b1, t)?;
            let mu_t1 = nadam_mu(g, b1, t_next)?;
            // the schedule product, stored minus one
            let stored = hyper(g, vars::optimizer::NADAM_SCHEDULE)?;
            let ms = g.add_scalar(stored, 1.0)?;
            let ms_new = g.mul(ms, mu_t)?;
            let stored_new = g.add_scalar(ms_new, -1.0)?;
            g.assign(stored, stored_new)?;
            let ms_next = g.mul(ms_new, mu_t1)?;
            // per-step scalar coefficients
            let one_minus_b1 = one_minus(g, b1)?;
            let one_minus_b2 = one_minus(g, b2)?;
            let one_minus_mu_t = one_minus(g, mu_t)?;
            let den_g = one_minus(g, ms_new)?;
            let coef_g = g.div(one_minus_mu_t, den_g)?;
            let den_m = one_minus(g, ms_next)?;
            let coef_m = g.div(mu_t1, den_m)?;
            let b2t = power(g, b2, t)?;
            let den_v = one_minus(g, b2t)?;
            for &(w, dw) in params {
                let m = slot(g, w, "m")?;
                let v = slot(g, w, "v")?;
                let nm = ema(g, b1, one_minus_b1, m, dw)?;
                let g2 = g.square(dw)?;
                let nv = ema(g, b2, one_minus_b2, v, g2)?;
                let a = g.mul(coef_g, dw)?;
                let b = g.mul(coef_m, nm)?;
                let m_bar = g.add(a, b)?;
                let v_hat = g.div(nv, den_v)?;
                let s = g.sqrt(v_hat)?;
                let den = g.add_scalar(s, self.epsilon as f64)?;
                let lm = g.mul(lr, m_bar)?;
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
