//! Vectorized elementwise kernels: the generated WGSL (vec4 bindings, loads, splats and
//! stores) validates and translates everywhere, and the graphs of
//! `kiln_opt::testing::vector_graphs` match the f64 reference on the GPU.

use kiln_ir::testing::Tolerance;
use kiln_opt::kernel::KernelOp;
use kiln_opt::{compile, CompileOptions, DeviceLimits};
use kiln_wgpu::codegen::{kernel_wgsl, ENTRY_POINT};
use kiln_wgpu::{check_portable, test_backend};

#[test]
fn vectorized_kernels_validate_and_translate_everywhere() {
    let mut vectorized = 0;
    for (name, g, _, width) in kiln_opt::testing::vector_graphs() {
        let plan = compile(&g, &CompileOptions::default(), &DeviceLimits::default()).unwrap();
        for k in &plan.kernels {
            let wgsl = kernel_wgsl(k);
            check_portable(&k.label, &wgsl, ENTRY_POINT, &[])
                .unwrap_or_else(|e| panic!("{name}: {e}\n{wgsl}"));
            if let KernelOp::Elementwise { vector: 4, .. } = k.op {
                vectorized += 1;
                assert_eq!(width, 4, "{name}");
                assert!(wgsl.contains("vec4<"), "{name}:\n{wgsl}");
                assert!(wgsl.contains(": array<vec4<"), "{name}:\n{wgsl}");
            }
        }
    }
    assert!(vectorized >= 6, "only {vectorized} vectorized kernels");
}

#[test]
fn a_vector_width_the_kernel_does_not_allow_is_malformed() {
    let (_, g, _, _) = kiln_opt::testing::vector_graphs()
        .into_iter()
        .find(|c| c.0 == "odd_sizes_fall_back")
        .unwrap();
    let plan = compile(&g, &CompileOptions::default(), &DeviceLimits::default()).unwrap();
    let mut k = plan.kernels[0].clone();
    if let KernelOp::Elementwise { vector, .. } = &mut k.op {
        *vector = 4;
    }
    let err = kiln_wgpu::kernel_source(&k).unwrap_err().to_string();
    assert!(err.contains("vector width 4"), "{err}");
}

#[test]
fn vectorized_graphs_match_the_reference_on_the_gpu() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    for (name, g, feeds, _) in kiln_opt::testing::vector_graphs() {
        let tol = Tolerance {
            rel: 1e-4,
            abs: 1e-5,
        };
        if let Err(e) = kiln_opt::testing::check_graph(&mut backend, &g, &feeds, tol) {
            panic!("{name}: {e}");
        }
    }
}
