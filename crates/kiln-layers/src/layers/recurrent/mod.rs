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
//! ## Fused or unrolled
//! By default a layer is one fused op, [`kiln_ir::Op::Recurrence`] (the input projection
//! stays one matmul; the whole recurrence over time is one persistent kernel, its backward
//! one more, and `dr = Σ h_inᵀ·drec` one product): a constant number of dispatches instead of
//! two per step. The layer keeps the unrolled graph described above when its activations
//! have no fused form (softmax, gelu, …), when the device cannot run the fused kernel or
//! runs it badly ([`kiln_opt::kernel::RecurrenceLaunch::choose`] and
//! `DeviceLimits::persistent_kernels` — false on lavapipe — on the limits given by
//! [`Layer::fit_device`](super::Layer::fit_device)), or when asked to (`unroll(true)`,
//! Keras's `unroll=True`). Both compute the same values within f32 rounding.
//!
//! Dropout (training only) follows the kiln LSTM: one input mask and one recurrent-state mask
//! per batch, shared by all timesteps and gates; the state mask multiplies the state that
//! enters `h·U` (the carried state itself is not dropped). Keras draws one mask per gate for
//! GRU/LSTM when `recurrent_dropout > 0` (its implementation 1); the expected values agree.

/// The [`Layer`](super::Layer) implementation the recurrent layers share. Each layer has
/// `cfg` (its config, with the common field names), `steps` and `features` (fixed by
/// `build`), and provides `weights()` and `unrolled(g, x, params, state_mask)`.
macro_rules! recurrent_layer {
    ($layer:ident, $kind:literal, $variant:ident) => {
        impl crate::layers::Layer for $layer {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn config(&self) -> crate::layers::LayerConfig {
                crate::layers::LayerConfig::$variant(self.cfg.clone())
            }

            fn declared_input(&self) -> Option<Vec<usize>> {
                self.cfg.input_shape.clone()
            }

            fn build(&mut self, name: &str, input: &[usize]) -> crate::Result<Vec<usize>> {
                let c = &self.cfg;
                (self.steps, self.features) = super::check_recurrent(
                    name,
                    $kind,
                    c.units,
                    (c.dropout, c.recurrent_dropout),
                    c.input_shape.as_deref(),
                    input,
                )?;
                Ok(super::recurrent_output(
                    c.units,
                    self.steps,
                    c.return_sequences,
                ))
            }

            fn params(&self) -> Vec<crate::layers::ParamSpec> {
                self.weights()
            }

            fn fit_device(&mut self, limits: &kiln_opt::DeviceLimits) {
                self.device = Some(limits.clone());
            }

            fn forward(
                &self,
                g: &mut kiln_ir::Graph,
                x: kiln_ir::NodeId,
                params: &[kiln_ir::NodeId],
            ) -> crate::Result<kiln_ir::NodeId> {
                self.unrolled(g, x, params, None)
            }

            fn forward_train(
                &self,
                g: &mut kiln_ir::Graph,
                x: kiln_ir::NodeId,
                params: &[kiln_ir::NodeId],
                ctx: &mut crate::layers::TrainContext,
            ) -> crate::Result<kiln_ir::NodeId> {
                let c = &self.cfg;
                let (x, state_mask) =
                    super::dropout_masks(g, x, ctx, c.units, (c.dropout, c.recurrent_dropout))?;
                self.unrolled(g, x, params, state_mask)
            }
        }
    };
}

mod embedding;
mod gru;
mod lstm;
mod simple_rnn;

pub use embedding::{Embedding, EmbeddingConfig, OneHot, OneHotConfig};
pub use gru::{Gru, GruConfig};
pub use lstm::{Lstm, LstmConfig};
pub use simple_rnn::{SimpleRnn, SimpleRnnConfig};

use super::{Activation, Initializer, ParamSpec, TrainContext};
use crate::{LayerError, Result};
use kiln_ir::{Graph, NodeId};

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
            /// Builds the unrolled graph (one recurrent product and one cell kernel per
            /// step, Keras `unroll=True`) instead of the fused persistent recurrence.
            pub fn unroll(mut self, on: bool) -> Self {
                self.cfg.unroll = on;
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
    ctx: &mut TrainContext,
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

/// The fused-cell form of a Keras activation, if it has one.
fn cell_activation(a: Activation) -> Option<kiln_ir::recurrence::CellActivation> {
    use kiln_ir::recurrence::CellActivation as C;
    Some(match a {
        Activation::Linear => C::Linear,
        Activation::Tanh => C::Tanh,
        Activation::Sigmoid => C::Sigmoid,
        Activation::Relu => C::Relu,
        Activation::HardSigmoid => C::HardSigmoid,
        _ => return None,
    })
}

/// The settings of a recurrent layer that decide its fused form.
struct FusedSpec<'a> {
    kind: kiln_ir::recurrence::CellKind,
    units: usize,
    activation: Activation,
    recurrent_activation: Activation,
    unroll: bool,
    device: Option<&'a kiln_opt::DeviceLimits>,
}

impl FusedSpec<'_> {
    /// The fused cell for input `[b, t, ·]`, or `None` when the layer is unrolled: asked for,
    /// an activation without a fused form, or a device that cannot run the persistent
    /// forward or backward kernel.
    fn cell(&self, b: usize, t: usize, masked: bool) -> Option<kiln_ir::recurrence::Cell> {
        if self.unroll {
            return None;
        }
        let cell = kiln_ir::recurrence::Cell {
            kind: self.kind,
            units: self.units,
            activation: cell_activation(self.activation)?,
            recurrent_activation: match self.kind {
                // unused by SimpleRNN
                kiln_ir::recurrence::CellKind::SimpleRnn => {
                    kiln_ir::recurrence::CellActivation::Sigmoid
                }
                _ => cell_activation(self.recurrent_activation)?,
            },
            masked,
        };
        if let Some(l) = self.device {
            use kiln_opt::kernel::RecurrenceLaunch;
            if !l.persistent_kernels {
                return None;
            }
            RecurrenceLaunch::choose(&cell, false, b, t, l)?;
            RecurrenceLaunch::choose(&cell, true, b, t, l)?;
        }
        Some(cell)
    }
}

/// The fused layer: `xp = x·W + b_in` (one matmul), the recurrence, and the hidden states
/// sliced from its trace (`[B, T, U]`, or the last `[B, U]`).
fn fused(
    g: &mut Graph,
    cell: kiln_ir::recurrence::Cell,
    (x, w, b_in): (NodeId, NodeId, NodeId),
    (r, rb): (NodeId, Option<NodeId>),
    state_mask: Option<NodeId>,
    return_sequences: bool,
) -> kiln_ir::Result<NodeId> {
    let dims = g.shape(x).dims().to_vec();
    let (b, t) = (dims[0], dims[1]);
    let u = cell.units;
    let xp = project(g, x, w, b_in)?;
    let extra: Vec<NodeId> = rb.into_iter().chain(state_mask).collect();
    let trace = g.recurrence(cell, xp, r, &extra)?;
    let h = g.slice(trace, 2, 0, u)?;
    if return_sequences {
        Ok(h)
    } else {
        let last = g.slice(h, 1, t - 1, 1)?;
        g.reshape(last, [b, u])
    }
}
