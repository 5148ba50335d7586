//! A bad `KILN_CACHE*` value is an error of the model's first compile, naming the variable
//! (its own test binary: it sets the variable); the plans a model compiles carry their kind.

use kiln_layers::{Dense, LayerError, Loss, Mode, Sequential, Sgd};
use kiln_opt::cache::PlanCache;
use kiln_opt::interp::CpuBackend;
use kiln_opt::{OptError, PlanKind};

fn model() -> Sequential {
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(Dense::new(2).input_dim(3)).unwrap();
    m.compile(Loss::MeanSquaredError, Sgd::new(0.1), &[])
        .unwrap();
    m
}

#[test]
fn bad_cache_variables_are_errors_and_plans_carry_their_kind() {
    std::env::set_var("KILN_CACHE_MAX_MB", "abc");
    let mut m = model();
    match m.plan_for(Mode::Predict, 4) {
        Err(LayerError::Opt(OptError::Env(e))) => {
            assert_eq!(e.var, "KILN_CACHE_MAX_MB");
            assert_eq!(e.value, "abc");
        }
        other => panic!("expected an Env error, got {:?}", other.map(|p| p.kind)),
    }
    // an explicit cache replaces the environment's
    let mut m = model().with_plan_cache(PlanCache::disabled());
    for (mode, kind) in [
        (Mode::Predict, PlanKind::Predict),
        (Mode::Evaluate, PlanKind::Evaluate),
        (Mode::Train, PlanKind::Train),
    ] {
        assert_eq!(m.plan_for(mode, 4).unwrap().kind, kind);
    }
    std::env::remove_var("KILN_CACHE_MAX_MB");
    assert_eq!(
        model().plan_for(Mode::Train, 4).unwrap().kind,
        PlanKind::Train
    );
}
