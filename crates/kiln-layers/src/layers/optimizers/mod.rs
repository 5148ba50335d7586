//! Optimizers as graph updates: each appends `param <- f(param, grad, state)` assignments,
//! so the update is part of the compiled training step.
//!
//! The formulas, names and defaults are tf.keras 2's (`tf.keras.optimizers.*`, the
//! "optimizer_v2" family).
//!
//! ## Device variables
//! - Hyper-parameters (learning rate, momentum, `rho`, `beta_1`, `beta_2`) are scalar device
//!   variables named `optimizer/<name>` (see [`Optimizer::hyper_params`]), written by
//!   `Sequential::compile` and read in-graph, so they can change between epochs without
//!   recompiling. `epsilon` and the other constants are baked into the graph.
//! - Optimizer state is persistent device variables named `optimizer/<param name>/<slot>`
//!   (`optimizer/dense_1/kernel/m`) plus one step counter `optimizer/iterations` (f32, shared
//!   by all params and incremented once per step). The backend creates every variable it does
//!   not know yet zero-initialized when a plan is loaded, so slots that Keras initializes to a
//!   non-zero value `c` are stored *offset*: the variable holds `slot - c` (Adagrad's
//!   accumulator, Nadam's momentum-schedule product). Reading the device variable directly
//!   therefore shows `slot - c`.
//! - State lives in the device's variable store: compiling a model again on the same device
//!   keeps it (Keras would start a new optimizer from zeros).

mod adadelta;
mod adagrad;
mod adam;
mod adamax;
mod nadam;
mod rmsprop;
mod sgd;

pub use adadelta::Adadelta;
pub use adagrad::Adagrad;
pub use adam::Adam;
pub use adamax::Adamax;
pub use nadam::Nadam;
pub use rmsprop::RmsProp;
pub use sgd::Sgd;

use crate::{vars, LayerError, Result};
use kiln_ir::{DType, Graph, NodeId, Op};

/// A parameter update rule.
pub trait Optimizer {
    /// Keras name.
    fn name(&self) -> &'static str;
    /// Persistent hyper-parameters `(variable name, value)` created with the model (kept as
    /// device variables so they can change between epochs without recompiling).
    fn hyper_params(&self) -> Vec<(String, f32)>;
    /// Appends the update of every `(param, grad)` pair as assignments on `g`.
    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()>;
    /// The optimizer as a serializable configuration (saved with the model).
    fn config(&self) -> OptimizerConfig;
}

/// Every optimizer as data, with Keras's class names: what `to_json` and `save` store.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "class_name", content = "config")]
pub enum OptimizerConfig {
    /// [`Sgd`]
    #[serde(rename = "SGD")]
    Sgd(Sgd),
    /// [`RmsProp`]
    #[serde(rename = "RMSprop")]
    RmsProp(RmsProp),
    /// [`Adam`]
    Adam(Adam),
    /// [`Adagrad`]
    Adagrad(Adagrad),
    /// [`Adadelta`]
    Adadelta(Adadelta),
    /// [`Adamax`]
    Adamax(Adamax),
    /// [`Nadam`]
    Nadam(Nadam),
}

impl OptimizerConfig {
    /// The fields every optimizer has (learning rate, clipping).
    pub fn common(&self) -> &OptimizerCommon {
        match self {
            OptimizerConfig::Sgd(o) => &o.common,
            OptimizerConfig::RmsProp(o) => &o.common,
            OptimizerConfig::Adam(o) => &o.common,
            OptimizerConfig::Adagrad(o) => &o.common,
            OptimizerConfig::Adadelta(o) => &o.common,
            OptimizerConfig::Adamax(o) => &o.common,
            OptimizerConfig::Nadam(o) => &o.common,
        }
    }

    /// The gradient clipping `(clipnorm, clipvalue)` it asks for.
    pub fn clipping(&self) -> (Option<f32>, Option<f32>) {
        let c = self.common();
        (c.clipnorm, c.clipvalue)
    }

    /// An error message when `clipnorm` or `clipvalue` is not a finite number above 0.
    pub fn check(&self) -> std::result::Result<(), String> {
        self.common().check()
    }

