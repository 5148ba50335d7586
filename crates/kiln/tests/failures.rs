//! The failure behaviour of the `kiln` tool (docs/FAILURES.md), one test per class: each
//! asserts the error (its kind, the names it must carry) and that nothing on disk was lost
//! or changed.

use kiln::opt::interp::CpuBackend;
use kiln::{Activation, Dense, Embedding, Flatten, HostTensor, Loss, Metric, Sequential, Sgd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Out {
    ok: bool,
    code: Option<i32>,
    out: String,
    err: String,
}

fn kiln_env(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.args(args).env("KILN_CACHE_DIR", cache);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("the kiln binary runs");
    Out {
        ok: o.status.success(),
        code: o.status.code(),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn kiln(args: &[&str], cache: &Path) -> Out {
    kiln_env(args, cache, &[])
}

fn workdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-fail-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Every file under `dir` with its bytes, sorted: "nothing on disk changed" is equality.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            } else {
                out.push((p, vec![]));
            }
        }
    }
    out.sort();
    out
}

/// A small compiled classifier saved to `dir/model.safetensors`, with x/y data files.
fn classifier(dir: &Path, optimizer: impl kiln::Optimizer + 'static) -> PathBuf {
    let mut m = Sequential::new(Box::new(CpuBackend::new())).seed(3);
    m.add(Dense::new(4).activation(Activation::Relu).input_dim(3))
        .unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    m.compile(
        Loss::CategoricalCrossentropy,
        optimizer,
        &[Metric::Accuracy],
    )
    .unwrap();
    let model = dir.join("model.safetensors");
    m.save(&model).unwrap();
    let x = HostTensor::f32(
        [8, 3],
        (0..24).map(|i| (i % 7) as f32 / 4.0 - 0.5).collect(),
    )
    .unwrap();
    let y = HostTensor::f32(
        [8, 2],
        (0..8)
            .flat_map(|i| if i % 2 == 0 { [1.0, 0.0] } else { [0.0, 1.0] })
            .collect(),
    )
    .unwrap();
    kiln::npy::write(&dir.join("x.npy"), &x).unwrap();
    kiln::npy::write(&dir.join("y.npy"), &y).unwrap();
    model
}

fn compile(model: &Path, mode: &str, batch: &str, out: &Path, cache: &Path) {
    let r = kiln(
        &[
            "--cpu",
            "compile",
            &s(model),
            "--batch",
            batch,
            "--mode",
            mode,
            "-o",
            &s(out),
        ],
        cache,
    );
    assert!(r.ok, "{}{}", r.out, r.err);
    assert!(r.out.contains(&format!("{mode} plan")), "{}", r.out);
}

/// The input slot names of a plan, from `kiln inspect`.
fn input_names(plan: &Path, cache: &Path) -> Vec<String> {
    let r = kiln(&["inspect", &s(plan)], cache);
    assert!(r.ok, "{}", r.err);
    r.out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("input  "))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

/// A copy of a model file without the variables `drop`, keeping or dropping its metadata.
fn without(model: &Path, drop: &[&str], keep_meta: bool, to: &Path) {
    let bytes = std::fs::read(model).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let kept: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| !drop.iter().any(|d| n.starts_with(d)))
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    assert!(kept.len() < st.len(), "nothing dropped from {drop:?}");
    let meta = meta.metadata().clone().unwrap_or_default();
    let meta = meta
        .into_iter()
        .filter(|(k, _)| keep_meta || k != "kiln_model");
    // written as a careful tool would: the checksum table covers the tensors kept
    std::fs::write(to, kiln::io::model_file_bytes(&kept, meta).unwrap()).unwrap();
}

