//! The harness of the `model_file` fuzz target (`fuzz/`), shared with the test that replays
//! its corpus (`tests/model_file_corpus.rs`), so that CI runs exactly what the fuzzer ran.
//!
//! The promise it checks: **loading any bytes as a model file returns a model or a typed
//! error, never a panic**, and never allocates more than the file's own tensors (every
//! weight the structure declares must be in the file before anything is allocated).

use crate::{LayerError, Result};
use kiln_opt::interp::CpuBackend;

/// What happened to one fuzz input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A typed model-file error (not safetensors, checksum, missing tensor...).
    Rejected,
    /// Another typed error (a structure that builds no valid model...).
    OtherError,
    /// A model loaded.
    Loaded,
}

/// Loads `bytes` as a model file onto the reference interpreter. Panics only on a kiln bug.
pub fn model_file(bytes: &[u8]) -> Outcome {
    match load(bytes) {
        Ok(()) => Outcome::Loaded,
        Err(LayerError::ModelFile { .. }) => Outcome::Rejected,
        Err(_) => Outcome::OtherError,
    }
}

fn load(bytes: &[u8]) -> Result<()> {
    let mut m = crate::load_model_from_bytes(bytes, Box::new(CpuBackend::new()))?;
    // what a user does next: look at it, read its weights
    let _ = m.to_json();
    m.get_weights()?;
    Ok(())
}
