//! End to end: the Keras unit-circle tutorial's deep model trains to >= 95 % training
//! accuracy (the tutorial's figure) on the default device — lavapipe in CI — with the same
//! settings as the example (1000 points, batch 5, SGD 0.01, 50 epochs, seed 1).

#[path = "../../examples/unit_circle/task.rs"]
mod task;

use kiln::Fit;

mod common;
use common::{on_every_device, Device};

fn accuracy(p: &kiln::HostTensor, y: &kiln::HostTensor) -> f64 {
    let (p, y) = (p.to_f32(), y.to_f32());
    let hits = p
        .chunks(2)
        .zip(y.chunks(2))
        .filter(|(p, y)| (p[1] > p[0]) == (y[1] > y[0]))
        .count();
    hits as f64 / (p.len() / 2) as f64
}

on_every_device!(deep_model_reaches_95_percent_training_accuracy);
fn deep_model_reaches_95_percent_training_accuracy(device: Device) {
    let (x, y) = task::make_data(1000, 1);
    let mut m = task::deep_model(device(), 1, 0.01).expect("model builds");
    println!("device: {}", m.device());
    let fit = Fit {
        epochs: 50,
        batch_size: 5,
        verbose: false,
        ..Fit::default()
    };
    let h = m.fit(&x, &y, fit).expect("training runs");
    let acc = accuracy(&m.predict(&x, 100).expect("predict"), &y);
    let logged = h.last("accuracy").expect("accuracy logged");
    println!("train accuracy {acc:.4} (last epoch running mean {logged:.4})");
    assert!(acc >= 0.95, "training accuracy {acc} < 0.95");
    // the linear model cannot do better than the majority class by much
    let mut lin = task::linear_model(device(), 1).expect("model builds");
    let fit = Fit {
        epochs: 5,
        batch_size: 5,
        verbose: false,
        ..Fit::default()
    };
    lin.fit(&x, &y, fit).expect("training runs");
    let lacc = accuracy(&lin.predict(&x, 100).expect("predict"), &y);
    assert!(lacc < 0.9, "a linear model separated a circle: {lacc}");
}
