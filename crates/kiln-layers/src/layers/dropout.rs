//! Keras `Dropout`.

use super::{Layer, LayerConfig, ParamSpec, TrainContext};
use crate::{LayerError, Result};
use kiln_ir::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// Keras `Dropout(rate)`: while training, each element is zeroed with probability `rate` and
/// the rest scaled by `1 / (1 - rate)`; the identity in evaluation and prediction. The mask
/// is drawn in-graph (`random_uniform`), new at every step.
#[derive(Clone, Debug)]
pub struct Dropout {
    rate: f64,
    input_shape: Option<Vec<usize>>,
}

impl Dropout {
    /// Dropout with the given rate in `[0, 1)`.
    pub fn new(rate: f64) -> Self {
        Dropout {
            rate,
            input_shape: None,
        }
    }
    /// The rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        "Dropout"
    }

    fn config(&self) -> LayerConfig {
        LayerConfig::Dropout(DropoutConfig { rate: self.rate })
    }

    fn declared_input(&self) -> Option<Vec<usize>> {
        self.input_shape.clone()
    }

    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(LayerError::Shape {
                layer: name.into(),
                message: format!("Dropout({}): the rate must be in [0, 1)", self.rate),
            });
        }
        Ok(input.to_vec())
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn forward(&self, _g: &mut Graph, x: NodeId, _params: &[NodeId]) -> Result<NodeId> {
        Ok(x)
    }

    fn forward_train(
        &self,
        g: &mut Graph,
        x: NodeId,
        _params: &[NodeId],
        ctx: &mut TrainContext,
    ) -> Result<NodeId> {
        if self.rate == 0.0 {
            return Ok(x);
        }
        let shape = g.shape(x).dims().to_vec();
        let mask = ctx.dropout_mask(g, &shape, self.rate)?;
        Ok(g.mul(x, mask)?)
    }
}

/// The configuration of a [`crate::Dropout`] layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DropoutConfig {
    /// Fraction of the inputs dropped while training.
    pub rate: f64,
}
