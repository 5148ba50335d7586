//! The regression part of the "neural networks, deep learning, and keras" tutorial in kiln:
//! five row-normalized page counts → one continuous response, 325 training and 424
//! validation rows (synthetic stand-ins for the tutorial's Wikipedia pages, see `task.rs`).
//! Trains `Dense(2, relu) → Dense(1)` (mse, SGD, 5 epochs) with `validation_data` and prints
//! its weights (`get_weights()`), then the deeper model (four `Dense(32, relu)` → `Dense(1)`,
//! 25 epochs), and reports the training and validation mse of both.
//!
//! `cargo run --release --example regression -- [--seed N] [--epochs N] [--cpu]`
//! (`--epochs` sets both models' epochs; default 5 and 25 as in the tutorial)

mod task;

use kiln::{Fit, HostTensor, Sequential};

struct Args {
    seed: u64,
    epochs: Option<usize>,
    cpu: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seed: 1,
        epochs: None,
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
                a.epochs = Some(
                    value("--epochs")?
                        .parse()
                        .map_err(|e| format!("--epochs: {e}"))?,
                )
            }
            "--cpu" => a.cpu = true,
            "-h" | "--help" => {
                println!("usage: regression [--seed N] [--epochs N] [--cpu]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(a)
}

/// A tensor as NumPy prints it (`[[a, b],\n [c, d]]` for a matrix).
fn numpy(t: &HostTensor) -> String {
    let v = t.to_f32();
    let row = |r: &[f32]| {
        let cells: Vec<String> = r.iter().map(|x| format!("{x:>11.8}")).collect();
        format!("[{}]", cells.join(", "))
    };
    match t.shape.dims() {
        [_, c] => {
            let rows: Vec<String> = v.chunks((*c).max(1)).map(row).collect();
            format!("[{}]", rows.join(",\n  "))
        }
        _ => row(&v),
    }
}

/// `%.4e` as C writes it (`5.3198e-04`), Keras's format for small losses.
fn sci(v: f64) -> String {
    let s = format!("{v:.4e}");
    match s.split_once('e') {
        Some((m, e)) => match e.strip_prefix('-') {
            Some(d) => format!("{m}e-{d:0>2}"),
            None => format!("{m}e+{e:0>2}"),
        },
        None => s,
    }
}

/// Fits `model` with the tutorial's settings, returning (train mse, validation mse, epoch
/// times).
fn train(
    model: &mut Sequential,
    data: &task::Data,
    epochs: usize,
) -> Result<(f64, f64, task::timing::Timing), Box<dyn std::error::Error>> {
    println!(
        "Train on {} samples, validate on {} samples",
        task::N_TRAIN,
        task::N_PAGES - task::N_TRAIN
    );
    let (_, timing) = task::fit_timed(
        model,
        &data.x_train,
        &data.y_train,
        Fit {
            epochs,
            batch_size: 32,
            validation_data: Some((data.x_test.clone(), data.y_test.clone())),
            ..Fit::default()
        },
    )?;
    let train = task::mse(&model.predict(&data.x_train, 128)?, &data.y_train);
    let val = task::mse(&model.predict(&data.x_test, 128)?, &data.y_test);
    Ok((train, val, timing))
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let device = || {
        if args.cpu {
            Box::new(kiln::opt::interp::CpuBackend::new()) as Box<dyn kiln::Backend>
        } else {
            kiln::default_device()
        }
    };
    let data = task::make_data(args.seed);
    println!(
        "features (normalized row-wise): {}",
        task::FEATURES.join(", ")
    );

    let mut small = task::small_model(device(), args.seed)?;
    println!("device: {}", small.device());
    println!(
        "== Dense(2, relu) → Dense(1), mse, SGD(0.01)\n{}",
        small.summary()
    );
    let (st, sv, s_epoch) = train(&mut small, &data, args.epochs.unwrap_or(5))?;
    let w = small.get_weights()?;
    println!("model.layers[0].get_weights():");
    println!("[array({}),\n array({})]", numpy(&w[0]), numpy(&w[1]));
    println!("model.layers[1].get_weights():");
    println!("[array({}),\n array({})]", numpy(&w[2]), numpy(&w[3]));

    let mut deep = task::deep_model(device(), args.seed)?;
    println!(
        "\n== 4 × Dense(32, relu) → Dense(1), mse, SGD(0.01)\n{}",
        deep.summary()
    );
    let (dt, dv, d_epoch) = train(&mut deep, &data, args.epochs.unwrap_or(25))?;

    let base = task::mean_baseline(&data.y_train, &data.y_test);
    println!("\nresult (seed {}):", args.seed);
    for (name, t, v, timing) in [("small:", st, sv, s_epoch), ("deep: ", dt, dv, d_epoch)] {
        println!(
            "  {name} train mse {}, validation mse {} (epoch 1 {:.2} s, then {:.1} ms/epoch)",
            sci(t),
            sci(v),
            timing.first(),
            timing.steady() * 1e3
        );
    }
    println!(
        "  predicting the training mean: train mse {}, validation mse {}",
        sci(task::mean_baseline(&data.y_train, &data.y_train)),
        sci(base)
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("regression: error: {e}");
        std::process::exit(1);
    }
}
