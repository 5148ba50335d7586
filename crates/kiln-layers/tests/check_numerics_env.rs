//! `KILN_CHECK_NUMERICS` is parsed strictly (its own test binary: it sets the variable).

use kiln_layers::{Activation, Dense, Fit, HostTensor, LayerError, Loss, Sequential, Sgd};
use kiln_opt::interp::CpuBackend;

#[test]
fn kiln_check_numerics_is_parsed_strictly() {
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(Dense::new(2).activation(Activation::Tanh).input_dim(2))
        .unwrap();
    m.compile(Loss::MeanSquaredError, Sgd::new(0.1), &[])
        .unwrap();
    let x = HostTensor::f32([2, 2], vec![f32::NAN, 1.0, 0.0, 1.0]).unwrap();
    let fit = Fit {
        verbose: false,
        shuffle: false,
        ..Fit::default()
    };
    std::env::set_var("KILN_CHECK_NUMERICS", "yes");
    match m.fit(&x, &x, fit.clone()) {
        Err(LayerError::InvalidArgument {
            argument, value, ..
        }) => assert_eq!(
            (argument.as_str(), value.as_str()),
            ("KILN_CHECK_NUMERICS", "\"yes\"")
        ),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    std::env::set_var("KILN_CHECK_NUMERICS", "1");
    assert!(matches!(
        m.fit(&x, &x, fit.clone()),
        Err(LayerError::NonFinite(r)) if r.step == Some(0) && r.kernel.is_some()
    ));
    std::env::set_var("KILN_CHECK_NUMERICS", "0");
    assert!(m.fit(&x, &x, fit).is_ok());
}
