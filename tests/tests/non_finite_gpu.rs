//! The in-plan finite check of the training loss works on the GPU (lavapipe in CI): a NaN
//! that reaches the loss — here a NaN label, whatever the device makes of relu(NaN) or
//! tanh(NaN) — makes `TerminateOnNan` name the epoch, the step and the first non-finite
//! variable, from the device accumulators alone.

use kiln::{
    Activation, Dense, Fit, HostTensor, LayerError, Loss, NonFinite, Sequential, Sgd,
    TerminateOnNan,
};

#[test]
fn terminate_on_nan_names_the_step_on_the_gpu() {
    let Some(backend) = kiln::gpu::test_backend() else {
        return;
    };
    let mut m = Sequential::new(Box::new(backend)).seed(5);
    m.add(Dense::new(4).activation(Activation::Relu).input_dim(3))
        .unwrap();
    m.add(Dense::new(2)).unwrap();
    m.compile(Loss::MeanSquaredError, Sgd::new(0.05), &[])
        .unwrap();
    let x = HostTensor::f32([12, 3], (0..36).map(|i| (i % 7) as f32 / 7.0).collect()).unwrap();
    let mut y: Vec<f32> = (0..24).map(|i| (i % 3) as f32 / 3.0).collect();
    y[2 * 7] = f32::NAN; // sample 7: batch 1 of 4-sample batches
    let y = HostTensor::f32([12, 2], y).unwrap();
    let fit = Fit {
        epochs: 3,
        batch_size: 4,
        shuffle: false,
        verbose: false,
        ..Fit::default()
    };
    let mut cb = TerminateOnNan::raising();
    match m.fit_with_callbacks(&x, &y, fit, &mut [&mut cb]) {
        Err(LayerError::NonFinite(NonFinite {
            epoch: 0,
            step: Some(1),
            loss,
            variable,
            ..
        })) => {
            assert!(loss.is_nan());
            // the NaN gradient of the output layer reaches its kernel first in model order
            // after dense_1 (whose gradient is NaN too through the backward pass)
            assert!(variable.is_some_and(|v| v.starts_with("dense_")));
        }
        other => panic!("expected NonFinite at epoch 0 step 1, got {other:?}"),
    }
}
