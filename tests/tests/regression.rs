//! End to end: the regression tutorial's models (mse + SGD(0.01), the example's epochs and
//! seed, validation data) train on the default device — lavapipe in CI: the losses fall to
//! the scale of the response's variance, and neither model ends worse than 1.5× the mse of
//! predicting the training mean (what the tutorial's losses plateau at).

#[path = "../../examples/regression/task.rs"]
#[allow(dead_code)] // the example uses the rest
mod task;

use kiln::Fit;

mod common;
use common::{on_every_device, Device};

fn sci(v: &[f64]) -> String {
    let s: Vec<String> = v.iter().map(|x| format!("{x:.3e}")).collect();
    s.join(" ")
}

#[test]
fn data_match_the_tutorial_shapes() {
    let d = task::make_data(1);
    assert_eq!(d.x_train.shape.dims(), &[325, 5]);
    assert_eq!(d.x_test.shape.dims(), &[424, 5]);
    assert_eq!(d.y_train.shape.dims(), &[325, 1]);
    assert_eq!(d.y_test.shape.dims(), &[424, 1]);
    // rows have unit L2 norm (keras.utils.normalize)
    for row in d.x_train.to_f32().chunks(5) {
        let n: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "row norm {n}");
    }
    // the response's scale is the tutorial's (losses around 1e-3 .. 5e-4)
    let var = task::mean_baseline(&d.y_train, &d.y_train);
    assert!((1e-4..2e-3).contains(&var), "response variance {var}");
    // deterministic
    assert_eq!(d.y_test.to_f32(), task::make_data(1).y_test.to_f32());
}

// Every (mode, batch size) is its own plan, and on lavapipe compiling a plan's pipelines is
// what costs (tens of seconds for the deep model's training step with a cold Mesa shader
// cache). So the tests use batches of 25 (which divide the 325 training rows: one training
// plan, no short-batch plan; the example uses Keras's 32), the two models are separate tests
// so their plans compile in parallel, and each reads its validation mse from the fewest plans.
const BATCH: usize = 25;

on_every_device!(small_model_trains_with_validation_data);
fn small_model_trains_with_validation_data(device: Device) {
    let data = task::make_data(1);
    let base = task::mean_baseline(&data.y_train, &data.y_test);
    let mut small = task::small_model(device(), 1).expect("model builds");
    println!("device: {}", small.device());
    let fit = Fit {
        epochs: 5,
        batch_size: BATCH,
        verbose: false,
        validation_data: Some((data.x_test.clone(), data.y_test.clone())),
        ..Fit::default()
    };
    let (h, timing) =
        task::fit_timed(&mut small, &data.x_train, &data.y_train, fit).expect("trains");
    let w = small.get_weights().expect("weights");
    let shapes: Vec<Vec<usize>> = w.iter().map(|t| t.shape.dims().to_vec()).collect();
    assert_eq!(shapes, vec![vec![5, 2], vec![2], vec![2, 1], vec![1]]);
    let (loss, val) = (&h.history["loss"], &h.history["val_loss"]);
    println!(
        "small: losses {}, val_loss {}, mean baseline {base:.4e}; \
         epoch 1 {:.2} s, then {:.1} ms/epoch",
        sci(loss),
        sci(val),
        timing.first(),
        timing.steady() * 1e3
    );
    assert_eq!(val.len(), 5);
    assert!(loss[4] < loss[0], "small model loss did not fall: {loss:?}");
    assert!(
        val[4] < val[0],
        "small model val_loss did not fall: {val:?}"
    );
    assert!(
        val[4] < 1.5 * base,
        "small model val_loss {} vs baseline {base}",
        val[4]
    );
}

on_every_device!(deep_model_reaches_the_mean_baseline);
fn deep_model_reaches_the_mean_baseline(device: Device) {
    let data = task::make_data(1);
    let base = task::mean_baseline(&data.y_train, &data.y_test);
    let mut deep = task::deep_model(device(), 1).expect("model builds");
    let fit = Fit {
        epochs: 25,
        batch_size: BATCH,
        verbose: false,
        ..Fit::default()
    };
    let (h, timing) =
        task::fit_timed(&mut deep, &data.x_train, &data.y_train, fit).expect("trains");
    let dv = deep
        .evaluate(&data.x_test, &data.y_test, 424)
        .expect("evaluate")["loss"];
    let loss = &h.history["loss"];
    println!(
        "deep: val mse {dv:.4e}, mean baseline {base:.4e}, first/last loss {:.4e}/{:.4e}; \
         epoch 1 {:.2} s, then {:.1} ms/epoch",
        loss[0],
        loss[24],
        timing.first(),
        timing.steady() * 1e3
    );
    assert!(loss[24] < loss[0], "deep model loss did not fall: {loss:?}");
    assert!(
        dv < 1.5 * base,
        "deep model validation mse {dv} vs baseline {base}"
    );
}
