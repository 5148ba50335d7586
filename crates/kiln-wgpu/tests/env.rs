//! `KILN_ADAPTER` and `KILN_SUBGROUPS` are parsed strictly when a device is opened: a bad
//! value is a typed error naming the variable, before any adapter is touched (so this test
//! needs no GPU). One test in its own binary: it sets process environment variables.

use kiln_wgpu::{WgpuBackend, WgpuError};

#[test]
fn bad_device_variables_are_errors_naming_them() {
    for (var, value) in [("KILN_ADAPTER", ""), ("KILN_SUBGROUPS", "sometimes")] {
        std::env::set_var(var, value);
        match WgpuBackend::new() {
            Err(WgpuError::Env(e)) => {
                assert_eq!(e.var, var);
                let typed: kiln_plan::Error = WgpuError::Env(e.clone()).into();
                assert!(matches!(typed, kiln_plan::Error::Env(_)), "{typed}");
            }
            Err(other) => panic!("{var}={value:?}: expected an Env error, got {other}"),
            Ok(_) => panic!("{var}={value:?} was accepted"),
        }
        std::env::remove_var(var);
    }
}
