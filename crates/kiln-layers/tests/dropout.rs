//! Dropout: the identity outside training; in a training step each element is zeroed with
//! probability `rate` and the rest scaled by `1 / (1 - rate)` (inverted dropout, as Keras),
//! with a new mask every step, the same bits on the CPU interpreter and the f64 evaluator,
//! and the gradient flowing through the kept elements only. LSTM dropout trains.

use kiln_ir::eval::{eval, Tensor};
use kiln_ir::{autodiff, DType, Graph};
use kiln_layers::{
    Dense, Dropout, Fit, HostTensor, Layer, Loss, Metric, Mode, Sequential, Sgd, TrainContext,
};
use kiln_opt::interp::CpuBackend;

fn feeds(step: f64, x: &[f64], shape: &[usize]) -> kiln_ir::eval::Feeds {
    [
        ("step".to_string(), Tensor::new([1], vec![step]).unwrap()),
        (
            "x".to_string(),
            Tensor::new(shape.to_vec(), x.to_vec()).unwrap(),
        ),
    ]
    .into_iter()
    .collect()
}

#[test]
fn masks_scale_vary_by_step_and_pass_gradients_through_kept_elements() {
    let shape = [200, 50];
    let n = 200 * 50;
    let rate = 0.3;
    let mut g = Graph::new();
    let step = g.input("step", [1], DType::F32).unwrap();
    let step = g.cast(step, DType::I32).unwrap();
    let x = g.input("x", shape, DType::F32).unwrap();
    let mut ctx = TrainContext::new(step, 1234);
    let mut d = Dropout::new(rate);
    d.build("dropout_1", &[50]).unwrap();
    let y = d.forward_train(&mut g, x, &[], &mut ctx).unwrap();
    let loss = g.sum_all(y).unwrap();
    let dx = autodiff::grad(&mut g, loss, &[x]).unwrap()[0];
    let xs: Vec<f64> = (0..n).map(|i| 1.0 + (i % 7) as f64).collect();
    let scale = 1.0 / (1.0 - rate);
    let run = |s: f64| eval(&g, &[y, dx], &feeds(s, &xs, &shape)).unwrap();
    let a = run(5.0);
    let mut dropped = 0;
    for (i, &xi) in xs.iter().enumerate() {
        let (v, gx) = (a[0].data[i], a[1].data[i]);
        if v == 0.0 {
            dropped += 1;
            assert_eq!(gx, 0.0, "dropped element {i} has a gradient");
        } else {
            assert!((v - xi * scale).abs() < 1e-9, "kept element {i}: {v}");
            assert!(
                (gx - scale).abs() < 1e-12,
                "kept element {i}: gradient {gx}"
            );
        }
    }
    let frac = dropped as f64 / n as f64;
    // binomial(10000, 0.3): sd 0.0046
    assert!((frac - rate).abs() < 0.02, "dropped fraction {frac}");
    // the same step gives the same mask; the next step another one
    assert_eq!(run(5.0)[0].data, a[0].data);
    let b = run(6.0);
    let same = (0..n)
        .filter(|&i| (a[0].data[i] == 0.0) == (b[0].data[i] == 0.0))
        .count();
    assert!(
        same < n * 7 / 10,
        "step 6 reused step 5's mask ({same} equal)"
    );
}

#[test]
fn dropout_is_the_identity_outside_training_and_training_advances_the_step() {
    let mut m = Sequential::new(Box::new(CpuBackend::new())).seed(9);
    m.add(Dense::new(8).input_dim(4)).unwrap();
    m.add(Dropout::new(0.5)).unwrap();
    m.add(Dense::new(2).activation(kiln_layers::Activation::Softmax))
        .unwrap();
    m.compile(
        Loss::CategoricalCrossentropy,
        Sgd::new(0.1),
        &[Metric::Accuracy],
    )
    .unwrap();
    assert!(m.summary().contains("Dropout"), "{}", m.summary());
    let x = HostTensor::f32([6, 4], (0..24).map(|i| (i % 5) as f32 * 0.2).collect()).unwrap();
    let y = HostTensor::f32(
        [6, 2],
        (0..6)
            .flat_map(|i| if i % 2 == 0 { [1.0, 0.0] } else { [0.0, 1.0] })
            .collect(),
    )
    .unwrap();
    // predict: no noise, so the same answer twice, and equal to the layers without dropout
    let p1 = m.predict(&x, 6).unwrap();
    assert_eq!(p1, m.predict(&x, 6).unwrap());
    let g = m.graph(Mode::Predict, 6).unwrap();
    assert!(!g
        .nodes()
        .iter()
        .any(|n| n.op.mnemonic() == "random_uniform"));
    let g = m.graph(Mode::Train, 6).unwrap();
    assert_eq!(
        g.nodes()
            .iter()
            .filter(|n| n.op.mnemonic() == "random_uniform")
            .count(),
        1
    );
    m.fit(
        &x,
        &y,
        Fit {
            epochs: 3,
            batch_size: 3,
            verbose: false,
            shuffle: false,
            ..Fit::default()
        },
    )
    .unwrap();
    let step = m.read_variable(TrainContext::STEP_VARIABLE).unwrap();
    assert_eq!(step.to_f32(), vec![6.0]);
}
