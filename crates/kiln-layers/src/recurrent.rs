//! Sequence layers: the recurrent [`Lstm`], [`Gru`] and [`SimpleRnn`], and [`Embedding`] /
//! [`OneHot`].
//!
//! All are ordinary graph builders: a recurrent layer is unrolled over its (static) time axis
//! into the same graph as every other layer, so autodiff, fusion and the plan treat it like
//! any other computation (no eager side path). The unrolling is shaped for the compiler:
//! - the input projection of all timesteps is one matmul, `x·W + b` over `[batch·T, F]`;
//! - each step is the recurrent product `h·U` with that step's projection (LSTM,
//!   SimpleRNN) or the recurrent bias (GRU) added in its epilogue, then one elementwise
//!   kernel for the cell (gates, `c`, `h`): two dispatches;
//! - the gates are slices of the step's `[batch, k·units]` pre-activation (Keras's orders:
//!   LSTM i, f, c, o; GRU z, r, h), so their gradients join back into one concat stored in
//!   place;
//! - with the zero initial state, step 0 has no recurrent product at all.
//! - in the backward, the recurrent kernel's gradient `Σₜ hₜ₋₁ᵀ·dzₜ` is one product over all
//!   steps: autodiff finds the step adjoints stored side by side in the adjoint of the
//!   `[B, T, ·]` projection (or GRU recurrent-bias view) and multiplies once.
//!
//! Weights use Keras's layout and names: LSTM `kernel [F, 4U]`, `recurrent_kernel [U, 4U]`,
//! `bias [4U]` (forget-gate part initialised to 1, `unit_forget_bias`); GRU (`reset_after`,
//! Keras's default since TF 2, = PyTorch's `nn.GRU`) `kernel [F, 3U]`,
//! `recurrent_kernel [U, 3U]`, `bias [2, 3U]` (row 0 input bias, row 1 recurrent bias);
//! SimpleRNN `kernel [F, U]`, `recurrent_kernel [U, U]`, `bias [U]`. Recurrent kernels are
//! orthogonal by default, as in Keras.
//!
//! Dropout (training only) follows the kiln LSTM: one input mask and one recurrent-state mask
//! per batch, shared by all timesteps and gates; the state mask multiplies the state that
//! enters `h·U` (the carried state itself is not dropped). Keras draws one mask per gate for
//! GRU/LSTM when `recurrent_dropout > 0` (its implementation 1); the expected values agree.

use crate::{Activation, Initializer, LayerError, ParamSpec, Result};
use kiln_ir::{DType, Graph, NodeId};
use serde::{Deserialize, Serialize};

/// The builder methods the recurrent layers share (their configs use the same field names).
macro_rules! recurrent_builders {
    ($layer:ident, $config:ident) => {
        impl $layer {
            /// Returns the hidden state of every step (`[T, units]` per sample) instead of
            /// the last.
            pub fn return_sequences(mut self, on: bool) -> Self {
                self.cfg.return_sequences = on;
                self
            }
            /// Declares the per-sample input shape `[T, F]` (needed on the first layer).
            pub fn input_shape(mut self, steps: usize, features: usize) -> Self {
                self.cfg.input_shape = Some(vec![steps, features]);
                self
            }
            /// Sets the activation of the new state (Keras default tanh).
            pub fn activation(mut self, a: Activation) -> Self {
                self.cfg.activation = a;
                self
            }
            /// Sets the kernel initializer.
            pub fn kernel_initializer(mut self, i: Initializer) -> Self {
                self.cfg.kernel_initializer = i;
                self
            }
            /// Sets the recurrent-kernel initializer.
            pub fn recurrent_initializer(mut self, i: Initializer) -> Self {
                self.cfg.recurrent_initializer = i;
                self
            }
            /// Input dropout rate (Keras `dropout`).
            pub fn dropout(mut self, rate: f64) -> Self {
                self.cfg.dropout = rate;
                self
            }
            /// Recurrent-state dropout rate (Keras `recurrent_dropout`).
            pub fn recurrent_dropout(mut self, rate: f64) -> Self {
                self.cfg.recurrent_dropout = rate;
                self
            }
            /// The configuration.
            pub fn config(&self) -> &$config {
                &self.cfg
            }
        }
    };
}

recurrent_builders!(Lstm, LstmConfig);
recurrent_builders!(Gru, GruConfig);
recurrent_builders!(SimpleRnn, SimpleRnnConfig);

/// A long short-term memory layer (Keras `LSTM`): input `[batch, T, F]`, output
/// `[batch, units]` (the last hidden state) or `[batch, T, units]` with
/// `return_sequences`.
#[derive(Clone, Debug)]
pub struct Lstm {
    cfg: LstmConfig,
    steps: usize,
    features: usize,
}

