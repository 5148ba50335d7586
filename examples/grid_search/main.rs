//! Grid search over `batch_size × epochs` with 3-fold cross-validation, as the scikit-learn
//! `KerasClassifier` + `GridSearchCV` tutorial does, on scikit-learn's 8 × 8 digits:
//! `Dense(32, relu) → Dense(10, softmax)`, sparse categorical crossentropy, Adam.
//!
//! `cargo run --release --example grid_search -- [--seed N] [--batch-sizes 10,20,40] [--epochs 1,2,3] [--cpu]`
//!
//! The data come from `kiln::datasets::digits()` (`../shared/data/digits.csv.gz`, or
//! `$KILN_DATA_DIR`).

mod task;

use std::time::Instant;

struct Args {
    seed: u64,
    batch_sizes: Vec<usize>,
    epochs: Vec<usize>,
    cpu: bool,
}

fn list(flag: &str, v: &str) -> Result<Vec<usize>, String> {
    let out: Vec<usize> = v
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{flag}: {e} in `{v}` (expected e.g. 10,20,40)"))?;
    if out.is_empty() || out.contains(&0) {
        return Err(format!("{flag}: values must be at least 1, got `{v}`"));
    }
    Ok(out)
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seed: 1,
        batch_sizes: task::BATCH_SIZES.to_vec(),
        epochs: task::EPOCHS.to_vec(),
        cpu: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--seed" => {
                a.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--batch-sizes" => a.batch_sizes = list("--batch-sizes", &value("--batch-sizes")?)?,
            "--epochs" => a.epochs = list("--epochs", &value("--epochs")?)?,
            "--cpu" => a.cpu = true,
            "-h" | "--help" => {
                println!(
                    "usage: grid_search [--seed N] [--batch-sizes 10,20,40] [--epochs 1,2,3] [--cpu]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(a)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let device = if args.cpu {
        Box::new(kiln::opt::interp::CpuBackend::new()) as Box<dyn kiln::Backend>
    } else {
        kiln::default_device()
    };
    let data = task::load()?;
    let probe = task::model(device, args.seed)?;
    println!("device: {}", probe.device());
    println!(
        "digits: {} images, 64 features / {}, {} classes; stratified {}-fold cross-validation",
        data.labels.len(),
        task::SCALE,
        task::CLASSES,
        task::FOLDS
    );
    println!(
        "== KerasClassifier: Dense({}, relu) → Dense(10, softmax), sparse categorical \
         crossentropy, Adam\n{}",
        task::HIDDEN,
        probe.summary()
    );
    let device = probe.into_device();
    println!(
        "param_grid = {{'batch_size': {:?}, 'epochs': {:?}}}",
        args.batch_sizes, args.epochs
    );
    let t0 = Instant::now();
    let results = task::grid_search(
        &data,
        &args.batch_sizes,
        &args.epochs,
        args.seed,
        device,
        &mut |r| {
            println!(
                "  [{:>6.1} s] {} folds: {}",
                t0.elapsed().as_secs_f64(),
                r.params(),
                r.scores
                    .iter()
                    .map(|s| format!("{s:.4}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
    )?;
    println!(
        "\nresult (seed {}, {} fits in {:.1} s):",
        args.seed,
        results.len() * task::FOLDS,
        t0.elapsed().as_secs_f64()
    );
    print!("{}", task::report(&results));
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("grid_search: error: {e}");
        std::process::exit(1);
    }
}
