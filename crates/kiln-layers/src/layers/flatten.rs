//! Keras `Flatten`.

use super::{check_declared, Layer, LayerConfig, ParamSpec};
use crate::{LayerError, Result};
use kiln_ir::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// Keras `Flatten`: each sample `[d1, d2, …]` becomes `[d1 · d2 · …]` (a reshape, no copy
/// for dense data, no weights).
#[derive(Clone, Debug, Default)]
pub struct Flatten {
    input_shape: Option<Vec<usize>>,
    features: usize,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Flatten::default()
    }
    /// Declares the per-sample input shape (Keras `input_shape=`; first layer only).
    pub fn input_shape(mut self, shape: &[usize]) -> Self {
        self.input_shape = Some(shape.to_vec());
        self
    }
}

impl Flatten {
    /// The layer described by `c`.
    pub fn from_config(c: &FlattenConfig) -> Self {
        let f = Flatten::new();
        match &c.input_shape {
            Some(s) => f.input_shape(s),
            None => f,
        }
    }
}

impl Layer for Flatten {
    fn kind(&self) -> &'static str {
        "Flatten"
    }

    fn declared_input(&self) -> Option<Vec<usize>> {
        self.input_shape.clone()
    }

    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        check_declared(name, "Flatten()", &self.input_shape, input)?;
        let features: usize = input.iter().product();
        if features == 0 {
            return Err(LayerError::Shape {
                layer: name.into(),
                message: format!(
                    "Flatten() receives samples of shape {input:?}, which hold no values; \
                     hint: every axis needs a size of at least 1"
                ),
            });
        }
        self.features = features;
        Ok(vec![features])
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn forward(&self, g: &mut Graph, x: NodeId, _params: &[NodeId]) -> Result<NodeId> {
        let batch = g.shape(x).dims().first().copied().unwrap_or(1);
        Ok(g.reshape(x, [batch, self.features])?)
    }

    fn config(&self) -> LayerConfig {
        LayerConfig::Flatten(FlattenConfig {
            input_shape: self.input_shape.clone(),
        })
    }
}

/// The configuration of a [`Flatten`] layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlattenConfig {
    /// Declared per-sample input shape (first layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<Vec<usize>>,
}