/// The configuration of an [`Lstm`] layer (Keras's names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LstmConfig {
    /// Hidden units.
    pub units: usize,
    /// Output the hidden state of every step (`[T, units]` per sample) instead of the last.
    pub return_sequences: bool,
    /// Cell activation (Keras default tanh).
    pub activation: Activation,
    /// Gate activation (Keras default sigmoid).
    pub recurrent_activation: Activation,
    /// Initializer of `kernel`.
    pub kernel_initializer: Initializer,
    /// Initializer of `recurrent_kernel`.
    pub recurrent_initializer: Initializer,
    /// Forget-gate bias initialised to 1 (Keras default true).
    pub unit_forget_bias: bool,
    /// Declared per-sample input shape `[T, F]` (first layer).
    pub input_shape: Option<Vec<usize>>,
    /// Fraction of the inputs dropped while training (one mask per batch for all steps).
    pub dropout: f64,
    /// Fraction of the recurrent state dropped while training (one mask per batch).
    pub recurrent_dropout: f64,
}

impl Lstm {
    /// An LSTM with `units` hidden units and Keras's defaults.
    pub fn new(units: usize) -> Self {
        Lstm {
            cfg: LstmConfig {
                units,
                return_sequences: false,
                activation: Activation::Tanh,
                recurrent_activation: Activation::Sigmoid,
                kernel_initializer: Initializer::GlorotUniform,
                recurrent_initializer: Initializer::Orthogonal(1.0),
                unit_forget_bias: true,
                input_shape: None,
                dropout: 0.0,
                recurrent_dropout: 0.0,
            },
            steps: 0,
            features: 0,
        }
    }
    /// The layer described by `cfg`.
    pub fn from_config(cfg: LstmConfig) -> Self {
        Lstm {
            cfg,
            steps: 0,
            features: 0,
        }
    }
    /// Sets the gate activation.
    pub fn recurrent_activation(mut self, a: Activation) -> Self {
        self.cfg.recurrent_activation = a;
        self
    }
}

impl crate::Layer for Lstm {
    fn kind(&self) -> &'static str {
        "LSTM"
    }

    fn config(&self) -> crate::io::LayerConfig {
        crate::io::LayerConfig::Lstm(self.cfg.clone())
    }

    fn declared_input(&self) -> Option<Vec<usize>> {
        self.cfg.input_shape.clone()
    }

    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let c = &self.cfg;
        (self.steps, self.features) = check_recurrent(
            name,
            "LSTM",
            c.units,
            (c.dropout, c.recurrent_dropout),
            c.input_shape.as_deref(),
            input,
        )?;
        Ok(recurrent_output(c.units, self.steps, c.return_sequences))
    }

    fn params(&self) -> Vec<ParamSpec> {
        let u = self.cfg.units;
        let bias = if self.cfg.unit_forget_bias {
            Initializer::UnitForgetBias(u)
        } else {
            Initializer::Zeros
        };
        let c = &self.cfg;
        recurrent_params(
            self.features,
            u,
            4,
            (c.kernel_initializer, c.recurrent_initializer),
            (vec![4 * u], bias),
        )
    }

    fn forward(&self, g: &mut Graph, x: NodeId, params: &[NodeId]) -> Result<NodeId> {
        Ok(lstm_forward(
            g,
            x,
            params,
            self.cfg.units,
            self.cfg.return_sequences,
            (self.cfg.activation, self.cfg.recurrent_activation),
            None,
        )?)
    }

    fn forward_train(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
        ctx: &mut crate::TrainContext,
    ) -> Result<NodeId> {
        let u = self.cfg.units;
        let (x, state_mask) =
            dropout_masks(g, x, ctx, u, (self.cfg.dropout, self.cfg.recurrent_dropout))?;
        Ok(lstm_forward(
            g,
            x,
            params,
            u,
            self.cfg.return_sequences,
            (self.cfg.activation, self.cfg.recurrent_activation),
            state_mask,
        )?)
    }
}

