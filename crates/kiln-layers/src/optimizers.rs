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

use crate::{LayerError, Result};
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
    /// The gradient clipping `(clipnorm, clipvalue)` it asks for.
    pub fn clipping(&self) -> (Option<f32>, Option<f32>) {
        match self {
            OptimizerConfig::Sgd(o) => (o.clipnorm, o.clipvalue),
            OptimizerConfig::RmsProp(o) => (o.clipnorm, o.clipvalue),
            OptimizerConfig::Adam(o) => (o.clipnorm, o.clipvalue),
            OptimizerConfig::Adagrad(o) => (o.clipnorm, o.clipvalue),
            OptimizerConfig::Adadelta(o) => (o.clipnorm, o.clipvalue),
            OptimizerConfig::Adamax(o) => (o.clipnorm, o.clipvalue),
            OptimizerConfig::Nadam(o) => (o.clipnorm, o.clipvalue),
        }
    }

    /// An error message when `clipnorm` or `clipvalue` is not a finite number above 0.
    pub fn check(&self) -> std::result::Result<(), String> {
        let (n, v) = self.clipping();
        for (name, x) in [("clipnorm", n), ("clipvalue", v)] {
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

/// Name of the learning-rate variable.
pub const LR_VARIABLE: &str = "optimizer/learning_rate";
/// Name of the step-counter variable (f32, number of updates applied so far).
pub const ITERATIONS_VARIABLE: &str = "optimizer/iterations";

const MOMENTUM_VARIABLE: &str = "optimizer/momentum";
const RHO_VARIABLE: &str = "optimizer/rho";
const BETA_1_VARIABLE: &str = "optimizer/beta_1";
const BETA_2_VARIABLE: &str = "optimizer/beta_2";

/// The name of the optimizer-state variable `slot` of `param`: `optimizer/<param>/<slot>`.
pub fn slot_name(param: &str, slot: &str) -> String {
    format!("optimizer/{param}/{slot}")
}

/// A scalar hyper-parameter read in-graph.
fn hyper(g: &mut Graph, name: &str) -> Result<NodeId> {
    Ok(g.param(name, [], DType::F32)?)
}

/// The state variable `slot` of param `w` (same shape and dtype as `w`).
fn slot(g: &mut Graph, w: NodeId, slot: &str) -> Result<NodeId> {
    let node = g.try_node(w)?;
    let Op::Param { name } = &node.op else {
        return Err(LayerError::Usage(format!(
            "optimizer: `{}` is a {}, only params can be updated",
            node.name,
            node.op.mnemonic()
        )));
    };
    let (name, shape, dtype) = (slot_name(name, slot), node.shape.clone(), node.dtype);
    Ok(g.param(&name, shape, dtype)?)
}

/// `1 - x`.
fn one_minus(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let one = g.scalar(1.0);
    Ok(g.sub(one, x)?)
}

/// `a * x + (1 - a) * y` (an exponential moving average step).
fn ema(g: &mut Graph, a: NodeId, one_minus_a: NodeId, x: NodeId, y: NodeId) -> Result<NodeId> {
    let l = g.mul(a, x)?;
    let r = g.mul(one_minus_a, y)?;
    Ok(g.add(l, r)?)
}

/// `t <- t + 1`, assigned once per step; returns the new count `t + 1`.
fn count_step(g: &mut Graph) -> Result<NodeId> {
    let t = hyper(g, ITERATIONS_VARIABLE)?;
    let t1 = g.add_scalar(t, 1.0)?;
    g.assign(t, t1)?;
    Ok(t1)
}

/// `c^t` for a positive scalar `c`.
fn power(g: &mut Graph, c: NodeId, t: NodeId) -> Result<NodeId> {
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

/// `clipnorm` / `clipvalue` builders for every optimizer.
macro_rules! clipping_builders {
    ($($t:ty),*) => {$(
        impl $t {
            /// Clips each gradient tensor to L2 norm `clipnorm` before the update (Keras 2
            /// `clipnorm`, per tensor).
            pub fn clipnorm(mut self, clipnorm: f32) -> Self {
                self.clipnorm = Some(clipnorm);
                self
            }

            /// Clips every gradient element to `[-clipvalue, clipvalue]` before the update
            /// (Keras `clipvalue`).
            pub fn clipvalue(mut self, clipvalue: f32) -> Self {
                self.clipvalue = Some(clipvalue);
                self
            }
        }
    )*};
}

clipping_builders!(Sgd, RmsProp, Adam, Adagrad, Adadelta, Adamax, Nadam);

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
    /// Learning rate (default 0.01).
    pub learning_rate: f32,
    /// Momentum (default 0).
    pub momentum: f32,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
    /// Clips each gradient tensor to this L2 norm before the update (Keras 2 `clipnorm`:
    /// `g * clipnorm / max(‖g‖, clipnorm)`, per tensor; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipnorm: Option<f32>,
    /// Clips every gradient element to `[-clipvalue, clipvalue]` (Keras `clipvalue`, applied
    /// after `clipnorm`; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipvalue: Option<f32>,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            learning_rate: 0.01,
            momentum: 0.0,
            nesterov: false,
            clipnorm: None,
            clipvalue: None,
        }
    }
}

