//! End to end: the mnist example's MLP (`Dense(128, relu) → Dense(10, softmax)`,
//! categorical crossentropy, RMSprop, pixels / 255) reaches >= 91 % accuracy on the
//! stratified 1000-image holdout of `mnist_5k.csv.gz` on the default device — lavapipe in CI
//! (reference: an MLP(128) ~93.6 %). Needs `../shared/data/mnist_5k.csv.gz` (fails, naming
//! the path, without it).

#[path = "../../examples/mnist/task.rs"]
#[allow(dead_code)] // the example uses the rest
mod task;

use kiln::Fit;

mod common;
use common::{on_every_device, Device};

on_every_device!(mlp_reaches_91_percent_on_the_holdout);
fn mlp_reaches_91_percent_on_the_holdout(device: Device) {
    let data = task::load(1).unwrap_or_else(|e| panic!("mnist_5k data: {e}"));
    assert_eq!(data.labels_train.len(), 4000);
    assert_eq!(data.labels_test.len(), 1000);
    let mut counts = [0usize; 10];
    data.labels_test.iter().for_each(|&c| counts[c] += 1);
    assert_eq!(
        counts, [100; 10],
        "stratified: 100 holdout images per class"
    );
    let mut m = task::model(device(), 1, task::Opt::RmsProp).expect("model builds");
    println!("device: {}", m.device());
    let epochs = 8;
    let (h, timing) = task::fit_timed(
        &mut m,
        &data.x_train,
        &data.y_train,
        Fit {
            epochs,
            batch_size: 32,
            verbose: false,
            ..Fit::default()
        },
    )
    .expect("training runs");
    let acc = task::accuracy(
        &m.predict(&data.x_test, 500).expect("predict"),
        &data.labels_test,
    );
    println!(
        "holdout accuracy {acc:.4}, last train loss {:.4}, epoch 1 {:.2} s, then {:.0} ms/epoch",
        h.last("loss").unwrap(),
        timing.first(),
        timing.steady() * 1e3
    );
    assert!(acc >= 0.91, "holdout accuracy {acc} < 0.91");
}
