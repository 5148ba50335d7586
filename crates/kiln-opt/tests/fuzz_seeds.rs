//! The seed corpus of the `plan_body` fuzz target (`fuzz/fuzz_targets/plan_body.rs`): the
//! encoded bodies of real plans — the composite graphs and seeded random graphs of the test
//! kit, compiled for the reference interpreter and for a GPU-class device. `KILN_BLESS=1`
//! rewrites the files; otherwise the test checks that they are current, so a change of the
//! plan format cannot leave the fuzzer exploring stale bodies.

use kiln_opt::codec;
use kiln_opt::interp::CpuBackend;
use kiln_opt::testing::{composite_graphs, random_graph};
use kiln_opt::{compile, AdapterClass, Backend, CompileOptions, DeviceLimits};
use std::path::PathBuf;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let cpu = CpuBackend::new().limits();
    let gpu = DeviceLimits {
        adapter_class: AdapterClass::DiscreteGpu,
        ..cpu.clone()
    };
    let mut graphs: Vec<(String, kiln_ir::Graph)> = composite_graphs()
        .into_iter()
        .map(|(name, g, _)| (name, g))
        .collect();
    for seed in 0..24 {
        graphs.push((format!("random{seed}"), random_graph(seed, 12).0));
    }
    let mut out = vec![];
    for (name, g) in &graphs {
        for (class, limits) in [("cpu", &cpu), ("gpu", &gpu)] {
            let plan = compile(g, &CompileOptions::default(), limits).expect("test graphs compile");
            let file = codec::encode(&plan, 0).expect("encodes");
            let (_, at) = codec::read_header(&file).expect("own header");
            let clean: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            out.push((format!("seed-{clean}-{class}"), file[at..].to_vec()));
        }
    }
    out
}

#[test]
fn plan_body_seed_corpus_is_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../kiln-plan/tests/fixtures/plan_body_corpus");
    let seeds = seeds();
    if std::env::var("KILN_BLESS").is_ok() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, body) in &seeds {
            std::fs::write(dir.join(name), body).unwrap();
        }
    }
    for (name, body) in &seeds {
        let on_disk = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e} (KILN_BLESS=1 writes the seed corpus)"));
        assert!(
            on_disk == *body,
            "{name} is stale: regenerate with KILN_BLESS=1"
        );
    }
}
