//! `fit_scaling`: the step time of `fit` as the data set grows (issue 11). `fit` gathers only
//! the rows of each batch, so the time per step must not depend on the number of rows: a
//! 784-64-10 MLP (MNIST-sized rows, batch 128, shuffled) trains one epoch on 4k, 16k and 64k
//! random rows and the table shows ms/step of each and the 64k / 4k ratio.

use super::{make_device, mean, row, timed, DeviceKind, Res, Row};
use kiln::ir::random::Rng;
use kiln::opt::HostTensor;
use kiln::{Activation, Dense, Fit, Loss, Sequential, Sgd};
use serde_json::{json, Value};

const BATCH: usize = 128;
const SIZES: [usize; 3] = [4096, 16384, 65536];

/// Times one shuffled epoch of `fit` per data-set size; `budget` seconds per size.
pub(crate) fn bench_fit_scaling(kind: DeviceKind, budget: f64, rows: &mut Vec<Row>) -> Res<Value> {
    let mut m = Sequential::new(make_device(kind)?).seed(4);
    m.add(Dense::new(64).activation(Activation::Relu).input_dim(784))?;
    m.add(Dense::new(10).activation(Activation::Softmax))?;
    m.compile(Loss::CategoricalCrossentropy, Sgd::new(0.01), &[])?;
    let fit = Fit {
        epochs: 1,
        batch_size: BATCH,
        shuffle: true,
        verbose: false,
        ..Fit::default()
    };
    let mut rng = Rng::new(11);
    let mut per_size = vec![];
    for n in SIZES {
        let x: Vec<f32> = (0..n * 784).map(|_| rng.next_f64() as f32).collect();
        let mut y = vec![0f32; n * 10];
        for r in 0..n {
            y[r * 10 + rng.below(10)] = 1.0;
        }
        let x = HostTensor::f32([n, 784], x)?;
        let y = HostTensor::f32([n, 10], y)?;
        let (_, runs) = timed(budget, 3, 5, || {
            m.fit(&x, &y, fit.clone())?;
            Ok(())
        })?;
        let step_ms = mean(&runs) * 1e3 / (n / BATCH) as f64;
        per_size.push((n, step_ms, runs.len()));
    }
    let base = per_size[0].1;
    for &(n, step_ms, reps) in &per_size {
        rows.push(row(
            "fit_scaling",
            &format!("fit step, {n} rows (784-64-10, b128)"),
            format!("{step_ms:.2} ms/step"),
            &format!("{:.2}x the 4k step; {reps} epochs timed", step_ms / base),
        ));
    }
    Ok(json!({
        "model": "784-64-10 relu/softmax, categorical crossentropy, SGD 0.01, shuffled",
        "batch": BATCH,
        "sizes": per_size.iter().map(|&(n, ms, reps)| json!({
            "rows": n, "step_ms_mean": ms, "epochs_timed": reps,
        })).collect::<Vec<_>>(),
        "step_ratio_largest_to_smallest": per_size[per_size.len() - 1].1 / base,
    }))
}