#[test]
fn missing_weights_are_an_error_naming_them() {
    let dir = workdir("weights");
    let cache = dir.join("cache");
    let model = classifier(&dir, Sgd::default());
    let plan = dir.join("predict.kplan");
    compile(&model, "predict", "8", &plan, &cache);
    let before = snapshot(&dir);
    let x = format!("x={}", s(&dir.join("x.npy")));
    // no --weights at all
    let r = kiln(&["--cpu", "run", &s(&plan), "--input", &x], &cache);
    assert!(!r.ok && r.code == Some(1), "{}", r.out);
    assert!(
        r.err.contains("not supplied")
            && r.err.contains("dense_1/kernel")
            && r.err.contains("--weights"),
        "{}",
        r.err
    );
    // a weights file lacking one tensor
    let partial = dir.join("partial.safetensors");
    without(&model, &["dense_2/bias"], true, &partial);
    let before_partial = snapshot(&dir);
    let r = kiln(
        &[
            "--cpu",
            "run",
            &s(&plan),
            "--weights",
            &s(&partial),
            "--input",
            &x,
        ],
        &cache,
    );
    assert!(!r.ok, "{}", r.out);
    assert!(
        r.err.contains("dense_2/bias") && !r.err.contains("dense_1/kernel"),
        "{}",
        r.err
    );
    assert!(!r.err.contains("data:"), "internal prefix in: {}", r.err);
    assert_eq!(snapshot(&dir), before_partial);
    std::fs::remove_file(&partial).unwrap();
    assert_eq!(snapshot(&dir), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn train_initialises_absent_optimizer_state_like_compile_or_refuses() {
    let dir = workdir("optstate");
    let cache = dir.join("cache");
    let model = classifier(&dir, kiln::Adam::new(0.05));
    let plan = dir.join("train.kplan");
    compile(&model, "train", "4", &plan, &cache);
    let names = input_names(&plan, &cache);
    assert_eq!(names.len(), 2);
    let inputs = [
        format!("{}={}", names[0], s(&dir.join("x.npy"))),
        format!("{}={}", names[1], s(&dir.join("y.npy"))),
    ];
    let train = |weights: &Path, out: &Path| {
        kiln(
            &[
                "--cpu",
                "train",
                &s(&plan),
                "--weights",
                &s(weights),
                "--input",
                &inputs[0],
                "--input",
                &inputs[1],
                "-o",
                &s(out),
            ],
            &cache,
        )
    };
    // the reference: the full file
    let full = dir.join("full-out.safetensors");
    let r = train(&model, &full);
    assert!(r.ok, "{}{}", r.out, r.err);
    // no optimizer state at all, structure kept: initialised as a fresh compile would
    let stateless = dir.join("stateless.safetensors");
    without(&model, &["optimizer/"], true, &stateless);
    let out = dir.join("stateless-out.safetensors");
    let r = train(&stateless, &out);
    assert!(r.ok, "{}{}", r.out, r.err);
    let a = kiln::saved_variables(&std::fs::read(&full).unwrap()).unwrap();
    let b = kiln::saved_variables(&std::fs::read(&out).unwrap()).unwrap();
    for (name, t) in &a {
        let other = b.iter().find(|(n, _)| n == name);
        assert_eq!(other.map(|o| &o.1), Some(t), "variable {name}");
    }
    let lr = b
        .iter()
        .find(|(n, _)| n == "optimizer/learning_rate")
        .expect("lr written");
    assert_eq!(lr.1.to_f32(), vec![0.05]);
    // no optimizer state and no stored structure to take it from: refused, nothing written
    let bare = dir.join("bare.safetensors");
    without(&model, &["optimizer/"], false, &bare);
    let before = snapshot(&dir);
    let refused = dir.join("refused.safetensors");
    let r = train(&bare, &refused);
    assert!(!r.ok, "{}", r.out);
    assert!(
        r.err.contains("optimizer/learning_rate") && r.err.contains("no compiled optimizer"),
        "{}",
        r.err
    );
    assert!(!refused.exists());
    assert_eq!(snapshot(&dir), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plan_kind_decides_what_train_and_run_do() {
    let dir = workdir("kind");
    let cache = dir.join("cache");
    let model = classifier(&dir, Sgd::default());
    let predict = dir.join("predict.kplan");
    compile(&model, "predict", "4", &predict, &cache);
    let evaluate = dir.join("evaluate.kplan");
    compile(&model, "evaluate", "4", &evaluate, &cache);
    let r = kiln(&["inspect", &s(&predict)], &cache);
    assert!(r.out.contains("kind   predict"), "{}", r.out);
    let before = snapshot(&dir);
    for (plan, kind) in [(&predict, "predict"), (&evaluate, "evaluate")] {
        let names = input_names(plan, &cache);
        let mut args = vec![
            "--cpu".to_string(),
            "train".into(),
            s(plan),
            "--weights".into(),
            s(&model),
            "-o".into(),
            s(&dir.join("out.safetensors")),
        ];
        for (n, f) in names.iter().zip(["x.npy", "y.npy"]) {
            args.push("--input".into());
            args.push(format!("{n}={}", s(&dir.join(f))));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = kiln(&args, &cache);
        assert!(!r.ok, "{}", r.out);
        assert!(
            r.err.contains(&format!("a {kind} plan cannot train"))
                && r.err.contains("--mode train"),
            "{}",
            r.err
        );
        assert_eq!(snapshot(&dir), before, "a refused train wrote something");
    }
    // `kiln run` on a train plan says that it trains
    let train = dir.join("train.kplan");
    compile(&model, "train", "8", &train, &cache);
    let names = input_names(&train, &cache);
    let r = kiln(
        &[
            "--cpu",
            "run",
            &s(&train),
            "--weights",
            &s(&model),
            "--input",
            &format!("{}={}", names[0], s(&dir.join("x.npy"))),
            "--input",
            &format!("{}={}", names[1], s(&dir.join("y.npy"))),
        ],
        &cache,
    );
    assert!(r.ok, "{}", r.err);
    assert!(
        r.err.contains("train plan") && r.err.contains("updates the weights"),
        "{}",
        r.err
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn index_inputs_are_range_checked_by_every_entry_point() {
    let dir = workdir("indices");
    let cache = dir.join("cache");
    let mut m = Sequential::new(Box::new(CpuBackend::new())).seed(1);
    m.add(Embedding::new(20, 4).input_length(3)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(2)).unwrap();
    m.compile(Loss::MeanSquaredError, Sgd::default(), &[])
        .unwrap();
    let model = dir.join("model.safetensors");
    m.save(&model).unwrap();
    let plan = dir.join("predict.kplan");
    compile(&model, "predict", "2", &plan, &cache);
    let r = kiln(&["inspect", &s(&plan)], &cache);
    assert!(r.out.contains("indices in 0..20"), "{}", r.out);
    // a train plan too: the indices also feed the embedding gradient's scatter
    let train = dir.join("train.kplan");
    compile(&model, "train", "2", &train, &cache);
    let r = kiln(&["inspect", &s(&train)], &cache);
    assert_eq!(r.out.matches("indices in 0..20").count(), 1, "{}", r.out);
    let good = HostTensor::f32([2, 3], vec![0.0, 19.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let run = |t: &HostTensor| {
        kiln::npy::write(&dir.join("x.npy"), t).unwrap();
        kiln(
            &[
                "--cpu",
                "run",
                &s(&plan),
                "--weights",
                &s(&model),
                "--input",
                &s(&dir.join("x.npy")),
            ],
            &cache,
        )
    };
    let r = run(&good);
    assert!(r.ok, "{}", r.err);
    let i32_good = HostTensor::i32([2, 3], vec![0, 19, 3, 4, 5, 6]).unwrap();
    assert!(run(&i32_good).ok);
    for (bad, shown) in [
        (25.0, "25"),
        (-1.0, "-1"),
        (f32::NAN, "NaN"),
        (2.7, "2.7"),
        (20.0, "20"),
    ] {
        let mut v = vec![1.0; 6];
        v[4] = bad;
        let r = run(&HostTensor::f32([2, 3], v).unwrap());
        assert!(!r.ok, "{bad} was accepted: {}", r.out);
        assert!(
            r.err.contains("element 4")
                && r.err.contains(&format!("is {shown}"))
                && r.err.contains("0..20")
                && r.err.contains("input `"),
            "{bad}: {}",
            r.err
        );
    }
    // the typed error through the Rust API, on the interpreter and the native backend
    let (_, bytes) = (0, std::fs::read(&plan).unwrap());
    let p = std::sync::Arc::new(kiln::opt::codec::decode(&bytes, None).unwrap());
    assert_eq!(p.inputs[0].indices, Some(20));
    let devices: [Box<dyn kiln::Backend>; 2] = [
        Box::new(CpuBackend::new()),
        Box::new(kiln::cpu::NativeBackend::new()),
    ];
    for mut dev in devices {
        for (n, t) in kiln::saved_variables(&std::fs::read(&model).unwrap()).unwrap() {
            dev.write_param(&n, &t).unwrap();
        }
        let mut exe = dev.load(p.clone()).unwrap();
        let bad = HostTensor::f32([2, 3], vec![0.0, 1.0, 2.0, 25.0, 0.0, 0.0]).unwrap();
        match exe.run(&[&bad]) {
            Err(kiln::opt::OptError::IndexOutOfRange {
                element,
                value,
                rows,
                ..
            }) => assert_eq!((element, value, rows), (3, 25.0, 20)),
            other => panic!(
                "{}: expected IndexOutOfRange, got {other:?}",
                dev.describe()
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kiln_variables_are_parsed_strictly() {
    let dir = workdir("env");
    let cache = dir.join("cache");
    for (var, value, accepted) in [
        ("KILN_CACHE", "OFFF", "off"),
        ("KILN_CACHE", "", "off"),
        ("KILN_CACHE_DIR", "", "non-empty"),
        ("KILN_CACHE_MAX_MB", "abc", "whole number"),
        ("KILN_CACHE_MAX_MB", "-5", "whole number"),
        ("KILN_ADAPTER", "", "adapter name"),
        ("KILN_REQUIRE_GPU", "yes please", "off"),
    ] {
        let r = kiln_env(&["cache", "list"], &cache, &[(var, value)]);
        assert!(!r.ok, "{var}={value:?} was accepted: {}", r.out);
        assert!(
            r.err.contains(var) && r.err.contains(accepted),
            "{var}={value:?}: {}",
            r.err
        );
    }
    // accepted spellings
    let r = kiln_env(&["cache", "list"], &cache, &[("KILN_CACHE", "OFF")]);
    assert!(r.ok && r.out.contains("disabled"), "{}{}", r.out, r.err);
    // KILN_DUMP names passes
    let model = classifier(&dir, Sgd::default());
    let r = kiln_env(
        &[
            "--cpu",
            "compile",
            &s(&model),
            "--batch",
            "2",
            "-o",
            &s(&dir.join("p.kplan")),
        ],
        &cache,
        &[("KILN_DUMP", "FoldConstantz")],
    );
    assert!(
        !r.ok && r.err.contains("KILN_DUMP") && r.err.contains("FoldConstants"),
        "{}",
        r.err
    );
    assert!(!dir.join("p.kplan").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_are_read_with_bounded_work_and_never_block() {
    let dir = workdir("files");
    let cache = dir.join("cache");
    // a device: refused before it is read (no OOM)
    let t = std::time::Instant::now();
    let r = kiln(&["inspect", "/dev/zero"], &cache);
    assert!(!r.ok && r.err.contains("not a regular file"), "{}", r.err);
    assert!(t.elapsed().as_secs() < 20);
    // a FIFO: refused without opening it (opening would block until a writer comes)
    let fifo = dir.join("plan.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let r = kiln(&["inspect", &s(&fifo)], &cache);
        assert!(!r.ok && r.err.contains("not a regular file"), "{}", r.err);
        let r = kiln(&["--cpu", "run", &s(&fifo), "--input", &s(&fifo)], &cache);
        assert!(!r.ok && r.err.contains("not a regular file"), "{}", r.err);
        // a FIFO in the plan cache is rejected by `verify`, not waited on
        std::fs::create_dir_all(&cache).unwrap();
        Command::new("mkfifo")
            .arg(cache.join("0123.kplan"))
            .status()
            .unwrap();
        let r = kiln(&["cache", "verify"], &cache);
        assert!(!r.ok && r.out.contains("BAD"), "{}{}", r.out, r.err);
        let _ = std::fs::remove_file(cache.join("0123.kplan"));
    }
    // a large file that is not a plan: the magic is checked before the body is read
    let big = dir.join("big.kplan");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let r = kiln(&["inspect", &s(&big)], &cache);
    assert!(!r.ok && r.err.contains("not a kiln plan file"), "{}", r.err);
    std::fs::remove_file(&big).unwrap();
    // control bytes from a corrupt header are escaped, never written raw
    let mut junk = b"KILNPLAN".to_vec();
    junk.extend_from_slice(&kiln::opt::PLAN_FORMAT_VERSION.to_le_bytes());
    junk.push(6);
    junk.extend_from_slice(b"\x1b[31m\x07\xff");
    junk.extend_from_slice(&[0u8; 64]);
    std::fs::write(dir.join("junk.kplan"), &junk).unwrap();
    let r = kiln(&["inspect", &s(&dir.join("junk.kplan"))], &cache);
    assert!(!r.ok, "{}", r.out);
    assert!(
        !r.err.trim_end().chars().any(|c| c.is_control()) && r.err.contains("\\u{1b}"),
        "{:?}",
        r.err
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = workdir("pipe");
    let cache = dir.join("cache");
    let model = classifier(&dir, Sgd::default());
    let plan = dir.join("p.kplan");
    compile(&model, "train", "4", &plan, &cache);
    for args in [vec!["inspect", "--dot"], vec!["inspect"]] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.args(&args[..1])
            .arg(&plan)
            .args(&args[1..])
            .env("KILN_CACHE_DIR", &cache)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        drop(child.stdout.take()); // the reader goes away before the first write
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {:?} {err}", o.status);
        assert!(
            !err.contains("panicked") && err.is_empty(),
            "{args:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stale_temp_files_of_dead_processes_are_removed_on_save() {
    let dir = workdir("temps");
    let cache = dir.join("cache");
    let model = classifier(&dir, Sgd::default());
    // pid 4194305 is above Linux's largest pid: never alive
    let stale = dir.join(".out.kplan.4194305.0.tmp");
    let mine = dir.join(format!(".other.{}.3.tmp", std::process::id()));
    let unrelated = dir.join(".notes.tmp");
    for f in [&stale, &mine, &unrelated] {
        std::fs::write(f, b"partial").unwrap();
    }
    compile(&model, "predict", "2", &dir.join("out.kplan"), &cache);
    if cfg!(target_os = "linux") {
        assert!(
            !stale.exists(),
            "the dead process's temp file is still there"
        );
    }
    assert!(mine.exists() && unrelated.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cache_clear_reports_what_it_could_not_remove() {
    let dir = workdir("clear");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("00aa.kplan"), b"x").unwrap();
    std::fs::write(cache.join("00aa.key"), b"k").unwrap();
    // a directory named like an entry cannot be removed as a file (as root too)
    std::fs::create_dir_all(cache.join("00bb.kplan")).unwrap();
    let r = kiln(&["cache", "clear"], &cache);
    assert!(!r.ok && r.code == Some(1), "{}", r.out);
    assert!(r.out.contains("removed 1 plans"), "{}", r.out);
    assert!(
        r.err.contains("00bb.kplan") && r.err.contains("could not be removed"),
        "{}",
        r.err
    );
    assert!(!cache.join("00aa.kplan").exists() && !cache.join("00aa.key").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
