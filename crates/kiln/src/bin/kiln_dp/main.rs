//! `kiln-dp`: data-parallel training over MPI, for checks and benchmarks (cargo feature
//! `mpi`). Run it under `mpirun`:
//!
//! ```text
//! mpirun -np 2 target/release/kiln-dp check --model lstm --out w.bin
//! mpirun -np 4 target/release/kiln-dp bench --model mlp --steps 200
//! ```
//!
//! - `check` trains one of three small models (plain SGD, Adam with `clipnorm`, an Embedding +
//!   LSTM with dropout) for a few epochs on generated data and writes the final weights (rank
//!   0, raw little-endian f32) — with `--single`, in one process without MPI: the reference
//!   the tests compare multi-rank runs with. `--trace` prints a line per step (for the tests
//!   that kill or stop a rank mid-run).
//! - `bench` times training steps and prints steps/s and the bytes each rank sends per step.

mod models;

use clap::{Parser, Subcommand, ValueEnum};
use kiln::dist::Mpi;
use kiln::{Callback, CallbackContext, Collective, Fit, HostTensor, Sequential};
use models::{build, data, Model};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "kiln-dp", about = "kiln data-parallel training over MPI")]
struct Cli {
    /// The device of every rank.
    #[arg(long, value_enum, default_value = "native", global = true)]
    device: DeviceArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    /// The native CPU backend.
    Native,
    /// A wgpu adapter (lavapipe on a machine without a GPU).
    Wgpu,
    /// The CPU plan interpreter.
    Reference,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModelArg {
    /// Dense(16, tanh) -> Dense(2, softmax), plain SGD.
    Sgd,
    /// The same with Adam and clipnorm 1.
    Adam,
    /// Embedding(12, 4) -> LSTM(8, dropout 0.2, recurrent dropout 0.1) -> Dense(2), Adam.
    Lstm,
    /// A 784-256-10 MLP with Adam (benchmark).
    Mlp,
    /// Embedding(5000, 32) -> LSTM(100) -> Dense(1): the IMDB tutorial's model on 80 tokens
    /// (benchmark).
    Imdb,
}

#[derive(Subcommand)]
enum Command {
    /// Train a small model and write its final weights.
    Check {
        #[arg(long, value_enum)]
        model: ModelArg,
        /// Raw little-endian f32 weights, written by rank 0.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        /// One process, no MPI: the reference run.
        #[arg(long)]
        single: bool,
        /// Print `rank R pid P` at the start and `rank R step S` after each step.
        #[arg(long)]
        trace: bool,
    },
    /// Time data-parallel training steps.
    Bench {
        #[arg(long, value_enum, default_value = "mlp")]
        model: ModelArg,
        /// Timed steps (after 3 warm-up steps).
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// Global batch.
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// One process without MPI, the fused training step: the baseline.
        #[arg(long)]
        single: bool,
    },
}

fn device(d: DeviceArg) -> Result<Box<dyn kiln::Backend>, String> {
    Ok(match d {
        DeviceArg::Native => kiln::native_device(),
        DeviceArg::Wgpu => kiln::gpu_device().map_err(|e| e.to_string())?,
        DeviceArg::Reference => Box::new(kiln::opt::interp::CpuBackend::new()),
    })
}

impl ModelArg {
    fn model(self) -> Model {
        match self {
            ModelArg::Sgd => Model::Sgd,
            ModelArg::Adam => Model::Adam,
            ModelArg::Lstm => Model::Lstm,
            ModelArg::Mlp => Model::Mlp,
            ModelArg::Imdb => Model::Imdb,
        }
    }
}

/// `--trace`: a line per step, flushed, for the fault tests.
struct Trace(usize, usize);

impl Callback for Trace {
    fn on_batch_end(&mut self, _: &mut CallbackContext<'_>, _: usize) -> kiln::Result<()> {
        self.1 += 1;
        println!("rank {} step {}", self.0, self.1);
        let _ = std::io::stdout().flush();
        Ok(())
    }
}

fn check(
    dev: DeviceArg,
    which: ModelArg,
    out: Option<PathBuf>,
    epochs: usize,
    single: bool,
    trace: bool,
) -> Result<(), String> {
    let mut m = build(device(dev)?, which.model()).map_err(|e| e.to_string())?;
    let mut rank = 0;
    if !single {
        let group = Mpi::init().map_err(|e| e.to_string())?;
        rank = group.rank();
        m.distribute(Box::new(group));
    }
    if trace {
        println!("rank {rank} pid {}", std::process::id());
        let _ = std::io::stdout().flush();
    }
    let (x, y) = data(which.model(), 50).map_err(|e| e.to_string())?;
    let fit = Fit {
        epochs,
        batch_size: 16,
        verbose: false,
        ..Fit::default()
    };
    let mut tr = Trace(rank, 0);
    let mut cbs: Vec<&mut dyn Callback> = vec![];
    if trace {
        cbs.push(&mut tr);
    }
    let h = m.fit_with_callbacks(&x, &y, fit, &mut cbs).map_err(said)?;
    let w = m.get_weights().map_err(|e| e.to_string())?;
    if m.is_chief() {
        println!(
            "{which:?}: loss per epoch {:?}",
            h.history.get("loss").cloned().unwrap_or_default()
        );
        if let Some(out) = out {
            let bytes: Vec<u8> = w
                .iter()
                .flat_map(|t| t.to_f32())
                .flat_map(|v| v.to_le_bytes())
                .collect();
            kiln::opt::cache::write_atomic(&out, &bytes)
                .map_err(|e| format!("{}: {e}", out.display()))?;
        }
    }
    Ok(())
}

fn bench(
    dev: DeviceArg,
    which: ModelArg,
    steps: usize,
    batch: usize,
    single: bool,
) -> Result<(), String> {
    let mut m = build(device(dev)?, which.model()).map_err(|e| e.to_string())?;
    let (mut rank, mut size) = (0, 1);
    if !single {
        let group = Mpi::init().map_err(|e| e.to_string())?;
        (rank, size) = (group.rank(), group.size());
        m.distribute(Box::new(group));
    }
    let (x, y) = data(which.model(), batch * (steps + 3)).map_err(|e| e.to_string())?;
    let run = |m: &mut Sequential, n: usize, skip: usize| -> Result<f64, String> {
        // `n` steps over rows skip.. (no shuffling: each step its own global batch)
        let rows: Vec<usize> = (skip * batch..(skip + n) * batch).collect();
        let xs = pick(&x, &rows)?;
        let ys = pick(&y, &rows)?;
        let fit = Fit {
            epochs: 1,
            batch_size: batch,
            shuffle: false,
            verbose: false,
            ..Fit::default()
        };
        let t = Instant::now();
        m.fit(&xs, &ys, fit).map_err(said)?;
        Ok(t.elapsed().as_secs_f64())
    };
    run(&mut m, 3, 0)?;
    let before = m.distributed_stats();
    let secs = run(&mut m, steps, 3)?;
    let st = m.distributed_stats();
    let sent = st.grad_bytes_sent - before.grad_bytes_sent;
    if rank == 0 {
        println!(
            "model {which:?} device {} {} ranks {size} global_batch {batch} steps {steps} \
             seconds {secs:.3} steps_per_s {:.2} samples_per_s {:.0} grad_elems_per_step {} \
             buckets_per_step {} grad_bytes_sent_per_step_per_rank {}",
            m.device(),
            if single { "fused" } else { "split" },
            steps as f64 / secs,
            (steps * batch) as f64 / secs,
            st.grad_elems_per_step,
            st.buckets_per_step,
            sent / steps as u64
        );
    }
    Ok(())
}

/// Prints a training error at once: the model (and its MPI group) is dropped on the way out,
/// and a failed group ends the job when dropped.
fn said(e: kiln::LayerError) -> String {
    eprintln!("kiln-dp: {e}");
    let _ = std::io::stderr().flush();
    String::new()
}

fn pick(t: &HostTensor, rows: &[usize]) -> Result<HostTensor, String> {
    let row: usize = t.shape.dims()[1..].iter().product();
    let v = t.to_f32();
    let mut out = Vec::with_capacity(rows.len() * row);
    for &r in rows {
        out.extend_from_slice(&v[r * row..(r + 1) * row]);
    }
    let mut dims = t.shape.dims().to_vec();
    dims[0] = rows.len();
    HostTensor::f32(dims, out).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Check {
            model,
            out,
            epochs,
            single,
            trace,
        } => check(cli.device, model, out, epochs, single, trace),
        Command::Bench {
            model,
            steps,
            batch,
            single,
        } => bench(cli.device, model, steps, batch, single),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("kiln-dp: {e}");
            }
            let _ = std::io::stderr().flush();
            ExitCode::FAILURE
        }
    }
}
