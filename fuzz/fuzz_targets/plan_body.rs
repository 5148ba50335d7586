//! Fuzzes plan *bodies* past the checksum: the bytes are framed with a valid header and
//! checksum, decoded, validated and — when valid — loaded and run on the reference
//! interpreter (`kiln_plan::fuzzing::plan_body`). A validated plan must never panic.
//! `cargo +nightly fuzz run plan_body crates/kiln-plan/tests/fixtures/plan_body_corpus`;
//! the corpus is replayed by `cargo test -p kiln-plan --test fuzz_corpus`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kiln_plan::fuzzing::plan_body(data);
});
