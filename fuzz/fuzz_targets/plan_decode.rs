//! Fuzzes the plan decoder: any bytes must decode to a valid plan or a typed error — never
//! a panic, a huge allocation or a plan that fails validation.
//! `cargo +nightly fuzz run plan_decode fuzz/corpus` (seed corpus:
//! `crates/kiln-opt/tests/fixtures/decode_corpus`, replayed by `cargo test` in
//! `crates/kiln-opt/tests/plan_file.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(plan) = kiln_plan::codec::decode(data, None) {
        assert!(kiln_plan::validate::structure(&plan).is_ok());
    }
});
