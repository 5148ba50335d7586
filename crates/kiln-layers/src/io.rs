//! Model I/O: the structure as JSON (`to_json` / `from_json`) and the whole model — structure,
//! weights, optimizer state and hyper-parameters — as one safetensors file (`save` /
//! [`load_model`]).
//!
//! The model file is a standard safetensors file: every device variable of the model (layer
//! weights `dense_1/kernel`, optimizer slots `optimizer/dense_1/kernel/m`, hyper-parameters
//! `optimizer/learning_rate`, the step counter) is a little-endian f32 tensor under its
//! variable name, and the header metadata holds the structure JSON (`kiln_model`) and a format
//! tag. Any safetensors reader sees the weights; kiln restores the model and resumes training
//! exactly where it stopped. Files are written atomically (temp file, fsync, rename).

use crate::layers::{ActivationLayer, Flatten, InputLayer};
use crate::{
    Activation, Dense, Initializer, Layer, LayerError, Loss, Metric, OptimizerConfig, Regularizer,
    Result, Sequential,
};
use kiln_opt::{Backend, HostTensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The format tag of kiln model files.
pub const MODEL_FORMAT: &str = "kiln-model-1";

/// A layer as data (Keras's `class_name` + `config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class_name", content = "config")]
pub enum LayerConfig {
    /// [`Dense`]
    Dense(DenseConfig),
    /// [`crate::Lstm`]
    #[serde(rename = "LSTM")]
    Lstm(crate::LstmConfig),
    /// [`crate::Gru`]
    #[serde(rename = "GRU")]
    Gru(crate::GruConfig),
    /// [`crate::SimpleRnn`]
    #[serde(rename = "SimpleRNN")]
    SimpleRnn(crate::SimpleRnnConfig),
    /// [`crate::Embedding`]
    Embedding(crate::EmbeddingConfig),
    /// [`crate::OneHot`]
    OneHot(crate::OneHotConfig),
    /// [`Flatten`]
    Flatten(FlattenConfig),
    /// [`ActivationLayer`] (Keras's `Activation` layer)
    Activation(ActivationConfig),
    /// [`InputLayer`]
    InputLayer(InputLayerConfig),
    /// [`crate::Dropout`]
    Dropout(DropoutConfig),
}

/// The configuration of a [`crate::Dropout`] layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DropoutConfig {
    /// Fraction of the inputs dropped while training.
    pub rate: f64,
}

/// The configuration of a [`Flatten`] layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlattenConfig {
    /// Declared per-sample input shape (first layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<Vec<usize>>,
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

/// The configuration of an [`InputLayer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputLayerConfig {
    /// Per-sample input shape.
    pub input_shape: Vec<usize>,
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

impl LayerConfig {
    /// The layer this configuration describes.
    pub fn build(&self) -> Box<dyn Layer> {
        match self {
            LayerConfig::Dense(c) => {
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
                Box::new(d)
            }
            LayerConfig::Lstm(c) => Box::new(crate::Lstm::from_config(c.clone())),
            LayerConfig::Gru(c) => Box::new(crate::Gru::from_config(c.clone())),
            LayerConfig::SimpleRnn(c) => Box::new(crate::SimpleRnn::from_config(c.clone())),
            LayerConfig::Embedding(c) => Box::new(crate::Embedding::from_config(c.clone())),
            LayerConfig::OneHot(c) => Box::new(crate::OneHot::from_config(c.clone())),
            LayerConfig::Flatten(c) => {
                let mut f = Flatten::new();
                if let Some(s) = &c.input_shape {
                    f = f.input_shape(s);
                }
                Box::new(f)
            }
            LayerConfig::Activation(c) => {
                let mut a = ActivationLayer::new(c.activation);
                if let Some(s) = &c.input_shape {
                    a = a.input_shape(s);
                }
                Box::new(a)
            }
            LayerConfig::InputLayer(c) => Box::new(InputLayer::new(&c.input_shape)),
            LayerConfig::Dropout(c) => Box::new(crate::Dropout::new(c.rate)),
        }
    }
}

/// The training configuration given to `compile`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompileConfig {
    /// Loss.
    pub loss: Loss,
    /// Optimizer with its hyper-parameters.
    pub optimizer: OptimizerConfig,
    /// Metrics as requested.
    pub metrics: Vec<Metric>,
}

/// A whole model's structure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Always `Sequential`.
    pub class_name: String,
    /// The kiln version that wrote it.
    pub kiln_version: String,
    /// Seed of initialization and shuffling.
    pub seed: u64,
    /// Layers in order.
    pub layers: Vec<LayerConfig>,
    /// The `compile` arguments, when compiled.
    pub compile: Option<CompileConfig>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> LayerError {
    LayerError::Data(format!("{}: {e}", path.display()))
}

