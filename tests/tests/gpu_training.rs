//! Training on the GPU: after the first epoch (plans compiled and loaded), further epochs
//! create no buffers, and the GPU trains to the same numbers as the CPU interpreter.

#[allow(dead_code)] // the linear model is not used here
#[path = "../../examples/unit_circle/task.rs"]
mod task;

use kiln::Fit;

#[test]
fn epochs_after_the_first_create_no_buffers_and_match_the_cpu() {
    let Some(backend) = kiln::gpu::test_backend() else {
        return;
    };
    let gpu = backend.gpu().clone();
    let (x, y) = task::make_data(200, 3);
    let mut m = task::deep_model(Box::new(backend), 3, 0.05).expect("model builds");
    let fit = |epochs| Fit {
        epochs,
        batch_size: 8,
        verbose: false,
        ..Fit::default()
    };
    m.fit(&x, &y, fit(1)).expect("first epoch");
    let after_first = gpu.buffers_created();
    let h = m.fit(&x, &y, fit(3)).expect("more epochs");
    assert_eq!(
        gpu.buffers_created(),
        after_first,
        "buffers were created during fit after the first epoch"
    );
    // the same training on the CPU interpreter gives the same losses (f32 rounding aside)
    let mut c = task::deep_model(Box::new(kiln::opt::interp::CpuBackend::new()), 3, 0.05)
        .expect("model builds");
    c.fit(&x, &y, fit(1)).expect("first epoch");
    let hc = c.fit(&x, &y, fit(3)).expect("more epochs");
    for (a, b) in h.history["loss"].iter().zip(&hc.history["loss"]) {
        assert!((a - b).abs() < 1e-4, "gpu loss {a} vs cpu loss {b}");
    }
}
