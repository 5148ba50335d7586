//! Keras `LSTM`.

use super::recurrent_params;
use crate::layers::{Activation, Initializer, ParamSpec};
use crate::Result;
use kiln_ir::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// A long short-term memory layer (Keras `LSTM`): input `[batch, T, F]`, output
/// `[batch, units]` (the last hidden state) or `[batch, T, units]` with
/// `return_sequences`.
#[derive(Clone, Debug)]
pub struct Lstm {
    pub(super) cfg: LstmConfig,
    steps: usize,
    features: usize,
    /// The limits of the model's device (see [`crate::layers::Layer::fit_device`]).
    device: Option<kiln_opt::DeviceLimits>,
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
    /// Build the unrolled graph instead of the fused recurrence (Keras `unroll`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unroll: bool,
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
                unroll: false,
            },
            steps: 0,
            features: 0,
            device: None,
        }
    }
    /// The layer described by `cfg`.
    pub fn from_config(cfg: LstmConfig) -> Self {
        Lstm {
            cfg,
            steps: 0,
            features: 0,
            device: None,
        }
    }
    /// Sets the gate activation.
    pub fn recurrent_activation(mut self, a: Activation) -> Self {
        self.cfg.recurrent_activation = a;
        self
    }
}

impl Lstm {
    /// Its weights ([`Layer::params`](crate::layers::Layer::params)).
    fn weights(&self) -> Vec<ParamSpec> {
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

    /// The layer over `x` (fused or unrolled, see [`super`]), the recurrent state multiplied by `state_mask` where it
    /// enters `h·U` (recurrent dropout; `None` outside training).
    fn unrolled(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
        state_mask: Option<NodeId>,
    ) -> Result<NodeId> {
        let dims = g.shape(x).dims().to_vec();
        let spec = super::FusedSpec {
            kind: kiln_ir::recurrence::CellKind::Lstm,
            units: self.cfg.units,
            activation: self.cfg.activation,
            recurrent_activation: self.cfg.recurrent_activation,
            unroll: self.cfg.unroll,
            device: self.device.as_ref(),
        };
        if let Some(cell) = spec.cell(dims[0], dims[1], state_mask.is_some()) {
            return Ok(super::fused(
                g,
                cell,
                (x, params[0], params[2]),
                (params[1], None),
                state_mask,
                self.cfg.return_sequences,
            )?);
        }
        Ok(lstm_forward(
            g,
            x,
            params,
            self.cfg.units,
            self.cfg.return_sequences,
            (self.cfg.activation, self.cfg.recurrent_activation),
            state_mask,
        )?)
    }
}

recurrent_layer!(Lstm, "LSTM", Lstm);

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
