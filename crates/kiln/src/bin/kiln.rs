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

//!
//! Failure behaviour (docs/FAILURES.md): every error is one line `kiln: error: …` on stderr
//! and exit status 1; a closed stdout (`kiln inspect … --dot | head`) ends the program
//! quietly with status 0; files are read only when regular and within their size limits.

use clap::{Parser, Subcommand, ValueEnum};
use kiln::ir::DType;
use kiln::opt::cache::{CacheKey, PlanCache};
use kiln::opt::{codec, Backend, CompileOptions, HostData, HostTensor, Plan, PlanKind};
use kiln::{load_model, Mode, Sequential};
use std::io::Write as _;
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

/// Why a command stopped.
enum CliError {
    /// An error for the user.
    Msg(String),
    /// stdout was closed by its reader: stop quietly.
    BrokenPipe,
}

impl From<String> for CliError {
    fn from(m: String) -> Self {
        CliError::Msg(m)
    }
}

impl From<&str> for CliError {
    fn from(m: &str) -> Self {
        CliError::Msg(m.to_string())
    }
}

type Res<T> = Result<T, CliError>;

/// Writes to stdout; a reader that went away is [`CliError::BrokenPipe`], not a panic.
fn out(args: std::fmt::Arguments) -> Res<()> {
    let mut o = std::io::stdout().lock();
    o.write_fmt(args).map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => CliError::BrokenPipe,
        _ => CliError::Msg(format!("writing to stdout: {e}")),
    })
}

macro_rules! outln {
    ($($t:tt)*) => { out(format_args!("{}\n", format_args!($($t)*)))? };
}

/// The largest model or `.npy` file kiln reads (a bound, so a device node or a runaway file
/// is refused before memory is committed).
const MAX_DATA_FILE_BYTES: u64 = 1 << 36;

/// Reads a regular data file (model, `.npy`, JSON) within [`MAX_DATA_FILE_BYTES`].
fn read_data_file(path: &Path) -> Res<Vec<u8>> {
    kiln::opt::files::read_regular(path, MAX_DATA_FILE_BYTES)
        .map_err(|e| CliError::Msg(format!("{}: {e}", path.display())))
}

