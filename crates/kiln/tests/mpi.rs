//! Data-parallel training over MPI (issue 14), run for real: `mpirun --allow-run-as-root
//! --oversubscribe -np 2|4 kiln-dp ...` on this machine, on the native CPU backend and on
//! lavapipe (wgpu). Weights after training equal a single process's on the same global
//! batches (plain SGD, Adam with clipnorm, Embedding + LSTM with dropout) within f32
//! tolerance; two identical multi-rank runs give the same bits; a killed rank ends the job
//! with an error naming it; a hung rank is named by the others' timeout.
//!
//! Needs the cargo feature `mpi` (the README's test command enables it) and OpenMPI; with
//! `KILN_REQUIRE_MPI=1` (set by `.ci/run`) a build without the feature fails instead of
//! running none of this.

#[test]
fn the_mpi_tests_are_built_when_required() {
    let built = cfg!(feature = "mpi");
    if std::env::var("KILN_REQUIRE_MPI").as_deref() == Ok("1") && !built {
        panic!(
            "KILN_REQUIRE_MPI=1 but kiln was built without the `mpi` feature: run \
             `cargo test --workspace --features kiln/mpi`"
        );
    }
}

#[cfg(feature = "mpi")]
mod common;

#[cfg(feature = "mpi")]
mod with_mpi {
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};
    use std::time::{Duration, Instant};

    const KILN_DP: &str = env!("CARGO_BIN_EXE_kiln-dp");

    fn mpirun(np: usize) -> Command {
        let mut c = Command::new("mpirun");
        c.args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            &np.to_string(),
        ]);
        // a fresh plan cache per test run is set by the caller's environment (.ci/run)
        c
    }

    fn run(mut c: Command, what: &str) -> Output {
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot start ({e}); is OpenMPI installed?"));
        assert!(
            out.status.success(),
            "{what}: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn weights(path: &Path) -> Vec<f32> {
        std::fs::read(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-mpi-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// Trains `model` on `np` ranks (0: one process without MPI); returns the weights.
    fn train(device: &str, model: &str, np: usize, tag: &str) -> Vec<f32> {
        let out = tmp(&format!("{device}-{model}-{np}-{tag}.bin"));
        let args = [
            "--device",
            device,
            "check",
            "--model",
            model,
            "--out",
            out.to_str().unwrap(),
        ];
        let what = format!("{model} on {np} ranks ({device})");
        if np == 0 {
            let mut c = Command::new(KILN_DP);
            c.args(args).arg("--single");
            run(c, &what);
        } else {
            let mut c = mpirun(np);
            c.arg(KILN_DP).args(args);
            run(c, &what);
        }
        weights(&out)
    }

    fn close(what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}: weight count");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            // f32 summation order differs (shards summed across ranks)
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{what}: weight element {i}: {a} vs one process {b}"
            );
        }
        assert!(got.iter().any(|v| *v != 0.0), "{what}: all-zero weights");
    }

    fn ranks_train_as_one_process(device: &str, runs: &[(&str, &[usize])]) {
        for (model, nps) in runs {
            let one = train(device, model, 0, "ref");
            for &np in *nps {
                let w = train(device, model, np, "a");
                close(&format!("{model}, {np} ranks, {device}"), &w, &one);
            }
        }
    }

    #[test]
    fn native_ranks_train_as_one_process() {
        ranks_train_as_one_process(
            "native",
            &[("sgd", &[2, 4]), ("adam", &[2, 4]), ("lstm", &[2, 4])],
        );
    }

    #[test]
    fn reference_interpreter_ranks_train_as_one_process() {
        ranks_train_as_one_process("reference", &[("adam", &[2]), ("lstm", &[2, 4])]);
    }

    #[test]
    fn lavapipe_ranks_train_as_one_process() {
        ranks_train_as_one_process(
            "wgpu",
            &[("sgd", &[2, 4]), ("adam", &[2, 4]), ("lstm", &[2, 4])],
        );
        let a = train("wgpu", "adam", 2, "bits-a");
        let b = train("wgpu", "adam", 2, "bits-b");
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "two identical 2-rank runs on lavapipe differ"
        );
    }

    #[test]
    fn identical_runs_give_the_same_bits() {
        for np in [2, 4] {
            let a = train("native", "lstm", np, "bits-a");
            let b = train("native", "lstm", np, "bits-b");
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "two identical {np}-rank runs differ"
            );
        }
    }

    /// `kiln train` under `mpirun -np 2`: the same command line as in one process; the
    /// ranks share each batch, rank 0 writes the model, whose weights and optimizer step
    /// equal `fit`'s in one process on the same batches in order (within f32 tolerance: the
    /// gradients are summed across ranks).
    #[test]
    fn kiln_train_under_mpirun_trains_as_fit() {
        use kiln::opt::interp::CpuBackend;
        use kiln::HostTensor;
        let dir = tmp("cli");
        std::fs::create_dir_all(&dir).unwrap();
        let p = |p: &Path| p.to_str().unwrap().to_string();
        let (model, x, y) = super::common::train_setup(&dir, 9);
        let plan = dir.join("train.kplan");
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.args([
            "--cpu",
            "compile",
            &p(&model),
            "--batch",
            "4",
            "--mode",
            "train",
        ])
        .args(["-o", &p(&plan)]);
        run(c, "kiln compile");
        let trained = dir.join("trained.safetensors");
        let mut c = mpirun(2);
        c.args([env!("CARGO_BIN_EXE_kiln"), "--cpu", "train", &p(&plan)])
            .args(["--weights", &p(&model)])
            .args(["--input", &format!("x={}", p(&dir.join("x.npy")))])
            .args(["--input", &format!("y={}", p(&dir.join("y.npy")))])
            .args(["--epochs", "3", "-o", &p(&trained)]);
        let out = run(c, "kiln train under mpirun");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("epoch 3/3: 2 steps of 4 on 2 ranks")
                && stdout.contains("(1 samples left over)"),
            "{stdout}"
        );
        let mut r = kiln::load_model(&model, Box::new(CpuBackend::new())).unwrap();
        let keep = HostTensor::f32([8, 3], x.to_f32()[..24].to_vec()).unwrap();
        let keep_y = HostTensor::f32([8, 2], y.to_f32()[..16].to_vec()).unwrap();
        r.fit(
            &keep,
            &keep_y,
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
        let flat = |w: Vec<HostTensor>| w.iter().flat_map(|t| t.to_f32()).collect::<Vec<_>>();
        close(
            "kiln train on 2 ranks",
            &flat(t.get_weights().unwrap()),
            &flat(r.get_weights().unwrap()),
        );
        assert_eq!(
            t.read_variable("optimizer/iterations").unwrap().to_f32(),
            vec![6.0]
        );
    }

    /// Starts a long traced run on `np` ranks, does `act(pid of rank victim)` once that rank
    /// has trained 5 steps, and returns (exit status, everything printed, seconds from the
    /// act to the end).
    fn fault(np: usize, victim: usize, signal: &str, timeout_s: &str) -> (bool, String, f64) {
        let mut c = mpirun(np);
        c.env("KILN_DIST_TIMEOUT", timeout_s)
            .arg(KILN_DP)
            .args(["check", "--model", "sgd", "--epochs", "1000000", "--trace"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("mpirun");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let err_thread = std::thread::spawn(move || {
            let mut s = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                s.push_str(&line);
                s.push('\n');
            }
            s
        });
        let mut pid = None;
        let mut printed = String::new();
        let mut acted: Option<Instant> = None;
        let started = Instant::now();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !line.contains(" step ") {
                printed.push_str(&line);
                printed.push('\n');
            }
            let w: Vec<&str> = line.split_whitespace().collect();
            if let ["rank", r, "pid", p] = w[..] {
                if r == victim.to_string() {
                    pid = Some(p.to_string());
                }
            }
            if let ["rank", r, "step", s] = w[..] {
                if acted.is_none() && r == victim.to_string() && s.parse::<u64>().unwrap_or(0) >= 5
                {
                    let p = pid.clone().expect("the victim printed its pid first");
                    // the shell's kill: no procps needed
                    let ok = Command::new("sh")
                        .args(["-c", &format!("kill {signal} {p}")])
                        .status()
                        .expect("kill")
                        .success();
                    assert!(ok, "kill {signal} {p}");
                    acted = Some(Instant::now());
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "the fault run did not end"
            );
        }
        let status = child.wait().expect("mpirun wait");
        printed.push_str(&err_thread.join().unwrap());
        let acted = acted.expect("the victim rank never reached step 5");
        (status.success(), printed, acted.elapsed().as_secs_f64())
    }

    #[test]
    fn a_killed_rank_ends_the_job_naming_it() {
        let (ok, printed, secs) = fault(4, 2, "-KILL", "20");
        assert!(!ok, "the job succeeded after rank 2 was killed:\n{printed}");
        assert!(
            printed.contains("rank 2"),
            "the error does not name rank 2:\n{printed}"
        );
        assert!(secs < 60.0, "the job took {secs:.1} s to end");
    }

    #[test]
    fn a_hung_rank_is_named_by_the_others() {
        // 10 s: long enough that a rank starved by the other tests' processes is not taken
        // for a hung one before the victim is stopped
        let (ok, printed, secs) = fault(2, 1, "-STOP", "10");
        assert!(!ok, "the job succeeded with rank 1 stopped:\n{printed}");
        assert!(
            printed.contains("waited 10.0 s for rank 1: it died or hangs"),
            "rank 0 did not name rank 1:\n{printed}"
        );
        assert!(secs < 60.0, "the job took {secs:.1} s to end");
    }
}
