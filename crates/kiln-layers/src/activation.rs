//! Activation functions (Keras names).

use kiln_ir::{Graph, NodeId};

/// An activation applied elementwise (softmax: over the last axis).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Identity (Keras `linear`, the default).
    #[default]
    Linear,
    /// `max(x, 0)`
    Relu,
    /// `tanh x`
    Tanh,
    /// `1/(1+e^-x)`
    Sigmoid,
    /// `exp(x) / sum(exp(x))` over the last axis.
    Softmax,
}

impl Activation {
    /// Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Softmax => "softmax",
        }
    }

    /// Appends the activation of `x` to `g`.
    pub fn apply(self, g: &mut Graph, x: NodeId) -> kiln_ir::Result<NodeId> {
        match self {
            Activation::Linear => Ok(x),
            Activation::Relu => g.relu(x),
            Activation::Tanh => g.tanh(x),
            Activation::Sigmoid => g.sigmoid(x),
            Activation::Softmax => {
                let axis = g.shape(x).rank().saturating_sub(1);
                g.softmax(x, axis)
            }
        }
    }
}
