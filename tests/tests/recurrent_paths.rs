//! The fused persistent recurrence (the default) and the unrolled graph (`unroll(true)`)
//! compute the same model: stacked recurrent layers with embedding, `return_sequences`,
//! input dropout and recurrent dropout, all-padding (all-zero) sequences in the batch,
//! trained for a few steps on every device — losses and final weights agree within f32
//! tolerance, with fewer dispatches fused. On a CPU rasterizer (lavapipe,
//! `DeviceLimits::persistent_kernels == false`) the layers keep the unrolled graph by default,
//! which the test checks instead; the WGSL kernels themselves are checked there by
//! kiln-wgpu's `recurrence_gpu` and op-table tests and by the layer goldens.

mod common;
use common::{on_every_device, Device};

use kiln::{
    Dense, Embedding, Gru, HostTensor, Layer, Loss, Lstm, Metric, Mode, Sequential, SimpleRnn,
};
use kiln_ir::testing::Tolerance;

type Pair = fn(bool) -> [Box<dyn Layer>; 2];

/// `(name, layers)` per recurrent kind: a sequence layer with recurrent dropout, then a last-
/// state layer with input and recurrent dropout.
fn kinds() -> [(&'static str, Pair); 3] {
    [
        ("LSTM", |u| {
            [
                Box::new(
                    Lstm::new(12)
                        .return_sequences(true)
                        .recurrent_dropout(0.2)
                        .unroll(u),
                ),
                Box::new(Lstm::new(6).dropout(0.1).recurrent_dropout(0.1).unroll(u)),
            ]
        }),
        ("GRU", |u| {
            [
                Box::new(
                    Gru::new(12)
                        .return_sequences(true)
                        .recurrent_dropout(0.2)
                        .unroll(u),
                ),
                Box::new(Gru::new(6).dropout(0.1).recurrent_dropout(0.1).unroll(u)),
            ]
        }),
        ("SimpleRNN", |u| {
            [
                Box::new(
                    SimpleRnn::new(12)
                        .return_sequences(true)
                        .recurrent_dropout(0.2)
                        .unroll(u),
                ),
                Box::new(
                    SimpleRnn::new(6)
                        .dropout(0.1)
                        .recurrent_dropout(0.1)
                        .unroll(u),
                ),
            ]
        }),
    ]
}

fn model(device: Device, layers: [Box<dyn Layer>; 2], steps: usize) -> Sequential {
    let mut m = Sequential::new(device()).seed(9);
    m.add(Embedding::new(20, 5).input_length(steps)).unwrap();
    for l in layers {
        m.add_boxed(l).unwrap();
    }
    m.add(Dense::new(1).activation(kiln::Activation::Sigmoid))
        .unwrap();
    m.compile(
        Loss::BinaryCrossentropy,
        kiln::Adam::new(0.02),
        &[Metric::Accuracy],
    )
    .unwrap();
    m
}

/// 24 sequences of 9 tokens, rows 0 and 5 all padding (token 0); label: holds token 3.
fn data() -> (HostTensor, HostTensor) {
    let (n, t) = (24, 9);
    let xs: Vec<f32> = (0..n * t)
        .map(|i| {
            let r = i / t;
            if r == 0 || r == 5 {
                0.0
            } else {
                ((i * 7 + r * 3) % 20) as f32
            }
        })
        .collect();
    let ys: Vec<f32> = (0..n)
        .map(|r| f32::from(xs[r * t..(r + 1) * t].contains(&3.0)))
        .collect();
    (
        HostTensor::f32([n, t], xs).unwrap(),
        HostTensor::f32([n, 1], ys).unwrap(),
    )
}

fn fused_and_unrolled_train_alike(device: Device) {
    let (x, y) = data();
    for (name, layers) in kinds() {
        let mut fused = model(device, layers(false), 9);
        let mut unrolled = model(device, layers(true), 9);
        let (pf, pu) = (
            fused.plan_for(Mode::Train, 24).unwrap(),
            unrolled.plan_for(Mode::Train, 24).unwrap(),
        );
        if !device().limits().persistent_kernels {
            // a CPU rasterizer (lavapipe): the layers keep the unrolled graph by default
            assert!(
                !pf.summary().contains("persistent"),
                "{name}: fused on a device without persistent kernels:\n{}",
                pf.summary()
            );
            continue;
        }
        assert!(
            pf.summary().contains("persistent"),
            "{name}: the fused plan has no persistent recurrence:\n{}",
            pf.summary()
        );
        assert!(
            pf.stats.dispatches < pu.stats.dispatches,
            "{name}: fused {} vs unrolled {} dispatches",
            pf.stats.dispatches,
            pu.stats.dispatches
        );
        for step in 0..4 {
            let lf = fused.train_on_batch(&x, &y).unwrap();
            let lu = unrolled.train_on_batch(&x, &y).unwrap();
            let (a, b) = (lf["loss"], lu["loss"]);
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{name} step {step}: loss fused {a} vs unrolled {b}"
            );
        }
        let (wf, wu) = (
            fused.get_weights().unwrap(),
            unrolled.get_weights().unwrap(),
        );
        for (i, (a, b)) in wf.iter().zip(&wu).enumerate() {
            Tolerance::f32_sum(64)
                .check(&format!("{name} weight {i}"), &a.to_f64(), &b.to_f64())
                .unwrap();
        }
        let (pa, pb) = (
            fused.predict(&x, 8).unwrap(),
            unrolled.predict(&x, 8).unwrap(),
        );
        Tolerance::f32_sum(64)
            .check(&format!("{name} predictions"), &pa.to_f64(), &pb.to_f64())
            .unwrap();
    }
}
on_every_device!(fused_and_unrolled_train_alike);

/// The same on the CPU plan interpreter (the reference executor).
#[test]
fn fused_and_unrolled_train_alike_on_the_interpreter() {
    fused_and_unrolled_train_alike(|| Box::new(kiln::opt::interp::CpuBackend::new()));
}
