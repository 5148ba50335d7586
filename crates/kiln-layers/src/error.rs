//! Errors of the layer API.

use std::path::PathBuf;

/// Errors raised while building, compiling or running a model.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A layer does not fit the shape it receives.
    #[error("{layer}: {message}")]
    Shape {
        /// Layer name (e.g. `dense_2`).
        layer: String,
        /// Expected vs actual, with a hint.
        message: String,
    },
    /// The model is used out of order (fit before compile, no layers...).
    #[error("model: {0}")]
    Usage(String),
    /// Training data does not fit the model.
    #[error("data: {0}")]
    Data(String),
    /// An argument is outside its domain (Keras's and PyTorch's `ValueError`): refused before
    /// anything runs.
    #[error("{function}: {argument} = {value}: {expected}")]
    InvalidArgument {
        /// The function or constructor given it (`predict`, `Adam`, `Dense`).
        function: String,
        /// The argument's name (`batch_size`, `learning_rate`, `input_dim`).
        argument: String,
        /// The value given.
        value: String,
        /// What it must be.
        expected: String,
    },
    /// Training produced a non-finite loss or variable.
    #[error("{0}")]
    NonFinite(NonFinite),
    /// A model file is unreadable, corrupt or does not fit its own structure.
    #[error("{}: {error}", path.display())]
    ModelFile {
        /// The file (`<bytes>` when loaded from memory).
        path: PathBuf,
        /// What is wrong with it.
        error: ModelFileError,
    },
    /// Graphviz (`dot`), needed by `plot_model`, is missing or failed.
    #[error("plot_model: {0}")]
    Graphviz(String),
    /// A data-parallel collective failed: a rank died or hangs (names the ranks).
    #[error("distributed training: {0}")]
    Distributed(#[from] crate::train::CollectiveError),
    /// Graph construction failed.
    #[error(transparent)]
    Ir(#[from] kiln_ir::IrError),
    /// Compilation or execution failed.
    #[error(transparent)]
    Opt(#[from] kiln_opt::OptError),
}

impl LayerError {
    /// An [`LayerError::InvalidArgument`].
    pub(crate) fn argument(
        function: &str,
        argument: &str,
        value: impl std::fmt::Display,
        expected: &str,
    ) -> LayerError {
        LayerError::InvalidArgument {
            function: function.into(),
            argument: argument.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

/// Where training first went non-finite (see `TerminateOnNan` and `KILN_CHECK_NUMERICS`).
#[derive(Clone, Debug, PartialEq)]
pub struct NonFinite {
    /// The epoch (0-based).
    pub epoch: usize,
    /// The training step (batch index within the epoch, 0-based) whose loss was first
    /// non-finite, when known.
    pub step: Option<usize>,
    /// The loss of that step, or the running mean that showed it.
    pub loss: f64,
    /// The first variable, in model order (weights layer by layer, then the optimizer
    /// state), holding a non-finite value after that step.
    pub variable: Option<String>,
    /// The label of the first kernel of the step's plan that produced a non-finite value
    /// (found by `KILN_CHECK_NUMERICS=1`, which replays the step on the reference
    /// interpreter).
    pub kernel: Option<String>,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "non-finite training: epoch {}", self.epoch)?;
        match self.step {
            Some(s) => write!(f, ", step {s}")?,
            None => write!(f, ", step unknown")?,
        }
        write!(f, ": loss {}", crate::progress::format_value(self.loss))?;
        if let Some(k) = &self.kernel {
            write!(f, "; first kernel producing a non-finite value: `{k}`")?;
        }
        match &self.variable {
            Some(v) => write!(f, "; first non-finite variable after it: `{v}`"),
            None => write!(f, "; every variable is still finite"),
        }
    }
}

/// What is wrong with a model file ([`LayerError::ModelFile`]).
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// Reading the file failed, or it is not a regular file.
    #[error("{0}")]
    Io(String),
    /// Not a safetensors file.
    #[error("not a safetensors file: {0}")]
    NotSafetensors(String),
    /// A safetensors file without kiln's format tag.
    #[error("not a kiln model file (format tag {found:?}, expected {expected})")]
    Format {
        /// The tag found.
        found: Option<String>,
        /// The tag kiln writes.
        expected: &'static str,
    },
    /// The structure JSON is missing or invalid.
    #[error("model structure: {0}")]
    Structure(String),
    /// A tensor the structure needs is not in the file.
    #[error("tensor `{name}` is missing: the model's structure needs it, shape {shape:?}")]
    MissingTensor {
        /// Variable name (`dense_1/kernel`).
        name: String,
        /// Its shape in the structure.
        shape: Vec<usize>,
    },
    /// A tensor's shape differs from the one its structure declares.
    #[error("tensor `{name}` has shape {found:?} in the file, the model's structure declares {declared:?}")]
    TensorShape {
        /// Variable name.
        name: String,
        /// Shape stored in the file.
        found: Vec<usize>,
        /// Shape the structure declares.
        declared: Vec<usize>,
    },
    /// A tensor is not f32.
    #[error("tensor `{name}` is {dtype}, expected F32")]
    TensorDType {
        /// Variable name.
        name: String,
        /// Its dtype in the file.
        dtype: String,
    },
    /// A tensor's data does not match its checksum: the file is corrupt.
    #[error("tensor `{name}`: checksum mismatch (stored {stored}, data hashes to {actual}): the file is corrupt")]
    Checksum {
        /// Variable name.
        name: String,
        /// Checksum stored in the metadata.
        stored: String,
        /// Checksum of the data.
        actual: String,
    },
    /// The checksum table is unreadable or does not cover exactly the file's tensors.
    #[error("checksums: {0}")]
    Checksums(String),
}

/// Result alias of the layer API.
pub type Result<T, E = LayerError> = std::result::Result<T, E>;
