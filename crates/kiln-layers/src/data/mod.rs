//! **Data: host-side preparation.** Keras's preprocessing ([`preprocessing`]: labels,
//! normalization, padding, the text tokenizer, splits) and the bundled datasets
//! ([`datasets`]). Everything here works on [`kiln_opt::HostTensor`]s and plain vectors.
//!
//! ## Invariants
//! - Standalone: depends on neither `layers` nor `train` (only on `crate::error` for the
//!   conversion of its errors into [`crate::LayerError`]).
//! - No panics on user data: every function returns a typed error
//!   ([`preprocessing::PreprocessingError`], [`datasets::DatasetError`]).
//! - Seeded: a shuffle or split is a pure function of its seed.

pub mod datasets;
pub mod preprocessing;