/// The unrolled LSTM over `x: [B, T, F]` with `[kernel, recurrent_kernel, bias]`.
fn lstm_forward(
    g: &mut Graph,
    x: NodeId,
    params: &[NodeId],
    units: usize,
    return_sequences: bool,
    (act, gate): (Activation, Activation),
    state_mask: Option<NodeId>,
) -> kiln_ir::Result<NodeId> {
    let dims = g.shape(x).dims().to_vec();
    let (b, t, f) = (dims[0], dims[1], dims[2]);
    let u = units;
    let (w, r, bias) = (params[0], params[1], params[2]);
    // every step's input projection at once: [B*T, F] x [F, 4U] + b  ->  [B, T, 4U]
    let x2 = g.reshape(x, [b * t, f])?;
    let xw = g.matmul(x2, w)?;
    let xp = g.add(xw, bias)?;
    let xp = g.reshape(xp, [b, t, 4 * u])?;
    let mut h: Option<NodeId> = None;
    let mut c: Option<NodeId> = None;
    let mut hs = Vec::with_capacity(if return_sequences { t } else { 0 });
    for step in 0..t {
        let (h_new, c_new) = g.scoped(&format!("step_{step}"), |g| {
            let h = match (h, state_mask) {
                (Some(h), Some(m)) => Some(g.mul(h, m)?),
                (h, _) => h,
            };
            lstm_step(g, xp, step, (h, c), (r, u), (act, gate))
        })?;
        if return_sequences {
            hs.push(g.reshape(h_new, [b, 1, u])?);
        }
        h = Some(h_new);
        c = Some(c_new);
    }
    match (return_sequences, h) {
        (true, _) => g.concat(&hs, 1),
        (false, Some(h)) => Ok(h),
        (false, None) => unreachable!("build checks T >= 1"),
    }
}

/// One step: `(h, c)` from the step's projection and the previous state (`None`: zero).
fn lstm_step(
    g: &mut Graph,
    xp: NodeId,
    step: usize,
    (h, c): (Option<NodeId>, Option<NodeId>),
    (r, u): (NodeId, usize),
    (act, gate): (Activation, Activation),
) -> kiln_ir::Result<(NodeId, NodeId)> {
    let b = g.shape(xp).dims()[0];
    let xs = g.slice(xp, 1, step, 1)?;
    let xs = g.reshape(xs, [b, 4 * u])?;
    // z = x_t W + b + h_{t-1} U
    let z = match h {
        Some(h) => {
            let hr = g.matmul(h, r)?;
            g.add(hr, xs)?
        }
        None => xs,
    };
    let zi = g.slice(z, 1, 0, u)?;
    let zf = g.slice(z, 1, u, u)?;
    let zc = g.slice(z, 1, 2 * u, u)?;
    let zo = g.slice(z, 1, 3 * u, u)?;
    let i = gate.apply(g, zi)?;
    let o = gate.apply(g, zo)?;
    let cand = act.apply(g, zc)?;
    let ic = g.mul(i, cand)?;
    // c = f c_{t-1} + i g
    let c_new = match c {
        Some(c) => {
            let fg = gate.apply(g, zf)?;
            let fc = g.mul(fg, c)?;
            g.add(fc, ic)?
        }
        None => ic,
    };
    let ac = act.apply(g, c_new)?;
    let h_new = g.mul(o, ac)?;
    Ok((h_new, c_new))
}

/// A gated recurrent unit layer (Keras `GRU` with its TF 2 default `reset_after=True`, the
/// same cell as PyTorch's `nn.GRU`): input `[batch, T, F]`, output `[batch, units]` (the last
/// hidden state) or `[batch, T, units]` with `return_sequences`.
///
/// Weights (Keras layout, gate order z, r, h): `kernel [F, 3U]`, `recurrent_kernel [U, 3U]`,
/// `bias [2, 3U]` (row 0 the input bias, row 1 the recurrent bias). Per step, from the zero
/// initial state:
/// `z = σ(x·W_z + b_z + h·U_z + c_z)`, `r = σ(x·W_r + b_r + h·U_r + c_r)`,
/// `ĥ = tanh(x·W_h + b_h + r ⊙ (h·U_h + c_h))`, `h' = z ⊙ h + (1 − z) ⊙ ĥ`.
#[derive(Clone, Debug)]
pub struct Gru {
    cfg: GruConfig,
    steps: usize,
    features: usize,
}

/// The configuration of a [`Gru`] layer (Keras's names; `reset_after` is always true).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GruConfig {
    /// Hidden units.
    pub units: usize,
    /// Output the hidden state of every step (`[T, units]` per sample) instead of the last.
    pub return_sequences: bool,
    /// Activation of the new state (Keras default tanh).
    pub activation: Activation,
    /// Gate activation (Keras default sigmoid).
    pub recurrent_activation: Activation,
    /// Initializer of `kernel` (Keras default glorot_uniform).
    pub kernel_initializer: Initializer,
    /// Initializer of `recurrent_kernel` (Keras default orthogonal).
    pub recurrent_initializer: Initializer,
    /// Initializer of `bias` (Keras default zeros).
    pub bias_initializer: Initializer,
    /// Declared per-sample input shape `[T, F]` (first layer).
    pub input_shape: Option<Vec<usize>>,
    /// Fraction of the inputs dropped while training (one mask per batch for all steps).
    pub dropout: f64,
    /// Fraction of the recurrent state dropped while training (one mask per batch).
    pub recurrent_dropout: f64,
}

