//! kiln-bench: the benchmark workloads of issue 3, printed as a table and written as JSON.
//!
//! ```text
//! cargo run --release -p kiln-bench -- [--only NAME[,NAME]] [--json FILE]
//!     [--device native|wgpu|reference] [--cpu] [--quick]
//! ```
//!
//! Workloads (names for `--only`):
//! - `unit_circle`: the Keras tutorial MLP 2-3-3-2 (tanh, tanh, softmax; binary crossentropy;
//!   SGD 0.01), batch 5, 1000 samples: one epoch (200 steps) of `fit`, and the mean step.
//! - `mlp`: MLP 784-512-512-10 (relu, relu, softmax; categorical crossentropy; Adam), batch
//!   128, 2048 random samples: training samples/s.
//! - `fit_scaling`: ms per `fit` step of a 784-64-10 MLP (batch 128, shuffled) on 4k, 16k
//!   and 64k rows: flat, because `fit` gathers only each batch's rows.
//! - `matmul`: `x @ w`, square 256..2048: GFLOP/s end to end (upload x, run, read back y) and
//!   device-resident (x, w variables; y assigned to a variable; nothing read back but a wait).
//! - `elementwise`: `a * b + c` over 16M f32: GB/s counting 16 bytes per element (3 reads, 1
//!   write), end to end and device-resident.
//! - `char_lstm`: OneHot(57) → LSTM(128) → Dense(57, softmax), 40 steps, RMSprop, batch 128,
//!   1024 random sequences: training samples/s (issue 4's recurrent target).
//! - `imdb_lstm`: Embedding(5000, 32) → LSTM(100) → Dense(1, sigmoid), 500 steps, Adam,
//!   batch 64, 128 random sequences: training samples/s.
//! - compile times of the train-step plans are part of each model workload.
//! - `--profile` also times every kernel of one recurrent train step (each in its own
//!   submit; the table groups the unrolled timesteps by kernel label).
//!
//! Every figure comes from wall-clock time around whole plan runs (there is no kernel-only
//! timer yet). Each workload is warmed up once (plans compile and load on first use) and then
//! repeated for a small time budget. Errors are reported per workload. The device is wgpu by
//! default (a missing adapter falls back to the native CPU backend with a note);
//! `--device native|wgpu|reference` chooses it (`--cpu` is `--device reference`).

use kiln::ir::random::Rng;
use kiln::ir::{DType, Graph};
use kiln::opt::{compile, Backend, CompileOptions, HostTensor, Plan};
use kiln::{Activation, Adam, Dense, Fit, Loss, Metric, Mode, Optimizer, Sequential, Sgd};
use serde_json::{json, Value};
use std::error::Error;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

type Res<T> = std::result::Result<T, Box<dyn Error>>;

mod fit_scaling;

const WORKLOADS: [&str; 7] = [
    "unit_circle",
    "mlp",
    "fit_scaling",
    "matmul",
    "elementwise",
    "char_lstm",
    "imdb_lstm",
];

struct Args {
    only: Option<Vec<String>>,
    json: String,
    device: DeviceKind,
    quick: bool,
    profile: bool,
    unroll: bool,
}

const USAGE: &str =
    "usage: kiln-bench [--only NAME[,NAME...]] [--json FILE] [--device D] [--cpu] [--quick] [--profile]
       kiln-bench --startup [--json FILE]   (cold vs warm start of three train-step plans)
  workloads: unit_circle, mlp, fit_scaling, matmul, elementwise, char_lstm, imdb_lstm
  --profile    also time every kernel of each recurrent train step once (GPU; one submit each)
  --json FILE  where to write the JSON report (default target/kiln-bench.json)
  --device D   native (the native CPU backend), wgpu (default) or reference (the plan interpreter)
  --cpu        the same as --device reference
  --quick      smaller repetition budgets and matmul sizes up to 1024 (a smoke run)
  --unroll     recurrent layers as unrolled graphs (Keras unroll=True) instead of the fused
               persistent recurrence: the before of issue 13's A/B";

fn parse_args() -> Res<Args> {
    let mut a = Args {
        only: None,
        json: "target/kiln-bench.json".into(),
        device: DeviceKind::Gpu,
        quick: false,
        profile: false,
        unroll: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--only" => {
                let v = it.next().ok_or("--only needs a workload name")?;
                let names: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
                for n in &names {
                    if !WORKLOADS.contains(&n.as_str()) {
                        return Err(format!(
                            "unknown workload `{n}`; one of {}",
                            WORKLOADS.join(", ")
                        )
                        .into());
                    }
                }
                a.only = Some(names);
            }
            "--json" => a.json = it.next().ok_or("--json needs a file name")?,
            "--cpu" => a.device = DeviceKind::Cpu,
            "--device" => {
                a.device = match it.next().as_deref() {
                    Some("native") | Some("cpu") => DeviceKind::Native,
                    Some("wgpu") | Some("gpu") => DeviceKind::Gpu,
                    Some("reference") => DeviceKind::Cpu,
                    other => {
                        return Err(format!(
                            "--device {}: one of native, wgpu, reference",
                            other.unwrap_or("")
                        )
                        .into())
                    }
                }
            }
            "--profile" => a.profile = true,
            "--quick" => a.quick = true,
            "--unroll" => a.unroll = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}").into()),
        }
    }
    Ok(a)
}

