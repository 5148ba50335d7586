//! The one structured error type of the IR.

use crate::{NodeId, Shape};

/// Errors raised while building, verifying, differentiating or evaluating a graph.
///
/// Every variant names the op and the node (its user-given name when it has one) so a
/// message points at the layer that caused it.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum IrError {
    /// Operand shapes do not fit the op.
    #[error("{op} `{node}`: {message} (got {got}){}", hint_suffix(.hint))]
    Shape {
        /// Op mnemonic, e.g. `matmul`.
        op: &'static str,
        /// Node name (scope path) the op would have had.
        node: String,
        /// What is wrong, including the expected shapes.
        message: String,
        /// The operand shapes that were given.
        got: ShapeList,
        /// A suggested fix, when one is known.
        hint: Option<String>,
    },
    /// Operand dtypes do not fit the op.
    #[error("{op} `{node}`: {message}")]
    DType {
        /// Op mnemonic.
        op: &'static str,
        /// Node name.
        node: String,
        /// Expected vs actual dtypes.
        message: String,
    },
    /// A node id that is not in this graph (or not before the node that uses it).
    #[error("{op}: node {id} does not exist in this graph (it has {len} nodes)")]
    UnknownNode {
        /// Op mnemonic.
        op: &'static str,
        /// The offending id.
        id: NodeId,
        /// Number of nodes in the graph.
        len: usize,
    },
    /// An invalid attribute (axis out of range, bad permutation, bad name...).
    #[error("{op} `{node}`: {message}")]
    Attribute {
        /// Op mnemonic.
        op: &'static str,
        /// Node name.
        node: String,
        /// What is wrong.
        message: String,
    },
    /// A structural invariant of the graph is broken (reported by `verify`).
    #[error("verify: node {id} ({op}): {message}")]
    Invalid {
        /// Node that breaks the invariant.
        id: NodeId,
        /// Op mnemonic.
        op: &'static str,
        /// The broken invariant.
        message: String,
    },
    /// Evaluation failed (missing feed, wrong feed shape...).
    #[error("eval: {0}")]
    Eval(String),
}

fn hint_suffix(h: &Option<String>) -> String {
    match h {
        Some(h) => format!("; hint: {h}"),
        None => String::new(),
    }
}

/// A list of shapes printed as `[2, 3] and [4, 5]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeList(pub Vec<Shape>);

impl std::fmt::Display for ShapeList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, " and ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

/// Result alias of the IR.
pub type Result<T, E = IrError> = std::result::Result<T, E>;