impl Gru {
    /// A GRU with `units` hidden units and Keras's defaults.
    pub fn new(units: usize) -> Self {
        Gru::from_config(GruConfig {
            units,
            return_sequences: false,
            activation: Activation::Tanh,
            recurrent_activation: Activation::Sigmoid,
            kernel_initializer: Initializer::GlorotUniform,
            recurrent_initializer: Initializer::Orthogonal(1.0),
            bias_initializer: Initializer::Zeros,
            input_shape: None,
            dropout: 0.0,
            recurrent_dropout: 0.0,
        })
    }
    /// The layer described by `cfg`.
    pub fn from_config(cfg: GruConfig) -> Self {
        Gru {
            cfg,
            steps: 0,
            features: 0,
        }
    }
    /// Sets the bias initializer.
    pub fn bias_initializer(mut self, i: Initializer) -> Self {
        self.cfg.bias_initializer = i;
        self
    }
    /// Sets the gate activation (Keras default sigmoid).
    pub fn recurrent_activation(mut self, a: Activation) -> Self {
        self.cfg.recurrent_activation = a;
        self
    }
}

impl crate::Layer for Gru {
    fn kind(&self) -> &'static str {
        "GRU"
    }

    fn config(&self) -> crate::io::LayerConfig {
        crate::io::LayerConfig::Gru(self.cfg.clone())
    }

    fn declared_input(&self) -> Option<Vec<usize>> {
        self.cfg.input_shape.clone()
    }

    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let c = &self.cfg;
        (self.steps, self.features) = check_recurrent(
            name,
            "GRU",
            c.units,
            (c.dropout, c.recurrent_dropout),
            c.input_shape.as_deref(),
            input,
        )?;
        Ok(recurrent_output(c.units, self.steps, c.return_sequences))
    }

    fn params(&self) -> Vec<ParamSpec> {
        let (c, u) = (&self.cfg, self.cfg.units);
        recurrent_params(
            self.features,
            u,
            3,
            (c.kernel_initializer, c.recurrent_initializer),
            (vec![2, 3 * u], c.bias_initializer),
        )
    }

    fn forward(&self, g: &mut Graph, x: NodeId, params: &[NodeId]) -> Result<NodeId> {
        let c = &self.cfg;
        Ok(gru_forward(
            g,
            x,
            params,
            (c.units, c.return_sequences),
            (c.activation, c.recurrent_activation),
            None,
        )?)
    }

    fn forward_train(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
        ctx: &mut crate::TrainContext,
    ) -> Result<NodeId> {
        let c = &self.cfg;
        let (x, state_mask) = dropout_masks(g, x, ctx, c.units, (c.dropout, c.recurrent_dropout))?;
        Ok(gru_forward(
            g,
            x,
            params,
            (c.units, c.return_sequences),
            (c.activation, c.recurrent_activation),
            state_mask,
        )?)
    }
}

/// The unrolled GRU over `x: [B, T, F]` with `[kernel, recurrent_kernel, bias]`.
fn gru_forward(
    g: &mut Graph,
    x: NodeId,
    params: &[NodeId],
    (u, return_sequences): (usize, bool),
    (act, gate): (Activation, Activation),
    state_mask: Option<NodeId>,
) -> kiln_ir::Result<NodeId> {
    let (w, rk, bias) = (params[0], params[1], params[2]);
    let dims = g.shape(x).dims().to_vec();
    let (b, t) = (dims[0], dims[1]);
    let b_in = g.slice(bias, 0, 0, 1)?;
    let xp = project(g, x, w, b_in)?;
    // the recurrent bias as a [B, T, 3U] view sliced per step like the projection, so its
    // gradient joins the steps' parts in place and is reduced once (a per-step broadcast
    // would cost a reduction per step)
    let b_rec = g.slice(bias, 0, 1, 1)?;
    let b_rec = g.reshape(b_rec, [1, 1, 3 * u])?;
    let b_rec = g.expand(b_rec, [b, t, 3 * u])?;
    unroll(
        g,
        xp,
        u,
        return_sequences,
        state_mask,
        |g, step, xs, h, h_in| {
            // the recurrent part [B, 3U] (z, r, h blocks): h·U + b_rec, only b_rec at step 0
            let bs = g.slice(b_rec, 1, step, 1)?;
            let bs = g.reshape(bs, [b, 3 * u])?;
            let m = match h_in {
                Some(h_in) => {
                    let hu = g.matmul(h_in, rk)?;
                    g.add(hu, bs)?
                }
                None => bs,
            };
            let xz = g.slice(xs, 1, 0, u)?;
            let xr = g.slice(xs, 1, u, u)?;
            let xh = g.slice(xs, 1, 2 * u, u)?;
            let mz = g.slice(m, 1, 0, u)?;
            let mr = g.slice(m, 1, u, u)?;
            let mh = g.slice(m, 1, 2 * u, u)?;
            let az = g.add(xz, mz)?;
            let z = gate.apply(g, az)?;
            let ar = g.add(xr, mr)?;
            let r = gate.apply(g, ar)?;
            let rh = g.mul(r, mh)?;
            let ah = g.add(xh, rh)?;
            let cand = act.apply(g, ah)?;
            // h' = z h + (1 - z) ĥ = ĥ + z (h - ĥ)
            match h {
                Some(h) => {
                    let d = g.sub(h, cand)?;
                    let zd = g.mul(z, d)?;
                    g.add(cand, zd)
                }
                None => {
                    let zc = g.mul(z, cand)?;
                    g.sub(cand, zc)
                }
            }
        },
    )
}