/// Which device every workload gets (a fresh one each, so variable names never collide).
#[derive(Copy, Clone, PartialEq)]
enum DeviceKind {
    /// A wgpu adapter.
    Gpu,
    /// The reference plan interpreter.
    Cpu,
    /// The native CPU backend.
    Native,
}

fn make_device(kind: DeviceKind) -> Res<Box<dyn Backend>> {
    Ok(match kind {
        DeviceKind::Gpu => kiln::gpu_device()?,
        DeviceKind::Cpu => Box::new(kiln::opt::interp::CpuBackend::new()),
        DeviceKind::Native => kiln::native_device(),
    })
}

/// Budgets of the repetition loops, in seconds.
struct Budget {
    unit_circle: f64,
    mlp: f64,
    matmul: f64,
    elementwise: f64,
    recurrent: f64,
}

/// Runs `f` once (warm-up), then as many times as fit in `budget` seconds judging by the
/// warm-up, clamped to `[min, max]`. Returns (warm-up seconds, timed runs' seconds).
fn timed(
    budget: f64,
    min: usize,
    max: usize,
    mut f: impl FnMut() -> Res<()>,
) -> Res<(f64, Vec<f64>)> {
    let t = Instant::now();
    f()?;
    let warm = t.elapsed().as_secs_f64();
    let reps = ((budget / warm.max(1e-9)) as usize).clamp(min, max);
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64());
    }
    Ok((warm, v))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// One row of the printed table.
struct Row {
    workload: String,
    metric: String,
    value: String,
    note: String,
}

fn row(workload: &str, metric: &str, value: String, note: &str) -> Row {
    Row {
        workload: workload.into(),
        metric: metric.into(),
        value,
        note: note.into(),
    }
}

/// Compile-time figures of a train-step plan: `kiln_opt::compile` alone (wall and the plan's
/// own `compile_ms`), and compile + device load (pipelines, bind groups) through the model.
fn train_plan_figures(
    m: &mut Sequential,
    limits: &kiln::opt::DeviceLimits,
    batch: usize,
) -> Res<(Value, Plan)> {
    let g = m.graph(Mode::Train, batch)?;
    let t = Instant::now();
    let standalone = compile(&g, &CompileOptions::default(), limits)?;
    let compile_wall_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let plan = m.plan_for(Mode::Train, batch)?;
    let load_wall_ms = t.elapsed().as_secs_f64() * 1e3;
    let v = json!({
        "graph_nodes": g.len(),
        "compile_ms_stats": standalone.stats.compile_ms,
        "compile_wall_ms": compile_wall_ms,
        "compile_and_load_wall_ms": load_wall_ms,
        "kernels": plan.kernels.len(),
        "dispatches_per_step": plan.dispatch_count(),
        "pass_ms": standalone.stats.pass_ms,
    });
    Ok((v, plan))
}

fn compile_rows(name: &str, c: &Value, rows: &mut Vec<Row>) {
    let f = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
    rows.push(row(
        name,
        "train-step compile (stats / wall)",
        format!(
            "{:.1} / {:.1} ms",
            f("compile_ms_stats"),
            f("compile_wall_ms")
        ),
        "kiln_opt::compile only",
    ));
    rows.push(row(
        name,
        "train-step compile + load",
        format!("{:.1} ms", f("compile_and_load_wall_ms")),
        "incl. pipeline creation",
    ));
    rows.push(row(
        name,
        "kernels / dispatches per step",
        format!("{} / {}", c["kernels"], c["dispatches_per_step"]),
        "",
    ));
}

fn circle_data(n: usize, seed: u64) -> Res<(HostTensor, HostTensor)> {
    let mut rng = Rng::new(seed);
    let (mut x, mut y) = (Vec::with_capacity(2 * n), Vec::with_capacity(2 * n));
    for _ in 0..n {
        let (a, b) = (rng.uniform(-2.0, 2.0) as f32, rng.uniform(-2.0, 2.0) as f32);
        x.extend([a, b]);
        y.extend(if a * a + b * b < 1.0 {
            [0.0, 1.0]
        } else {
            [1.0, 0.0]
        });
    }
    Ok((HostTensor::f32([n, 2], x)?, HostTensor::f32([n, 2], y)?))
}

fn fit_opts(batch: usize) -> Fit {
    Fit {
        epochs: 1,
        batch_size: batch,
        shuffle: true,
        verbose: false,
        ..Fit::default()
    }
}

/// The models of the start-up measurement (issue 5).
const STARTUP_MODELS: [&str; 3] = ["unit_circle", "mnist_mlp", "char_lstm"];

