//! Keras's `Activation` layer ([`ActivationLayer`]).

use super::{check_declared, Activation, Layer, LayerConfig, ParamSpec};
use crate::{LayerError, Result};
use kiln_ir::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// Keras's `Activation` layer: applies an [`Activation`] elementwise (softmax over the last
/// axis), no weights. Named `ActivationLayer` in Rust because [`Activation`] is the function
/// enum; its class name in `summary()`, JSON and plots is `Activation`, as in Keras. A final
/// `ActivationLayer::new(Activation::Softmax)` gives the losses its input as logits, like a
/// `Dense(.., softmax)` does.
#[derive(Clone, Debug)]
pub struct ActivationLayer {
    activation: Activation,
    input_shape: Option<Vec<usize>>,
}

impl ActivationLayer {
    /// A layer applying `activation`.
    pub fn new(activation: Activation) -> Self {
        ActivationLayer {
            activation,
            input_shape: None,
        }
    }
    /// Declares the per-sample input shape (Keras `input_shape=`; first layer only).
    pub fn input_shape(mut self, shape: &[usize]) -> Self {
        self.input_shape = Some(shape.to_vec());
        self
    }
}

impl ActivationLayer {
    /// The layer described by `c`.
    pub fn from_config(c: &ActivationConfig) -> Self {
        let a = ActivationLayer::new(c.activation);
        match &c.input_shape {
            Some(s) => a.input_shape(s),
            None => a,
        }
    }
}

impl Layer for ActivationLayer {
    fn kind(&self) -> &'static str {
        "Activation"
    }

    fn declared_input(&self) -> Option<Vec<usize>> {
        self.input_shape.clone()
    }

    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let what = format!("Activation({})", self.activation.name());
        check_declared(name, &what, &self.input_shape, input)?;
        if self.activation == Activation::Softmax && input.is_empty() {
            return Err(LayerError::Shape {
                layer: name.into(),
                message: format!(
                    "{what} normalizes over the last axis, but each sample is a scalar \
                     (shape []); hint: give it samples with a class axis"
                ),
            });
        }
        Ok(input.to_vec())
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn forward(&self, g: &mut Graph, x: NodeId, _params: &[NodeId]) -> Result<NodeId> {
        Ok(self.activation.apply(g, x)?)
    }

    fn forward_logits(
        &self,
        _g: &mut Graph,
        x: NodeId,
        _params: &[NodeId],
    ) -> Result<(NodeId, Activation)> {
        Ok((x, self.activation))
    }

    fn activation(&self) -> Activation {
        self.activation
    }

    fn config(&self) -> LayerConfig {
        LayerConfig::Activation(ActivationConfig {
            activation: self.activation,
            input_shape: self.input_shape.clone(),
        })
    }
}

/// The configuration of an [`ActivationLayer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivationConfig {
    /// The activation.
    pub activation: Activation,
    /// Declared per-sample input shape (first layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<Vec<usize>>,
}
