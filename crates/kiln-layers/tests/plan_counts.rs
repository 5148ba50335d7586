//! The compiled training steps of the reference models: dispatch counts and arena size
//! (deterministic properties of the compiler, asserted here; speed lives in kiln-bench).

use kiln_layers::{Activation, Adam, Dense, Loss, Metric, Mode, Sequential, Sgd};
use kiln_opt::interp::CpuBackend;

fn unit_circle() -> Sequential {
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(Dense::new(3).activation(Activation::Tanh).input_dim(2))
        .unwrap();
    m.add(Dense::new(3).activation(Activation::Tanh)).unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    m.compile(
        Loss::BinaryCrossentropy,
        Sgd::default(),
        &[Metric::Accuracy],
    )
    .unwrap();
    m
}

fn mnist_mlp() -> Sequential {
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(Dense::new(512).activation(Activation::Relu).input_dim(784))
        .unwrap();
    m.add(Dense::new(512).activation(Activation::Relu)).unwrap();
    m.add(Dense::new(10).activation(Activation::Softmax))
        .unwrap();
    m.compile(
        Loss::CategoricalCrossentropy,
        Adam::default(),
        &[Metric::Accuracy],
    )
    .unwrap();
    m
}

#[test]
fn mlp_784_512_512_10_adam_step_is_at_most_20_dispatches() {
    let plan = mnist_mlp().plan_for(Mode::Train, 128).unwrap();
    println!("{}", plan.summary());
    assert!(
        plan.dispatch_count() <= 20,
        "{} dispatches",
        plan.dispatch_count()
    );
    // a regression guard: 15 when written, 10 since the bias gradients ride in the weight
    // gradients' kernels and Adam's step counter in the loss's
    assert!(
        plan.dispatch_count() <= 10,
        "{} dispatches",
        plan.dispatch_count()
    );
    // forward, loss, backward and the Adam update of all six tensors, in place
    assert!(plan
        .steps
        .iter()
        .all(|s| !matches!(s, kiln_opt::Step::Copy { .. })));
}

#[test]
fn mlp_arena_is_at_most_half_of_one_buffer_per_tensor() {
    let plan = mnist_mlp().plan_for(Mode::Train, 128).unwrap();
    let (arena, naive) = (plan.stats.temp_bytes, plan.stats.naive_bytes);
    assert!(
        arena * 2 <= naive,
        "arena {arena} B vs one-buffer-per-tensor {naive} B"
    );
}

#[test]
fn unit_circle_step_dispatch_count() {
    let plan = unit_circle().plan_for(Mode::Train, 5).unwrap();
    println!("{}", plan.summary());
    // Target is 12 (issue 3); 10 today: 3 forward matmuls, the softmax with its backward row
    // reduction (1), loss and accuracy (1), 5 backward matmuls, the 3 bias gradients (with
    // their SGD updates) as column sums in the weight gradients' kernels.
    assert!(
        plan.dispatch_count() <= 10,
        "{} dispatches",
        plan.dispatch_count()
    );
}

#[test]
fn predict_plan_is_one_kernel_per_layer() {
    let plan = mnist_mlp().plan_for(Mode::Predict, 64).unwrap();
    // three matmuls with bias+relu epilogues, and the softmax (one multi-stage reduction)
    assert!(plan.dispatch_count() <= 4, "{}", plan.summary());
}