/// A fully-connected recurrent layer (Keras `SimpleRNN`, PyTorch `nn.RNN`): input
/// `[batch, T, F]`, output `[batch, units]` (the last hidden state) or `[batch, T, units]`
/// with `return_sequences`. Weights `kernel [F, U]`, `recurrent_kernel [U, U]`, `bias [U]`;
/// per step, from the zero initial state, `h' = tanh(x·W + h·U + b)`.
#[derive(Clone, Debug)]
pub struct SimpleRnn {
    cfg: SimpleRnnConfig,
    steps: usize,
    features: usize,
}

/// The configuration of a [`SimpleRnn`] layer (Keras's names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimpleRnnConfig {
    /// Hidden units.
    pub units: usize,
    /// Output the hidden state of every step (`[T, units]` per sample) instead of the last.
    pub return_sequences: bool,
    /// Activation of the new state (Keras default tanh).
    pub activation: Activation,
    /// Initializer of `kernel` (Keras default glorot_uniform).
    pub kernel_initializer: Initializer,
    /// Initializer of `recurrent_kernel` (Keras default orthogonal).
    pub recurrent_initializer: Initializer,
    /// Initializer of `bias` (Keras default zeros).
    pub bias_initializer: Initializer,
    /// Declared per-sample input shape `[T, F]` (first layer).
    pub input_shape: Option<Vec<usize>>,
    /// Fraction of the inputs dropped while training (one mask per batch for all steps).
    pub dropout: f64,
    /// Fraction of the recurrent state dropped while training (one mask per batch).
    pub recurrent_dropout: f64,
}

impl SimpleRnn {
    /// A SimpleRNN with `units` hidden units and Keras's defaults.
    pub fn new(units: usize) -> Self {
        SimpleRnn::from_config(SimpleRnnConfig {
            units,
            return_sequences: false,
            activation: Activation::Tanh,
            kernel_initializer: Initializer::GlorotUniform,
            recurrent_initializer: Initializer::Orthogonal(1.0),
            bias_initializer: Initializer::Zeros,
            input_shape: None,
            dropout: 0.0,
            recurrent_dropout: 0.0,
        })
    }
    /// The layer described by `cfg`.
    pub fn from_config(cfg: SimpleRnnConfig) -> Self {
        SimpleRnn {
            cfg,
            steps: 0,
            features: 0,
        }
    }
    /// Sets the bias initializer.
    pub fn bias_initializer(mut self, i: Initializer) -> Self {
        self.cfg.bias_initializer = i;
        self
    }
}

impl crate::Layer for SimpleRnn {
    fn kind(&self) -> &'static str {
        "SimpleRNN"
    }

    fn config(&self) -> crate::io::LayerConfig {
        crate::io::LayerConfig::SimpleRnn(self.cfg.clone())
    }

    fn declared_input(&self) -> Option<Vec<usize>> {
        self.cfg.input_shape.clone()
    }

    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let c = &self.cfg;
        (self.steps, self.features) = check_recurrent(
            name,
            "SimpleRNN",
            c.units,
            (c.dropout, c.recurrent_dropout),
            c.input_shape.as_deref(),
            input,
        )?;
        Ok(recurrent_output(c.units, self.steps, c.return_sequences))
    }

    fn params(&self) -> Vec<ParamSpec> {
        let (c, u) = (&self.cfg, self.cfg.units);
        recurrent_params(
            self.features,
            u,
            1,
            (c.kernel_initializer, c.recurrent_initializer),
            (vec![u], c.bias_initializer),
        )
    }

    fn forward(&self, g: &mut Graph, x: NodeId, params: &[NodeId]) -> Result<NodeId> {
        let c = &self.cfg;
        Ok(simple_rnn_forward(
            g,
            x,
            params,
            (c.units, c.return_sequences),
            c.activation,
            None,
        )?)
    }

    fn forward_train(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
        ctx: &mut crate::TrainContext,
    ) -> Result<NodeId> {
        let c = &self.cfg;
        let (x, state_mask) = dropout_masks(g, x, ctx, c.units, (c.dropout, c.recurrent_dropout))?;
        Ok(simple_rnn_forward(
            g,
            x,
            params,
            (c.units, c.return_sequences),
            c.activation,
            state_mask,
        )?)
    }
}

