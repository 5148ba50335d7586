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
//!
//! ## Reproducible, checked files
//! - The bytes are a function of the model: tensors sorted by name, metadata keys sorted, no
//!   time stamps. Saving the same model twice writes the same file.
//! - **Integrity**: the metadata key `kiln_xxh3_64` holds a JSON object mapping every tensor
//!   name to the XXH3-64 hash (seed 0, 16 lower-case hex digits) of that tensor's data bytes
//!   as stored. [`load_model`] verifies every hash and refuses a file whose data does not
//!   match ([`ModelFileError::Checksum`], naming the tensor). Files without the key —
//!   written by another tool — still load; when present it must list exactly the file's
//!   tensors. Other safetensors readers ignore the key.
//! - **Completeness**: every weight the structure needs must be in the file with the shape
//!   the structure declares ([`ModelFileError::MissingTensor`],
//!   [`ModelFileError::TensorShape`]); nothing is left at its random initial value. Missing
//!   optimizer state starts as a fresh `compile` would start it.
//! - Only regular files are read ([`load_model`] refuses a FIFO or a device).

use super::Sequential;
// The layer configurations live next to their layers; they stay reachable here, where the
// model file format is described (`kiln_layers::io::DenseConfig`...).
pub use crate::layers::{
    ActivationConfig, DenseConfig, DropoutConfig, FlattenConfig, InputLayerConfig, LayerConfig,
};
use crate::layers::{Loss, Metric, OptimizerConfig};
use crate::{vars, LayerError, ModelFileError, Result};
use kiln_opt::{Backend, HostTensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The format tag of kiln model files.
pub const MODEL_FORMAT: &str = "kiln-model-1";
/// The metadata key of the per-tensor checksums (a JSON object: tensor name → XXH3-64 of its
/// data bytes, 16 hex digits).
pub const CHECKSUM_KEY: &str = "kiln_xxh3_64";

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

fn file_err(path: &Path, error: ModelFileError) -> LayerError {
    LayerError::ModelFile {
        path: path.to_path_buf(),
        error,
    }
}

/// The checksum kiln stores for a tensor's data bytes.
pub fn tensor_checksum(data: &[u8]) -> String {
    format!("{:016x}", twox_hash::XxHash3_64::oneshot(data))
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
    /// atomically, with a checksum per tensor (see the [module docs](self)). `load_model`
    /// restores a model that predicts bit-identically and resumes training exactly; the same
    /// model always writes the same bytes.
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
        let bytes = serialize(&tensors, &self.to_json()).map_err(|e| io_err(path, e))?;
        kiln_opt::cache::write_atomic(path, &bytes).map_err(|e| io_err(path, e))
    }
}

fn serialize(tensors: &[(String, Vec<usize>, Vec<u8>)], structure: &str) -> Result<Vec<u8>> {
    let meta = [
        ("format".to_string(), MODEL_FORMAT.to_string()),
        ("kiln_model".to_string(), structure.to_string()),
    ];
    model_file_bytes(tensors, meta)
}

