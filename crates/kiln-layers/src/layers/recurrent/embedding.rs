//! Index inputs: Keras `Embedding`, and [`OneHot`].

use super::check_indices;
use crate::layers::{Initializer, Layer, LayerConfig, ParamSpec};
use crate::{LayerError, Result};
use kiln_ir::{DType, Graph, NodeId};
use serde::{Deserialize, Serialize};

/// Turns positive integers (word indices) into dense vectors (Keras `Embedding`): input
/// `[batch, input_length]` of indices (fed as f32 or i32), output
/// `[batch, input_length, output_dim]`. Indices outside `0..input_dim` give zero vectors.
#[derive(Clone, Debug)]
pub struct Embedding {
    cfg: EmbeddingConfig,
}

/// The configuration of an [`Embedding`] layer (Keras's names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingConfig {
    /// Vocabulary size (largest index + 1).
    pub input_dim: usize,
    /// Vector width.
    pub output_dim: usize,
    /// Sequence length (declares the input shape on the first layer).
    pub input_length: Option<usize>,
    /// Initializer of the table (Keras default uniform ±0.05).
    pub embeddings_initializer: Initializer,
}

impl Embedding {
    /// `Embedding(input_dim, output_dim)` with Keras's uniform(±0.05) initializer.
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Embedding {
            cfg: EmbeddingConfig {
                input_dim,
                output_dim,
                input_length: None,
                embeddings_initializer: Initializer::Uniform(-0.05, 0.05),
            },
        }
    }
    /// The layer described by `cfg`.
    pub fn from_config(cfg: EmbeddingConfig) -> Self {
        Embedding { cfg }
    }
    /// Declares the sequence length (needed on the first layer).
    pub fn input_length(mut self, n: usize) -> Self {
        self.cfg.input_length = Some(n);
        self
    }
    /// Sets the table initializer.
    pub fn embeddings_initializer(mut self, i: Initializer) -> Self {
        self.cfg.embeddings_initializer = i;
        self
    }
}

impl Layer for Embedding {
    fn kind(&self) -> &'static str {
        "Embedding"
    }

    fn config(&self) -> LayerConfig {
        LayerConfig::Embedding(self.cfg.clone())
    }

    fn declared_input(&self) -> Option<Vec<usize>> {
        self.cfg.input_length.map(|n| vec![n])
    }

    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let c = &self.cfg;
        let err = |message: String| LayerError::Shape {
            layer: name.into(),
            message,
        };
        if c.input_dim == 0 || c.output_dim == 0 {
            return Err(err(format!(
                "Embedding({}, {}): both sizes must be at least 1",
                c.input_dim, c.output_dim
            )));
        }
        if input.len() != 1 {
            return Err(err(format!(
                "Embedding expects a per-sample input [input_length] of indices, got {input:?}"
            )));
        }
        if let Some(n) = c.input_length {
            if n != input[0] {
                return Err(err(format!(
                    "Embedding declares input_length {n} but receives sequences of {}",
                    input[0]
                )));
            }
        }
        Ok(vec![input[0], c.output_dim])
    }

    fn check_input(&self, name: &str, x: &kiln_opt::HostTensor) -> Result<()> {
        check_indices(name, x, self.cfg.input_dim)
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec {
            name: "embeddings".into(),
            shape: vec![self.cfg.input_dim, self.cfg.output_dim],
            init: self.cfg.embeddings_initializer,
            fan_in: self.cfg.input_dim,
            fan_out: self.cfg.output_dim,
        }]
    }

    fn forward(&self, g: &mut Graph, x: NodeId, params: &[NodeId]) -> Result<NodeId> {
        let idx = if g.dtype(x) == DType::I32 {
            x
        } else {
            g.cast(x, DType::I32)?
        };
        Ok(g.gather(params[0], idx)?)
    }
}

/// One-hot encodes integer indices inside the model (no weights): input `[n]` of indices
/// (f32 or i32), output `[n, depth]`. Equivalent to feeding `to_categorical` vectors, without
/// holding them in host memory (the char-LSTM tutorial's one-hot `[N, 40, 57]` array is
/// 1.8 GB in f32; its indices are 32 MB). An index outside `0..depth` gives a zero vector.
#[derive(Clone, Debug)]
pub struct OneHot {
    cfg: OneHotConfig,
}

/// The configuration of a [`OneHot`] layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneHotConfig {
    /// Number of classes (vector width).
    pub depth: usize,
    /// Declared per-sample input length (first layer).
    pub input_length: Option<usize>,
}

impl OneHot {
    /// One-hot vectors of width `depth`.
    pub fn new(depth: usize) -> Self {
        OneHot {
            cfg: OneHotConfig {
                depth,
                input_length: None,
            },
        }
    }
    /// The layer described by `cfg`.
    pub fn from_config(cfg: OneHotConfig) -> Self {
        OneHot { cfg }
    }
    /// Declares the sequence length (needed on the first layer).
    pub fn input_length(mut self, n: usize) -> Self {
        self.cfg.input_length = Some(n);
        self
    }
}

impl Layer for OneHot {
    fn kind(&self) -> &'static str {
        "OneHot"
    }

    fn config(&self) -> LayerConfig {
        LayerConfig::OneHot(self.cfg.clone())
    }

    fn declared_input(&self) -> Option<Vec<usize>> {
        self.cfg.input_length.map(|n| vec![n])
    }

    fn build(&mut self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        if self.cfg.depth == 0 || input.len() != 1 {
            return Err(LayerError::Shape {
                layer: name.into(),
                message: format!(
                    "OneHot({}) expects depth >= 1 and a per-sample input [length] of indices, got {input:?}",
                    self.cfg.depth
                ),
            });
        }
        Ok(vec![input[0], self.cfg.depth])
    }

    fn check_input(&self, name: &str, x: &kiln_opt::HostTensor) -> Result<()> {
        check_indices(name, x, self.cfg.depth)
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }

    fn forward(&self, g: &mut Graph, x: NodeId, _params: &[NodeId]) -> Result<NodeId> {
        let d = self.cfg.depth;
        let eye: Vec<f64> = (0..d * d)
            .map(|i| if i / d == i % d { 1.0 } else { 0.0 })
            .collect();
        let table = g.constant(eye, [d, d], DType::F32)?;
        let idx = if g.dtype(x) == DType::I32 {
            x
        } else {
            g.cast(x, DType::I32)?
        };
        Ok(g.gather(table, idx)?)
    }
}