/// The unrolled SimpleRNN over `x: [B, T, F]` with `[kernel, recurrent_kernel, bias]`.
fn simple_rnn_forward(
    g: &mut Graph,
    x: NodeId,
    params: &[NodeId],
    (u, return_sequences): (usize, bool),
    act: Activation,
    state_mask: Option<NodeId>,
) -> kiln_ir::Result<NodeId> {
    let (w, rk, bias) = (params[0], params[1], params[2]);
    let xp = project(g, x, w, bias)?;
    unroll(
        g,
        xp,
        u,
        return_sequences,
        state_mask,
        |g, _step, xs, _h, h_in| {
            let a = match h_in {
                Some(h_in) => {
                    let hu = g.matmul(h_in, rk)?;
                    g.add(hu, xs)?
                }
                None => xs,
            };
            act.apply(g, a)
        },
    )
}

/// Checks a recurrent layer's settings and per-sample input `[T, F]` (errors name the layer
/// and carry a hint); returns `(T, F)`.
fn check_recurrent(
    name: &str,
    kind: &str,
    u: usize,
    (dropout, recurrent_dropout): (f64, f64),
    declared: Option<&[usize]>,
    input: &[usize],
) -> Result<(usize, usize)> {
    let err = |message: String| LayerError::Shape {
        layer: name.into(),
        message,
    };
    if u == 0 {
        return Err(err(format!(
            "{kind}(0): units must be at least 1; hint: units is the width of the hidden state"
        )));
    }
    for (what, r) in [
        ("dropout", dropout),
        ("recurrent_dropout", recurrent_dropout),
    ] {
        if !(0.0..1.0).contains(&r) {
            return Err(err(format!(
                "{kind}({u}): {what} {r} must be in [0, 1); hint: it is the fraction dropped"
            )));
        }
    }
    if input.len() != 2 || input[0] == 0 || input[1] == 0 {
        return Err(err(format!(
            "{kind}({u}) expects a per-sample input [timesteps, features], got {input:?}; hint: Embedding gives [T, D]; reshape flat inputs to [T, F]"
        )));
    }
    if let Some(d) = declared {
        if d != input {
            return Err(err(format!(
                "{kind}({u}) declares input_shape {d:?} but receives {input:?}"
            )));
        }
    }
    Ok((input[0], input[1]))
}

/// The weights of a recurrent layer with `gates` blocks of `units`: `kernel [F, gates·U]`,
/// `recurrent_kernel [U, gates·U]` and `bias` (Keras's layouts and fans: a 2-D bias, the
/// GRU's `[2, 3U]`, has fan-in 2, a 1-D one `U`).
fn recurrent_params(
    features: usize,
    units: usize,
    gates: usize,
    (kernel, recurrent): (Initializer, Initializer),
    (bias_shape, bias): (Vec<usize>, Initializer),
) -> Vec<ParamSpec> {
    let width = gates * units;
    let bias_fan_in = if bias_shape.len() == 2 {
        bias_shape[0]
    } else {
        units
    };
    vec![
        ParamSpec {
            name: "kernel".into(),
            shape: vec![features, width],
            init: kernel,
            fan_in: features,
            fan_out: width,
        },
        ParamSpec {
            name: "recurrent_kernel".into(),
            shape: vec![units, width],
            init: recurrent,
            fan_in: units,
            fan_out: width,
        },
        ParamSpec {
            name: "bias".into(),
            shape: bias_shape,
            init: bias,
            fan_in: bias_fan_in,
            fan_out: width,
        },
    ]
}

/// The per-sample output shape of a recurrent layer.
fn recurrent_output(units: usize, steps: usize, return_sequences: bool) -> Vec<usize> {
    if return_sequences {
        vec![steps, units]
    } else {
        vec![units]
    }
}

/// Training-time dropout of a recurrent layer (as Keras's implementation 2): one input mask
/// and one recurrent-state mask per batch, shared by every timestep and gate. Returns the
/// masked input and the state mask (`[B, units]`) for the unrolling.
fn dropout_masks(
    g: &mut Graph,
    x: NodeId,
    ctx: &mut crate::TrainContext,
    u: usize,
    (dropout, recurrent_dropout): (f64, f64),
) -> Result<(NodeId, Option<NodeId>)> {
    let dims = g.shape(x).dims().to_vec();
    let (b, f) = (dims[0], dims[2]);
    let input_mask = match dropout {
        r if r > 0.0 => Some(ctx.dropout_mask(g, &[b, 1, f], r)?),
        _ => None,
    };
    let state_mask = match recurrent_dropout {
        r if r > 0.0 => Some(ctx.dropout_mask(g, &[b, u], r)?),
        _ => None,
    };
    let x = match input_mask {
        Some(m) => {
            let m = g.expand(m, dims)?;
            g.mul(x, m)?
        }
        None => x,
    };
    Ok((x, state_mask))
}

