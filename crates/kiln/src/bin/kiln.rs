//! The `kiln` command-line tool: compile models to plan files ahead of time, inspect and run
//! plans, manage the plan cache, list devices.
//!
//! ```text
//! kiln compile MODEL --batch N --mode predict|train|evaluate -o FILE   # MODEL: saved model or JSON
//! kiln inspect FILE [--dot]
//! kiln run FILE [--weights MODEL] --input NAME=x.npy ... --output y.npy ...
//! kiln train FILE --weights MODEL --input x=X.npy --input y=Y.npy [--epochs N] -o OUT
//! kiln cache list|clear|verify
//! kiln devices
//! ```

use clap::{Parser, Subcommand, ValueEnum};
use kiln::opt::cache::{CacheKey, PlanCache};
use kiln::opt::{codec, Backend, CompileOptions, HostTensor};
use kiln::{load_model, Mode, Sequential};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "kiln: compile, inspect and run tensor plans"
)]
struct Cli {
    /// Use the CPU plan interpreter instead of a GPU adapter.
    #[arg(long, global = true)]
    cpu: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, ValueEnum)]
enum ModeArg {
    Predict,
    Train,
    Evaluate,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a model (a saved model file or its JSON structure) to a plan file.
    Compile {
        /// A model saved by `Sequential::save` (.safetensors) or its `to_json` structure (.json).
        model: PathBuf,
        /// Batch size the plan is compiled for.
        #[arg(long)]
        batch: usize,
        /// Which step: forward only, evaluation, or a whole training step.
        #[arg(long, value_enum, default_value = "predict")]
        mode: ModeArg,
        /// Output plan file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print a plan file's header, kernels, fusion groups, dispatches and memory plan.
    Inspect {
        /// Plan file.
        file: PathBuf,
        /// Print the kernel graph in Graphviz DOT instead.
        #[arg(long)]
        dot: bool,
    },
    /// Run a plan on NumPy inputs and write NumPy outputs.
    Run {
        /// Plan file.
        file: PathBuf,
        /// A saved model whose variables (weights, optimizer state) the plan uses.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// `NAME=FILE.npy` per plan input (or just `FILE.npy` for a single-input plan).
        #[arg(long = "input")]
        inputs: Vec<String>,
        /// `FILE.npy` per plan output, in plan order (or `NAME=FILE.npy`).
        #[arg(long = "output")]
        outputs: Vec<String>,
    },
    /// Resume training from a train-step plan file and a saved model's variables alone (no
    /// layer definitions): the data sets are cut into the plan's batch size in order (a
    /// short remainder is skipped), and the updated variables — weights, optimizer state,
    /// step counter — are written to a new model file with the original structure.
    Train {
        /// A train-step plan (`kiln compile --mode train`).
        file: PathBuf,
        /// The saved model whose variables the training starts from.
        #[arg(long)]
        weights: PathBuf,
        /// `NAME=FILE.npy` per plan input: whole data sets, batched along the first axis.
        #[arg(long = "input")]
        inputs: Vec<String>,
        /// Passes over the data.
        #[arg(long, default_value_t = 1)]
        epochs: usize,
        /// The updated model file (safetensors, written atomically).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Manage the on-disk plan cache (`KILN_CACHE_DIR`).
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// List the adapters wgpu can use, with their limits and features.
    Devices,
}

#[derive(Subcommand)]
enum CacheAction {
    /// List entries.
    List,
    /// Remove every entry.
    Clear,
    /// Check every entry (header, checksum, structure).
    Verify,
}

type Res<T> = Result<T, String>;

fn device(cpu: bool) -> Box<dyn Backend> {
    if cpu {
        Box::new(kiln::opt::interp::CpuBackend::new())
    } else {
        kiln::default_device()
    }
}

fn load_any_model(path: &Path, device: Box<dyn Backend>) -> Res<Sequential> {
    let is_json = path.extension().and_then(|e| e.to_str()) == Some("json");
    if is_json {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Sequential::from_json(&text, device).map_err(|e| format!("{}: {e}", path.display()))
    } else {
        load_model(path, device).map_err(|e| e.to_string())
    }
}

fn compile(cpu: bool, model: &Path, batch: usize, mode: ModeArg, output: &Path) -> Res<()> {
    if batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    let dev = device(cpu);
    let limits = dev.limits();
    let fingerprint = dev.fingerprint();
    let m = load_any_model(model, dev)?;
    let mode = match mode {
        ModeArg::Predict => Mode::Predict,
        ModeArg::Train => Mode::Train,
        ModeArg::Evaluate => Mode::Evaluate,
    };
    let g = m
        .graph(mode, batch)
        .map_err(|e| format!("{}: {e}", model.display()))?;
    let opts = CompileOptions::default();
    let plan = kiln::opt::compile(&g, &opts, &limits).map_err(|e| e.to_string())?;
    let key = CacheKey::new(&g, &opts, &limits, &fingerprint);
    let bytes = codec::encode(&plan, key.digest).map_err(|e| e.to_string())?;
    kiln::opt::cache::write_atomic(output, &bytes)
        .map_err(|e| format!("{}: {e}", output.display()))?;
    println!(
        "wrote {} ({} bytes): {} kernels, {} dispatches per run, inputs [{}], outputs [{}]",
        output.display(),
        bytes.len(),
        plan.kernels.len(),
        plan.dispatch_count(),
        plan.inputs
            .iter()
            .map(|s| format!("{} {}{}", s.name, s.dtype, s.shape))
            .collect::<Vec<_>>()
            .join(", "),
        plan.outputs
            .iter()
            .map(|s| format!("{} {}{}", s.name, s.dtype, s.shape))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn read_plan(file: &Path) -> Res<(codec::Header, kiln::opt::Plan)> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let (header, _) = codec::read_header(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let plan = codec::decode(&bytes, None).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((header, plan))
}

fn inspect(file: &Path, dot: bool) -> Res<()> {
    let (h, plan) = read_plan(file)?;
    if dot {
        print!("{}", plan.to_dot());
        return Ok(());
    }
    println!(
        "{}: kiln plan format {}, written by kiln {}, key {:032x}, body {} bytes",
        file.display(),
        h.format_version,
        h.kiln_version,
        h.key,
        h.body_len
    );
    for (what, slots) in [
        ("input", &plan.inputs),
        ("output", &plan.outputs),
        ("param", &plan.params),
    ] {
        for s in slots {
            println!("  {what:<6} {:<32} {}{}", s.name, s.dtype, s.shape);
        }
    }
    print!("{}", plan.summary());
    println!("memory plan: {} temporaries", plan.stats.allocations.len());
    for a in &plan.stats.allocations {
        println!(
            "  buffer {:<3} [{:>9}, {:>9})  steps {:>3}..={:<3}  {}",
            a.buffer,
            a.offset,
            a.offset + a.len,
            a.first,
            a.last,
            a.name
        );
    }
    Ok(())
}

fn named<'a>(
    arg: &'a str,
    slots: &[kiln::opt::Slot],
    i: usize,
    what: &str,
) -> Res<(usize, &'a str)> {
    match arg.split_once('=') {
        Some((name, file)) => slots
            .iter()
            .position(|s| s.name == name)
            .map(|p| (p, file))
            .ok_or_else(|| {
                format!(
                    "the plan has no {what} `{name}` (it has: {})",
                    slots
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        None if i < slots.len() => Ok((i, arg)),
        None => Err(format!(
            "more --{what} files than plan {what}s ({})",
            slots.len()
        )),
    }
}

fn train(
    cpu: bool,
    file: &Path,
    weights: &Path,
    inputs: &[String],
    epochs: usize,
    output: &Path,
) -> Res<()> {
    let (_, plan) = read_plan(file)?;
    if plan.inputs.is_empty() || plan.params.is_empty() {
        return Err(format!("{}: not a train-step plan", file.display()));
    }
    let wbytes = std::fs::read(weights).map_err(|e| format!("{}: {e}", weights.display()))?;
    let vars = kiln::saved_variables(&wbytes).map_err(|e| format!("{}: {e}", weights.display()))?;
    let mut dev = device(cpu);
    for (name, t) in &vars {
        dev.write_param(name, t)
            .map_err(|e| format!("{}: {e}", weights.display()))?;
    }
    // whole data sets per input slot
    let mut data: Vec<Option<HostTensor>> = vec![None; plan.inputs.len()];
    for (i, a) in inputs.iter().enumerate() {
        let (slot, path) = named(a, &plan.inputs, i, "input")?;
        let t = kiln::npy::read(Path::new(path)).map_err(|e| e.to_string())?;
        let s = &plan.inputs[slot];
        let (td, sd) = (t.shape.dims(), s.shape.dims());
        if td.len() != sd.len() || td.is_empty() || td[1..] != sd[1..] {
            return Err(format!(
                "{path}: input `{}` takes batches of {} ({}); the file holds {}",
                s.name, s.shape, s.dtype, t.shape
            ));
        }
        data[slot] = Some(t);
    }
    let missing: Vec<&str> = plan
        .inputs
        .iter()
        .zip(&data)
        .filter(|(_, d)| d.is_none())
        .map(|(s, _)| s.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing --input for: {}", missing.join(", ")));
    }
    let data: Vec<HostTensor> = data.into_iter().flatten().collect();
    let n = data[0].shape.dims()[0];
    if data.iter().any(|d| d.shape.dims()[0] != n) {
        return Err("every --input must hold the same number of samples".into());
    }
    let batch = plan.inputs[0]
        .shape
        .dims()
        .first()
        .copied()
        .unwrap_or(1)
        .max(1);
    let steps = n / batch;
    if steps == 0 {
        return Err(format!(
            "{n} samples are fewer than the plan's batch of {batch}"
        ));
    }
    let slots = plan.inputs.clone();
    let params = plan.params.clone();
    let mut exe = dev.load(Arc::new(plan)).map_err(|e| e.to_string())?;
    for epoch in 0..epochs {
        for s in 0..steps {
            let feeds: Vec<HostTensor> = data
                .iter()
                .zip(&slots)
                .map(|(d, slot)| {
                    let row: usize = d.shape.dims()[1..].iter().product();
                    let v = d.to_f32()[s * batch * row..(s + 1) * batch * row].to_vec();
                    match slot.dtype {
                        kiln::ir::DType::F32 => HostTensor::f32(slot.shape.clone(), v),
                        kiln::ir::DType::I32 => HostTensor::i32(
                            slot.shape.clone(),
                            v.into_iter().map(|x| x as i32).collect(),
                        ),
                    }
                    .map_err(|e| e.to_string())
                })
                .collect::<Res<_>>()?;
            let refs: Vec<&HostTensor> = feeds.iter().collect();
            exe.run(&refs).map_err(|e| e.to_string())?;
        }
        println!(
            "epoch {}/{epochs}: {steps} steps of {batch}{}",
            epoch + 1,
            if !n.is_multiple_of(batch) {
                format!(" ({} samples left over)", n % batch)
            } else {
                String::new()
            }
        );
    }
    drop(exe);
    // every variable of the input file, updated where the plan changed it, plus the state
    // the plan created (optimizer slots of a model that had not trained yet); not the
    // metric accumulators
    let mut all: Vec<(String, Option<HostTensor>)> = vars
        .iter()
        .map(|(n, t)| (n.clone(), Some(t.clone())))
        .collect();
    for p in &params {
        if !p.name.starts_with("metrics/") && !all.iter().any(|(n, _)| n == &p.name) {
            all.push((p.name.clone(), None));
        }
    }
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = vec![];
    for (name, saved) in &all {
        let t = match saved {
            Some(t) if !params.iter().any(|p| &p.name == name) => t.clone(),
            _ => dev.read_param(name).map_err(|e| e.to_string())?,
        };
        let bytes = t.to_f32().iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((name.clone(), t.shape.dims().to_vec(), bytes));
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&wbytes).map_err(|e| e.to_string())?;
    // sorted metadata and a fresh checksum table (the input's would be stale)
    let bytes = kiln::io::model_file_bytes(&tensors, meta.metadata().clone().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    kiln::opt::cache::write_atomic(output, &bytes)
        .map_err(|e| format!("{}: {e}", output.display()))?;
    println!("wrote {}", output.display());
    Ok(())
}

fn run(
    cpu: bool,
    file: &Path,
    weights: Option<&Path>,
    inputs: &[String],
    outputs: &[String],
) -> Res<()> {
    let (_, plan) = read_plan(file)?;
    let mut dev = device(cpu);
    if let Some(w) = weights {
        // the saved model's variables, by name (no layer definitions needed)
        let bytes = std::fs::read(w).map_err(|e| format!("{}: {e}", w.display()))?;
        let vars = kiln::saved_variables(&bytes).map_err(|e| format!("{}: {e}", w.display()))?;
        for (name, t) in vars {
            dev.write_param(&name, &t)
                .map_err(|e| format!("{}: {e}", w.display()))?;
        }
    }
    let mut feeds: Vec<Option<HostTensor>> = vec![None; plan.inputs.len()];
    for (i, a) in inputs.iter().enumerate() {
        let (slot, path) = named(a, &plan.inputs, i, "input")?;
        let t = kiln::npy::read(Path::new(path)).map_err(|e| e.to_string())?;
        let s = &plan.inputs[slot];
        let t = if t.dtype() != s.dtype && s.dtype == kiln::ir::DType::F32 {
            HostTensor::f32(t.shape.clone(), t.to_f32()).map_err(|e| e.to_string())?
        } else {
            t
        };
        if t.shape != s.shape {
            return Err(format!(
                "{path}: input `{}` expects shape {} ({}), the file holds {}",
                s.name, s.shape, s.dtype, t.shape
            ));
        }
        feeds[slot] = Some(t);
    }
    let missing: Vec<&str> = plan
        .inputs
        .iter()
        .zip(&feeds)
        .filter(|(_, f)| f.is_none())
        .map(|(s, _)| s.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing --input for: {}", missing.join(", ")));
    }
    let feeds: Vec<HostTensor> = feeds.into_iter().flatten().collect();
    let refs: Vec<&HostTensor> = feeds.iter().collect();
    let out_slots = plan.outputs.clone();
    let mut exe = dev.load(Arc::new(plan)).map_err(|e| e.to_string())?;
    let results = exe.run(&refs).map_err(|e| e.to_string())?;
    for (i, a) in outputs.iter().enumerate() {
        let (slot, path) = named(a, &out_slots, i, "output")?;
        kiln::npy::write(Path::new(path), &results[slot]).map_err(|e| e.to_string())?;
        println!(
            "wrote {path}: output `{}` {}",
            out_slots[slot].name, results[slot].shape
        );
    }
    if outputs.is_empty() {
        for (s, t) in out_slots.iter().zip(&results) {
            println!("{} {} = {:?}", s.name, t.shape, t.to_f32());
        }
    }
    Ok(())
}

fn cache(action: CacheAction) -> Res<()> {
    let c = PlanCache::from_env();
    let Some(dir) = c.dir() else {
        println!("the plan cache is disabled (KILN_CACHE=off)");
        return Ok(());
    };
    match action {
        CacheAction::List => {
            let entries = c.list();
            println!(
                "{}: {} plans, {} bytes",
                dir.display(),
                entries.len(),
                entries.iter().map(|e| e.bytes).sum::<u64>()
            );
            for e in entries {
                println!("  {:>10}  {}", e.bytes, e.path.display());
            }
        }
        CacheAction::Clear => println!("removed {} plans from {}", c.clear(), dir.display()),
        CacheAction::Verify => {
            let results = c.verify();
            let bad = results.iter().filter(|(_, r)| r.is_err()).count();
            for (p, r) in &results {
                match r {
                    Ok(()) => println!("  ok    {}", p.display()),
                    Err(e) => println!("  BAD   {}: {e}", p.display()),
                }
            }
            println!("{} plans, {bad} bad", results.len());
            if bad > 0 {
                return Err(format!("{bad} cache entries are invalid (they will be recompiled on use; `kiln cache clear` removes them)"));
            }
        }
    }
    Ok(())
}

fn devices() -> Res<()> {
    let adapters = kiln::gpu::list_adapters();
    if adapters.is_empty() {
        println!("no GPU adapter (kiln runs on the CPU plan interpreter); on Linux: apt-get install mesa-vulkan-drivers libvulkan1");
    }
    for a in adapters {
        println!("{}", a.description);
        println!(
            "  storage buffers/stage {}, max binding {} B, max buffer {} B, invocations/workgroup {}",
            a.max_storage_buffers_per_shader_stage, a.max_storage_buffer_binding_size, a.max_buffer_size, a.max_compute_invocations_per_workgroup
        );
        println!("  features: {}", a.features);
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Compile {
            model,
            batch,
            mode,
            output,
        } => compile(cli.cpu, &model, batch, mode, &output),
        Command::Inspect { file, dot } => inspect(&file, dot),
        Command::Run {
            file,
            weights,
            inputs,
            outputs,
        } => run(cli.cpu, &file, weights.as_deref(), &inputs, &outputs),
        Command::Train {
            file,
            weights,
            inputs,
            epochs,
            output,
        } => train(cli.cpu, &file, &weights, &inputs, epochs, &output),
        Command::Cache { action } => cache(action),
        Command::Devices => devices(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln: error: {e}");
            ExitCode::FAILURE
        }
    }
}
