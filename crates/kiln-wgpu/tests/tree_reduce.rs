//! The workgroup-tree reductions that discrete and integrated GPUs get (one workgroup per
//! output element, strided partial folds, a fixed tree in workgroup memory), exercised on
//! whatever adapter is here by compiling for a GPU-class device: every op-table case,
//! the composite graphs (softmax family, losses) and long reductions agree with the f64
//! evaluator, plans really use trees, and the same plan gives the same bits twice; its
//! products carry their bias sums in the workgroup-tiled kernel.

use kiln_ir::testing::Tolerance;
use kiln_ir::{DType, Graph};
use kiln_opt::kernel::KernelOp;
use kiln_opt::{
    compile, AdapterClass, Backend, CompileOptions, DeviceLimits, Executable, HostTensor, Plan,
};
use kiln_wgpu::test_backend;
use std::sync::Arc;

/// The wgpu backend, reporting a discrete-GPU adapter class to the compiler.
struct AsGpu(kiln_wgpu::WgpuBackend);

impl Backend for AsGpu {
    fn describe(&self) -> String {
        format!("{} (compiled as a discrete GPU)", self.0.describe())
    }
    fn limits(&self) -> DeviceLimits {
        DeviceLimits {
            adapter_class: AdapterClass::DiscreteGpu,
            ..self.0.limits()
        }
    }
    fn load(&mut self, plan: Arc<Plan>) -> kiln_opt::Result<Box<dyn Executable>> {
        self.0.load(plan)
    }
    fn write_param(&mut self, name: &str, value: &HostTensor) -> kiln_opt::Result<()> {
        self.0.write_param(name, value)
    }
    fn read_param(&mut self, name: &str) -> kiln_opt::Result<HostTensor> {
        self.0.read_param(name)
    }
    fn param_names(&self) -> Vec<String> {
        self.0.param_names()
    }
}

fn trees(plan: &Plan) -> usize {
    plan.kernels
        .iter()
        .filter(|k| matches!(k.op, KernelOp::Reduce { tree, .. } if tree > 1))
        .count()
}

