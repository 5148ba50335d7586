//! Non-finite training is detected: the in-plan finite check of the loss (no per-step
//! readback) makes `TerminateOnNan` name the epoch, the step and the first non-finite
//! variable; `set_check_numerics` / `KILN_CHECK_NUMERICS=1` also names the first kernel.
//! All on the reference interpreter.

use kiln_layers::{
    Activation, Dense, Fit, HostTensor, LayerError, Loss, NonFinite, Sequential, Sgd,
    TerminateOnNan,
};
use kiln_opt::interp::CpuBackend;

/// 12 samples of 3 features, 3 classes; sample `nan_at` is all NaN.
fn data(nan_at: usize) -> (HostTensor, HostTensor) {
    let mut x: Vec<f32> = (0..36).map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0).collect();
    for v in &mut x[nan_at * 3..nan_at * 3 + 3] {
        *v = f32::NAN;
    }
    let y: Vec<f32> = (0..12)
        .flat_map(|i| {
            let mut r = [0.0; 3];
            r[i % 3] = 1.0;
            r
        })
        .collect();
    (
        HostTensor::f32([12, 3], x).unwrap(),
        HostTensor::f32([12, 3], y).unwrap(),
    )
}

fn model(hidden: Activation) -> Sequential {
    let mut m = Sequential::new(Box::new(CpuBackend::new())).seed(3);
    m.add(Dense::new(4).activation(hidden).input_dim(3))
        .unwrap();
    m.add(Dense::new(3).activation(Activation::Softmax))
        .unwrap();
    m.compile(Loss::CategoricalCrossentropy, Sgd::new(0.1), &[])
        .unwrap();
    m
}

fn fit(epochs: usize) -> Fit {
    Fit {
        epochs,
        batch_size: 4,
        shuffle: false,
        verbose: false,
        ..Fit::default()
    }
}

#[test]
fn terminate_on_nan_names_epoch_step_and_variable() {
    // sample 9 is in batch 2 (samples 8..12)
    let (x, y) = data(9);
    let mut m = model(Activation::Tanh);
    let mut cb = TerminateOnNan::new();
    let h = m
        .fit_with_callbacks(&x, &y, fit(3), &mut [&mut cb])
        .unwrap();
    assert!(cb.stopped());
    assert_eq!(h.history["loss"].len(), 1, "stops after the first epoch");
    assert!(h.history["loss"][0].is_nan(), "Keras reports loss: nan");
    let r = cb.report().unwrap();
    assert_eq!(
        (r.epoch, r.step, r.variable.as_deref()),
        (0, Some(2), Some("dense_1/kernel")),
        "{r}"
    );
    let msg = r.to_string();
    assert!(
        msg.contains("epoch 0") && msg.contains("step 2") && msg.contains("loss nan"),
        "{msg}"
    );
}

#[test]
fn raising_terminate_on_nan_makes_fit_fail_with_the_report() {
    let (x, y) = data(5); // batch 1
    let mut m = model(Activation::Tanh);
    let mut cb = TerminateOnNan::raising();
    match m.fit_with_callbacks(&x, &y, fit(2), &mut [&mut cb]) {
        Err(LayerError::NonFinite(NonFinite {
            epoch: 0,
            step: Some(1),
            variable: Some(v),
            ..
        })) => assert_eq!(v, "dense_1/kernel"),
        other => panic!("expected NonFinite at epoch 0 step 1, got {other:?}"),
    }
}

#[test]
fn a_finite_fit_records_no_non_finite_step() {
    let (x, y) = data(5);
    let x = HostTensor::f32(
        [12, 3],
        x.to_f32()
            .iter()
            .map(|v| if v.is_nan() { 0.5 } else { *v })
            .collect(),
    )
    .unwrap();
    let mut m = model(Activation::Relu);
    let mut cb = TerminateOnNan::raising();
    let h = m
        .fit_with_callbacks(&x, &y, fit(2), &mut [&mut cb])
        .unwrap();
    assert!(!cb.stopped() && cb.report().is_none());
    assert!(h.history["loss"].iter().all(|l| l.is_finite()));
}

#[test]
fn check_numerics_names_the_first_kernel_for_relu_too() {
    // with ReLU the loss of the NaN step may stay finite where relu(NaN) is 0: the check
    // reads every variable after each step, so the NaN gradient is caught at that step
    for hidden in [Activation::Relu, Activation::Tanh] {
        let (x, y) = data(9);
        let mut m = model(hidden);
        m.set_check_numerics(true);
        match m.fit(&x, &y, fit(3)) {
            Err(LayerError::NonFinite(r)) => {
                assert_eq!((r.epoch, r.step), (0, Some(2)), "{hidden:?}: {r}");
                let k = r.kernel.clone().unwrap_or_default();
                // tanh(NaN) is NaN: the forward kernel of dense_1; where relu(NaN) is 0
                // the NaN first shows in the gradient of dense_1's kernel (x^T delta)
                let first = if hidden == Activation::Tanh {
                    "dense_1"
                } else {
                    "matmul"
                };
                assert!(k.contains(first), "{hidden:?}: first kernel `{k}` ({r})");
                assert_eq!(r.variable.as_deref(), Some("dense_1/kernel"), "{r}");
            }
            other => panic!("{hidden:?}: expected NonFinite, got {other:?}"),
        }
    }
}

#[test]
fn check_numerics_off_trains_as_before() {
    let (x, y) = data(0);
    let x = HostTensor::f32(
        [12, 3],
        x.to_f32()
            .iter()
            .map(|v| if v.is_nan() { 0.0 } else { *v })
            .collect(),
    )
    .unwrap();
    let mut a = model(Activation::Relu);
    let mut b = model(Activation::Relu);
    b.set_check_numerics(true);
    let (ha, hb) = (
        a.fit(&x, &y, fit(2)).unwrap(),
        b.fit(&x, &y, fit(2)).unwrap(),
    );
    assert_eq!(ha.history["loss"], hb.history["loss"]);
    assert_eq!(a.get_weights().unwrap(), b.get_weights().unwrap());
}
