//! Replays the corpus of the `plan_body` fuzz target through the same harness
//! (`kiln_plan::fuzzing::plan_body`: frame, decode, validate, load and run on the reference
//! interpreter), plus seeded mutations of every entry, so CI runs what the fuzzer ran. The
//! corpus holds the seeds (`seed-*`, written by `kiln-opt`'s `fuzz_seeds` test) and any
//! input a fuzzing run found worth keeping.

use kiln_plan::fuzzing::{plan_body, Outcome};
use std::path::PathBuf;

/// A small deterministic generator (xorshift), so the mutations are the same every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

#[test]
fn plan_body_corpus_replays_without_panics() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan_body_corpus");
    let mut entries: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/plan_body_corpus exists")
        .map(|e| {
            let p = e.expect("dir entry").path();
            let bytes = std::fs::read(&p).expect("readable corpus entry");
            (p.display().to_string(), bytes)
        })
        .collect();
    entries.sort();
    assert!(entries.len() >= 40, "only {} corpus entries", entries.len());
    let mut ran = 0;
    for (name, body) in &entries {
        let outcome = plan_body(body);
        if name.contains("seed-") {
            assert_eq!(outcome, Outcome::Ran, "{name}: a seed plan must run");
        }
        ran += usize::from(outcome == Outcome::Ran);
    }
    // seeded mutations: byte changes in the body, which the checksum no longer hides
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut outcomes = [0usize; 4];
    for (_, body) in &entries {
        for _ in 0..40 {
            let mut m = body.clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(m.len());
                m[i] = match rng.below(4) {
                    0 => m[i].wrapping_add(1),
                    1 => m[i].wrapping_sub(1),
                    2 => 0,
                    _ => rng.below(256) as u8,
                };
            }
            outcomes[plan_body(&m) as usize] += 1;
        }
    }
    assert!(ran >= 40, "only {ran} corpus plans ran");
    // the mutations must reach the interpreter, not only the decoder
    assert!(outcomes[Outcome::Ran as usize] > 100, "{outcomes:?}");
}
