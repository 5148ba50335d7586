//! Optimizers as graph updates: each appends `param <- f(param, grad, state)` assignments,
//! so the update is part of the compiled training step.

use crate::Result;
use kiln_ir::{DType, Graph, NodeId};

/// A parameter update rule.
pub trait Optimizer {
    /// Keras name.
    fn name(&self) -> &'static str;
    /// Persistent hyper-parameters `(variable name, value)` created with the model (kept as
    /// device variables so they can change between epochs without recompiling).
    fn hyper_params(&self) -> Vec<(String, f32)>;
    /// Appends the update of every `(param, grad)` pair as assignments on `g`.
    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()>;
}

/// Stochastic gradient descent: `w <- w - lr * g` (Keras default `lr = 0.01`).
#[derive(Clone, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub learning_rate: f32,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            learning_rate: 0.01,
        }
    }
}

impl Sgd {
    /// SGD with the given learning rate.
    pub fn new(learning_rate: f32) -> Self {
        Sgd { learning_rate }
    }
}

/// Name of the learning-rate variable.
pub const LR_VARIABLE: &str = "optimizer/learning_rate";

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn hyper_params(&self) -> Vec<(String, f32)> {
        vec![(LR_VARIABLE.into(), self.learning_rate)]
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        g.scoped("sgd", |g| -> Result<()> {
            let lr = g.param(LR_VARIABLE, [], DType::F32)?;
            for &(w, dw) in params {
                let step = g.mul(dw, lr)?;
                let nw = g.sub(w, step)?;
                g.assign(w, nw)?;
            }
            Ok(())
        })
    }
}
