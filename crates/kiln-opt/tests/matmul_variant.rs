//! Which matmul kernel family a product is lowered to, per device: register blocks on CPU
//! adapters, 64x64 workgroup tiles on GPUs, 128x128 ones for GPU products of at least
//! `WIDE_TILES_FROM` such tiles; the launch of each validates.

use kiln_ir::{DType, Graph};
use kiln_opt::kernel::{KernelOp, MatMulVariant, WIDE_TILES_FROM};
use kiln_opt::{compile, AdapterClass, CompileOptions, DeviceLimits};

/// The variants of the products in the plan of `a · b` (`[batch, m, k] · [batch, k, n]`).
fn variants(
    class: AdapterClass,
    (batch, m, k, n): (usize, usize, usize, usize),
) -> Vec<MatMulVariant> {
    let mut g = Graph::new();
    let a = g.input("a", [batch, m, k], DType::F32).unwrap();
    let b = g.input("b", [batch, k, n], DType::F32).unwrap();
    let c = g.matmul(a, b).unwrap();
    g.output("c", c).unwrap();
    let limits = DeviceLimits {
        adapter_class: class,
        max_storage_buffer_binding_size: 1 << 30,
        max_buffer_size: 1 << 31,
        ..DeviceLimits::default()
    };
    let plan = compile(&g, &CompileOptions::default(), &limits).unwrap();
    plan.kernels
        .iter()
        .filter_map(|k| match &k.op {
            KernelOp::MatMul { variant, tile, .. } => {
                assert_eq!(*tile, variant.tile());
                Some(*variant)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn large_gpu_products_get_wide_tiles() {
    use MatMulVariant::*;
    let gpu = AdapterClass::DiscreteGpu;
    assert_eq!(WIDE_TILES_FROM, 128);
    // 2048³: 256 tiles of 128x128
    assert_eq!(variants(gpu, (1, 2048, 2048, 2048)), [WorkgroupTiledWide]);
    assert_eq!(
        variants(AdapterClass::IntegratedGpu, (1, 2048, 64, 2048)),
        [WorkgroupTiledWide]
    );
    // 1024³: 64 tiles; 2 x 1024 x 1024: 128 over the batch
    assert_eq!(variants(gpu, (1, 1024, 1024, 1024)), [WorkgroupTiled]);
    assert_eq!(variants(gpu, (2, 1024, 16, 1024)), [WorkgroupTiledWide]);
    // partial tiles count: ceil(2047 / 128) x ceil(1023 / 128) = 16 x 8, but 16 x 7 is short
    assert_eq!(
        variants(gpu, (1, 2048 - 1, 8, 1024 - 1)),
        [WorkgroupTiledWide]
    );
    assert_eq!(variants(gpu, (1, 2048, 8, 896)), [WorkgroupTiled]);
    // an LSTM step's product, and the same large product on a CPU adapter
    assert_eq!(variants(gpu, (1, 64, 100, 400)), [WorkgroupTiled]);
    assert_eq!(
        variants(AdapterClass::Cpu, (1, 2048, 2048, 2048)),
        [RegisterBlocked]
    );
}
