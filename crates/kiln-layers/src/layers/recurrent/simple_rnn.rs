//! Keras `SimpleRNN`.

use super::{project, recurrent_params, unroll};
use crate::layers::{Activation, Initializer, ParamSpec};
use crate::Result;
use kiln_ir::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// A fully-connected recurrent layer (Keras `SimpleRNN`, PyTorch `nn.RNN`): input
/// `[batch, T, F]`, output `[batch, units]` (the last hidden state) or `[batch, T, units]`
/// with `return_sequences`. Weights `kernel [F, U]`, `recurrent_kernel [U, U]`, `bias [U]`;
/// per step, from the zero initial state, `h' = tanh(x·W + h·U + b)`.
#[derive(Clone, Debug)]
pub struct SimpleRnn {
    pub(super) cfg: SimpleRnnConfig,
    steps: usize,
    features: usize,
    /// The limits of the model's device (see [`crate::layers::Layer::fit_device`]).
    device: Option<kiln_opt::DeviceLimits>,
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
    /// Build the unrolled graph instead of the fused recurrence (Keras `unroll`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unroll: bool,
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
            unroll: false,
        })
    }
    /// The layer described by `cfg`.
    pub fn from_config(cfg: SimpleRnnConfig) -> Self {
        SimpleRnn {
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
}

impl SimpleRnn {
    /// Its weights ([`Layer::params`](crate::layers::Layer::params)).
    fn weights(&self) -> Vec<ParamSpec> {
        let (c, u) = (&self.cfg, self.cfg.units);
        recurrent_params(
            self.features,
            u,
            1,
            (c.kernel_initializer, c.recurrent_initializer),
            (vec![u], c.bias_initializer),
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
            kind: kiln_ir::recurrence::CellKind::SimpleRnn,
            units: c.units,
            activation: c.activation,
            recurrent_activation: Activation::Sigmoid,
            unroll: c.unroll,
            device: self.device.as_ref(),
        };
        if let Some(cell) = spec.cell(dims[0], dims[1], state_mask.is_some()) {
            return Ok(super::fused(
                g,
                cell,
                (x, params[0], params[2]),
                (params[1], None),
                state_mask,
                c.return_sequences,
            )?);
        }
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

recurrent_layer!(SimpleRnn, "SimpleRNN", SimpleRnn);

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