/// A start-up model, compiled, with one batch of random data.
fn startup_model(name: &str) -> Res<(Sequential, HostTensor, HostTensor, usize)> {
    let device = make_device(DeviceKind::Gpu)?;
    let mut m = Sequential::new(device).seed(1);
    let mut rng = Rng::new(11);
    let (batch, x, classes) = match name {
        "unit_circle" => {
            m.add(Dense::new(3).activation(Activation::Tanh).input_dim(2))?;
            m.add(Dense::new(3).activation(Activation::Tanh))?;
            m.add(Dense::new(2).activation(Activation::Softmax))?;
            m.compile(
                Loss::BinaryCrossentropy,
                kiln::Sgd::new(0.01),
                &[Metric::Accuracy],
            )?;
            let x: Vec<f32> = (0..10).map(|_| rng.uniform(-2.0, 2.0) as f32).collect();
            (5, HostTensor::f32([5, 2], x)?, 2)
        }
        "mnist_mlp" => {
            m.add(Dense::new(512).activation(Activation::Relu).input_dim(784))?;
            m.add(Dense::new(512).activation(Activation::Relu))?;
            m.add(Dense::new(10).activation(Activation::Softmax))?;
            m.compile(
                Loss::CategoricalCrossentropy,
                Adam::default(),
                &[Metric::Accuracy],
            )?;
            let x: Vec<f32> = (0..128 * 784).map(|_| rng.next_f64() as f32).collect();
            (128, HostTensor::f32([128, 784], x)?, 10)
        }
        _ => {
            m.add(kiln::OneHot::new(57).input_length(40))?;
            m.add(kiln::Lstm::new(128))?;
            m.add(Dense::new(57).activation(Activation::Softmax))?;
            m.compile(
                Loss::CategoricalCrossentropy,
                kiln::RmsProp::new(0.01),
                &[Metric::Accuracy],
            )?;
            (128, sequences(128, 40, 57, 12)?, 57)
        }
    };
    let mut y = vec![0f32; batch * classes];
    for r in 0..batch {
        y[r * classes + rng.below(classes)] = 1.0;
    }
    let y = HostTensor::f32([batch, classes], y)?;
    Ok((m, x, y, batch))
}

/// The child process of `--startup`: builds one model and times its path to the first
/// training-step result, printing one JSON line.
fn startup_child(name: &str) -> Res<()> {
    let t0 = Instant::now();
    let (mut m, x, y, batch) = startup_model(name)?;
    let built = t0.elapsed().as_secs_f64();
    let t = Instant::now();
    m.plan_for(Mode::Train, batch)?;
    let plan = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let logs = m.train_on_batch(&x, &y)?;
    let step = t.elapsed().as_secs_f64();
    let cache = match m.plan_cache_log().last().map(|l| &l.2) {
        Some(kiln::opt::cache::CacheOutcome::Hit) => "hit".to_string(),
        Some(kiln::opt::cache::CacheOutcome::Miss(r)) => format!("miss: {r}"),
        _ => "disabled".into(),
    };
    println!(
        "{}",
        json!({
            "model": name,
            "build_ms": built * 1e3,
            "plan_ms": plan * 1e3,
            "first_step_ms": step * 1e3,
            "to_first_result_ms": t0.elapsed().as_secs_f64() * 1e3,
            "plan_cache": cache,
            "loss": logs.get("loss"),
        })
    );
    Ok(())
}

