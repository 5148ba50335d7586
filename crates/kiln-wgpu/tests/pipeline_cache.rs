//! The driver pipeline cache persists beside the plan cache: a load that creates pipelines
//! writes it; a second backend starts from it; a corrupt file is ignored (never handed to the
//! driver) and rewritten. One test per binary: it sets `KILN_CACHE_DIR`.

use kiln_ir::{DType, Graph};
use kiln_opt::{compile, Backend, CompileOptions, HostTensor};
use kiln_wgpu::test_backend;
use std::sync::Arc;

fn run(b: &mut kiln_wgpu::WgpuBackend) -> Vec<f32> {
    let mut g = Graph::new();
    let x = g.input("x", [4, 8], DType::F32).unwrap();
    let w = g.param("w", [8, 3], DType::F32).unwrap();
    let y = g.matmul(x, w).unwrap();
    let s = g.softmax(y, 1).unwrap();
    g.output("s", s).unwrap();
    let plan = Arc::new(compile(&g, &CompileOptions::default(), &b.limits()).unwrap());
    let wv: Vec<f32> = (0..24).map(|i| 0.1 * i as f32 - 1.0).collect();
    b.write_param("w", &HostTensor::f32([8, 3], wv).unwrap())
        .unwrap();
    let mut exe = b.load(plan).unwrap();
    let xv: Vec<f32> = (0..32).map(|i| (i % 7) as f32 * 0.3).collect();
    let x = HostTensor::f32([4, 8], xv).unwrap();
    exe.run(&[&x]).unwrap().remove(0).to_f32()
}

#[test]
fn persists_reloads_and_survives_corruption() {
    let dir = std::env::temp_dir().join(format!("kiln-pc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("KILN_CACHE_DIR", &dir);
    let Some(mut a) = test_backend() else {
        return;
    };
    let Some(path) = a.pipeline_cache_path() else {
        eprintln!("the adapter keeps no pipeline cache (not Vulkan, or no PIPELINE_CACHE)");
        return;
    };
    assert!(path.starts_with(&dir), "{}", path.display());
    let first = run(&mut a);
    let bytes = std::fs::read(&path).expect("the load wrote the pipeline cache");
    assert_eq!(&bytes[..8], b"KILNPC01");
    drop(a);

    // a second backend starts from the file and computes the same bits
    let mut b = test_backend().unwrap();
    assert_eq!(run(&mut b), first);
    drop(b);

    // a corrupt file is ignored and rewritten by the next load that creates pipelines
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let mut c = test_backend().unwrap();
    assert_eq!(run(&mut c), first);
    let rewritten = std::fs::read(&path).unwrap();
    assert_ne!(rewritten, bad, "the corrupt cache was not replaced");
    let _ = std::fs::remove_dir_all(&dir);
}
