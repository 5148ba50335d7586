//! The [`Layer`] trait every layer implements, and the helpers they share.

use super::{Activation, Initializer, LayerConfig, Regularizer, TrainContext};
use crate::{LayerError, Result};
use kiln_ir::{Graph, NodeId};
use kiln_opt::HostTensor;

/// A weight tensor a layer owns.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// Name inside the layer (`kernel`, `bias`); the model prefixes the layer name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Initializer.
    pub init: Initializer,
    /// Fan-in (for scaled initializers).
    pub fan_in: usize,
    /// Fan-out (for scaled initializers).
    pub fan_out: usize,
}

/// A layer of a [`crate::Sequential`] model. Shapes are per sample (no batch axis).
pub trait Layer {
    /// Keras class name (`Dense`).
    fn kind(&self) -> &'static str;
    /// The per-sample input shape this layer declares (first layer only), if any.
    fn declared_input(&self) -> Option<Vec<usize>> {
        None
    }
    /// Whether this is an [`InputLayer`](super::InputLayer): it only declares the model's input shape, must
    /// come first, and has no row in `summary()` (as in Keras).
    fn is_input(&self) -> bool {
        false
    }
    /// Fixes the layer to `input` (per sample) and returns its output shape. `name` is the
    /// layer's unique name, used in errors.
    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>>;
    /// Weights, in `get_weights` order.
    fn params(&self) -> Vec<ParamSpec>;
    /// Appends the layer to `g`: `x` is `[batch, ..input]`, `params` follow [`Layer::params`].
    fn forward(&self, g: &mut Graph, x: NodeId, params: &[NodeId]) -> Result<NodeId>;
    /// The final activation (losses use it to pick a stable formulation).
    fn activation(&self) -> Activation {
        Activation::Linear
    }
    /// The layer as a serializable configuration (its hyper-parameters, not its weights).
    fn config(&self) -> LayerConfig;
    /// Penalized weights as `(index, regularizer)` pairs, the index into [`Layer::params`].
    /// The model adds each penalty ([`Regularizer::penalty`]) to the loss (none by default).
    fn regularizers(&self) -> Vec<(usize, Regularizer)> {
        vec![]
    }
    /// The layer's output before its final activation, and that activation: losses on
    /// softmax/sigmoid outputs use the logits directly (numerically stable, as Keras does).
    fn forward_logits(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
    ) -> Result<(NodeId, Activation)> {
        Ok((self.forward(g, x, params)?, Activation::Linear))
    }
    /// Checks the model's input data when this layer is the first (a layer that takes
    /// indices checks they are whole numbers in range); `name` is the layer's name.
    fn check_input(&self, name: &str, x: &HostTensor) -> Result<()> {
        let _ = (name, x);
        Ok(())
    }
    /// Tells the layer the limits of the device its graphs will be compiled for (called when
    /// the layer joins a model). A recurrent layer uses them to choose between the fused
    /// persistent recurrence and the unrolled graph; the default ignores them.
    fn fit_device(&mut self, limits: &kiln_opt::DeviceLimits) {
        let _ = limits;
    }
    /// The layer in a training step, where it may draw noise from `ctx` (dropout); the
    /// default is [`Layer::forward`].
    fn forward_train(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
        ctx: &mut TrainContext,
    ) -> Result<NodeId> {
        let _ = ctx;
        self.forward(g, x, params)
    }
}

/// Shape as Keras prints it with the batch axis: `(None, 4)`, `(None,)` for scalars.
pub(crate) fn keras_shape(dims: &[usize]) -> String {
    if dims.is_empty() {
        return "(None,)".into();
    }
    let mut s = String::from("(None");
    for d in dims {
        s.push_str(&format!(", {d}"));
    }
    s.push(')');
    s
}

/// Checks a layer's declared `input_shape` (if any) against what it receives.
pub(crate) fn check_declared(
    name: &str,
    what: &str,
    declared: &Option<Vec<usize>>,
    input: &[usize],
) -> Result<()> {
    match declared {
        Some(d) if d.as_slice() != input => Err(LayerError::Shape {
            layer: name.into(),
            message: format!(
                "{what} declares input_shape {d:?} but receives {input:?} from the previous \
                 layer; hint: declare the input shape on the first layer only"
            ),
        }),
        _ => Ok(()),
    }
}
