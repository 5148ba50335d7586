//! Every shader passes naga validation and translates to SPIR-V, MSL, HLSL and GLSL:
//! generated kernels for hand-built `KernelIr`, and every library kernel in `shaders/`.

mod common;

use common::*;
use kiln_opt::kernel::{Access, Body, Expr, KernelOp, MatMulVariant, View};
use kiln_wgpu::codegen::{
    kernel_source, kernel_source_for, kernel_wgsl, CodegenError, ENTRY_POINT,
};
use kiln_wgpu::{check_portable, validate_wgsl, ShaderError};

const VARIANTS: [MatMulVariant; 3] = [
    MatMulVariant::RegisterBlocked,
    MatMulVariant::WorkgroupTiled,
    MatMulVariant::WorkgroupTiledWide,
];

fn assert_portable(k: &kiln_opt::kernel::Kernel) -> String {
    let src = kernel_source(k).unwrap();
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
    for variant in VARIANTS {
        let k = matmul_kernel_variant(variant);
        let wgsl = assert_portable(&k);
        let tiled = variant.workgroup_tile().is_some();
        assert_eq!(wgsl.contains("var<workgroup>"), tiled, "{variant:?}");
        assert_eq!(wgsl.contains("workgroupBarrier()"), tiled, "{variant:?}");
        let src = kernel_source(&k).unwrap();
        let get = |n: &str| src.constants.iter().find(|c| c.0 == n).map(|c| c.1);
        assert_eq!(get("B_RS"), Some(1.0));
        assert_eq!(get("B_CS"), Some(3.0));
        assert_eq!(get("K"), Some(3.0));
        let wg = (!tiled).then_some(k.workgroup_size as f64);
        assert_eq!(get("WG"), wg);
        // Bindings follow the kernel's args.
        assert!(wgsl.contains("@group(0) @binding(0) var<storage, read> arg0: array<f32>;"));
        assert!(wgsl.contains("@group(0) @binding(2) var<storage, read_write> arg2: array<f32>;"));
        assert!(wgsl.contains("fn epilogue(acc: f32, bi: u32, i: u32, j: u32) {"));
    }
}

#[test]
fn matmul_column_sums_validate_and_translate_everywhere() {
    for variant in VARIANTS {
        let (m, k, n) = (5, 7, 9);
        let wgsl = assert_portable(&matmul_with_sums(variant, (m, k, n), dense(1, 0, k, n)));
        // The tiled kernel sums while it stages B (the generated hook), the
        // register-blocked ones in the epilogue of row 0.
        let tiled = variant.workgroup_tile().is_some();
        assert_eq!(
            wgsl.contains("fn column_sum(colsum: f32, j: u32)"),
            tiled,
            "{variant:?}"
        );
        assert_eq!(
            wgsl.contains("const SUMS: bool = true;"),
            tiled,
            "{variant:?}\n{wgsl}"
        );
        assert_eq!(wgsl.contains("for (var colp"), !tiled, "{variant:?}");
    }
    // Without sums the tiled kernel still has its hooks, switched off.
    let wgsl = assert_portable(&matmul_kernel_variant(MatMulVariant::WorkgroupTiled));
    assert!(wgsl.contains("const SUMS: bool = false;"), "{wgsl}");
}

