//! Keras `GRU` (`reset_after=True`).

use super::{project, recurrent_params, unroll};
use crate::layers::{Activation, Initializer, ParamSpec};
use crate::Result;
use kiln_ir::{Graph, NodeId};
use serde::{Deserialize, Serialize};

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
    pub(super) cfg: GruConfig,
    steps: usize,
    features: usize,
    /// The limits of the model's device (see [`crate::layers::Layer::fit_device`]).
    device: Option<kiln_opt::DeviceLimits>,
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
    /// Build the unrolled graph instead of the fused recurrence (Keras `unroll`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unroll: bool,
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
            unroll: false,
        })
    }
    /// The layer described by `cfg`.
    pub fn from_config(cfg: GruConfig) -> Self {
        Gru {
            cfg,
            steps: 0,
            features: 0,
            device: None,
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

impl Gru {
    /// Its weights ([`Layer::params`](crate::layers::Layer::params)).
    fn weights(&self) -> Vec<ParamSpec> {
        let (c, u) = (&self.cfg, self.cfg.units);
        recurrent_params(
            self.features,
            u,
            3,
            (c.kernel_initializer, c.recurrent_initializer),
            (vec![2, 3 * u], c.bias_initializer),
        )
    }

    /// The layer over `x` (fused or unrolled, see [`super`]), the recurrent state multiplied by `state_mask` where it
    /// enters `h·U` (recurrent dropout; `None` outside training).
    fn unrolled(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
        state_mask: Option<NodeId>,
    ) -> Result<NodeId> {
        let c = &self.cfg;
        let dims = g.shape(x).dims().to_vec();
        let spec = super::FusedSpec {
            kind: kiln_ir::recurrence::CellKind::Gru,
            units: c.units,
            activation: c.activation,
            recurrent_activation: c.recurrent_activation,
            unroll: c.unroll,
            device: self.device.as_ref(),
        };
        if let Some(cell) = spec.cell(dims[0], dims[1], state_mask.is_some()) {
            // bias [2, 3U]: row 0 the input bias, row 1 the recurrent bias (rows as they are,
            // so that their gradients join the bias's in place)
            let bias = params[2];
            let b_in = g.slice(bias, 0, 0, 1)?;
            let b_rec = g.slice(bias, 0, 1, 1)?;
            return Ok(super::fused(
                g,
                cell,
                (x, params[0], b_in),
                (params[1], Some(b_rec)),
                state_mask,
                c.return_sequences,
            )?);
        }
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

recurrent_layer!(Gru, "GRU", Gru);

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