/// The input projection of every step at once: `[B*T, F] x [F, k] + bias` as `[B, T, k]`.
fn project(g: &mut Graph, x: NodeId, w: NodeId, bias: NodeId) -> kiln_ir::Result<NodeId> {
    let dims = g.shape(x).dims().to_vec();
    let (b, t, f) = (dims[0], dims[1], dims[2]);
    let k = g.shape(w).dims()[1];
    let x2 = g.reshape(x, [b * t, f])?;
    let xw = g.matmul(x2, w)?;
    let xp = g.add(xw, bias)?;
    g.reshape(xp, [b, t, k])
}

/// Unrolls a cell whose state is `h` alone over the projection `xp: [B, T, k]`: `cell(g,
/// step, xs, h, h_in)` gets the step's projection `[B, k]`, the previous state and the state
/// that enters `h·U` (the previous state times the recurrent-dropout mask), both `None` at
/// step 0 (zero state), and returns the new state `[B, units]`.
fn unroll(
    g: &mut Graph,
    xp: NodeId,
    units: usize,
    return_sequences: bool,
    state_mask: Option<NodeId>,
    mut cell: impl FnMut(
        &mut Graph,
        usize,
        NodeId,
        Option<NodeId>,
        Option<NodeId>,
    ) -> kiln_ir::Result<NodeId>,
) -> kiln_ir::Result<NodeId> {
    let dims = g.shape(xp).dims().to_vec();
    let (b, t, k) = (dims[0], dims[1], dims[2]);
    let mut h: Option<NodeId> = None;
    let mut hs = Vec::with_capacity(if return_sequences { t } else { 0 });
    for step in 0..t {
        let h_new = g.scoped(&format!("step_{step}"), |g| {
            let h_in = match (h, state_mask) {
                (Some(h), Some(m)) => Some(g.mul(h, m)?),
                (h, _) => h,
            };
            let xs = g.slice(xp, 1, step, 1)?;
            let xs = g.reshape(xs, [b, k])?;
            cell(g, step, xs, h, h_in)
        })?;
        if return_sequences {
            hs.push(g.reshape(h_new, [b, 1, units])?);
        }
        h = Some(h_new);
    }
    match (return_sequences, h) {
        (true, _) => g.concat(&hs, 1),
        (false, Some(h)) => Ok(h),
        (false, None) => unreachable!("build checks T >= 1"),
    }
}

/// Checks that every value of `x` is a whole number in `0..rows` (indices for `layer`).
fn check_indices(layer: &str, x: &kiln_opt::HostTensor, rows: usize) -> Result<()> {
    let bad = x
        .to_f32()
        .iter()
        .enumerate()
        .find(|(_, &v)| !(v >= 0.0 && v.fract() == 0.0 && (v as usize) < rows))
        .map(|(i, &v)| (i, v));
    match bad {
        None => Ok(()),
        Some((i, v)) => Err(LayerError::Data(format!(
            "{layer}: input element {i} is {v}, but this layer takes whole-number indices in \
             0..{rows}; hint: raise input_dim (the vocabulary size) or clip the indices"
        ))),
    }
}

/// Turns positive integers (word indices) into dense vectors (Keras `Embedding`): input
/// `[batch, input_length]` of indices (fed as f32 or i32), output
/// `[batch, input_length, output_dim]`. Indices outside `0..input_dim` give zero vectors.
#[derive(Clone, Debug)]
pub struct Embedding {
    cfg: EmbeddingConfig,
}

/// The configuration of an [`Embedding`] layer (Keras's names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingConfig {
    /// Vocabulary size (largest index + 1).
    pub input_dim: usize,
    /// Vector width.
    pub output_dim: usize,
    /// Sequence length (declares the input shape on the first layer).
    pub input_length: Option<usize>,
    /// Initializer of the table (Keras default uniform ±0.05).
    pub embeddings_initializer: Initializer,
}

impl Embedding {
    /// `Embedding(input_dim, output_dim)` with Keras's uniform(±0.05) initializer.
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Embedding {
            cfg: EmbeddingConfig {
                input_dim,
                output_dim,
                input_length: None,
                embeddings_initializer: Initializer::Uniform(-0.05, 0.05),
            },
        }
    }
    /// The layer described by `cfg`.
    pub fn from_config(cfg: EmbeddingConfig) -> Self {
        Embedding { cfg }
    }
    /// Declares the sequence length (needed on the first layer).
    pub fn input_length(mut self, n: usize) -> Self {
        self.cfg.input_length = Some(n);
        self
    }
    /// Sets the table initializer.
    pub fn embeddings_initializer(mut self, i: Initializer) -> Self {
        self.cfg.embeddings_initializer = i;
        self
    }
}

