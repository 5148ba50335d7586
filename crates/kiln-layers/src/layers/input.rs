//! Keras `Input` / `InputLayer`.

use super::{Layer, LayerConfig, ParamSpec};
use crate::{LayerError, Result};
use kiln_ir::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// Keras `Input(shape=…)` / `InputLayer`: declares the per-sample input shape of a model.
/// No weights, no computation; it must be the first layer, and like Keras `summary()` shows
/// no row for it (plots do). Named `input_1` in the model.
#[derive(Clone, Debug)]
pub struct InputLayer {
    shape: Vec<usize>,
}

/// Keras's spelling: `Input::new(&[4])` is `InputLayer::new(&[4])`.
pub type Input = InputLayer;

impl InputLayer {
    /// Declares samples of `shape` (no batch axis): `InputLayer::new(&[28, 28])`.
    pub fn new(shape: &[usize]) -> Self {
        InputLayer {
            shape: shape.to_vec(),
        }
    }
    /// The declared per-sample shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
}

impl Layer for InputLayer {
    fn kind(&self) -> &'static str {
        "InputLayer"
    }

    fn declared_input(&self) -> Option<Vec<usize>> {
        Some(self.shape.clone())
    }

    fn is_input(&self) -> bool {
        true
    }

    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        if input != self.shape.as_slice() {
            return Err(LayerError::Shape {
                layer: name.into(),
                message: format!(
                    "InputLayer({:?}) receives {input:?}; hint: an InputLayer must be the \
                     first layer",
                    self.shape
                ),
            });
        }
        if self.shape.contains(&0) {
            return Err(LayerError::Shape {
                layer: name.into(),
                message: format!(
                    "InputLayer shape {:?} has an axis of size 0; hint: every axis needs a \
                     size of at least 1",
                    self.shape
                ),
            });
        }
        Ok(self.shape.clone())
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn forward(&self, _g: &mut Graph, x: NodeId, _params: &[NodeId]) -> Result<NodeId> {
        Ok(x)
    }

    fn config(&self) -> LayerConfig {
        LayerConfig::InputLayer(InputLayerConfig {
            input_shape: self.shape.clone(),
        })
    }
}

/// The configuration of an [`InputLayer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputLayerConfig {
    /// Per-sample input shape.
    pub input_shape: Vec<usize>,
}
