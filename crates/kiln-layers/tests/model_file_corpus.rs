//! Replays the corpus of the `model_file` fuzz target (`fuzz/fuzz_targets/model_file.rs`)
//! through the same harness (`kiln_layers::fuzzing::model_file`), plus seeded byte
//! mutations of every seed: no input may panic. The corpus holds real small model files
//! (`seed-*`, written by `write_seed_corpus`, ignored: run it with `--ignored` to rewrite
//! them) and every crash input the fuzzer found (`crash-*`, kept as regressions).

use kiln_layers::fuzzing::{model_file, Outcome};
use kiln_layers::{
    Activation, Adam, Dense, Dropout, Embedding, Fit, Flatten, Gru, HostTensor, InputLayer, Loss,
    Lstm, Metric, RmsProp, Sequential, Sgd, SimpleRnn,
};
use kiln_opt::interp::CpuBackend;
use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model_file_corpus")
}

fn files() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus())
        .expect("tests/fixtures/model_file_corpus exists")
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn model_file_corpus_replays_without_panics() {
    let files = files();
    assert!(files.iter().filter(|(n, _)| n.starts_with("seed-")).count() >= 5);
    for (name, bytes) in &files {
        let outcome = model_file(bytes);
        if name.starts_with("seed-") {
            assert_eq!(outcome, Outcome::Loaded, "{name}");
        }
    }
}

#[test]
fn seeded_mutations_of_the_seeds_never_panic() {
    let mut rng = kiln_ir::random::Rng::new(0x6d6f_64656c);
    let mut outcomes = [0usize; 3];
    for (name, bytes) in files().iter().filter(|(n, _)| n.starts_with("seed-")) {
        for _ in 0..40 {
            let mut b = bytes.clone();
            let r = |rng: &mut kiln_ir::random::Rng, n: usize| rng.below(n.max(1));
            match r(&mut rng, 4) {
                0 => {
                    let i = r(&mut rng, b.len());
                    b[i] ^= 1 << r(&mut rng, 8);
                }
                1 => b.truncate(r(&mut rng, b.len())),
                2 => {
                    // inside the header (the structure JSON): a digit or a quote
                    let end = 8 + r(&mut rng, 400).min(b.len().saturating_sub(9));
                    b[end] = b"9\"0{}[],:"[r(&mut rng, 9)];
                }
                _ => {
                    let i = r(&mut rng, b.len());
                    let n = r(&mut rng, 16);
                    b.splice(i..i, std::iter::repeat_n(0xff, n));
                }
            }
            let o = model_file(&b);
            outcomes[o as usize] += 1;
            if o == Outcome::Loaded && b != *bytes {
                // a mutation that still loads changed the structure JSON only
                assert!(b.len() >= 8, "{name}");
            }
        }
    }
    // most mutations are refused as corrupt files, some still load
    assert!(outcomes[Outcome::Rejected as usize] > 0, "{outcomes:?}");
}

fn cpu() -> Box<dyn kiln_opt::Backend> {
    Box::new(CpuBackend::new())
}

fn save(mut m: Sequential, name: &str) {
    m.save(corpus().join(format!("seed-{name}.safetensors")))
        .unwrap();
}

/// Writes the seed corpus: small real model files of every layer kind and optimizer.
#[test]
#[ignore]
fn write_seed_corpus() {
    std::fs::create_dir_all(corpus()).unwrap();
    // a trained MLP with Adam state
    let mut m = Sequential::new(cpu()).seed(1);
    m.add(Dense::new(4).activation(Activation::Relu).input_dim(3))
        .unwrap();
    m.add(Dropout::new(0.25)).unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    m.compile(
        Loss::CategoricalCrossentropy,
        Adam::new(0.01),
        &[Metric::Accuracy],
    )
    .unwrap();
    let x = HostTensor::f32([4, 3], (0..12).map(|i| i as f32 / 6.0 - 1.0).collect()).unwrap();
    let y = HostTensor::f32([4, 2], vec![1., 0., 0., 1., 1., 0., 0., 1.]).unwrap();
    let fit = Fit {
        batch_size: 2,
        verbose: false,
        ..Fit::default()
    };
    m.fit(&x, &y, fit).unwrap();
    save(m, "mlp-adam");
    // uncompiled
    let mut m = Sequential::new(cpu());
    m.add(InputLayer::new(&[2, 2])).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(1)).unwrap();
    save(m, "flatten-uncompiled");
    // sequence layers
    let mut m = Sequential::new(cpu()).seed(2);
    m.add(Embedding::new(5, 3).input_length(4)).unwrap();
    m.add(Lstm::new(2)).unwrap();
    m.add(Dense::new(1).activation(Activation::Sigmoid))
        .unwrap();
    m.compile(Loss::BinaryCrossentropy, RmsProp::default(), &[])
        .unwrap();
    save(m, "embedding-lstm");
    let mut m = Sequential::new(cpu()).seed(3);
    m.add(Gru::new(2).input_shape(3, 2).return_sequences(true))
        .unwrap();
    m.add(SimpleRnn::new(2)).unwrap();
    m.compile(Loss::MeanSquaredError, Sgd::new(0.1).momentum(0.9), &[])
        .unwrap();
    save(m, "gru-simple-rnn");
    let mut m = Sequential::new(cpu()).seed(4);
    m.add(Dense::new(1).input_dim(1)).unwrap();
    m.compile(Loss::MeanAbsoluteError, Sgd::new(0.01), &[])
        .unwrap();
    save(m, "linear-sgd");
}