/// `--startup`: for each model, a cold start (empty plan cache, empty Mesa shader cache) and
/// a warm start (both as the cold run left them), each in a fresh process; the time from
/// process start to the first training-step result.
fn startup(json_path: &str) -> Res<()> {
    let exe = std::env::current_exe()?;
    let root = std::env::temp_dir().join(format!("kiln-startup-{}", std::process::id()));
    let mut results = vec![];
    println!("start-up: process start to the first training-step result (ms)");
    println!(
        "{:<12} {:>10} {:>10} {:>22} {:>8}",
        "model", "cold", "warm", "warm driver, no plan", "ratio"
    );
    for name in STARTUP_MODELS {
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("mesa"))?;
        let mesa = dir.join("mesa");
        let plans = dir.join("plans");
        let run = || -> Res<Value> {
            let out = std::process::Command::new(&exe)
                .args(["--startup-child", name])
                .env("KILN_CACHE_DIR", &plans)
                .env("MESA_SHADER_CACHE_DIR", &mesa)
                .env_remove("MESA_SHADER_CACHE_DISABLE")
                .output()?;
            if !out.status.success() {
                return Err(format!(
                    "{name}: child failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
            let line = String::from_utf8_lossy(&out.stdout);
            Ok(serde_json::from_str(line.trim())?)
        };
        let cold = run()?;
        let warm = run()?;
        // the plan cache emptied, the driver's caches kept: what the plan cache alone saves
        let _ = std::fs::remove_dir_all(&plans);
        let warm_driver_only = run()?;
        let f = |v: &Value| v["to_first_result_ms"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<12} {:>10.0} {:>10.0} {:>22.0} {:>7.1}x",
            name,
            f(&cold),
            f(&warm),
            f(&warm_driver_only),
            f(&cold) / f(&warm)
        );
        results.push(json!({"model": name, "cold": cold, "warm": warm, "warm_driver_cache_only": warm_driver_only}));
    }
    let _ = std::fs::remove_dir_all(&root);
    let report = json!({
        "date": now_utc(),
        "what": "process start to first train-step result; cold = empty plan cache and empty Mesa shader cache; warm = both as the cold run left them; warm_driver_cache_only = plan recompiled, driver caches warm",
        "startup": results,
    });
    std::fs::write(json_path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("\nJSON written to {json_path}");
    Ok(())
}

/// Times every step of one run of model `m`'s train plan at `batch` on a fresh GPU backend
/// (params zero, inputs `x`/`y`), then prints the kernels that take most of the time.
fn profile_train_step(m: &Sequential, batch: usize, x: &HostTensor, y: &HostTensor) -> Res<()> {
    use kiln::Backend as _;
    let g = m.graph(Mode::Train, batch)?;
    let mut gpu = kiln::gpu::WgpuBackend::new()?;
    let plan = std::sync::Arc::new(compile(&g, &CompileOptions::default(), &gpu.limits())?);
    for slot in &plan.params {
        let n = slot.shape.numel();
        let t = match slot.dtype {
            kiln::ir::DType::F32 => HostTensor::f32(slot.shape.clone(), vec![0.0; n])?,
            kiln::ir::DType::I32 => HostTensor::i32(slot.shape.clone(), vec![0; n])?,
        };
        gpu.write_param(&slot.name, &t)?;
    }
    let mut exe = gpu.load_wgpu(plan.clone())?;
    let first = |t: &HostTensor, n: usize| -> Res<HostTensor> {
        let d = t.shape.dims();
        let row: usize = d[1..].iter().product();
        let mut dims = d.to_vec();
        dims[0] = n;
        Ok(HostTensor::f32(dims, t.to_f32()[..n * row].to_vec())?)
    };
    let (xb, yb) = (first(x, batch)?, first(y, batch)?);
    let inputs: Vec<&HostTensor> = plan
        .inputs
        .iter()
        .map(|s| if s.name == "y" { &yb } else { &xb })
        .collect();
    exe.profile(&inputs)?; // first dispatch of each pipeline compiles it
    let steps = exe.profile(&inputs)?;
    let total: f64 = steps.iter().map(|s| s.1).sum();
    let mut by_label: std::collections::BTreeMap<String, (usize, f64)> = Default::default();
    for (l, t) in &steps {
        // strip the timestep scope so the steps of an unrolled loop add up
        let key: String = l
            .split('/')
            .filter(|p| !p.starts_with("step_"))
            .collect::<Vec<_>>()
            .join("/");
        let e = by_label.entry(key).or_default();
        e.0 += 1;
        e.1 += t;
    }
    let mut v: Vec<_> = by_label.into_iter().collect();
    v.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    println!(
        "profile: {} steps, {:.1} ms in total (one submit + wait each)",
        steps.len(),
        total * 1e3
    );
    for (l, (n, t)) in v.iter().take(12) {
        println!(
            "  {:>7.1} ms {:>5.1} % {n:>4}x  {l}",
            t * 1e3,
            100.0 * t / total
        );
    }
    // the single slowest steps, with a matmul's m x k x n
    let mut single: Vec<(usize, f64)> = steps.iter().map(|s| s.1).enumerate().collect();
    single.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("slowest single steps:");
    for (i, t) in single.iter().take(6) {
        let what = match plan.steps.get(*i) {
            Some(kiln::opt::plan::Step::Dispatch { kernel, .. }) => {
                match plan.kernels.get(*kernel as usize).map(|k| &k.op) {
                    Some(kiln::opt::kernel::KernelOp::MatMul { batch, m, k, n, .. }) => {
                        format!("matmul {batch}x{m}x{k}x{n}")
                    }
                    _ => String::new(),
                }
            }
            _ => "copy".into(),
        };
        println!(
            "  {:>7.2} ms  step {i:<5} {:<28} {what}",
            t * 1e3,
            steps[*i].0
        );
    }
    Ok(())
}

/// Random integer sequences `[n, len]` below `vocab` (as f32) and labels.
fn sequences(n: usize, len: usize, vocab: usize, seed: u64) -> Res<HostTensor> {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..n * len).map(|_| rng.below(vocab) as f32).collect();
    Ok(HostTensor::f32([n, len], x)?)
}

/// The char-LSTM of issue 4: 40 steps, vocab 57, OneHot → LSTM(128) → Dense(57, softmax),
/// RMSprop, batch 128.
fn bench_char_lstm(
    kind: DeviceKind,
    budget: f64,
    (profile, unroll): (bool, bool),
    rows: &mut Vec<Row>,
) -> Res<Value> {
    const N: usize = 1024;
    const BATCH: usize = 128;
    const V: usize = 57;
    let device = make_device(kind)?;
    let limits = device.limits();
    let mut m = Sequential::new(device).seed(3);
    m.add(kiln::OneHot::new(V).input_length(40))?;
    m.add(kiln::Lstm::new(128).unroll(unroll))?;
    m.add(Dense::new(V).activation(Activation::Softmax))?;
    m.compile(
        Loss::CategoricalCrossentropy,
        kiln::RmsProp::new(0.01),
        &[Metric::Accuracy],
    )?;
    let (comp, _) = train_plan_figures(&mut m, &limits, BATCH)?;
    let x = sequences(N, 40, V, 5)?;
    let mut rng = Rng::new(6);
    let mut y = vec![0f32; N * V];
    for r in 0..N {
        y[r * V + rng.below(V)] = 1.0;
    }
    let y = HostTensor::f32([N, V], y)?;
    let (warm, runs) = timed(budget, 1, 10, || {
        m.fit(&x, &y, fit_opts(BATCH))?;
        Ok(())
    })?;
    let sps = N as f64 / mean(&runs);
    rows.push(row(
        "char_lstm",
        "training throughput (T 40, LSTM(128), batch 128, RMSprop)",
        format!("{sps:.0} samples/s"),
        &format!("{:.0} ms/step", mean(&runs) * 1e3 / (N / BATCH) as f64),
    ));
    compile_rows("char_lstm", &comp, rows);
    if profile && kind == DeviceKind::Gpu {
        profile_train_step(&m, BATCH, &x, &y)?;
    }
    Ok(json!({
        "model": "OneHot(57) -> LSTM(128) -> Dense(57, softmax), 40 steps, RMSprop(0.01), categorical crossentropy",
        "samples": N, "batch": BATCH, "warmup_epoch_ms": warm * 1e3,
        "epochs_timed": runs.len(), "epoch_ms_mean": mean(&runs) * 1e3,
        "samples_per_s": sps, "train_plan": comp, "unrolled": unroll,
    }))
}

/// The IMDB LSTM of issue 4: Embedding(5000, 32) → LSTM(100) → Dense(1, sigmoid) over 500
/// steps, Adam, batch 64.
fn bench_imdb_lstm(
    kind: DeviceKind,
    budget: f64,
    (profile, unroll): (bool, bool),
    rows: &mut Vec<Row>,
) -> Res<Value> {
    const N: usize = 128;
    const BATCH: usize = 64;
    let device = make_device(kind)?;
    let limits = device.limits();
    let mut m = Sequential::new(device).seed(4);
    m.add(kiln::Embedding::new(5000, 32).input_length(500))?;
    m.add(kiln::Lstm::new(100).unroll(unroll))?;
    m.add(Dense::new(1).activation(Activation::Sigmoid))?;
    m.compile(
        Loss::BinaryCrossentropy,
        Adam::default(),
        &[Metric::Accuracy],
    )?;
    let (comp, _) = train_plan_figures(&mut m, &limits, BATCH)?;
    let x = sequences(N, 500, 5000, 8)?;
    let mut rng = Rng::new(9);
    let y = HostTensor::f32([N, 1], (0..N).map(|_| rng.below(2) as f32).collect())?;
    let (warm, runs) = timed(budget, 1, 5, || {
        m.fit(&x, &y, fit_opts(BATCH))?;
        Ok(())
    })?;
    let sps = N as f64 / mean(&runs);
    rows.push(row(
        "imdb_lstm",
        "training throughput (T 500, Embedding 5000x32, LSTM(100), batch 64, Adam)",
        format!("{sps:.1} samples/s"),
        &format!("{:.0} ms/step", mean(&runs) * 1e3 / (N / BATCH) as f64),
    ));
    compile_rows("imdb_lstm", &comp, rows);
    if profile && kind == DeviceKind::Gpu {
        profile_train_step(&m, BATCH, &x, &y)?;
    }
    Ok(json!({
        "model": "Embedding(5000, 32) -> LSTM(100) -> Dense(1, sigmoid), 500 steps, Adam, binary crossentropy",
        "samples": N, "batch": BATCH, "warmup_epoch_ms": warm * 1e3,
        "epochs_timed": runs.len(), "epoch_ms_mean": mean(&runs) * 1e3,
        "samples_per_s": sps, "train_plan": comp, "unrolled": unroll,
    }))
}

/// (a) + (e): the unit-circle MLP.
fn bench_unit_circle(kind: DeviceKind, budget: f64, rows: &mut Vec<Row>) -> Res<Value> {
    const N: usize = 1000;
    const BATCH: usize = 5;
    let device = make_device(kind)?;
    let limits = device.limits();
    let mut m = Sequential::new(device).seed(1);
    m.add(Dense::new(3).activation(Activation::Tanh).input_dim(2))?;
    m.add(Dense::new(3).activation(Activation::Tanh))?;
    m.add(Dense::new(2).activation(Activation::Softmax))?;
    m.compile(
        Loss::BinaryCrossentropy,
        Sgd::new(0.01),
        &[Metric::Accuracy],
    )?;
    let (comp, _) = train_plan_figures(&mut m, &limits, BATCH)?;
    let (x, y) = circle_data(N, 1)?;
    let steps = N / BATCH;
    let mut loss = f64::NAN;
    let (warm, runs) = timed(budget, 2, 20, || {
        let h = m.fit(&x, &y, fit_opts(BATCH))?;
        loss = h.last("loss").unwrap_or(f64::NAN);
        Ok(())
    })?;
    let epoch_ms = mean(&runs) * 1e3;
    let step_us = epoch_ms * 1e3 / steps as f64;
    rows.push(row(
        "unit_circle",
        "epoch (200 steps, batch 5)",
        format!("{epoch_ms:.1} ms"),
        &format!(
            "best {:.1} ms, {} epochs timed",
            min(&runs) * 1e3,
            runs.len()
        ),
    ));
    rows.push(row(
        "unit_circle",
        "mean step latency",
        format!("{step_us:.0} µs"),
        "fit epoch / steps (everything fit does per step)",
    ));
    compile_rows("unit_circle", &comp, rows);
    Ok(json!({
        "model": "2-3-3-2 tanh/tanh/softmax, binary crossentropy, SGD 0.01, accuracy metric",
        "samples": N,
        "batch": BATCH,
        "steps_per_epoch": steps,
        "warmup_epoch_ms": warm * 1e3,
        "epochs_timed": runs.len(),
        "epoch_ms_mean": epoch_ms,
        "epoch_ms_best": min(&runs) * 1e3,
        "step_us_mean": step_us,
        "last_loss": loss,
        "train_plan": comp,
    }))
}

/// (b) + (e): MLP 784-512-512-10 with Adam.
fn bench_mlp(kind: DeviceKind, budget: f64, rows: &mut Vec<Row>) -> Res<Value> {
    const N: usize = 2048;
    const BATCH: usize = 128;
    let device = make_device(kind)?;
    let limits = device.limits();
    let mut m = Sequential::new(device).seed(2);
    m.add(Dense::new(512).activation(Activation::Relu).input_dim(784))?;
    m.add(Dense::new(512).activation(Activation::Relu))?;
    m.add(Dense::new(10).activation(Activation::Softmax))?;
    let opt = Adam::default();
    let opt_name = opt.name();
    m.compile(Loss::CategoricalCrossentropy, opt, &[Metric::Accuracy])?;
    let (comp, _) = train_plan_figures(&mut m, &limits, BATCH)?;
    let mut rng = Rng::new(7);
    let x: Vec<f32> = (0..N * 784).map(|_| rng.next_f64() as f32).collect();
    let mut y = vec![0f32; N * 10];
    for r in 0..N {
        y[r * 10 + rng.below(10)] = 1.0;
    }
    let x = HostTensor::f32([N, 784], x)?;
    let y = HostTensor::f32([N, 10], y)?;
    let (warm, runs) = timed(budget, 1, 10, || {
        m.fit(&x, &y, fit_opts(BATCH))?;
        Ok(())
    })?;
    let sps = N as f64 / mean(&runs);
    let step_ms = mean(&runs) * 1e3 / (N / BATCH) as f64;
    rows.push(row(
        "mlp",
        "training throughput (batch 128, Adam)",
        format!("{sps:.0} samples/s"),
        &format!("{step_ms:.1} ms/step, {} epochs of 2048 timed", runs.len()),
    ));
    compile_rows("mlp", &comp, rows);
    Ok(json!({
        "model": format!("784-512-512-10 relu/relu/softmax, categorical crossentropy, {opt_name}, accuracy metric"),
        "samples": N,
        "batch": BATCH,
        "warmup_epoch_ms": warm * 1e3,
        "epochs_timed": runs.len(),
        "epoch_ms_mean": mean(&runs) * 1e3,
        "step_ms_mean": step_ms,
        "samples_per_s": sps,
        "train_plan": comp,
    }))
}

fn random_tensor(dims: Vec<usize>, seed: u64) -> Res<HostTensor> {
    let n = dims.iter().product();
    let mut rng = Rng::new(seed);
    let v: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
    Ok(HostTensor::f32(dims, v)?)
}

/// Compiles `g`, loads it on `device` and times `budget` seconds of runs fed `inputs`.
fn time_plan(
    device: &mut dyn Backend,
    g: &Graph,
    inputs: &[&HostTensor],
    budget: f64,
    max: usize,
) -> Res<(f64, Vec<f64>, usize)> {
    let plan = compile(g, &CompileOptions::default(), &device.limits())?;
    let dispatches = plan.dispatch_count();
    let mut exe = device.load(Arc::new(plan))?;
    let (warm, runs) = timed(budget, 1, max, || {
        exe.run(inputs)?;
        Ok(())
    })?;
    Ok((warm, runs, dispatches))
}

/// (c): square matmuls, end to end and device-resident.
fn bench_matmul(kind: DeviceKind, sizes: &[usize], budget: f64, rows: &mut Vec<Row>) -> Res<Value> {
    let mut out = vec![];
    for &n in sizes {
        let mut device = make_device(kind)?;
        let flop = 2.0 * (n as f64).powi(3);
        let w = random_tensor(vec![n, n], 11)?;
        let x = random_tensor(vec![n, n], 12)?;
        // end to end: x is an input (uploaded every run), y an output (read back every run)
        let mut g = Graph::new();
        let xi = g.input("x", [n, n], DType::F32)?;
        let wp = g.param("bench/w", [n, n], DType::F32)?;
        let y = g.matmul(xi, wp)?;
        g.output("y", y)?;
        device.write_param("bench/w", &w)?;
        let (_, e2e, dispatches) = time_plan(device.as_mut(), &g, &[&x], budget / 2.0, 20)?;
        // resident: x, w variables; y assigned to a variable (a copy step); a wait, no read-back
        let mut g = Graph::new();
        let xp = g.param("bench/x", [n, n], DType::F32)?;
        let wp = g.param("bench/w", [n, n], DType::F32)?;
        let yp = g.param("bench/y", [n, n], DType::F32)?;
        let y = g.matmul(xp, wp)?;
        g.assign(yp, y)?;
        device.write_param("bench/x", &x)?;
        let (_, res, _) = time_plan(device.as_mut(), &g, &[], budget / 2.0, 20)?;
        let (ge, gr) = (flop / mean(&e2e) / 1e9, flop / mean(&res) / 1e9);
        rows.push(row(
            "matmul",
            &format!("{n}x{n}x{n} (e2e / resident)"),
            format!("{ge:.2} / {gr:.2} GFLOP/s"),
            &format!(
                "{:.1} / {:.1} ms per run, {} dispatch(es)",
                mean(&e2e) * 1e3,
                mean(&res) * 1e3,
                dispatches
            ),
        ));
        out.push(json!({
            "n": n,
            "gflops_e2e": ge,
            "gflops_resident": gr,
            "gflops_resident_best": flop / min(&res) / 1e9,
            "ms_e2e_mean": mean(&e2e) * 1e3,
            "ms_resident_mean": mean(&res) * 1e3,
            "runs_e2e": e2e.len(),
            "runs_resident": res.len(),
            "dispatches": dispatches,
        }));
    }
    Ok(json!({
        "note": "e2e: per run, upload x + run + read back y (wall clock); resident: x and w are device variables and y is assigned to one (includes the assignment copy and the wait, no read-back). No kernel-only timer exists yet.",
        "sizes": out,
    }))
}

/// (d): `a * b + c` over 16M f32.
fn bench_elementwise(kind: DeviceKind, budget: f64, rows: &mut Vec<Row>) -> Res<Value> {
    const N: usize = 16 << 20;
    let bytes = 16.0 * N as f64;
    let mut device = make_device(kind)?;
    let a = random_tensor(vec![N], 21)?;
    let b = random_tensor(vec![N], 22)?;
    let c = random_tensor(vec![N], 23)?;
    let build = |g: &mut Graph, a, b, c| -> Res<_> {
        let ab = g.mul(a, b)?;
        Ok(g.add(ab, c)?)
    };
    let mut g = Graph::new();
    let (ai, bi, ci) = (
        g.input("a", [N], DType::F32)?,
        g.input("b", [N], DType::F32)?,
        g.input("c", [N], DType::F32)?,
    );
    let d = build(&mut g, ai, bi, ci)?;
    g.output("d", d)?;
    let (_, e2e, de) = time_plan(device.as_mut(), &g, &[&a, &b, &c], budget / 2.0, 20)?;
    let mut g = Graph::new();
    let (ap, bp, cp, dp) = (
        g.param("bench/a", [N], DType::F32)?,
        g.param("bench/b", [N], DType::F32)?,
        g.param("bench/c", [N], DType::F32)?,
        g.param("bench/d", [N], DType::F32)?,
    );
    let d = build(&mut g, ap, bp, cp)?;
    g.assign(dp, d)?;
    device.write_param("bench/a", &a)?;
    device.write_param("bench/b", &b)?;
    device.write_param("bench/c", &c)?;
    let (_, res, dr) = time_plan(device.as_mut(), &g, &[], budget / 2.0, 40)?;
    let (ge, gr) = (bytes / mean(&e2e) / 1e9, bytes / mean(&res) / 1e9);
    rows.push(row(
        "elementwise",
        "a*b+c, 16M f32 (e2e / resident)",
        format!("{ge:.2} / {gr:.2} GB/s"),
        &format!(
            "{:.1} / {:.1} ms per run, {de} / {dr} dispatches",
            mean(&e2e) * 1e3,
            mean(&res) * 1e3
        ),
    ));
    Ok(json!({
        "elements": N,
        "bytes_counted": bytes,
        "gbps_e2e": ge,
        "gbps_resident": gr,
        "gbps_resident_best": bytes / min(&res) / 1e9,
        "ms_e2e_mean": mean(&e2e) * 1e3,
        "ms_resident_mean": mean(&res) * 1e3,
        "dispatches_e2e": de,
        "dispatches_resident": dr,
        "note": "GB/s count 16 bytes per element (read a, b, c; write d). e2e includes uploading a, b, c and reading d back; resident keeps a, b, c, d as device variables (d assigned: includes the assignment copy, which moves 8 more bytes per element).",
    }))
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's civil_from_days).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn now_utc() -> String {
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d) = civil_date(s.div_euclid(86_400));
    let r = s.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        r / 3600,
        r / 60 % 60,
        r % 60
    )
}