/// An error message for the user: internal category prefixes (`data:`, `backend:`, `run:`)
/// removed and control or undecodable bytes escaped, so a corrupt file cannot write raw
/// binary to the terminal.
fn clean_message(msg: &str) -> String {
    let mut m = msg.to_string();
    for p in ["data: ", "backend: ", "run: "] {
        m = m.replace(&format!(": {p}"), ": ");
        if let Some(rest) = m.strip_prefix(p) {
            m = rest.to_string();
        }
    }
    m.chars()
        .map(|c| {
            if (c.is_control() && c != '\n' && c != '\t') || c == '\u{fffd}' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

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
        let text = String::from_utf8(read_data_file(path)?)
            .map_err(|_| format!("{}: not UTF-8 text (a model JSON file)", path.display()))?;
        Ok(Sequential::from_json(&text, device).map_err(|e| format!("{}: {e}", path.display()))?)
    } else {
        // refuse a FIFO or device before the loader opens it
        kiln::opt::files::open_regular(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(load_model(path, device).map_err(|e| e.to_string())?)
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
    let opts = CompileOptions {
        kind: mode.plan_kind(),
        ..CompileOptions::default()
    };
    let plan = kiln::opt::compile(&g, &opts, &limits).map_err(|e| e.to_string())?;
    let key = CacheKey::new(&g, &opts, &limits, &fingerprint);
    let bytes = codec::encode(&plan, key.digest).map_err(|e| e.to_string())?;
    kiln::opt::cache::write_atomic(output, &bytes)
        .map_err(|e| format!("{}: {e}", output.display()))?;
    outln!(
        "wrote {} ({} bytes): {} plan, {} kernels, {} dispatches per run, inputs [{}], outputs [{}]",
        output.display(),
        bytes.len(),
        plan.kind,
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
    // bounded: a non-regular file is refused unopened, the magic is checked first
    let bytes = codec::read_file(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let (header, _) = codec::read_header(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let plan = codec::decode(&bytes, None).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((header, plan))
}

fn inspect(file: &Path, dot: bool) -> Res<()> {
    let (h, plan) = read_plan(file)?;
    if dot {
        out(format_args!("{}", plan.to_dot()))?;
        return Ok(());
    }
    outln!(
        "{}: kiln plan format {}, written by kiln {}, key {:032x}, body {} bytes",
        file.display(),
        h.format_version,
        h.kiln_version,
        h.key,
        h.body_len
    );
    outln!(
        "  kind   {}{}",
        plan.kind,
        if plan.updates_params() {
            " (a run updates params)"
        } else {
            ""
        }
    );
    for (what, slots) in [
        ("input", &plan.inputs),
        ("output", &plan.outputs),
        ("param", &plan.params),
    ] {
        for s in slots {
            let domain = s
                .indices
                .map(|r| format!("  indices in 0..{r}"))
                .unwrap_or_default();
            outln!("  {what:<6} {:<32} {}{}{domain}", s.name, s.dtype, s.shape);
        }
    }
    out(format_args!("{}", plan.summary()))?;
    outln!("memory plan: {} temporaries", plan.stats.allocations.len());
    for a in &plan.stats.allocations {
        outln!(
            "  buffer {:<3} [{:>9}, {:>9})  steps {:>3}..={:<3}  {}",
            a.buffer,
            a.offset,
            a.offset + a.len,
            a.first,
            a.last,
            a.name
        )
    }
    Ok(())
}

/// Whether `name` is an optimizer hyper-parameter (`optimizer/<name>`, one level) rather
/// than a per-param slot (`optimizer/<param>/<slot>`).
fn is_hyper_param(name: &str) -> bool {
    name.strip_prefix("optimizer/")
        .is_some_and(|rest| !rest.contains('/'))
}

/// Writes the variables a plan runs on to `dev`: every variable of the model file `weights`
/// (checked against the plan's param shapes), plus the state a fresh `compile` would
/// create when the file lacks it — the optimizer's hyper-parameters from the compile
/// configuration stored in the file, its slots and step counter at zero (kiln stores
/// non-zero starts offset), metric accumulators at zero. Any other param the file lacks
/// (a weight, or a hyper-parameter of an optimizer the file does not configure) is an
/// error naming it. Returns the file's variables.
fn supply_params(
    plan: &Plan,
    weights: Option<&Path>,
    dev: &mut dyn Backend,
) -> Res<Vec<(String, HostTensor)>> {
    let (vars, config, file) = match weights {
        Some(w) => {
            let bytes = read_data_file(w)?;
            let vars =
                kiln::saved_variables(&bytes).map_err(|e| format!("{}: {e}", w.display()))?;
            let config = safetensors::SafeTensors::read_metadata(&bytes)
                .ok()
                .and_then(|(_, m)| m.metadata().as_ref()?.get("kiln_model").cloned());
            (vars, config, w.display().to_string())
        }
        None => (vec![], None, String::new()),
    };
    let needs_hyper = plan
        .params
        .iter()
        .any(|p| is_hyper_param(&p.name) && !vars.iter().any(|(n, _)| n == &p.name));
    // the optimizer's starting hyper-parameters, from the model structure stored in the file
    // (only built when the file lacks some)
    let hyper: Option<Vec<(String, f32)>> = config.filter(|_| needs_hyper).and_then(|json| {
        let m =
            Sequential::from_json(&json, Box::new(kiln::opt::interp::CpuBackend::new())).ok()?;
        let c = m.config().compile?;
        Some(c.optimizer.build().hyper_params())
    });
    let mut missing = vec![];
    let mut fresh = vec![];
    for p in &plan.params {
        if let Some((_, t)) = vars.iter().find(|(n, _)| n == &p.name) {
            if t.shape != p.shape {
                return Err(format!(
                    "{file}: variable `{}` has shape {}, the plan needs {}",
                    p.name, t.shape, p.shape
                )
                .into());
            }
            continue;
        }
        let value = if p.name.starts_with("metrics/") {
            Some(0.0)
        } else if is_hyper_param(&p.name)
            && p.name != kiln::ITERATIONS_VARIABLE
            && p.name != kiln::NADAM_SCHEDULE_VARIABLE
        {
            hyper
                .as_ref()
                .and_then(|h| h.iter().find(|(n, _)| n == &p.name))
                .map(|&(_, v)| v)
        } else if p.name.starts_with("optimizer/") {
            Some(0.0)
        } else {
            None
        };
        match value {
            Some(v) => fresh.push((
                p.name.clone(),
                HostTensor::f32(p.shape.clone(), vec![v; p.shape.numel()])
                    .map_err(|e| e.to_string())?,
            )),
            None => missing.push(p.name.as_str()),
        }
    }
    if !missing.is_empty() {
        let source = match weights {
            None => "no --weights was given".to_string(),
            Some(_) if missing.iter().any(|n| is_hyper_param(n)) && hyper.is_none() => {
                format!(
                    "{file} lacks them and stores no compiled optimizer to initialise them from"
                )
            }
            Some(_) => format!("{file} lacks them"),
        };
        return Err(format!(
            "the plan needs {} variable(s) that were not supplied: {} ({source}); pass the model file they come from with --weights",
            missing.len(),
            missing.join(", ")
        )
        .into());
    }
    for (name, t) in vars.iter().chain(&fresh) {
        dev.write_param(name, t)
            .map_err(|e| format!("{file}: {e}"))?;
    }
    Ok(vars)
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
                .into()
            }),
        None if i < slots.len() => Ok((i, arg)),
        None => Err(format!("more --{what} files than plan {what}s ({})", slots.len()).into()),
    }
}

/// A plan `kiln train` can run: a training step.
fn check_train_plan(plan: &kiln::opt::Plan, file: &Path) -> Res<()> {
    match plan.kind {
        PlanKind::Train => Ok(()),
        PlanKind::Graph if plan.updates_params() && !plan.inputs.is_empty() => Ok(()),
        kind => Err(format!(
            "{}: a {kind} plan cannot train: it {} (compile one with `kiln compile MODEL --mode train`)",
            file.display(),
            if plan.updates_params() {
                "is not a training step"
            } else {
                "updates no weights"
            }
        )
        .into()),
    }
}

/// `kiln train` under `mpirun`: data-parallel over the ranks. The plan gives the global batch
/// and the input names; every rank loads the model from `--weights` (which must carry its
/// structure and `compile` setup, as `Sequential::save` writes it) and the whole `.npy`
/// inputs, and trains on its shard of each global batch (the data in order, a short
/// remainder skipped, as in one process); gradients are all-reduced; rank 0 writes the model.
#[cfg(feature = "mpi")]
fn train_distributed(
    cpu: bool,
    file: &Path,
    weights: &Path,
    inputs: &[String],
    epochs: usize,
    output: &Path,
) -> Res<()> {
    use kiln::Collective;
    let (_, plan) = read_plan(file)?;
    check_train_plan(&plan, file)?;
    let group = kiln::dist::Mpi::init().map_err(|e| e.to_string())?;
    let (rank, size) = (group.rank(), group.size());
    let mut model = load_any_model(weights, device(cpu))?;
    if model.graph(kiln::Mode::Train, 1).is_err() {
        return Err(format!(
            "{}: the model file has no `compile` setup (loss, optimizer): data-parallel \
             training builds its gradient and update plans from it",
            weights.display()
        )
        .into());
    }
    let TrainData {
        data,
        n,
        batch,
        steps,
    } = read_train_data(&plan, inputs)?;
    let slot = |name: &str| plan.inputs.iter().position(|s| s.name == name);
    let (Some(xi), Some(yi), 2) = (slot("x"), slot("y"), plan.inputs.len()) else {
        return Err(format!(
            "{}: a model's train plan takes inputs x and y; this one takes {}",
            file.display(),
            plan.inputs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into());
    };
    // the whole batches only, as in one process
    let (x, y) = (
        head(&data[xi], steps * batch)?,
        head(&data[yi], steps * batch)?,
    );
    model.distribute(Box::new(group));
    let fit = kiln::Fit {
        epochs,
        batch_size: batch,
        shuffle: false,
        verbose: false,
        ..kiln::Fit::default()
    };
    let history = match model.fit(&x, &y, fit) {
        Ok(h) => h,
        Err(e) => {
            // said now: dropping the model ends the job when a rank failed
            eprintln!("kiln: error: rank {rank} of {size}: {e}");
            return Err(CliError::Msg(format!("rank {rank}: training failed")));
        }
    };
    if rank == 0 {
        let losses = history.history.get("loss").cloned().unwrap_or_default();
        for (e, l) in losses.iter().enumerate() {
            outln!(
                "epoch {}/{epochs}: {steps} steps of {batch} on {size} ranks, loss {l:.6}{}",
                e + 1,
                if !n.is_multiple_of(batch) {
                    format!(" ({} samples left over)", n % batch)
                } else {
                    String::new()
                }
            );
        }
        model
            .save(output)
            .map_err(|e| format!("{}: {e}", output.display()))?;
        outln!("wrote {}", output.display());
    }
    Ok(())
}

/// The first `rows` samples of `t`, in its dtype.
#[cfg(feature = "mpi")]
fn head(t: &HostTensor, rows: usize) -> Res<HostTensor> {
    let len = rows * t.shape.dims()[1..].iter().product::<usize>();
    let mut dims = t.shape.dims().to_vec();
    dims[0] = rows;
    match &t.data {
        HostData::F32(v) => HostTensor::f32(dims, v[..len].to_vec()),
        HostData::I32(v) => HostTensor::i32(dims, v[..len].to_vec()),
    }
    .map_err(|e| CliError::Msg(e.to_string()))
}

/// The data sets of a training run, one per plan input slot, and how they batch.
struct TrainData {
    /// Whole data sets, in slot order.
    data: Vec<HostTensor>,
    /// Samples in each.
    n: usize,
    /// The plan's batch.
    batch: usize,
    /// Whole batches (a short remainder is skipped).
    steps: usize,
}

/// Reads the `--input` files of `kiln train`, checked against the plan's input slots: shapes,
/// index domains, one sample count, at least one batch.
fn read_train_data(plan: &kiln::opt::Plan, inputs: &[String]) -> Res<TrainData> {
    // whole data sets per input slot
    let mut data: Vec<Option<HostTensor>> = vec![None; plan.inputs.len()];
    for (i, a) in inputs.iter().enumerate() {
        let (slot, path) = named(a, &plan.inputs, i, "input")?;
        let t = kiln::npy::read(Path::new(path)).map_err(|e| e.to_string())?;
        let s = &plan.inputs[slot];
        // index inputs are checked whole, before the first step (no partial training)
        if let Some(rows) = s.indices {
            kiln::opt::check_indices(&s.name, &t, rows).map_err(|e| format!("{path}: {e}"))?;
        }
        let (td, sd) = (t.shape.dims(), s.shape.dims());
        if td.len() != sd.len() || td.is_empty() || td[1..] != sd[1..] {
            return Err(format!(
                "{path}: input `{}` takes batches of {} ({}); the file holds {}",
                s.name, s.shape, s.dtype, t.shape
            )
            .into());
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
        return Err(format!("missing --input for: {}", missing.join(", ")).into());
    }
    let data: Vec<HostTensor> = data.into_iter().flatten().collect();
    let n = data[0].shape.dims()[0];
    if data.iter().any(|d| d.shape.dims()[0] != n) {
        return Err(CliError::Msg(
            "every --input must hold the same number of samples".into(),
        ));
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
        return Err(format!("{n} samples are fewer than the plan's batch of {batch}").into());
    }
    Ok(TrainData {
        data,
        n,
        batch,
        steps,
    })
}

fn train(
    cpu: bool,
    file: &Path,
    weights: &Path,
    inputs: &[String],
    epochs: usize,
    output: &Path,
) -> Res<()> {
    #[cfg(feature = "mpi")]
    if kiln::dist::launched_by_mpirun() {
        return train_distributed(cpu, file, weights, inputs, epochs, output);
    }
    let (_, plan) = read_plan(file)?;
    check_train_plan(&plan, file)?;
    let mut dev = device(cpu);

    let vars = supply_params(&plan, Some(weights), &mut *dev)?;
    let wbytes = read_data_file(weights)?;
    let TrainData {
        data,
        n,
        batch,
        steps,
    } = read_train_data(&plan, inputs)?;
    let slots = plan.inputs.clone();
    let params = plan.params.clone();
    let mut exe = dev.load(Arc::new(plan)).map_err(|e| e.to_string())?;
    for epoch in 0..epochs {
        for s in 0..steps {
            let feeds: Vec<HostTensor> = data
                .iter()
                .zip(&slots)
                .map(|(d, slot)| {
                    // only this batch's rows are converted (not the whole data set)
                    let row: usize = d.shape.dims()[1..].iter().product();
                    let r = s * batch * row..(s + 1) * batch * row;
                    let shape = slot.shape.clone();
                    match (&d.data, slot.dtype) {
                        (HostData::F32(v), DType::F32) => HostTensor::f32(shape, v[r].to_vec()),
                        (HostData::I32(v), DType::I32) => HostTensor::i32(shape, v[r].to_vec()),
                        (HostData::I32(v), DType::F32) => {
                            HostTensor::f32(shape, v[r].iter().map(|&x| x as f32).collect())
                        }
                        (HostData::F32(v), DType::I32) => {
                            HostTensor::i32(shape, v[r].iter().map(|&x| x as i32).collect())
                        }
                    }
                    .map_err(|e| CliError::Msg(e.to_string()))
                })
                .collect::<Res<_>>()?;
            let refs: Vec<&HostTensor> = feeds.iter().collect();
            exe.run(&refs).map_err(|e| e.to_string())?;
        }
        outln!(
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
    outln!("wrote {}", output.display());
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
    // the saved model's variables, by name (no layer definitions needed); every param the
    // plan reads must be supplied
    supply_params(&plan, weights, &mut *dev)?;
    if plan.kind == PlanKind::Train || plan.updates_params() {
        eprintln!(
            "kiln: note: {} is a {} plan: a run performs one training step (it updates the weights it was given, on the device; nothing is saved — `kiln train` writes the updated model)",
            file.display(),
            plan.kind
        );
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
            )
            .into());
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
        return Err(format!("missing --input for: {}", missing.join(", ")).into());
    }
    let feeds: Vec<HostTensor> = feeds.into_iter().flatten().collect();
    let refs: Vec<&HostTensor> = feeds.iter().collect();
    let out_slots = plan.outputs.clone();
    let mut exe = dev.load(Arc::new(plan)).map_err(|e| e.to_string())?;
    let results = exe.run(&refs).map_err(|e| e.to_string())?;
    for (i, a) in outputs.iter().enumerate() {
        let (slot, path) = named(a, &out_slots, i, "output")?;
        kiln::npy::write(Path::new(path), &results[slot]).map_err(|e| e.to_string())?;
        outln!(
            "wrote {path}: output `{}` {}",
            out_slots[slot].name,
            results[slot].shape
        );
    }
    if outputs.is_empty() {
        for (s, t) in out_slots.iter().zip(&results) {
            outln!("{} {} = {:?}", s.name, t.shape, t.to_f32());
        }
    }
    Ok(())
}

/// Checks every `KILN_*` variable kiln-plan parses, so a bad value stops any command with
/// an error naming it (instead of being ignored by the part that would read it).
fn check_env() -> Res<()> {
    use kiln::opt::env;
    let e = |e: kiln::opt::EnvError| CliError::Msg(e.to_string());
    env::cache_enabled().map_err(e)?;
    env::cache_dir().map_err(e)?;
    env::cache_max_mb().map_err(e)?;
    env::adapter().map_err(e)?;
    env::require_gpu().map_err(e)?;
    env::bool_var("KILN_SUBGROUPS", true).map_err(e)?;
    Ok(())
}

fn cache(action: CacheAction) -> Res<()> {
    let c = PlanCache::try_from_env().map_err(|e| e.to_string())?;
    let Some(dir) = c.dir() else {
        outln!("the plan cache is disabled (KILN_CACHE=off)");
        return Ok(());
    };
    match action {
        CacheAction::List => {
            let entries = c.list();
            outln!(
                "{}: {} plans, {} bytes",
                dir.display(),
                entries.len(),
                entries.iter().map(|e| e.bytes).sum::<u64>()
            );
            for e in entries {
                outln!("  {:>10}  {}", e.bytes, e.path.display());
            }
        }
        CacheAction::Clear => {
            let report = c.clear_all();
            outln!("removed {} plans from {}", report.removed, dir.display());
            if !report.failed.is_empty() {
                for (p, why) in &report.failed {
                    eprintln!("kiln: could not remove {}: {why}", p.display());
                }
                return Err(format!(
                    "{} cache files could not be removed from {}",
                    report.failed.len(),
                    dir.display()
                )
                .into());
            }
        }
        CacheAction::Verify => {
            let results = c.verify();
            let bad = results.iter().filter(|(_, r)| r.is_err()).count();
            for (p, r) in &results {
                match r {
                    Ok(()) => outln!("  ok    {}", p.display()),
                    Err(e) => outln!("  BAD   {}: {e}", p.display()),
                }
            }
            outln!("{} plans, {bad} bad", results.len());
            if bad > 0 {
                return Err(format!("{bad} cache entries are invalid (they will be recompiled on use; `kiln cache clear` removes them)").into());
            }
        }
    }
    Ok(())
}

fn devices() -> Res<()> {
    let adapters = kiln::gpu::list_adapters();
    if adapters.is_empty() {
        outln!("no GPU adapter (kiln runs on the native CPU backend); for wgpu on Linux: apt-get install mesa-vulkan-drivers libvulkan1");
    }
    outln!("{}", kiln::native_device().describe());
    for a in adapters {
        outln!("{}", a.description);
        outln!(
            "  storage buffers/stage {}, max binding {} B, max buffer {} B, invocations/workgroup {}",
            a.max_storage_buffers_per_shader_stage, a.max_storage_buffer_binding_size, a.max_buffer_size, a.max_compute_invocations_per_workgroup
        );
        outln!("  features: {}", a.features);
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = check_env().and_then(|()| match cli.command {
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
    });
    match r {
        // a reader that stopped reading (`| head`) is not an error of the command
        Ok(()) | Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(CliError::Msg(e)) => {
            eprintln!("kiln: error: {}", clean_message(&e));
            ExitCode::FAILURE
        }
    }
}
