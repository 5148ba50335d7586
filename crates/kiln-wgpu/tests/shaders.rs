//! Every shader passes naga validation and translates to SPIR-V, MSL, HLSL and GLSL:
//! generated kernels for hand-built `KernelIr`, and every library kernel in `shaders/`.

mod common;

use common::*;
use kiln_opt::kernel::{Access, Body, Expr, KernelOp, View};
use kiln_wgpu::codegen::{kernel_source, kernel_wgsl, CodegenError, ENTRY_POINT};
use kiln_wgpu::{check_portable, validate_wgsl, ShaderError};

fn own_access(k: &kiln_opt::kernel::Kernel) -> Vec<Access> {
    k.args.iter().map(|a| a.access).collect()
}

fn assert_portable(k: &kiln_opt::kernel::Kernel) -> String {
    let src = kernel_source(k, &own_access(k)).unwrap();
    let t = check_portable(&k.label, &src.wgsl, ENTRY_POINT, &src.constants)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.spirv[0], 0x0723_0203, "SPIR-V magic");
    assert!(t.msl.contains("kernel void"), "MSL:\n{}", t.msl);
    assert!(t.hlsl.contains("[numthreads("), "HLSL:\n{}", t.hlsl);
    assert!(t.glsl.contains("local_size_x"), "GLSL:\n{}", t.glsl);
    src.wgsl
}

#[test]
fn generated_kernels_validate_and_translate_everywhere() {
    for k in [
        elementwise_kernel(),
        int_kernel(),
        reduce_sum_kernel(),
        reduce_max_kernel(),
    ] {
        let wgsl = assert_portable(&k);
        assert_eq!(
            wgsl,
            kernel_wgsl(&k),
            "kernel_wgsl is the source of kernel_source"
        );
        assert_eq!(wgsl, kernel_wgsl(&k.clone()), "generation is deterministic");
        assert!(!wgsl.contains("atomic") && !wgsl.contains("workgroupBarrier"));
    }
}

#[test]
fn matmul_with_transposed_operand_validates_and_translates_everywhere() {
    let k = matmul_kernel();
    let wgsl = assert_portable(&k);
    assert!(!wgsl.contains("var<workgroup>") && !wgsl.contains("Barrier("));
    let src = kernel_source(&k, &own_access(&k)).unwrap();
    let get = |n: &str| src.constants.iter().find(|c| c.0 == n).map(|c| c.1);
    assert_eq!(get("B_RS"), Some(1.0));
    assert_eq!(get("B_CS"), Some(3.0));
    assert_eq!(get("WG"), Some(WG as f64));
}

#[test]
fn library_shaders_validate_and_translate_everywhere() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.display().to_string();
            // With the defaults, and with realistic constants where the file is known.
            check_portable(&name, &text, ENTRY_POINT, &[]).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1, "no shaders found in {dir}");
    assert_eq!(
        kiln_wgpu::codegen::MATMUL_WGSL,
        std::fs::read_to_string(format!("{dir}/matmul.wgsl")).unwrap()
    );
}

#[test]
fn golden_wgsl_of_the_elementwise_kernel() {
    // A few load-bearing lines; the whole text is checked for determinism above.
    let w = kernel_wgsl(&elementwise_kernel());
    for line in [
        "@group(0) @binding(0) var<storage, read> arg0: array<f32>;",
        "@group(0) @binding(2) var<storage, read_write> arg2: array<f32>;",
        "@compute @workgroup_size(64)",
        "let gid: u32 = (global_id.x + (global_id.y * (num_wg.x * 64u)));",
        "if (gid >= 6u) {",
        "let e0: f32 = arg0[(i0 + (i1 * 2u))];",
        "let e1: f32 = arg1[i1];",
        "let e5: f32 = select(0.0f, 1.0f, (e0 < e1));",
        "let e7: f32 = (-0.25f);",
        "arg2[gid] = e10;",
    ] {
        assert!(w.contains(line), "missing `{line}` in\n{w}");
    }
}

#[test]
fn aliased_inputs_are_bound_read_write() {
    let k = elementwise_kernel();
    let src = kernel_source(&k, &[Access::Write, Access::Read, Access::Write]).unwrap();
    assert!(src.wgsl.contains("var<storage, read_write> arg0"));
    assert!(!src.bindings[0].read_only && src.bindings[1].read_only);
    check_portable("aliased", &src.wgsl, ENTRY_POINT, &[]).unwrap();
}

#[test]
fn malformed_kernels_are_typed_errors() {
    let mut k = elementwise_kernel();
    if let KernelOp::Elementwise { body, .. } = &mut k.op {
        body.nodes[2].expr = Expr::Unary(kiln_ir::UnaryOp::Neg, 5);
    }
    let e = kernel_source(&k, &own_access(&k)).unwrap_err();
    assert!(matches!(e, CodegenError::Malformed { .. }), "{e}");
    // kernel_wgsl never panics: it returns a comment with the reason.
    assert!(kernel_wgsl(&k).starts_with("// kernel `test/elementwise` is malformed"));

    let mut k = elementwise_kernel();
    k.op = KernelOp::Elementwise {
        shape: vec![6],
        body: {
            let mut b = Body::default();
            b.push(
                Expr::Load {
                    arg: 0,
                    view: View {
                        offset: 0,
                        strides: vec![1, 1],
                    },
                },
                kiln_ir::DType::F32,
            );
            b
        },
    };
    assert!(kernel_source(&k, &own_access(&k)).is_err());
}

#[test]
fn invalid_wgsl_is_a_typed_error_with_the_source() {
    let bad = "fn main( { }";
    match validate_wgsl("bad", bad) {
        Err(ShaderError::Parse {
            wgsl, diagnostic, ..
        }) => {
            assert_eq!(wgsl, bad);
            assert!(diagnostic.contains("expected"), "{diagnostic}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    let ill_typed = "@compute @workgroup_size(1) fn main() { let x: f32 = 1i; }";
    assert!(matches!(
        validate_wgsl("ill", ill_typed),
        Err(ShaderError::Parse { .. } | ShaderError::Validate { .. })
    ));
}
