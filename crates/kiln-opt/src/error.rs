//! Errors of compilation and execution.

/// Errors raised by the compiler, the plan interpreter and backends.
#[derive(Debug, thiserror::Error)]
pub enum OptError {
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
    /// A variable (param) lookup or write failed.
    #[error("param `{name}`: {message}")]
    Param {
        /// Param name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The device or driver failed.
    #[error("backend: {0}")]
    Backend(String),
    /// Something the compiler cannot lower yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Result alias of the compiler.
pub type Result<T, E = OptError> = std::result::Result<T, E>;
