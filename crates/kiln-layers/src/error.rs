//! Errors of the layer API.

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
    /// Graphviz (`dot`), needed by `plot_model`, is missing or failed.
    #[error("plot_model: {0}")]
    Graphviz(String),
    /// Graph construction failed.
    #[error(transparent)]
    Ir(#[from] kiln_ir::IrError),
    /// Compilation or execution failed.
    #[error(transparent)]
    Opt(#[from] kiln_opt::OptError),
}

/// Result alias of the layer API.
pub type Result<T, E = LayerError> = std::result::Result<T, E>;