#[test]
fn library_shaders_validate_and_translate_everywhere() {
    // The library files are completed by a generated part, so each is checked composed with
    // the generated part of a real kernel; every file in shaders/ must be one of them.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders");
    let known = [
        (
            "matmul_register.wgsl",
            kiln_wgpu::codegen::MATMUL_REGISTER_WGSL,
        ),
        (
            "matmul_subgroup.wgsl",
            kiln_wgpu::codegen::MATMUL_SUBGROUP_WGSL,
        ),
        ("matmul_tiled.wgsl", kiln_wgpu::codegen::MATMUL_TILED_WGSL),
        (
            "matmul_tiled_wide.wgsl",
            kiln_wgpu::codegen::MATMUL_TILED_WIDE_WGSL,
        ),
    ];
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let embedded = known
                .iter()
                .find(|(f, _)| *f == name)
                .unwrap_or_else(|| panic!("{name} is not a known library kernel"));
            assert_eq!(embedded.1, text, "{name} is embedded as is");
            n += 1;
        }
    }
    assert_eq!(n, known.len());
    for variant in VARIANTS {
        let k = matmul_kernel_variant(variant);
        let src = kernel_source(&k).unwrap();
        // With the defaults, and with the kernel's constants.
        check_portable("default", &src.wgsl, ENTRY_POINT, &[]).unwrap_or_else(|e| panic!("{e}"));
        check_portable("constants", &src.wgsl, ENTRY_POINT, &src.constants)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn subgroup_matmul_is_chosen_for_subgroups_of_8_and_translates_everywhere() {
    let k = matmul_kernel_variant(MatMulVariant::RegisterBlocked);
    let sub = kiln_wgpu::codegen::Target {
        subgroup_size: Some(8),
        flush_subnormals: false,
    };
    let src = kernel_source_for(&k, &sub).unwrap();
    assert!(src.wgsl.ends_with(kiln_wgpu::codegen::MATMUL_SUBGROUP_WGSL));
    assert!(src.wgsl.contains("subgroupBroadcast("));
    check_portable("subgroup", &src.wgsl, ENTRY_POINT, &src.constants)
        .unwrap_or_else(|e| panic!("{e}"));
    // Other subgroup sizes, none, or a workgroup size that is not a multiple of 8: portable.
    for (size, wg) in [(None, 64), (Some(4), 64), (Some(32), 64), (Some(8), 12)] {
        let mut k = k.clone();
        k.workgroup_size = wg;
        let target = kiln_wgpu::codegen::Target {
            subgroup_size: size,
            flush_subnormals: false,
        };
        let w = kernel_source_for(&k, &target).unwrap().wgsl;
        assert!(
            w.ends_with(kiln_wgpu::codegen::MATMUL_REGISTER_WGSL),
            "{size:?} {wg}"
        );
        assert!(
            !w.contains("subgroupBroadcast") && !w.contains("@builtin(subgroup"),
            "{size:?} {wg}"
        );
    }
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
fn read_write_args_are_bound_read_write() {
    let mut k = elementwise_kernel();
    k.args[0].access = Access::ReadWrite;
    let src = kernel_source(&k).unwrap();
    assert!(src.wgsl.contains("var<storage, read_write> arg0"));
    assert!(src.wgsl.contains("var<storage, read> arg1"));
    assert!(!src.bindings[0].read_only && src.bindings[1].read_only);
    check_portable("read_write", &src.wgsl, ENTRY_POINT, &[]).unwrap();
    // A store into a read-only arg is malformed.
    let mut k = elementwise_kernel();
    k.args[2].access = Access::Read;
    assert!(matches!(
        kernel_source(&k),
        Err(CodegenError::Malformed { .. })
    ));
}

#[test]
fn malformed_kernels_are_typed_errors() {
    let mut k = elementwise_kernel();
    if let KernelOp::Elementwise { body, .. } = &mut k.op {
        body.nodes[2].expr = Expr::Unary(kiln_ir::UnaryOp::Neg, 5);
    }
    let e = kernel_source(&k).unwrap_err();
    assert!(matches!(e, CodegenError::Malformed { .. }), "{e}");
    // kernel_wgsl never panics: it returns a comment with the reason.
    assert!(kernel_wgsl(&k).starts_with("// kernel `test/elementwise` is malformed"));

    let mut k = elementwise_kernel();
    k.op = KernelOp::Elementwise {
        shape: vec![6],
        stores: vec![],
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
        vector: 1,
    };
    assert!(kernel_source(&k).is_err());
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
