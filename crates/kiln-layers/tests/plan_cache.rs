//! Models compile through the on-disk plan cache transparently.

use kiln_layers::{Activation, Dense, Fit, HostTensor, Loss, Metric, Mode, Sequential, Sgd};
use kiln_opt::cache::{CacheOutcome, PlanCache};
use kiln_opt::interp::CpuBackend;

fn model(dir: &std::path::Path) -> Sequential {
    let mut m = Sequential::new(Box::new(CpuBackend::new()))
        .seed(4)
        .with_plan_cache(PlanCache::at(dir, 1 << 26));
    m.add(Dense::new(4).activation(Activation::Tanh).input_dim(3))
        .unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    m.compile(
        Loss::CategoricalCrossentropy,
        Sgd::new(0.1),
        &[Metric::Accuracy],
    )
    .unwrap();
    m
}

#[test]
fn a_second_model_loads_its_plans_from_the_cache_and_trains_identically() {
    let dir = std::env::temp_dir().join(format!("kiln-layers-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let x = HostTensor::f32([6, 3], (0..18).map(|i| (i as f32 * 0.37).sin()).collect()).unwrap();
    let y = HostTensor::f32([6, 2], vec![1., 0., 0., 1., 1., 0., 0., 1., 1., 0., 0., 1.]).unwrap();
    let fit = Fit {
        epochs: 2,
        batch_size: 4,
        verbose: false,
        ..Fit::default()
    };
    let mut a = model(&dir);
    let ha = a.fit(&x, &y, fit.clone()).unwrap();
    assert!(a
        .plan_cache_log()
        .iter()
        .all(|(_, _, o)| matches!(o, CacheOutcome::Miss(_))));
    let mut b = model(&dir);
    let hb = b.fit(&x, &y, fit).unwrap();
    assert!(
        b.plan_cache_log()
            .iter()
            .all(|(_, _, o)| *o == CacheOutcome::Hit),
        "{:?}",
        b.plan_cache_log()
    );
    // train batches of 4 and 2 were both cached
    assert!(b
        .plan_cache_log()
        .iter()
        .any(|(m, n, _)| *m == Mode::Train && *n == 2));
    assert_eq!(ha, hb);
    assert_eq!(a.get_weights().unwrap(), b.get_weights().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}
