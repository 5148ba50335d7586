//! The `kiln` tool on real files: compile a saved model ahead of time, inspect the plan, run
//! it on NumPy inputs with only the plan and the weights file, manage the cache; and clear
//! errors for bad arguments and files.

mod common;

use kiln::opt::interp::CpuBackend;
use kiln::{Activation, Dense, HostTensor, Loss, Metric, Sequential, Sgd};
use std::path::{Path, PathBuf};
use std::process::Command;

fn kiln(args: &[&str], cache: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_CACHE_DIR", cache)
        .output()
        .expect("the kiln binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn workdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn compile_inspect_run_a_saved_model_without_its_definition() {
    let dir = workdir("run");
    let cache = dir.join("cache");
    let mut m = Sequential::new(Box::new(CpuBackend::new())).seed(2);
    m.add(Dense::new(4).activation(Activation::Tanh).input_dim(3))
        .unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    m.compile(
        Loss::CategoricalCrossentropy,
        Sgd::default(),
        &[Metric::Accuracy],
    )
    .unwrap();
    let model = dir.join("model.safetensors");
    m.save(&model).unwrap();
    std::fs::write(dir.join("model.json"), m.to_json()).unwrap();
    let x = HostTensor::f32([5, 3], (0..15).map(|i| i as f32 / 7.0 - 1.0).collect()).unwrap();
    kiln::npy::write(&dir.join("x.npy"), &x).unwrap();
    let want = m.predict(&x, 5).unwrap();

    let plan = dir.join("predict.kplan");
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let (ok, out, err) = kiln(
        &[
            "--cpu",
            "compile",
            &p(&model),
            "--batch",
            "5",
            "--mode",
            "predict",
            "-o",
            &p(&plan),
        ],
        &cache,
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("dispatches per run"), "{out}");
    let (ok, out, err) = kiln(&["inspect", &p(&plan)], &cache);
    assert!(
        ok && out.contains("input  x") && out.contains("kernels") && out.contains("memory plan"),
        "{out}{err}"
    );
    let (ok, out, _) = kiln(&["inspect", &p(&plan), "--dot"], &cache);
    assert!(ok && out.starts_with("digraph plan"), "{out}");
    let y = dir.join("y.npy");
    let (ok, out, err) = kiln(
        &[
            "--cpu",
            "run",
            &p(&plan),
            "--weights",
            &p(&model),
            "--input",
            &format!("x={}", p(&dir.join("x.npy"))),
            "--output",
            &p(&y),
        ],
        &cache,
    );
    assert!(ok, "{out}{err}");
    let got = kiln::npy::read(&y).unwrap();
    assert_eq!(
        got, want,
        "the plan run by the tool differs from the model's predict"
    );
    // the JSON structure compiles too (fresh weights, same plan shape)
    let (ok, out, err) = kiln(
        &[
            "--cpu",
            "compile",
            &p(&dir.join("model.json")),
            "--batch",
            "8",
            "--mode",
            "train",
            "-o",
            &p(&dir.join("train.kplan")),
        ],
        &cache,
    );
    assert!(ok, "{out}{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_and_files_are_clear_errors() {
    let dir = workdir("errors");
    let cache = dir.join("cache");
    let p = |s: &str| dir.join(s).to_str().unwrap().to_string();
    std::fs::write(dir.join("junk.kplan"), b"definitely not a plan").unwrap();
    let (ok, _, err) = kiln(&["inspect", &p("junk.kplan")], &cache);
    assert!(
        !ok && err.contains("junk.kplan") && err.contains("not a kiln plan file"),
        "{err}"
    );
    let (ok, _, err) = kiln(&["inspect", &p("missing.kplan")], &cache);
    assert!(!ok && err.contains("missing.kplan"), "{err}");
    let (ok, _, err) = kiln(
        &[
            "--cpu",
            "compile",
            &p("nomodel.safetensors"),
            "--batch",
            "2",
            "-o",
            &p("o.kplan"),
        ],
        &cache,
    );
    assert!(!ok && err.contains("nomodel.safetensors"), "{err}");
    let (ok, _, err) = kiln(&["compile", "--batch", "0", "x", "-o", "y"], &cache);
    assert!(!ok && err.contains("batch"), "{err}");
    let (ok, _, err) = kiln(&["frobnicate"], &cache);
    assert!(!ok && err.contains("frobnicate"), "{err}");
    std::fs::write(dir.join("bad.npy"), b"\x93NUMPY\x01\x00").unwrap();
    assert!(kiln::npy::read(&dir.join("bad.npy")).is_err());
    // cache management on an empty cache
    let (ok, out, err) = kiln(&["cache", "verify"], &cache);
    assert!(ok && out.contains("0 plans, 0 bad"), "{out}{err}");
    let (ok, out, _) = kiln(&["cache", "list"], &cache);
    assert!(ok && out.contains("0 plans"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn npy_round_trip() {
    let dir = workdir("npy");
    for t in [
        HostTensor::f32([2, 3], vec![1.0, -2.5, 3.0, 0.0, f32::MIN_POSITIVE, 1e30]).unwrap(),
        HostTensor::i32([4], vec![1, -2, 3, i32::MAX]).unwrap(),
        HostTensor::f32([], vec![7.0]).unwrap(),
    ] {
        let p = dir.join("t.npy");
        kiln::npy::write(&p, &t).unwrap();
        assert_eq!(kiln::npy::read(&p).unwrap(), t);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Resuming training from plan files alone: `kiln train` on a train-step plan and a saved
/// model gives bit-for-bit the weights and optimizer state of `fit` on the model itself
/// (same device, same batches in order).
#[test]
fn train_from_a_plan_file_matches_fit() {
    let dir = workdir("train");
    let cache = dir.join("cache");
    let (model, x, y) = common::train_setup(&dir, 8);
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let plan = dir.join("train.kplan");
    let (ok, out, err) = kiln(
        &[
            "--cpu",
            "compile",
            &p(&model),
            "--batch",
            "4",
            "--mode",
            "train",
            "-o",
            &p(&plan),
        ],
        &cache,
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kiln(&["inspect", &p(&plan)], &cache);
    assert!(ok, "{out}{err}");
    let names: Vec<String> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("input  "))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(names.len(), 2, "{out}");
    let trained = dir.join("trained.safetensors");
    let (ok, out, err) = kiln(
        &[
            "--cpu",
            "train",
            &p(&plan),
            "--weights",
            &p(&model),
            "--input",
            &format!("{}={}", names[0], p(&dir.join("x.npy"))),
            "--input",
            &format!("{}={}", names[1], p(&dir.join("y.npy"))),
            "--epochs",
            "3",
            "-o",
            &p(&trained),
        ],
        &cache,
    );
    assert!(ok && out.contains("epoch 3/3: 2 steps of 4"), "{out}{err}");

    // the same training in-process, batches in order
    let mut r = kiln::load_model(&model, Box::new(CpuBackend::new())).unwrap();
    r.fit(
        &x,
        &y,
        kiln::Fit {
            epochs: 3,
            batch_size: 4,
            shuffle: false,
            verbose: false,
            ..kiln::Fit::default()
        },
    )
    .unwrap();
    let mut t = kiln::load_model(&trained, Box::new(CpuBackend::new())).unwrap();
    assert_eq!(t.get_weights().unwrap(), r.get_weights().unwrap());
    let (a, b) = (
        t.read_variable("optimizer/iterations").unwrap(),
        r.read_variable("optimizer/iterations").unwrap(),
    );
    assert_eq!(a, b);
    assert_eq!(a.to_f32(), vec![6.0]);
    // every saved variable (weights, Adam's slots, hyper-parameters) equals fit's
    let saved = kiln::saved_variables(&std::fs::read(&trained).unwrap()).unwrap();
    assert!(
        saved
            .iter()
            .any(|(n, _)| n.contains("adam") || n.contains("slot") || n.contains("/m")),
        "{:?}",
        saved.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    for (name, t) in saved {
        assert_eq!(t, r.read_variable(&name).unwrap(), "variable {name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