#[test]
fn tree_reductions_match_the_reference() {
    let Some(b) = test_backend() else { return };
    let mut b = AsGpu(b);
    let n = kiln_opt::testing::check_op_table(&mut b).unwrap();
    assert!(n > 40, "{n} op-table cases");
    for (name, g, feeds) in kiln_opt::testing::composite_graphs() {
        kiln_opt::testing::check_graph(&mut b, &g, &feeds, Tolerance::f32_sum(1000))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // long rows and columns, several stages (softmax), several folds, max and mean
    let mut g = Graph::new();
    let x = g.input("x", [6, 1000], DType::F32).unwrap();
    let s = g.softmax(x, 1).unwrap();
    g.output("softmax", s).unwrap();
    let c = g.sum(x, &[0], true).unwrap();
    g.output("colsum", c).unwrap();
    let m = g.max(x, &[1], true).unwrap();
    g.output("rowmax", m).unwrap();
    let a = g.mean(x, &[0, 1], true).unwrap();
    g.output("mean", a).unwrap();
    let plan = compile(&g, &CompileOptions::default(), &b.limits()).unwrap();
    assert!(trees(&plan) >= 2, "{}", plan.summary());
    let xs: Vec<f64> = (0..6000)
        .map(|i| ((i * 37) % 101) as f64 / 25.0 - 2.0)
        .collect();
    let feeds: kiln_ir::eval::Feeds = [(
        "x".to_string(),
        kiln_ir::eval::Tensor::new([6, 1000], xs.clone()).unwrap(),
    )]
    .into_iter()
    .collect();
    kiln_opt::testing::check_graph(&mut b, &g, &feeds, Tolerance::f32_sum(1000)).unwrap();
    // softmax and its backward on long rows: multi-stage kernels with stage and broadcast
    // stores
    let mut g2 = Graph::new();
    let x2 = g2.input("x", [6, 1000], DType::F32).unwrap();
    let w = g2
        .constant(
            (0..6000).map(|i| ((i % 13) as f64 - 6.0) / 7.0).collect(),
            [6, 1000],
            DType::F32,
        )
        .unwrap();
    let s2 = g2.softmax(x2, 1).unwrap();
    let sw = g2.mul(s2, w).unwrap();
    let l = g2.sum_all(sw).unwrap();
    let dx = kiln_ir::autodiff::grad(&mut g2, l, &[x2]).unwrap()[0];
    g2.output("loss", l).unwrap();
    g2.output("dx", dx).unwrap();
    let plan2 = compile(&g2, &CompileOptions::default(), &b.limits()).unwrap();
    assert!(trees(&plan2) >= 1, "{}", plan2.summary());
    kiln_opt::testing::check_graph(&mut b, &g2, &feeds, Tolerance::f32_sum(1000)).unwrap();
    // deterministic: the same bits twice
    let mut exe = b.load(Arc::new(plan)).unwrap();
    let xt = HostTensor::f32([6, 1000], xs.iter().map(|&v| v as f32).collect()).unwrap();
    let r1 = exe.run(&[&xt]).unwrap();
    let r2 = exe.run(&[&xt]).unwrap();
    assert_eq!(r1, r2);
}

/// Compiled for a GPU, the dense layer's training step puts its bias gradient (and the
/// bias's update) in the workgroup-tiled kernel of its weight gradient, which sums the
/// columns of `dy` while it stages them; the step agrees with the f64 evaluator.
#[test]
fn gpu_products_carry_their_bias_sums() {
    let Some(b) = test_backend() else { return };
    let mut b = AsGpu(b);
    let (_, g, feeds) = kiln_opt::testing::composite_graphs()
        .into_iter()
        .find(|(n, _, _)| n == "dense")
        .expect("the dense composite");
    let plan = compile(&g, &CompileOptions::default(), &b.limits()).unwrap();
    let tiled_with_sums = plan
        .kernels
        .iter()
        .filter(|k| {
            matches!(
                &k.op,
                KernelOp::MatMul {
                    variant: kiln_opt::kernel::MatMulVariant::WorkgroupTiled,
                    sums: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(tiled_with_sums, 1, "{}", plan.summary());
    kiln_opt::testing::check_graph(&mut b, &g, &feeds, Tolerance::f32_sum(1000)).unwrap();
}

/// A scatter-add compiled for a GPU is split into blocks of rows (`threads = cols · J`),
/// each thread walking every position for its rows and keeping a repeated row's sum in a
/// register. Every element still gets its additions in position order: the bits equal the
/// host's sequential sums for one block (lavapipe's own plan) and for many (a GPU's), with
/// runs of one index (padding), indices past the table, and rows never picked.
#[test]
fn gpu_scatter_adds_split_rows_and_keep_the_sequential_bits() {
    let Some(b) = test_backend() else { return };
    let mut gpu = AsGpu(b);
    let Some(mut cpu) = test_backend() else {
        return;
    };
    const N: usize = 300;
    const C: usize = 7;
    for rows in [50usize, 1000] {
        // runs of index 0 (padding) at the start of each "review" of 60, then words
        let idx: Vec<f32> = (0..N)
            .map(|i| match i % 60 {
                p if p < 25 => 0.0,
                58 | 59 => rows as f32,
                p => ((p * 37 + i / 60 * 11) % rows) as f32,
            })
            .collect();
        let upd: Vec<f32> = (0..N * C)
            .map(|k| ((k * 7919 % 1013) as f32 - 506.0) / 97.0)
            .collect();
        let mut want = vec![0f32; rows * C];
        for (i, &r) in idx.iter().enumerate() {
            if r >= 0.0 && (r as usize) < rows {
                for c in 0..C {
                    want[r as usize * C + c] += upd[i * C + c];
                }
            }
        }
        let mut g = Graph::new();
        let x = g.input("idx", [N], DType::F32).unwrap();
        let u = g.input("upd", [N, C], DType::F32).unwrap();
        let i = g.cast(x, DType::I32).unwrap();
        let s = g.scatter_add(i, u, rows).unwrap();
        g.output("out", s).unwrap();
        let options = CompileOptions {
            // the indices past the table are part of the test (the entry points refuse
            // negative ones)
            index_inputs: vec![("idx".into(), u32::MAX)],
            ..CompileOptions::default()
        };
        let xt = HostTensor::f32([N], idx.clone()).unwrap();
        let ut = HostTensor::f32([N, C], upd.clone()).unwrap();
        let blocks = (16_384usize.div_ceil(C)).min(rows).min(256);
        let backends: [(&mut dyn Backend, usize); 2] = [(&mut gpu, blocks), (&mut cpu, 1)];
        for (be, blocks) in backends {
            let plan = compile(&g, &options, &be.limits()).unwrap();
            let threads: Vec<u64> = plan
                .kernels
                .iter()
                .filter(|k| matches!(k.op, KernelOp::ScatterAdd { .. }))
                .map(|k| k.threads)
                .collect();
            assert_eq!(threads, [(C * blocks) as u64], "{}", plan.summary());
            let mut exe = be.load(Arc::new(plan)).unwrap();
            let got = exe.run(&[&xt, &ut]).unwrap()[0].to_f32();
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "rows {rows}, {blocks} blocks: {got:?}\nvs {want:?}");
        }
    }
}
