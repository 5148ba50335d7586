//! The Keras MLP tutorial in kiln: points in [-2, 2]², label 1 inside the unit circle.
//! Trains the linear model (Dense(2), mse, SGD) and the deep model (tanh 3 → tanh 3 →
//! softmax 2, binary crossentropy, SGD), 50 epochs of batch 5, and writes PNGs of the
//! validation points coloured by predicted probability.
//!
//! `cargo run --release --example unit_circle -- [--out DIR] [--seed N] [--epochs N] [--cpu]`

mod task;

use kiln::{Fit, HostTensor};
use std::path::{Path, PathBuf};

struct Args {
    out: PathBuf,
    seed: u64,
    epochs: usize,
    cpu: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        out: PathBuf::from("out"),
        seed: 1,
        epochs: 50,
        cpu: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--out" => a.out = PathBuf::from(value("--out")?),
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
            "--cpu" => a.cpu = true,
            "-h" | "--help" => {
                println!("usage: unit_circle [--out DIR] [--seed N] [--epochs N] [--cpu]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(a)
}

/// Matplotlib's `brg` colour map: blue (0) → red (0.5) → green (1).
fn brg(p: f32) -> [u8; 3] {
    let p = p.clamp(0.0, 1.0);
    if p < 0.5 {
        let t = p * 2.0;
        [(255.0 * t) as u8, 0, (255.0 * (1.0 - t)) as u8]
    } else {
        let t = (p - 0.5) * 2.0;
        [(255.0 * (1.0 - t)) as u8, (255.0 * t) as u8, 0]
    }
}

fn write_png(
    path: &Path,
    x: &HostTensor,
    p: &HostTensor,
) -> Result<(), Box<dyn std::error::Error>> {
    const S: usize = 400;
    let mut img = vec![255u8; S * S * 3];
    let (xs, ps) = (x.to_f32(), p.to_f32());
    // the unit circle, in grey
    for i in 0..2000 {
        let t = i as f32 / 2000.0 * std::f32::consts::TAU;
        let (px, py) = (
            (t.cos() + 2.0) / 4.0 * (S - 1) as f32,
            (2.0 - t.sin()) / 4.0 * (S - 1) as f32,
        );
        let o = (py as usize * S + px as usize) * 3;
        img[o..o + 3].copy_from_slice(&[160, 160, 160]);
    }
    for (pt, pr) in xs.chunks(2).zip(ps.chunks(2)) {
        let cx = ((pt[0] + 2.0) / 4.0 * (S - 1) as f32) as i64;
        let cy = ((2.0 - pt[1]) / 4.0 * (S - 1) as f32) as i64;
        let c = brg(pr[1]);
        for dy in -2..=2 {
            for dx in -2..=2 {
                let (u, v) = (cx + dx, cy + dy);
                if (0..S as i64).contains(&u) && (0..S as i64).contains(&v) {
                    let o = (v as usize * S + u as usize) * 3;
                    img[o..o + 3].copy_from_slice(&c);
                }
            }
        }
    }
    let tmp = path.with_extension("png.tmp");
    {
        let f = std::fs::File::create(&tmp)?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), S as u32, S as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(&img)?;
        w.finish()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn accuracy(p: &HostTensor, y: &HostTensor) -> f64 {
    let (p, y) = (p.to_f32(), y.to_f32());
    let hits = p
        .chunks(2)
        .zip(y.chunks(2))
        .filter(|(p, y)| (p[1] > p[0]) == (y[1] > y[0]))
        .count();
    hits as f64 / (p.len() / 2) as f64
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
    let (x, y) = task::make_data(1000, args.seed);
    let (xv, yv) = task::make_data(1000, args.seed + 1000);
    std::fs::create_dir_all(&args.out)?;
    let fit = Fit {
        epochs: args.epochs,
        batch_size: 5,
        ..Fit::default()
    };

    let mut linear = task::linear_model(device(), args.seed)?;
    println!("device: {}", linear.device());
    println!(
        "== linear model: Dense(2), mse, SGD(0.01)\n{}",
        linear.summary()
    );
    linear.fit(&x, &y, fit.clone())?;
    let (lt, lv) = (
        accuracy(&linear.predict(&x, 100)?, &y),
        linear.predict(&xv, 100)?,
    );
    let lva = accuracy(&lv, &yv);
    write_png(&args.out.join("linear.png"), &xv, &lv)?;

    let mut deep = task::deep_model(device(), args.seed, 0.01)?;
    println!(
        "== deep model: tanh(3) → tanh(3) → softmax(2), binary crossentropy, SGD(0.01)\n{}",
        deep.summary()
    );
    deep.fit(&x, &y, fit)?;
    let (dt, dv) = (
        accuracy(&deep.predict(&x, 100)?, &y),
        deep.predict(&xv, 100)?,
    );
    let dva = accuracy(&dv, &yv);
    write_png(&args.out.join("deep.png"), &xv, &dv)?;

    println!("\nresult (seed {}):", args.seed);
    println!(
        "  linear: train accuracy {:.1} %, validation accuracy {:.1} %",
        lt * 100.0,
        lva * 100.0
    );
    println!(
        "  deep:   train accuracy {:.1} %, validation accuracy {:.1} %",
        dt * 100.0,
        dva * 100.0
    );
    println!(
        "  wrote {} and {}",
        args.out.join("linear.png").display(),
        args.out.join("deep.png").display()
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("unit_circle: error: {e}");
        std::process::exit(1);
    }
}