fn print_table(rows: &[Row]) {
    let w0 = rows
        .iter()
        .map(|r| r.workload.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let w1 = rows
        .iter()
        .map(|r| r.metric.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let w2 = rows
        .iter()
        .map(|r| r.value.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    println!(
        "{:<w0$}  {:<w1$}  {:>w2$}  note",
        "workload", "metric", "value"
    );
    println!("{}", "-".repeat(w0 + w1 + w2 + 12));
    for r in rows {
        let pad = w2 - r.value.chars().count();
        println!(
            "{:<w0$}  {:<w1$}  {}{}  {}",
            r.workload,
            r.metric,
            " ".repeat(pad),
            r.value,
            r.note
        );
    }
}

fn run() -> Res<()> {
    let argv: Vec<String> = std::env::args().collect();
    if let (Some("--startup-child"), Some(name)) = (argv.get(1).map(String::as_str), argv.get(2)) {
        return startup_child(name);
    }
    if argv.get(1).map(String::as_str) == Some("--startup") {
        let json = match (argv.get(2).map(String::as_str), argv.get(3)) {
            (Some("--json"), Some(f)) => f.clone(),
            _ => "target/kiln-startup.json".into(),
        };
        return startup(&json);
    }
    let args = parse_args()?;
    let mut kind = args.device;
    let mut notes = vec![];
    let adapter = match make_device(kind) {
        Ok(d) => d.describe(),
        Err(e) => {
            let n = format!("no GPU adapter ({e}); running on the native CPU backend");
            eprintln!("kiln-bench: {n}");
            notes.push(n);
            kind = DeviceKind::Native;
            make_device(kind)?.describe()
        }
    };
    let budget = if args.quick {
        Budget {
            unit_circle: 1.0,
            mlp: 2.0,
            matmul: 1.0,
            elementwise: 1.0,
            recurrent: 2.0,
        }
    } else {
        Budget {
            unit_circle: 5.0,
            mlp: 15.0,
            matmul: 8.0,
            elementwise: 6.0,
            recurrent: 20.0,
        }
    };
    let sizes: &[usize] = if args.quick {
        &[256, 512, 1024]
    } else {
        &[256, 512, 1024, 2048]
    };
    let date = now_utc();
    // other processes on the machine skew every figure: record the load
    let load_at_start = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    println!("kiln-bench {date}\ndevice: {adapter}\nload average: {load_at_start}\n");
    let wanted = |n: &str| args.only.as_ref().is_none_or(|o| o.iter().any(|x| x == n));
    let mut rows = vec![];
    let mut results = serde_json::Map::new();
    for name in WORKLOADS {
        if !wanted(name) {
            continue;
        }
        eprintln!("kiln-bench: running {name} ...");
        let t = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match name {
            "unit_circle" => bench_unit_circle(kind, budget.unit_circle, &mut rows),
            "mlp" => bench_mlp(kind, budget.mlp, &mut rows),
            "fit_scaling" => fit_scaling::bench_fit_scaling(kind, budget.mlp / 3.0, &mut rows),
            "matmul" => bench_matmul(kind, sizes, budget.matmul, &mut rows),
            "char_lstm" => bench_char_lstm(
                kind,
                budget.recurrent,
                (args.profile, args.unroll),
                &mut rows,
            ),
            "imdb_lstm" => bench_imdb_lstm(
                kind,
                budget.recurrent,
                (args.profile, args.unroll),
                &mut rows,
            ),
            _ => bench_elementwise(kind, budget.elementwise, &mut rows),
        }));
        let v = match r {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                eprintln!("kiln-bench: {name} failed: {e}");
                rows.push(row(name, "error", "-".into(), &e.to_string()));
                json!({ "error": e.to_string() })
            }
            Err(_) => {
                eprintln!("kiln-bench: {name} panicked");
                rows.push(row(name, "error", "-".into(), "panicked"));
                json!({ "error": "panicked" })
            }
        };
        eprintln!(
            "kiln-bench: {name} done in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        results.insert(name.into(), v);
    }
    println!();
    print_table(&rows);
    let report = json!({
        "date": date,
        "adapter": adapter,
        "device_kind": match kind {
            DeviceKind::Gpu => "wgpu",
            DeviceKind::Cpu => "cpu-interpreter",
            DeviceKind::Native => "native",
        },
        "notes": notes,
        "loadavg_at_start": load_at_start,
        "timing": "wall clock around whole plan runs / fit epochs, after one warm-up; means over the timed repetitions",
        "workloads": results,
    });
    if let Some(dir) = std::path::Path::new(&args.json).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("\nJSON written to {}", args.json);
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("kiln-bench: error: {e}");
        std::process::exit(1);
    }
}