impl Sgd {
    /// SGD with the given learning rate.
    pub fn new(learning_rate: f32) -> Self {
        Sgd {
            learning_rate,
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
        let mut v = vec![(LR_VARIABLE.into(), self.learning_rate)];
        if self.uses_momentum() {
            v.push((MOMENTUM_VARIABLE.into(), self.momentum));
        }
        v
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        let clipped = clip_gradients(g, params, self.clipnorm, self.clipvalue)?;
        let params = &clipped[..];
        g.scoped("sgd", |g| -> Result<()> {
            let lr = hyper(g, LR_VARIABLE)?;
            if !self.uses_momentum() {
                for &(w, dw) in params {
                    let step = g.mul(dw, lr)?;
                    let nw = g.sub(w, step)?;
                    g.assign(w, nw)?;
                }
                return Ok(());
            }
            let mom = hyper(g, MOMENTUM_VARIABLE)?;
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

/// RMSprop (Keras `RMSprop`, not centered, no momentum): with the mean square `a` (slot
/// `rms`), `a <- rho * a + (1 - rho) * g²`, `w <- w - lr * g / (sqrt(a) + epsilon)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RmsProp {
    /// Learning rate (default 0.001).
    pub learning_rate: f32,
    /// Decay of the mean square (default 0.9).
    pub rho: f32,
    /// Fuzz factor (default 1e-7).
    pub epsilon: f32,
    /// Clips each gradient tensor to this L2 norm before the update (Keras 2 `clipnorm`:
    /// `g * clipnorm / max(‖g‖, clipnorm)`, per tensor; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipnorm: Option<f32>,
    /// Clips every gradient element to `[-clipvalue, clipvalue]` (Keras `clipvalue`, applied
    /// after `clipnorm`; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipvalue: Option<f32>,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp {
            learning_rate: 0.001,
            rho: 0.9,
            epsilon: 1e-7,
            clipnorm: None,
            clipvalue: None,
        }
    }
}

impl RmsProp {
    /// RMSprop with the given learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        RmsProp {
            learning_rate,
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
        vec![
            (LR_VARIABLE.into(), self.learning_rate),
            (RHO_VARIABLE.into(), self.rho),
        ]
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        let clipped = clip_gradients(g, params, self.clipnorm, self.clipvalue)?;
        let params = &clipped[..];
        g.scoped("rmsprop", |g| -> Result<()> {
            let lr = hyper(g, LR_VARIABLE)?;
            let rho = hyper(g, RHO_VARIABLE)?;
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

/// Adam (Keras `Adam`, no amsgrad). With `t` the step count after this step, slots `m` and
/// `v`: `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g²`,
/// `lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)`, `w <- w - lr_t m / (sqrt(v) + epsilon)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adam {
    /// Learning rate (default 0.001).
    pub learning_rate: f32,
    /// Decay of the first moment (default 0.9).
    pub beta_1: f32,
    /// Decay of the second moment (default 0.999).
    pub beta_2: f32,
    /// Fuzz factor (default 1e-7).
    pub epsilon: f32,
    /// Clips each gradient tensor to this L2 norm before the update (Keras 2 `clipnorm`:
    /// `g * clipnorm / max(‖g‖, clipnorm)`, per tensor; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipnorm: Option<f32>,
    /// Clips every gradient element to `[-clipvalue, clipvalue]` (Keras `clipvalue`, applied
    /// after `clipnorm`; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipvalue: Option<f32>,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            learning_rate: 0.001,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            clipnorm: None,
            clipvalue: None,
        }
    }
}

impl Adam {
    /// Adam with the given learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        Adam {
            learning_rate,
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

fn betas_hyper(lr: f32, b1: f32, b2: f32) -> Vec<(String, f32)> {
    vec![
        (LR_VARIABLE.into(), lr),
        (BETA_1_VARIABLE.into(), b1),
        (BETA_2_VARIABLE.into(), b2),
    ]
}

impl Optimizer for Adam {
    fn config(&self) -> OptimizerConfig {
        OptimizerConfig::Adam(self.clone())
    }

    fn name(&self) -> &'static str {
        "adam"
    }

    fn hyper_params(&self) -> Vec<(String, f32)> {
        betas_hyper(self.learning_rate, self.beta_1, self.beta_2)
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        let clipped = clip_gradients(g, params, self.clipnorm, self.clipvalue)?;
        let params = &clipped[..];
        g.scoped("adam", |g| -> Result<()> {
            let lr = hyper(g, LR_VARIABLE)?;
            let b1 = hyper(g, BETA_1_VARIABLE)?;
            let b2 = hyper(g, BETA_2_VARIABLE)?;
            let t = count_step(g)?;
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

/// Adagrad (Keras `Adagrad`): with the accumulator `acc` (starting at
/// `initial_accumulator_value`), `acc <- acc + g²`, `w <- w - lr g / (sqrt(acc) + epsilon)`.
///
/// The device variable `optimizer/<param>/accumulator` holds `acc - initial_accumulator_value`
/// (so that it starts at zero like every new variable).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adagrad {
    /// Learning rate (default 0.001).
    pub learning_rate: f32,
    /// Starting value of the accumulators (default 0.1).
    pub initial_accumulator_value: f32,
    /// Fuzz factor (default 1e-7).
    pub epsilon: f32,
    /// Clips each gradient tensor to this L2 norm before the update (Keras 2 `clipnorm`:
    /// `g * clipnorm / max(‖g‖, clipnorm)`, per tensor; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipnorm: Option<f32>,
    /// Clips every gradient element to `[-clipvalue, clipvalue]` (Keras `clipvalue`, applied
    /// after `clipnorm`; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipvalue: Option<f32>,
}

impl Default for Adagrad {
    fn default() -> Self {
        Adagrad {
            learning_rate: 0.001,
            initial_accumulator_value: 0.1,
            epsilon: 1e-7,
            clipnorm: None,
            clipvalue: None,
        }
    }
}

impl Adagrad {
    /// Adagrad with the given learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        Adagrad {
            learning_rate,
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
        vec![(LR_VARIABLE.into(), self.learning_rate)]
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        let clipped = clip_gradients(g, params, self.clipnorm, self.clipvalue)?;
        let params = &clipped[..];
        g.scoped("adagrad", |g| -> Result<()> {
            let lr = hyper(g, LR_VARIABLE)?;
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

/// Adadelta (Keras `Adadelta`): with slots `accum_grad` and `accum_var`,
/// `accum_grad <- rho accum_grad + (1 - rho) g²`,
/// `u = sqrt(accum_var + epsilon) / sqrt(accum_grad + epsilon) * g`,
/// `accum_var <- rho accum_var + (1 - rho) u²`, `w <- w - lr u`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adadelta {
    /// Learning rate (default 0.001).
    pub learning_rate: f32,
    /// Decay rate (default 0.95).
    pub rho: f32,
    /// Fuzz factor (default 1e-7).
    pub epsilon: f32,
    /// Clips each gradient tensor to this L2 norm before the update (Keras 2 `clipnorm`:
    /// `g * clipnorm / max(‖g‖, clipnorm)`, per tensor; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipnorm: Option<f32>,
    /// Clips every gradient element to `[-clipvalue, clipvalue]` (Keras `clipvalue`, applied
    /// after `clipnorm`; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipvalue: Option<f32>,
}

impl Default for Adadelta {
    fn default() -> Self {
        Adadelta {
            learning_rate: 0.001,
            rho: 0.95,
            epsilon: 1e-7,
            clipnorm: None,
            clipvalue: None,
        }
    }
}

impl Adadelta {
    /// Adadelta with the given learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        Adadelta {
            learning_rate,
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
        vec![
            (LR_VARIABLE.into(), self.learning_rate),
            (RHO_VARIABLE.into(), self.rho),
        ]
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        let clipped = clip_gradients(g, params, self.clipnorm, self.clipvalue)?;
        let params = &clipped[..];
        g.scoped("adadelta", |g| -> Result<()> {
            let lr = hyper(g, LR_VARIABLE)?;
            let rho = hyper(g, RHO_VARIABLE)?;
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

/// Adamax (Keras `Adamax`): with `t` the step count after this step, slots `m` and `u`:
/// `m <- b1 m + (1 - b1) g`, `u <- max(b2 u, |g|)`,
/// `w <- w - lr / (1 - b1^t) * m / (u + epsilon)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adamax {
    /// Learning rate (default 0.001).
    pub learning_rate: f32,
    /// Decay of the first moment (default 0.9).
    pub beta_1: f32,
    /// Decay of the infinity norm (default 0.999).
    pub beta_2: f32,
    /// Fuzz factor (default 1e-7).
    pub epsilon: f32,
    /// Clips each gradient tensor to this L2 norm before the update (Keras 2 `clipnorm`:
    /// `g * clipnorm / max(‖g‖, clipnorm)`, per tensor; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipnorm: Option<f32>,
    /// Clips every gradient element to `[-clipvalue, clipvalue]` (Keras `clipvalue`, applied
    /// after `clipnorm`; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipvalue: Option<f32>,
}

impl Default for Adamax {
    fn default() -> Self {
        Adamax {
            learning_rate: 0.001,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            clipnorm: None,
            clipvalue: None,
        }
    }
}

impl Adamax {
    /// Adamax with the given learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        Adamax {
            learning_rate,
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
        betas_hyper(self.learning_rate, self.beta_1, self.beta_2)
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        let clipped = clip_gradients(g, params, self.clipnorm, self.clipvalue)?;
        let params = &clipped[..];
        g.scoped("adamax", |g| -> Result<()> {
            let lr = hyper(g, LR_VARIABLE)?;
            let b1 = hyper(g, BETA_1_VARIABLE)?;
            let b2 = hyper(g, BETA_2_VARIABLE)?;
            let t = count_step(g)?;
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

/// Name of Nadam's momentum-schedule product variable (stored minus 1, see [`Nadam`]).
pub const NADAM_SCHEDULE_VARIABLE: &str = "optimizer/m_schedule";

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
    /// Learning rate (default 0.001).
    pub learning_rate: f32,
    /// Decay of the first moment (default 0.9).
    pub beta_1: f32,
    /// Decay of the second moment (default 0.999).
    pub beta_2: f32,
    /// Fuzz factor (default 1e-7).
    pub epsilon: f32,
    /// Clips each gradient tensor to this L2 norm before the update (Keras 2 `clipnorm`:
    /// `g * clipnorm / max(‖g‖, clipnorm)`, per tensor; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipnorm: Option<f32>,
    /// Clips every gradient element to `[-clipvalue, clipvalue]` (Keras `clipvalue`, applied
    /// after `clipnorm`; default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipvalue: Option<f32>,
}

impl Default for Nadam {
    fn default() -> Self {
        Nadam {
            learning_rate: 0.001,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            clipnorm: None,
            clipvalue: None,
        }
    }
}

impl Nadam {
    /// Nadam with the given learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        Nadam {
            learning_rate,
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
        betas_hyper(self.learning_rate, self.beta_1, self.beta_2)
    }

    fn apply(&self, g: &mut Graph, params: &[(NodeId, NodeId)]) -> Result<()> {
        let clipped = clip_gradients(g, params, self.clipnorm, self.clipvalue)?;
        let params = &clipped[..];
        g.scoped("nadam", |g| -> Result<()> {
            let lr = hyper(g, LR_VARIABLE)?;
            let b1 = hyper(g, BETA_1_VARIABLE)?;
            let b2 = hyper(g, BETA_2_VARIABLE)?;
            let t = count_step(g)?;
            let t_next = g.add_scalar(t, 1.0)?;
            let mu_t = nadam_mu(g, b1, t)?;
            let mu_t1 = nadam_mu(g, b1, t_next)?;
            // the schedule product, stored minus one
            let stored = hyper(g, NADAM_SCHEDULE_VARIABLE)?;
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
