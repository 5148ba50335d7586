//! Keras `SGD`.

use super::{hyper, slot, Optimizer, OptimizerCommon, OptimizerConfig};
use crate::{vars, Result};
use kiln_ir::{Graph, NodeId};

/// Stochastic gradient descent, with optional (Nesterov) momentum (Keras `SGD`).
///
/// - `momentum == 0` and not Nesterov: `w <- w - lr * g` (no state).
/// - otherwise, with velocity `v` (slot `momentum`): `v <- momentum * v - lr * g`, then
///   `w <- w + v`, or with Nesterov `w <- w + momentum * v_new - lr * g`.
///
/// Whether momentum is used is decided when the graph is built; its value is a device
/// variable (`optimizer/momentum`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sgd {
    /// Learning rate (default 0.01) and gradient clipping.
    #[serde(flatten)]
    pub common: OptimizerCommon,
    /// Momentum (default 0).
    pub momentum: f32,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            common: OptimizerCommon::new(0.01),
            momentum: 0.0,
            nesterov: false,
        }
    }
}

impl Sgd {
    /// SGD with the given learning rate.
    pub fn new(learning_rate: f32) -> Self {
        Sgd {
            common: OptimizerCommon::new(learning_rate),
            ..Sgd::default()
        }
    }

    /// Sets the momentum.
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Uses Nesterov momentum.
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    fn uses_momentum(&self) -> bool {
        self.momentum != 0.0 || self.nesterov
    }
}

impl Optimizer for Sgd {
    fn config(&self) -> OptimizerConfig {
        OptimizerConfig::Sgd(self.clone())
    }

    fn name(&self) -> &'static str {
        "sgd"
    }

    fn hyper_params(&self) -> Vec<(String, f32)> {
        let mut v = self.common.hyper_params(&[]);
        if self.uses_momentum() {
            v.push((vars::optimizer::MOMENTUM.into(), self.momentum));
        }
        v
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        self.common.update(g, self.name(), params, |g, lr, params| {
            if !self.uses_momentum() {
                for &(w, dw) in params {
                    let step = g.mul(dw, lr)?;
                    let nw = g.sub(w, step)?;
                    g.assign(w, nw)?;
                }
                return Ok(());
            }
            let mom = hyper(g, vars::optimizer::MOMENTUM)?;
            for &(w, dw) in params {
                let v = slot(g, w, "momentum")?;
                let mv = g.mul(mom, v)?;
                let step = g.mul(lr, dw)?;
                let nv = g.sub(mv, step)?;
                let nw = if self.nesterov {
                    let mnv = g.mul(mom, nv)?;
                    let a = g.add(w, mnv)?;
                    g.sub(a, step)?
                } else {
                    g.add(w, nv)?
                };
                g.assign(v, nv)?;
                g.assign(w, nw)?;
            }
            Ok(())
        })
    }
}
