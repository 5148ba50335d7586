//! A Keras MLP on scikit-learn's 8 × 8 digits in kiln: `Dense(100, relu) → Dense(10,
//! softmax)`, categorical crossentropy on `to_categorical` labels, RMSprop (or Adam), features
//! scaled from 0..16 to [0, 1], a 25 % stratified holdout as validation data. Reports the
//! holdout accuracy (reference: scikit-learn's MLP ~97.8 %).
//!
//! `cargo run --release --example digits -- [--seed N] [--epochs N] [--optimizer rmsprop|adam] [--cpu]`
//!
//! The data come from `kiln::datasets::digits()` (`../shared/data/digits.csv.gz`, or
//! `$KILN_DATA_DIR`).

mod task;

use kiln::Fit;

struct Args {
    seed: u64,
    epochs: usize,
    opt: task::Opt,
    cpu: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seed: 1,
        epochs: 30,
        opt: task::Opt::RmsProp,
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
            "--epochs" => {
                a.epochs = value("--epochs")?
                    .parse()
                    .map_err(|e| format!("--epochs: {e}"))?
            }
            "--optimizer" => {
                a.opt = match value("--optimizer")?.to_lowercase().as_str() {
                    "rmsprop" => task::Opt::RmsProp,
                    "adam" => task::Opt::Adam,
                    o => return Err(format!("--optimizer: `{o}` is not rmsprop or adam")),
                }
            }
            "--cpu" => a.cpu = true,
            "-h" | "--help" => {
                println!(
                    "usage: digits [--seed N] [--epochs N] [--optimizer rmsprop|adam] [--cpu]"
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
    let data = task::load(args.seed)?;
    let mut model = task::model(device, args.seed, args.opt)?;
    println!("device: {}", model.device());
    println!(
        "digits: {} training / {} holdout images (stratified), 64 features / {}",
        data.labels_train.len(),
        data.labels_test.len(),
        task::SCALE
    );
    println!(
        "== Dense({}, relu) → Dense(10, softmax), categorical crossentropy, {}\n{}",
        task::HIDDEN,
        args.opt.name(),
        model.summary()
    );
    let (_, timing) = task::fit_timed(
        &mut model,
        &data.x_train,
        &data.y_train,
        Fit {
            epochs: args.epochs,
            batch_size: 32,
            validation_data: Some((data.x_test.clone(), data.y_test.clone())),
            ..Fit::default()
        },
    )?;
    let train = task::accuracy(&model.predict(&data.x_train, 256)?, &data.labels_train);
    let test = task::accuracy(&model.predict(&data.x_test, 256)?, &data.labels_test);
    println!("\nresult (seed {}, {}):", args.seed, args.opt.name());
    println!(
        "  train accuracy {:.1} %, holdout accuracy {:.1} %",
        train * 100.0,
        test * 100.0
    );
    println!(
        "  epoch 1 {:.2} s (plans compiled or loaded), then {:.0} ms/epoch (validation included)",
        timing.first(),
        timing.steady() * 1e3
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("digits: error: {e}");
        std::process::exit(1);
    }
}
