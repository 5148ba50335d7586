//! Errors of compilation, plan validation and execution: one enum for the whole pipeline, so
//! a caller matches on what went wrong, not on which crate noticed it.

use std::fmt;

/// Errors raised by the compiler, plan validation, the interpreters and every backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The graph is invalid.
    #[error(transparent)]
    Ir(#[from] kiln_ir::IrError),
    /// A tensor does not fit a device limit.
    #[error("tensor `{tensor}` needs {bytes} bytes but the device allows {limit} bytes per {what}; hint: {hint}")]
    Limit {
        /// Tensor (IR node) name.
        tensor: String,
        /// Bytes needed.
        bytes: u64,
        /// The limit.
        limit: u64,
        /// Which limit (`storage binding`, `buffer`).
        what: &'static str,
        /// Suggested fix.
        hint: String,
    },
    /// A run was given the wrong inputs.
    #[error("run: {0}")]
    Input(String),
    /// An input slot that holds indices (an Embedding or OneHot input) was fed a value that
    /// is not a whole number in `0..rows`.
    #[error("input `{input}`: element {element} is {value}, but this input takes whole-number indices in 0..{rows}; hint: raise the vocabulary size (input_dim / depth) or clip the indices")]
    IndexOutOfRange {
        /// The input slot.
        input: String,
        /// Flat index of the first bad element.
        element: usize,
        /// Its value.
        value: f64,
        /// The size of the index domain.
        rows: u32,
    },
    /// A `KILN_*` environment variable holds a value kiln does not accept.
    #[error(transparent)]
    Env(#[from] crate::env::EnvError),
    /// A variable (param) lookup or write failed.
    #[error("param `{name}`: {message}")]
    Param {
        /// Param name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A plan failed [`Plan::validate`](crate::Plan::validate): no backend runs it.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The device, its driver or a shader failed; the structure of the failure is kept.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The device or driver failed in a way without more structure.
    #[error("backend: {0}")]
    Backend(String),
    /// Something the compiler cannot lower yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Result alias of the plan contract (and of the compiler, which re-exports it).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why [`Plan::validate`](crate::Plan::validate) rejected a plan: the step and kernel at
/// fault, where known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid plan: {message}")]
pub struct PlanError {
    /// What is wrong, naming the step, kernel, buffer or slot.
    pub message: String,
}

impl PlanError {
    /// A plan error with this message.
    pub fn new(message: impl Into<String>) -> PlanError {
        PlanError {
            message: message.into(),
        }
    }
}

impl From<String> for PlanError {
    fn from(message: String) -> PlanError {
        PlanError { message }
    }
}

/// What kind of device failure a [`DeviceError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceErrorKind {
    /// No adapter, or the device could not be opened.
    Unavailable,
    /// The device ran out of memory.
    OutOfMemory,
    /// The driver or API rejected a call (wgpu validation).
    Validation,
    /// A generated or library shader failed validation or compilation.
    Shader,
    /// The device was lost, or waiting for it failed.
    Lost,
    /// Reading results back failed.
    ReadBack,
    /// Any other internal driver error.
    Internal,
}

impl fmt::Display for DeviceErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceErrorKind::Unavailable => "device unavailable",
            DeviceErrorKind::OutOfMemory => "out of device memory",
            DeviceErrorKind::Validation => "validation error",
            DeviceErrorKind::Shader => "shader error",
            DeviceErrorKind::Lost => "device lost",
            DeviceErrorKind::ReadBack => "read-back failed",
            DeviceErrorKind::Internal => "internal driver error",
        })
    }
}

/// A device, driver or shader failure: its kind, what kiln was doing (`context`: the kernel
/// label or operation), the driver's message, and the shader source when one was involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceError {
    /// The kind of failure.
    pub kind: DeviceErrorKind,
    /// What kiln was doing: a kernel label, "creating a pipeline", "waiting for the GPU"…
    pub context: String,
    /// The driver's or validator's message.
    pub message: String,
    /// The shader source, when a shader was involved.
    pub shader: Option<String>,
}

impl DeviceError {
    /// A device error without shader source.
    pub fn new(
        kind: DeviceErrorKind,
        context: impl Into<String>,
        message: impl Into<String>,
    ) -> DeviceError {
        DeviceError {
            kind,
            context: context.into(),
            message: message.into(),
            shader: None,
        }
    }

    /// The same error, carrying the shader source that caused it.
    pub fn with_shader(mut self, source: impl Into<String>) -> DeviceError {
        self.shader = Some(source.into());
        self
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backend: {} ({}): {}",
            self.kind, self.context, self.message
        )?;
        if let Some(s) = &self.shader {
            write!(f, "\n--- shader ---\n{s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DeviceError {}
