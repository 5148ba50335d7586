//! The vector width of elementwise kernels: which kernels kiln-opt vectorizes, the launch it
//! plans for them, and the CPU interpreter on the same graphs (it ignores the width).

use kiln_ir::testing::Tolerance;
use kiln_opt::interp::CpuBackend;
use kiln_opt::kernel::{elementwise_vector, Body, Expr, KernelOp, Store, View};
use kiln_opt::plan::Step;
use kiln_opt::{compile, Backend, CompileOptions};

#[test]
fn vector_graphs_get_the_expected_width_and_launch() {
    for (name, g, _, width) in kiln_opt::testing::vector_graphs() {
        let plan = compile(&g, &CompileOptions::default(), &CpuBackend::new().limits()).unwrap();
        let mut seen = 0;
        for step in &plan.steps {
            let Step::Dispatch {
                kernel, workgroups, ..
            } = step
            else {
                continue;
            };
            let k = &plan.kernels[*kernel as usize];
            if let KernelOp::Elementwise { shape, vector, .. } = &k.op {
                seen += 1;
                assert_eq!(*vector, width, "{name}: {}", plan.summary());
                let numel: usize = shape.iter().product();
                assert_eq!(k.threads, (numel / width as usize) as u64, "{name}");
                let launched =
                    workgroups[0] as u64 * workgroups[1] as u64 * k.workgroup_size as u64;
                assert!(launched >= k.threads, "{name}");
            }
        }
        assert!(
            seen > 0,
            "{name}: no elementwise kernel\n{}",
            plan.summary()
        );
    }
}

#[test]
fn vector_graphs_match_the_reference_on_the_cpu_interpreter() {
    let mut b = CpuBackend::new();
    for (name, g, feeds, _) in kiln_opt::testing::vector_graphs() {
        let tol = Tolerance {
            rel: 1e-4,
            abs: 1e-5,
        };
        if let Err(e) = kiln_opt::testing::check_graph(&mut b, &g, &feeds, tol) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn elementwise_vector_rules() {
    let load = |offset, strides: &[usize]| {
        let mut b = Body::default();
        b.push(
            Expr::Load {
                arg: 0,
                view: View {
                    offset,
                    strides: strides.to_vec(),
                },
            },
            kiln_ir::DType::F32,
        );
        b
    };
    let store = |offset| {
        vec![Store {
            arg: 1,
            offset,
            value: 0,
            strides: None,
        }]
    };
    // contiguous, aligned
    assert_eq!(elementwise_vector(&[3, 8], &load(0, &[8, 1]), &store(0)), 4);
    assert_eq!(
        elementwise_vector(&[3, 8], &load(64, &[8, 1]), &store(128)),
        4
    );
    // row broadcast (outer stride 0) and column splat (inner stride 0)
    assert_eq!(elementwise_vector(&[3, 8], &load(0, &[0, 1]), &store(0)), 4);
    assert_eq!(elementwise_vector(&[3, 8], &load(3, &[1, 0]), &store(0)), 4);
    // trailing unit axes do not count as the inner axis
    assert_eq!(elementwise_vector(&[8, 1], &load(0, &[1, 5]), &store(0)), 4);
    // misaligned offsets or outer strides, strided inner axis, odd inner extent
    assert_eq!(elementwise_vector(&[3, 8], &load(2, &[8, 1]), &store(0)), 1);
    assert_eq!(elementwise_vector(&[3, 8], &load(0, &[8, 1]), &store(2)), 1);
    assert_eq!(
        elementwise_vector(&[3, 8], &load(0, &[10, 1]), &store(0)),
        1
    );
    assert_eq!(elementwise_vector(&[3, 8], &load(0, &[1, 3]), &store(0)), 1);
    assert_eq!(elementwise_vector(&[4, 6], &load(0, &[6, 1]), &store(0)), 1);
    assert_eq!(elementwise_vector(&[1], &load(0, &[1]), &store(0)), 1);
    assert_eq!(elementwise_vector(&[], &load(0, &[]), &store(0)), 1);
}