    /// The optimizer this configuration describes.
    pub fn build(self) -> Box<dyn Optimizer> {
        match self {
            OptimizerConfig::Sgd(o) => Box::new(o),
            OptimizerConfig::RmsProp(o) => Box::new(o),
            OptimizerConfig::Adam(o) => Box::new(o),
            OptimizerConfig::Adagrad(o) => Box::new(o),
            OptimizerConfig::Adadelta(o) => Box::new(o),
            OptimizerConfig::Adamax(o) => Box::new(o),
            OptimizerConfig::Nadam(o) => Box::new(o),
        }
    }
}

/// Name of the learning-rate variable ([`vars::optimizer::LEARNING_RATE`]).
pub const LR_VARIABLE: &str = vars::optimizer::LEARNING_RATE;
/// Name of the step-counter variable ([`vars::optimizer::ITERATIONS`]; f32, number of
/// updates applied so far).
pub const ITERATIONS_VARIABLE: &str = vars::optimizer::ITERATIONS;
/// Name of Nadam's momentum-schedule product variable ([`vars::optimizer::NADAM_SCHEDULE`];
/// stored minus 1, see [`Nadam`]).
pub const NADAM_SCHEDULE_VARIABLE: &str = vars::optimizer::NADAM_SCHEDULE;

/// The name of the optimizer-state variable `slot` of `param` ([`vars::optimizer::slot`]):
/// `optimizer/<param>/<slot>`.
pub fn slot_name(param: &str, slot: &str) -> String {
    vars::optimizer::slot(param, slot)
}

/// What every optimizer has: the learning rate and Keras 2's gradient clipping. Each
/// optimizer holds one as its `common` field, flattened in the saved JSON (the keys stay
/// `learning_rate`, `clipnorm`, `clipvalue`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerCommon {
    /// Learning rate (the default depends on the optimizer: 0.01 for SGD, else 0.001).
    pub learning_rate: f32,
    /// Clips each gradient tensor to this L2 norm before the update (Keras 2 `clipnorm`:
    /// `g * clipnorm / max(‖g‖, clipnorm)`, per tensor; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipnorm: Option<f32>,
    /// Clips every gradient element to `[-clipvalue, clipvalue]` (Keras `clipvalue`, applied
    /// after `clipnorm`; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipvalue: Option<f32>,
}

impl OptimizerCommon {
    /// The learning rate `learning_rate`, no clipping.
    pub fn new(learning_rate: f32) -> Self {
        OptimizerCommon {
            learning_rate,
            clipnorm: None,
            clipvalue: None,
        }
    }