impl crate::Layer for Embedding {
    fn kind(&self) -> &'static str {
        "Embedding"
    }

    fn config(&self) -> crate::io::LayerConfig {
        crate::io::LayerConfig::Embedding(self.cfg.clone())
    }

    fn declared_input(&self) -> Option<Vec<usize>> {
        self.cfg.input_length.map(|n| vec![n])
    }

    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let c = &self.cfg;
        let err = |message: String| LayerError::Shape {
            layer: name.into(),
            message,
        };
        if c.input_dim == 0 || c.output_dim == 0 {
            return Err(err(format!(
                "Embedding({}, {}): both sizes must be at least 1",
                c.input_dim, c.output_dim
            )));
        }
        if input.len() != 1 {
            return Err(err(format!(
                "Embedding expects a per-sample input [input_length] of indices, got {input:?}"
            )));
        }
        if let Some(n) = c.input_length {
            if n != input[0] {
                return Err(err(format!(
                    "Embedding declares input_length {n} but receives sequences of {}",
                    input[0]
                )));
            }
        }
        Ok(vec![input[0], c.output_dim])
    }

    fn check_input(&self, name: &str, x: &kiln_opt::HostTensor) -> Result<()> {
        check_indices(name, x, self.cfg.input_dim)
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec {
            name: "embeddings".into(),
            shape: vec![self.cfg.input_dim, self.cfg.output_dim],
            init: self.cfg.embeddings_initializer,
            fan_in: self.cfg.input_dim,
            fan_out: self.cfg.output_dim,
        }]
    }

    fn forward(&self, g: &mut Graph, x: NodeId, params: &[NodeId]) -> Result<NodeId> {
        let idx = if g.dtype(x) == DType::I32 {
            x
        } else {
            g.cast(x, DType::I32)?
        };
        Ok(g.gather(params[0], idx)?)
    }
}

/// One-hot encodes integer indices inside the model (no weights): input `[n]` of indices
/// (f32 or i32), output `[n, depth]`. Equivalent to feeding `to_categorical` vectors, without
/// holding them in host memory (the char-LSTM tutorial's one-hot `[N, 40, 57]` array is
/// 1.8 GB in f32; its indices are 32 MB). An index outside `0..depth` gives a zero vector.
#[derive(Clone, Debug)]
pub struct OneHot {
    cfg: OneHotConfig,
}

/// The configuration of a [`OneHot`] layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneHotConfig {
    /// Number of classes (vector width).
    pub depth: usize,
    /// Declared per-sample input length (first layer).
    pub input_length: Option<usize>,
}

impl OneHot {
    /// One-hot vectors of width `depth`.
    pub fn new(depth: usize) -> Self {
        OneHot {
            cfg: OneHotConfig {
                depth,
                input_length: None,
            },
        }
    }
    /// The layer described by `cfg`.
    pub fn from_config(cfg: OneHotConfig) -> Self {
        OneHot { cfg }
    }
    /// Declares the sequence length (needed on the first layer).
    pub fn input_length(mut self, n: usize) -> Self {
        self.cfg.input_length = Some(n);
        self
    }
}

impl crate::Layer for OneHot {
    fn kind(&self) -> &'static str {
        "OneHot"
    }

    fn config(&self) -> crate::io::LayerConfig {
        crate::io::LayerConfig::OneHot(self.cfg.clone())
    }

    fn declared_input(&self) -> Option<Vec<usize>> {
        self.cfg.input_length.map(|n| vec![n])
    }

    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        if self.cfg.depth == 0 || input.len() != 1 {
            return Err(LayerError::Shape {
                layer: name.into(),
                message: format!(
                    "OneHot({}) expects depth >= 1 and a per-sample input [length] of indices, got {input:?}",
                    self.cfg.depth
                ),
            });
        }
        Ok(vec![input[0], self.cfg.depth])
    }

    fn check_input(&self, name: &str, x: &kiln_opt::HostTensor) -> Result<()> {
        check_indices(name, x, self.cfg.depth)
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn forward(&self, g: &mut Graph, x: NodeId, _params: &[NodeId]) -> Result<NodeId> {
        let d = self.cfg.depth;
        let eye: Vec<f64> = (0..d * d)
            .map(|i| if i / d == i % d { 1.0 } else { 0.0 })
            .collect();
        let table = g.constant(eye, [d, d], DType::F32)?;
        let idx = if g.dtype(x) == DType::I32 {
            x
        } else {
            g.cast(x, DType::I32)?
        };
        Ok(g.gather(table, idx)?)
    }
}
