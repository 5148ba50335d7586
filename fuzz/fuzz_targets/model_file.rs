//! Fuzzes model files: any bytes loaded as a model (`kiln_layers::fuzzing::model_file`, on
//! the reference interpreter) give a model or a typed error, never a panic.
//! `cargo +nightly fuzz run model_file crates/kiln-layers/tests/fixtures/model_file_corpus`;
//! the corpus is replayed by `cargo test -p kiln-layers --test model_file_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kiln_layers::fuzzing::model_file(data);
});