    /// An error message when `clipnorm` or `clipvalue` is not a finite number above 0.
    pub fn check(&self) -> std::result::Result<(), String> {
        for (name, x) in [("clipnorm", self.clipnorm), ("clipvalue", self.clipvalue)] {
            if let Some(x) = x {
                if !(x.is_finite() && x > 0.0) {
                    return Err(format!(
                        "{name} must be a finite number > 0, got {x}; hint: leave it unset \
                         for no clipping"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The hyper-parameter variables: the learning rate, then the optimizer's `others`.
    fn hyper_params(&self, others: &[(&str, f32)]) -> Vec<(String, f32)> {
        std::iter::once((vars::optimizer::LEARNING_RATE, self.learning_rate))
            .chain(others.iter().copied())
            .map(|(name, v)| (name.to_string(), v))
            .collect()
    }

    /// The preamble every update shares: clips the gradients, then builds `update(g, lr,
    /// params)` in the scope `name` with the learning-rate variable read in-graph.
    fn update(
        &self,
        g: &mut Graph,
        name: &str,
        params: &[(NodeId, NodeId)],
        update: impl FnOnce(&mut Graph, NodeId, &[(NodeId, NodeId)]) -> Result<()>,
    ) -> Result<()> {
        let clipped = clip_gradients(g, params, self.clipnorm, self.clipvalue)?;
        g.scoped(name, |g| -> Result<()> {
            let lr = hyper(g, vars::optimizer::LEARNING_RATE)?;
            update(g, lr, &clipped)
        })
    }
}

/// A scalar hyper-parameter read in-graph.
pub(super) fn hyper(g: &mut Graph, name: &str) -> Result<NodeId> {
    Ok(g.param(name, [], DType::F32)?)
}

/// The state variable `slot` of param `w` (same shape and dtype as `w`).
pub(super) fn slot(g: &mut Graph, w: NodeId, slot: &str) -> Result<NodeId> {
    let node = g.try_node(w)?;
    let Op::Param { name } = &node.op else {
        return Err(LayerError::Usage(format!(
            "optimizer: `{}` is a {}, only params can be updated",
            node.name,
            node.op.mnemonic()
        )));
    };
    let (name, shape, dtype) = (
        vars::optimizer::slot(name, slot),
        node.shape.clone(),
        node.dtype,
    );
    Ok(g.param(&name, shape, dtype)?)
}

/// `1 - x`.
pub(super) fn one_minus(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let one = g.scalar(1.0);
    Ok(g.sub(one, x)?)
}

/// `a * x + (1 - a) * y` (an exponential moving average step).
pub(super) fn ema(
    g: &mut Graph,
    a: NodeId,
    one_minus_a: NodeId,
    x: NodeId,
    y: NodeId,
) -> Result<NodeId> {
    let l = g.mul(a, x)?;
    let r = g.mul(one_minus_a, y)?;
    Ok(g.add(l, r)?)
}

/// `t <- t + 1`, assigned once per step; returns the new count `t + 1`.
pub(super) fn count_step(g: &mut Graph) -> Result<NodeId> {
    let t = hyper(g, vars::optimizer::ITERATIONS)?;
    let t1 = g.add_scalar(t, 1.0)?;
    g.assign(t, t1)?;
    Ok(t1)
}

/// What Adam, Adamax and Nadam start with: `beta_1` and `beta_2` read in-graph, and the step
/// count `t` after this step (counted once).
pub(super) fn betas_and_step(g: &mut Graph) -> Result<(NodeId, NodeId, NodeId)> {
    let b1 = hyper(g, vars::optimizer::BETA_1)?;
    let b2 = hyper(g, vars::optimizer::BETA_2)?;
    let t = count_step(g)?;
    Ok((b1, b2, t))
}

/// The hyper-parameter variables of Adam, Adamax and Nadam: learning rate, `beta_1`, `beta_2`.
pub(super) fn beta_hyper_params(common: &OptimizerCommon, b1: f32, b2: f32) -> Vec<(String, f32)> {
    common.hyper_params(&[(vars::optimizer::BETA_1, b1), (vars::optimizer::BETA_2, b2)])
}

/// `c^t` for a positive scalar `c`.
pub(super) fn power(g: &mut Graph, c: NodeId, t: NodeId) -> Result<NodeId> {
    Ok(g.pow(c, t)?)
}

/// Keras 2 gradient clipping, per gradient tensor and in this order: `clipnorm` scales `g` to
/// `g * clipnorm / max(‖g‖₂, clipnorm)`, `clipvalue` clamps each element to
/// `[-clipvalue, clipvalue]`. Part of the compiled step (constants baked into the graph).
fn clip_gradients(
    g: &mut Graph,
    params: &[(NodeId, NodeId)],
    clipnorm: Option<f32>,
    clipvalue: Option<f32>,
) -> Result<Vec<(NodeId, NodeId)>> {
    if clipnorm.is_none() && clipvalue.is_none() {
        return Ok(params.to_vec());
    }
    g.scoped("clip", |g| -> Result<Vec<(NodeId, NodeId)>> {
        params
            .iter()
            .map(|&(w, dw)| {
                let mut dw = dw;
                if let Some(c) = clipnorm {
                    let sq = g.square(dw)?;
                    let s = g.sum_all(sq)?;
                    let norm = g.sqrt(s)?;
                    let c = g.scalar(c as f64);
                    let den = g.maximum(norm, c)?;
                    let ratio = g.div(c, den)?;
                    dw = g.mul(dw, ratio)?;
                }
                if let Some(v) = clipvalue {
                    dw = g.clip(dw, -(v as f64), v as f64)?;
                }
                Ok((w, dw))
            })
            .collect()
    })
}

/// `clipnorm` / `clipvalue` builders for every optimizer (they set its [`OptimizerCommon`]).
macro_rules! clipping_builders {
    ($($t:ty),*) => {$(
        impl $t {
            /// Clips each gradient tensor to L2 norm `clipnorm` before the update (Keras 2
            /// `clipnorm`, per tensor).
            pub fn clipnorm(mut self, clipnorm: f32) -> Self {
                self.common.clipnorm = Some(clipnorm);
                self
            }

            /// Clips every gradient element to `[-clipvalue, clipvalue]` before the update
            /// (Keras `clipvalue`).
            pub fn clipvalue(mut self, clipvalue: f32) -> Self {
                self.common.clipvalue = Some(clipvalue);
                self
            }
        }
    )*};
}

clipping_builders!(Sgd, RmsProp, Adam, Adagrad, Adadelta, Adamax, Nadam);
