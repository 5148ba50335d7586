//! Layers: the `Layer` trait, `Dense`, `Flatten`, `ActivationLayer` (Keras `Activation`) and
//! `InputLayer` (Keras `Input` / `InputLayer`).

use crate::{Activation, Initializer, LayerError, Regularizer, Result};
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
    /// Whether this is an [`InputLayer`]: it only declares the model's input shape, must
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
    fn config(&self) -> crate::io::LayerConfig;
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

/// What a layer may use in a training step beyond its weights: fresh noise per step.
///
/// The model keeps a step counter variable ([`TrainContext::STEP_VARIABLE`], advanced by
/// every training step); each [`TrainContext::uniform`] call draws from its own stream of
/// the model's seed at that step, so masks change from step to step, are the same bits on
/// every device, and a reloaded model continues the sequence.
pub struct TrainContext {
    step: Option<NodeId>,
    seed: u32,
    streams: u32,
}

impl TrainContext {
    /// Name of the step counter variable.
    pub const STEP_VARIABLE: &'static str = "noise/step";

    /// A context drawing from `seed` at the step held by the i32 `[1]` node `step`.
    pub fn new(step: NodeId, seed: u32) -> Self {
        TrainContext {
            step: Some(step),
            seed,
            streams: 0,
        }
    }

    /// A context that creates the model's step counter variable (and its increment) in the
    /// graph the first time noise is drawn: a training step without dropout has none.
    pub fn lazy(seed: u32) -> Self {
        TrainContext {
            step: None,
            seed,
            streams: 0,
        }
    }

    fn step(&mut self, g: &mut Graph) -> Result<NodeId> {
        if let Some(s) = self.step {
            return Ok(s);
        }
        // f32 like every saved variable (exact up to 2^24 steps)
        let step = g.param(Self::STEP_VARIABLE, [1], kiln_ir::DType::F32)?;
        let one = g.full(1.0, [1], kiln_ir::DType::F32);
        let next = g.add(step, one)?;
        g.assign(step, next)?;
        let step = g.cast(step, kiln_ir::DType::I32)?;
        self.step = Some(step);
        Ok(step)
    }

    /// Uniform `[0, 1)` noise of `shape`, from a stream no other call of this step uses.
    pub fn uniform(&mut self, g: &mut Graph, shape: &[usize]) -> Result<NodeId> {
        let step = self.step(g)?;
        self.streams += 1;
        let key = kiln_ir::random::hash32(self.seed ^ kiln_ir::random::hash32(self.streams));
        Ok(g.random_uniform(key, step, shape.to_vec())?)
    }

    /// An inverted-dropout mask of `shape`: `1 / (1 - rate)` where kept, 0 where dropped
    /// (each element dropped with probability `rate`), as Keras scales at training time.
    pub fn dropout_mask(&mut self, g: &mut Graph, shape: &[usize], rate: f64) -> Result<NodeId> {
        let u = self.uniform(g, shape)?;
        let r = g.scalar(rate);
        let keep = g.binary(kiln_ir::BinaryOp::Ge, u, r)?;
        Ok(g.mul_scalar(keep, 1.0 / (1.0 - rate))?)
    }
}

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

    fn config(&self) -> crate::io::LayerConfig {
        crate::io::LayerConfig::Dropout(crate::io::DropoutConfig { rate: self.rate })
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

impl Layer for Dense {
    fn kind(&self) -> &'static str {
        "Dense"
    }

    fn config(&self) -> crate::io::LayerConfig {
        crate::io::LayerConfig::Dense(crate::io::DenseConfig {
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
fn check_declared(
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

    fn config(&self) -> crate::io::LayerConfig {
        crate::io::LayerConfig::Flatten(crate::io::FlattenConfig {
            input_shape: self.input_shape.clone(),
        })
    }
}

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

    fn config(&self) -> crate::io::LayerConfig {
        crate::io::LayerConfig::Activation(crate::io::ActivationConfig {
            activation: self.activation,
            input_shape: self.input_shape.clone(),
        })
    }
}

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

    fn config(&self) -> crate::io::LayerConfig {
        crate::io::LayerConfig::InputLayer(crate::io::InputLayerConfig {
            input_shape: self.shape.clone(),
        })
    }
}
