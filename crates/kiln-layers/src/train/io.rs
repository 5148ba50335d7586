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

use super::Sequential;
// The layer configurations live next to their layers; they stay reachable here, where the
// model file format is described (`kiln_layers::io::DenseConfig`...).
pub use crate::layers::{
    ActivationConfig, DenseConfig, DropoutConfig, FlattenConfig, InputLayerConfig, LayerConfig,
};
use crate::layers::{Loss, Metric, OptimizerConfig};
use crate::{vars, LayerError, Result};
use kiln_opt::{Backend, HostTensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The format tag of kiln model files.
pub const MODEL_FORMAT: &str = "kiln-model-1";

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
            layers: self
                .stack
                .entries()
                .iter()
                .map(|e| e.layer.config())
                .collect(),
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
            .filter(|n| !vars::metrics::is_accumulator(n))
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
