//! # kiln-ir: the graph
//!
//! kiln is define-then-run: a program is first *shaped* as a static [`Graph`], then compiled
//! (by `kiln-opt`) into a plan and replayed. This crate owns that graph and nothing else — it
//! knows nothing of passes, plans, devices or layers.
//!
//! ## Model
//! - [`Graph`] is an **append-only arena** of [`Node`]s addressed by the typed index
//!   [`NodeId`]. A node's operands already exist when it is appended, so arena order is a
//!   topological order and every pass is a forward loop.
//! - Shapes ([`Shape`]) and dtypes ([`DType`]) are **static and concrete**. A model compiles
//!   one plan per (batch size, mode).
//! - The op set ([`Op`]) is small and mathematical: unary/binary elementwise ops, `where`,
//!   reductions (keeping reduced axes as size 1), movement (reshape, permute, expand),
//!   batched `matmul`, `cast`, constants, inputs and params. Softmax, log-softmax and
//!   logsumexp are numerically stable compositions ([`ops`]).
//! - Binary ops see equal shapes: the builder inserts explicit `Reshape`/`Expand` for NumPy
//!   broadcasting, so autodiff undoes a broadcast by summing over expanded axes.
//! - Besides nodes, a graph has *roots*: named outputs and assignments `param <- value`
//!   (applied after all outputs are computed — the optimizer update of a training step).
//!
//! ## Invariants
//! - Every builder call checks shapes and dtypes and returns [`Result`]; errors
//!   ([`IrError`]) name the op, the node's scope path (e.g. `dense_1/matmul`), the shapes and,
//!   where one is known, a fix. User input never panics the builder.
//! - [`verify`] re-checks every structural rule; the compiler runs it after every pass.
//! - [`autodiff::grad`] only appends nodes; it never rewrites the forward graph.
//! - [`eval`] (f64) is the oracle all compiled plans are tested against.
//!
//! ```
//! use kiln_ir::{DType, Graph, eval};
//! let mut g = Graph::new();
//! let x = g.input("x", [2, 2], DType::F32).unwrap();
//! let w = g.param("w", [2, 1], DType::F32).unwrap();
//! let y = g.matmul(x, w).unwrap();
//! let loss = g.mean_all(y).unwrap();
//! let dw = kiln_ir::autodiff::grad(&mut g, loss, &[w]).unwrap()[0];
//! let mut feeds = eval::Feeds::new();
//! feeds.insert("x".into(), eval::Tensor::new([2, 2], vec![1., 2., 3., 4.]).unwrap());
//! feeds.insert("w".into(), eval::Tensor::new([2, 1], vec![0.5, -1.]).unwrap());
//! let out = eval::eval(&g, &[loss, dw], &feeds).unwrap();
//! assert_eq!(out[0].data, vec![-2.0]);      // mean of [0.5-2, 1.5-4]
//! assert_eq!(out[1].data, vec![2.0, 3.0]);  // column means of x
//! ```

#![warn(missing_docs)]

pub mod autodiff;
mod error;
pub mod eval;
mod graph;
mod op;
pub mod ops;
pub mod random;
pub mod recurrence;
pub mod testing;
mod types;
mod verify;

pub use error::{IrError, Result, ShapeList};
pub use graph::{Graph, Node, NodeId};
pub use op::{BinaryOp, Constant, Op, OpKind, ReduceOp, UnaryOp};
pub use ops::broadcast_shapes;
pub use types::{unravel, DType, Shape};
pub use verify::verify;
