//! Keras `Dense`.

use super::{Activation, Initializer, Layer, LayerConfig, ParamSpec, Regularizer};
use crate::{LayerError, Result};
use kiln_ir::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// A densely connected layer: `activation(x · kernel + bias)`.
#[derive(Clone, Debug)]
pub struct Dense {
    units: usize,
    activation: Activation,
    input_dim: Option<usize>,
    use_bias: bool,
    kernel_initializer: Initializer,
    bias_initializer: Initializer,
    kernel_regularizer: Option<Regularizer>,
    bias_regularizer: Option<Regularizer>,
    in_features: usize,
}

impl Dense {
    /// A dense layer with `units` outputs, linear activation, glorot-uniform kernel, zero bias.
    pub fn new(units: usize) -> Self {
        Dense {
            units,
            activation: Activation::Linear,
            input_dim: None,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            kernel_regularizer: None,
            bias_regularizer: None,
            in_features: 0,
        }
    }
    /// Sets the activation.
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    /// Declares the input width (needed on the first layer).
    pub fn input_dim(mut self, d: usize) -> Self {
        self.input_dim = Some(d);
        self
    }
    /// Enables or disables the bias.
    pub fn use_bias(mut self, b: bool) -> Self {
        self.use_bias = b;
        self
    }
    /// Sets the kernel initializer.
    pub fn kernel_initializer(mut self, i: Initializer) -> Self {
        self.kernel_initializer = i;
        self
    }
    /// Sets the bias initializer.
    pub fn bias_initializer(mut self, i: Initializer) -> Self {
        self.bias_initializer = i;
        self
    }
    /// Penalizes the kernel (Keras `kernel_regularizer`), e.g. `Regularizer::l2()`.
    pub fn kernel_regularizer(mut self, r: Regularizer) -> Self {
        self.kernel_regularizer = Some(r);
        self
    }
    /// Penalizes the bias (Keras `bias_regularizer`).
    pub fn bias_regularizer(mut self, r: Regularizer) -> Self {
        self.bias_regularizer = Some(r);
        self
    }
}

impl Dense {
    /// The layer described by `c`.
    pub fn from_config(c: &DenseConfig) -> Self {
        let mut d = Dense::new(c.units)
            .activation(c.activation)
            .use_bias(c.use_bias)
            .kernel_initializer(c.kernel_initializer)
            .bias_initializer(c.bias_initializer);
        if let Some(i) = c.input_dim {
            d = d.input_dim(i);
        }
        if let Some(r) = c.kernel_regularizer {
            d = d.kernel_regularizer(r);
        }
        if let Some(r) = c.bias_regularizer {
            d = d.bias_regularizer(r);
        }
        d
    }
}

impl Layer for Dense {
    fn kind(&self) -> &'static str {
        "Dense"
    }

    fn config(&self) -> LayerConfig {
        LayerConfig::Dense(DenseConfig {
            units: self.units,
            activation: self.activation,
            use_bias: self.use_bias,
            input_dim: self.input_dim,
            kernel_initializer: self.kernel_initializer,
            bias_initializer: self.bias_initializer,
            kernel_regularizer: self.kernel_regularizer,
            bias_regularizer: self.bias_regularizer,
        })
    }

    fn regularizers(&self) -> Vec<(usize, Regularizer)> {
        let mut v = vec![];
        if let Some(r) = self.kernel_regularizer {
            v.push((0, r));
        }
        if let (true, Some(r)) = (self.use_bias, self.bias_regularizer) {
            v.push((1, r));
        }
        v
    }

    fn declared_input(&self) -> Option<Vec<usize>> {
        self.input_dim.map(|d| vec![d])
    }

    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        if self.units == 0 {
            return Err(LayerError::Shape {
                layer: name.into(),
                message: "Dense(0): units must be at least 1".into(),
            });
        }
        if input.len() != 1 {
            return Err(LayerError::Shape {
                layer: name.into(),
                message: format!(
                    "Dense({}) expects a flat input [features], got {:?}; hint: add Flatten() before it",
                    self.units, input
                ),
            });
        }
        if let Some(d) = self.input_dim {
            if d != input[0] {
                return Err(LayerError::Shape {
                    layer: name.into(),
                    message: format!(
                        "Dense({}) declares input_dim {d} but receives {} features",
                        self.units, input[0]
                    ),
                });
            }
        }
        self.in_features = input[0];
        Ok(vec![self.units])
    }

    fn params(&self) -> Vec<ParamSpec> {
        let mut v = vec![ParamSpec {
            name: "kernel".into(),
            shape: vec![self.in_features, self.units],
            init: self.kernel_initializer,
            fan_in: self.in_features,
            fan_out: self.units,
        }];
        if self.use_bias {
            v.push(ParamSpec {
                name: "bias".into(),
                shape: vec![self.units],
                init: self.bias_initializer,
                fan_in: self.in_features,
                fan_out: self.units,
            });
        }
        v
    }

    fn forward(&self, g: &mut Graph, x: NodeId, params: &[NodeId]) -> Result<NodeId> {
        let (z, a) = self.forward_logits(g, x, params)?;
        Ok(a.apply(g, z)?)
    }

    fn forward_logits(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
    ) -> Result<(NodeId, Activation)> {
        let mut y = g.matmul(x, params[0])?;
        if self.use_bias {
            y = g.add(y, params[1])?;
        }
        Ok((y, self.activation))
    }

    fn activation(&self) -> Activation {
        self.activation
    }
}

/// The configuration of a [`Dense`] layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DenseConfig {
    /// Output width.
    pub units: usize,
    /// Activation.
    pub activation: Activation,
    /// Whether it has a bias.
    pub use_bias: bool,
    /// Declared input width (first layer).
    pub input_dim: Option<usize>,
    /// Kernel initializer.
    pub kernel_initializer: Initializer,
    /// Bias initializer.
    pub bias_initializer: Initializer,
    /// Kernel penalty (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_regularizer: Option<Regularizer>,
    /// Bias penalty (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias_regularizer: Option<Regularizer>,
}