impl Sequential {
    /// The model's structure as data.
    pub fn config(&self) -> ModelConfig {
        ModelConfig {
            class_name: "Sequential".into(),
            kiln_version: kiln_opt::codec::KILN_VERSION.into(),
            seed: self.seed,
            layers: self.layers.iter().map(|e| e.layer.config()).collect(),
            compile: self.compiled.as_ref().map(|c| CompileConfig {
                loss: c.loss,
                optimizer: c.optimizer.config(),
                metrics: c.requested.clone(),
            }),
        }
    }

    /// The structure as JSON (Keras `to_json`): layers, their hyper-parameters and the
    /// `compile` arguments — no weights.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.config())
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Rebuilds a model from [`Sequential::to_json`]'s output on `device` (fresh weights).
    pub fn from_json(json: &str, device: Box<dyn Backend>) -> Result<Sequential> {
        let cfg: ModelConfig =
            serde_json::from_str(json).map_err(|e| LayerError::Data(format!("model JSON: {e}")))?;
        Sequential::from_config(&cfg, device)
    }

    /// Rebuilds a model from its configuration on `device` (fresh weights).
    pub fn from_config(cfg: &ModelConfig, device: Box<dyn Backend>) -> Result<Sequential> {
        if cfg.class_name != "Sequential" {
            return Err(LayerError::Data(format!(
                "model JSON: class `{}` is not Sequential",
                cfg.class_name
            )));
        }
        let mut m = Sequential::new(device).seed(cfg.seed);
        for l in &cfg.layers {
            m.add_boxed(l.build())?;
        }
        if let Some(c) = &cfg.compile {
            m.compile_boxed(c.loss, c.optimizer.clone().build(), &c.metrics)?;
        }
        Ok(m)
    }

    /// Saves structure, weights, optimizer state and hyper-parameters to one safetensors file,
    /// atomically. `load_model` restores a model that predicts bit-identically and resumes
    /// training exactly.
    pub fn save(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.get_weights()?; // makes sure the weights exist on the device
        let mut names: Vec<String> = self
            .device
            .param_names()
            .into_iter()
            .filter(|n| !n.starts_with("metrics/"))
            .collect();
        names.sort();
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = vec![];
        for n in &names {
            let t = self.device.read_param(n)?;
            let bytes: Vec<u8> = t.to_f32().iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push((n.clone(), t.shape.dims().to_vec(), bytes));
        }
        let views = tensors
            .iter()
            .map(|(n, s, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| io_err(path, e))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta: HashMap<String, String> = [
            ("format".to_string(), MODEL_FORMAT.to_string()),
            ("kiln_model".to_string(), self.to_json()),
        ]
        .into_iter()
        .collect();
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| io_err(path, e))?;
        kiln_opt::cache::write_atomic(path, &bytes).map_err(|e| io_err(path, e))
    }
}

/// The variables (name, tensor) stored in a model file's bytes, without building the model:
/// what a program that only has plan files needs to run them.
pub fn saved_variables(bytes: &[u8]) -> Result<Vec<(String, HostTensor)>> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| LayerError::Data(format!("not a safetensors file: {e}")))?;
    let mut out = vec![];
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(LayerError::Data(format!(
                "tensor `{name}` is {:?}, expected F32",
                view.dtype()
            )));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.push((name, HostTensor::f32(view.shape().to_vec(), data)?));
    }
    Ok(out)
}

/// Loads a model saved by [`Sequential::save`] onto `device`: structure, weights, optimizer
/// state and hyper-parameters.
pub fn load_model(path: impl AsRef<Path>, device: Box<dyn Backend>) -> Result<Sequential> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| io_err(path, format!("not a safetensors file: {e}")))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| io_err(path, e))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(MODEL_FORMAT) {
        return Err(io_err(
            path,
            format!(
                "not a kiln model file (format tag {:?}, expected {MODEL_FORMAT})",
                meta.get("format")
            ),
        ));
    }
    let json = meta
        .get("kiln_model")
        .ok_or_else(|| io_err(path, "no model structure in the metadata"))?;
    let mut m = Sequential::from_json(json, device)?;
    m.get_weights()?; // create the layer weights, then overwrite everything saved
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(io_err(
                path,
                format!("tensor `{name}` is {:?}, expected F32", view.dtype()),
            ));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let t = HostTensor::f32(view.shape().to_vec(), data).map_err(|e| io_err(path, e))?;
        m.device
            .write_param(&name, &t)
            .map_err(|e| io_err(path, format!("tensor `{name}`: {e}")))?;
    }
    Ok(m)
}
