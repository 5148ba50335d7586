//! Arguments out of their domain are refused before anything runs, as Keras and PyTorch
//! raise `ValueError`: a typed error naming the argument and the value.

use kiln_layers::{
    Adam, Dense, Fit, HostTensor, LayerError, Loss, Nadam, RmsProp, Sequential, Sgd,
};
use kiln_opt::interp::CpuBackend;

fn cpu() -> Box<dyn kiln_opt::Backend> {
    Box::new(CpuBackend::new())
}

fn model() -> Sequential {
    let mut m = Sequential::new(cpu());
    m.add(Dense::new(2).input_dim(3)).unwrap();
    m.compile(Loss::MeanSquaredError, Sgd::new(0.1), &[])
        .unwrap();
    m
}

fn xy(n: usize) -> (HostTensor, HostTensor) {
    (
        HostTensor::f32([n, 3], vec![0.5; n * 3]).unwrap(),
        HostTensor::f32([n, 2], vec![0.25; n * 2]).unwrap(),
    )
}

/// `e` is `InvalidArgument` naming `argument` with `value`.
#[track_caller]
fn assert_argument<T: std::fmt::Debug>(r: Result<T, LayerError>, argument: &str, value: &str) {
    match r {
        Err(LayerError::InvalidArgument {
            argument: a,
            value: v,
            ..
        }) => assert_eq!((a.as_str(), v.as_str()), (argument, value)),
        other => panic!("expected InvalidArgument {argument} = {value}, got {other:?}"),
    }
}

#[test]
fn evaluate_and_predict_arguments() {
    let mut m = model();
    let w = m.get_weights().unwrap();
    let (x0, y0) = xy(0);
    assert_argument(m.evaluate(&x0, &y0, 4), "x", "0 samples");
    let (x, y) = xy(3);
    assert_argument(m.evaluate(&x, &y, 0), "batch_size", "0");
    assert_argument(m.predict(&x, 0), "batch_size", "0");
    assert_eq!(m.get_weights().unwrap(), w);
}

#[test]
fn validation_split_must_be_a_fraction_below_one() {
    let mut m = model();
    let w = m.get_weights().unwrap();
    let (x, y) = xy(10);
    for (split, shown) in [(-0.1, "-0.1"), (1.0, "1"), (1.5, "1.5"), (f64::NAN, "NaN")] {
        let fit = Fit {
            validation_split: split,
            verbose: false,
            ..Fit::default()
        };
        assert_argument(m.fit(&x, &y, fit), "validation_split", shown);
    }
    assert_eq!(m.get_weights().unwrap(), w, "nothing ran");
}

#[test]
fn optimizer_hyper_parameters_are_checked_at_compile() {
    let mut m = Sequential::new(cpu());
    m.add(Dense::new(2).input_dim(3)).unwrap();
    let l = Loss::MeanSquaredError;
    assert_argument(m.compile(l, Sgd::new(-0.1), &[]), "learning_rate", "-0.1");
    assert_argument(
        m.compile(l, Adam::new(f32::NAN), &[]),
        "learning_rate",
        "NaN",
    );
    assert_argument(
        m.compile(l, Adam::new(f32::INFINITY), &[]),
        "learning_rate",
        "inf",
    );
    assert_argument(
        m.compile(l, Sgd::new(0.1).momentum(1.5), &[]),
        "momentum",
        "1.5",
    );
    assert_argument(
        m.compile(l, Adam::default().betas(1.0, 0.999), &[]),
        "beta_1",
        "1",
    );
    assert_argument(
        m.compile(
            l,
            Nadam {
                beta_2: -0.5,
                ..Nadam::default()
            },
            &[],
        ),
        "beta_2",
        "-0.5",
    );
    assert_argument(
        m.compile(l, RmsProp::default().epsilon(-1.0), &[]),
        "epsilon",
        "-1",
    );
    // learning rate 0 is allowed (PyTorch and Keras accept it)
    m.compile(l, Sgd::new(0.0), &[]).unwrap();
    assert_argument(m.set_learning_rate(f32::NAN), "learning_rate", "NaN");
    assert_argument(m.set_learning_rate(-1.0), "learning_rate", "-1");
    assert_eq!(m.learning_rate().unwrap(), 0.0, "unchanged");
}

#[test]
fn zero_sized_layer_dimensions_are_refused() {
    let mut m = Sequential::new(cpu());
    assert_argument(m.add(Dense::new(3).input_dim(0)), "input_dim", "0");
    assert!(m.input_shape().is_none(), "the layer was not added");
    assert!(matches!(
        m.add(Dense::new(0).input_dim(2)),
        Err(LayerError::Shape { .. })
    ));
}