/// The bytes of a model file holding the f32 `tensors` `(name, shape, little-endian data)`
/// and `metadata` (e.g. the metadata of the file a program updates, with its structure and
/// format tag): tensors sorted by name, metadata keys sorted, and a fresh checksum table
/// (`kiln_xxh3_64`, replacing any in `metadata`, which would be stale). The same input
/// always gives the same bytes (the `safetensors` crate writes its metadata in hash order).
/// Programs that rewrite a model file's tensors write it with this, so that it still loads.
pub fn model_file_bytes(
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    metadata: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<u8>> {
    for (name, shape, bytes) in tensors {
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel.and_then(|n| n.checked_mul(4)) != Some(bytes.len()) {
            return Err(LayerError::Data(format!(
                "model file: tensor `{name}` has {} bytes, not 4 per element of {shape:?}",
                bytes.len()
            )));
        }
    }
    let mut sorted: Vec<&(String, Vec<usize>, Vec<u8>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let checksums: BTreeMap<&str, String> = sorted
        .iter()
        .map(|(n, _, b)| (n.as_str(), tensor_checksum(b)))
        .collect();
    let json = |e: serde_json::Error| LayerError::Data(format!("model file header: {e}"));
    let mut meta: BTreeMap<String, String> = metadata.into_iter().collect();
    meta.insert(
        CHECKSUM_KEY.to_string(),
        serde_json::to_string(&checksums).map_err(json)?,
    );
    let mut header = format!(
        "{{\"__metadata__\":{}",
        serde_json::to_string(&meta).map_err(json)?
    );
    let mut offset = 0usize;
    for (name, shape, bytes) in &sorted {
        let end = offset + bytes.len();
        header.push_str(&format!(
            ",{}:{{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
            serde_json::to_string(name).map_err(json)?,
            serde_json::to_string(shape).map_err(json)?
        ));
        offset = end;
    }
    header.push('}');
    // the data starts 8-byte aligned, as the safetensors crate writes it
    let padded = header.len().next_multiple_of(8);
    let mut out = Vec::with_capacity(8 + padded + offset);
    out.extend((padded as u64).to_le_bytes());
    out.extend(header.as_bytes());
    out.resize(8 + padded, b' ');
    for (_, _, bytes) in &sorted {
        out.extend(bytes);
    }
    Ok(out)
}

/// A parsed model file: the metadata and every tensor, checksums verified.
struct ModelFile {
    meta: HashMap<String, String>,
    tensors: Vec<(String, HostTensor)>,
}

/// Parses a safetensors file of f32 tensors and verifies its checksums, if it has them.
fn parse(bytes: &[u8]) -> std::result::Result<ModelFile, ModelFileError> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| ModelFileError::NotSafetensors(e.to_string()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| ModelFileError::NotSafetensors(e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let checksums: Option<BTreeMap<String, String>> = match meta.get(CHECKSUM_KEY) {
        Some(j) => Some(serde_json::from_str(j).map_err(|e| {
            ModelFileError::Checksums(format!(
                "`{CHECKSUM_KEY}` is not a JSON object of strings: {e}"
            ))
        })?),
        None => None,
    };
    let mut tensors = vec![];
    // in file order, so errors name the same tensor every time
    for (name, view) in st.iter() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(ModelFileError::TensorDType {
                name: name.to_string(),
                dtype: format!("{:?}", view.dtype()),
            });
        }
        if let Some(sums) = &checksums {
            let stored = sums.get(name).ok_or_else(|| {
                ModelFileError::Checksums(format!("no checksum for tensor `{name}`"))
            })?;
            let actual = tensor_checksum(view.data());
            if *stored != actual {
                return Err(ModelFileError::Checksum {
                    name: name.to_string(),
                    stored: stored.clone(),
                    actual,
                });
            }
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let t = HostTensor::f32(view.shape().to_vec(), data)
            .map_err(|e| ModelFileError::NotSafetensors(format!("tensor `{name}`: {e}")))?;
        tensors.push((name.to_string(), t));
    }
    if let Some(sums) = &checksums {
        if let Some(extra) = sums.keys().find(|k| !tensors.iter().any(|(n, _)| n == *k)) {
            return Err(ModelFileError::Checksums(format!(
                "a checksum names tensor `{extra}`, which the file does not hold"
            )));
        }
    }
    Ok(ModelFile { meta, tensors })
}

/// The variables (name, tensor) stored in a model file's bytes, without building the model:
/// what a program that only has plan files needs to run them. Checksums are verified when
/// the file has them.
pub fn saved_variables(bytes: &[u8]) -> Result<Vec<(String, HostTensor)>> {
    parse(bytes)
        .map(|f| f.tensors)
        .map_err(|e| file_err(Path::new("<bytes>"), e))
}

/// Reads a whole regular file (a FIFO or a device is refused rather than read forever).
pub(crate) fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let not_regular =
        || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
    // stat before opening: opening a FIFO for reading blocks until a writer comes
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let mut f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // the length as opened: a file growing meanwhile cannot make this read unbounded
    f.by_ref().take(meta.len()).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Loads a model saved by [`Sequential::save`] onto `device`: structure, weights, optimizer
/// state and hyper-parameters. Errors are [`LayerError::ModelFile`]: a file that is not a
/// kiln model, a checksum mismatch, a weight the structure needs missing or of another shape.
pub fn load_model(path: impl AsRef<Path>, device: Box<dyn Backend>) -> Result<Sequential> {
    let path = path.as_ref();
    let bytes =
        read_regular(path).map_err(|e| file_err(path, ModelFileError::Io(e.to_string())))?;
    load_bytes(&bytes, path, device)
}

/// [`load_model`] from the file's bytes.
pub fn load_model_from_bytes(bytes: &[u8], device: Box<dyn Backend>) -> Result<Sequential> {
    load_bytes(bytes, Path::new("<bytes>"), device)
}

fn load_bytes(bytes: &[u8], path: &Path, device: Box<dyn Backend>) -> Result<Sequential> {
    let err = |e: ModelFileError| file_err(path, e);
    let file = parse(bytes).map_err(err)?;
    let format = file.meta.get("format");
    if format.map(String::as_str) != Some(MODEL_FORMAT) {
        return Err(err(ModelFileError::Format {
            found: format.cloned(),
            expected: MODEL_FORMAT,
        }));
    }
    let json = file.meta.get("kiln_model").ok_or_else(|| {
        err(ModelFileError::Structure(
            "no model structure in the metadata".into(),
        ))
    })?;
    let cfg: ModelConfig =
        serde_json::from_str(json).map_err(|e| err(ModelFileError::Structure(e.to_string())))?;
    // The layers first, without compiling (which writes initial weights): every weight the
    // structure declares must be in the file, with its shape, before anything is allocated.
    let structure = |e: LayerError| err(ModelFileError::Structure(e.to_string()));
    let mut m = Sequential::from_config(
        &ModelConfig {
            compile: None,
            ..cfg.clone()
        },
        device,
    )
    .map_err(structure)?;
    let stored: HashMap<&str, &HostTensor> =
        file.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    for (name, shape) in m.stack.weight_specs() {
        match stored.get(name.as_str()) {
            None => return Err(err(ModelFileError::MissingTensor { name, shape })),
            Some(t) if t.shape.dims() != shape.as_slice() => {
                return Err(err(ModelFileError::TensorShape {
                    found: t.shape.dims().to_vec(),
                    name,
                    declared: shape,
                }))
            }
            Some(_) => {}
        }
    }
    if let Some(c) = &cfg.compile {
        m.compile_boxed(c.loss, c.optimizer.clone().build(), &c.metrics)
            .map_err(structure)?;
    }
    m.init_weights()?; // every weight exists; the file overwrites them all
    let existing = m.device.param_names();
    for (name, t) in &file.tensors {
        if existing.contains(name) {
            let declared = m.device.read_param(name)?;
            if declared.shape != t.shape {
                return Err(err(ModelFileError::TensorShape {
                    name: name.clone(),
                    found: t.shape.dims().to_vec(),
                    declared: declared.shape.dims().to_vec(),
                }));
            }
        }
        m.device
            .write_param(name, t)
            .map_err(|e| io_err(path, format!("tensor `{name}`: {e}")))?;
    }
    Ok(m)
}
