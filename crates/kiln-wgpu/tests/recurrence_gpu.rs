//! Fused recurrences on the GPU: for every cell (LSTM, GRU, SimpleRNN), masked or not, a
//! graph of `Graph::recurrence` and `Graph::recurrence_grad` compiled for this device (once
//! with its own limits, once with a loop limit so small that the dot products are
//! unrolled) gives one dispatch per recurrence op, matches the f64 evaluator, and gives the
//! same bits twice; so do the other activations, and invocations owning several `(row,
//! unit)` pairs (U = 300, and U = 40 in workgroups of 32). The shaders of every
//! configuration validate and translate to every naga back end without a GPU.

use kiln_ir::eval::{Feeds, Tensor};
use kiln_ir::recurrence::{Cell, CellActivation, CellKind};
use kiln_ir::testing::Tolerance;
use kiln_ir::{DType, Graph};
use kiln_opt::kernel::{Kernel, KernelOp};
use kiln_opt::plan::Step;
use kiln_opt::{compile, AdapterClass, Backend, CompileOptions, DeviceLimits, HostTensor, Plan};
use kiln_wgpu::codegen::{kernel_source_for, Target, ENTRY_POINT};
use kiln_wgpu::{check_portable, test_backend};
use std::sync::Arc;

const B: usize = 37;
const T: usize = 9;

fn cell(kind: CellKind, units: usize, masked: bool) -> Cell {
    Cell {
        kind,
        units,
        activation: CellActivation::Tanh,
        recurrent_activation: CellActivation::Sigmoid,
        masked,
    }
}

/// One configuration: the cell, and the largest workgroup the compiler may use (the
/// device's when `None`).
struct Case {
    cell: Cell,
    workgroup: Option<u32>,
}

impl Case {
    /// `base` with this case's workgroup cap.
    fn limits(&self, base: &DeviceLimits) -> DeviceLimits {
        let cap = |l: u32| self.workgroup.map_or(l, |w| w.min(l));
        DeviceLimits {
            max_compute_invocations_per_workgroup: cap(base.max_compute_invocations_per_workgroup),
            max_compute_workgroup_size_x: cap(base.max_compute_workgroup_size_x),
            ..base.clone()
        }
    }
}

/// Every cell masked and not at U = 33; LSTM at U = 300 (one row per workgroup, two pairs
/// per invocation) and at U = 40 in workgroups of 32 (two pairs); the other activations.
fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for kind in [CellKind::Lstm, CellKind::Gru, CellKind::SimpleRnn] {
        for masked in [false, true] {
            v.push(cell(kind, 33, masked));
        }
    }
    for masked in [false, true] {
        v.push(cell(CellKind::Lstm, 300, masked));
    }
    for (kind, act, rec) in [
        (
            CellKind::Lstm,
            CellActivation::Relu,
            CellActivation::HardSigmoid,
        ),
        (
            CellKind::Gru,
            CellActivation::Linear,
            CellActivation::HardSigmoid,
        ),
        (
            CellKind::SimpleRnn,
            CellActivation::Relu,
            CellActivation::Sigmoid,
        ),
    ] {
        v.push(Cell {
            activation: act,
            recurrent_activation: rec,
            ..cell(kind, 33, true)
        });
    }
    let mut v: Vec<Case> = v
        .into_iter()
        .map(|cell| Case {
            cell,
            workgroup: None,
        })
        .collect();
    v.push(Case {
        cell: cell(CellKind::Lstm, 40, true),
        workgroup: Some(32),
    });
    v
}

fn name(case: &Case) -> String {
    let c = &case.cell;
    format!(
        "{}{} U={} {}/{}{}",
        c.name(),
        if c.masked { " masked" } else { "" },
        c.units,
        c.activation.name(),
        c.recurrent_activation.name(),
        case.workgroup
            .map_or(String::new(), |w| format!(" (workgroups of {w})"))
    )
}

/// Deterministic values in `[-scale, scale)`.
fn data(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let v = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15 ^ (seed * 0x51ED_270B));
            let v = v ^ (v >> 29);
            ((v >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The graph `trace = recurrence(xp, r, ...)`, `grad = recurrence_grad(..., trace,
/// dtrace)` with both as outputs, and its feeds.
fn graph(c: &Cell) -> (Graph, Feeds) {
    let (b, u, k) = (B, c.units, c.gates());
    let mut g = Graph::new();
    let mut feeds = Feeds::new();
    let mut input = |g: &mut Graph, name: &str, shape: Vec<usize>, values: Vec<f64>| {
        feeds.insert(
            name.to_string(),
            Tensor::new(shape.clone(), values).unwrap(),
        );
        g.input(name, shape, DType::F32).unwrap()
    };
    let xp = input(&mut g, "xp", vec![b, T, k * u], data(b * T * k * u, 1, 1.0));
    let scale = 1.5 / (u as f64).sqrt();
    let r = input(&mut g, "r", vec![u, k * u], data(u * k * u, 2, scale));
    let mut ops = vec![xp, r];
    if c.kind == CellKind::Gru {
        ops.push(input(&mut g, "rb", vec![k * u], data(k * u, 3, 0.5)));
    }
    if c.masked {
        let m = data(b * u, 4, 1.0)
            .into_iter()
            .map(|v| if v > -0.6 { 1.25 } else { 0.0 })
            .collect();
        ops.push(input(&mut g, "mask", vec![b, u], m));
    }
    let w = c.trace_width();
    let dtrace = input(&mut g, "dtrace", vec![b, T, w], data(b * T * w, 5, 1.0));
    let trace = g.recurrence(*c, xp, r, &ops[2..]).unwrap();
    let grad = g.recurrence_grad(*c, &ops, trace, dtrace).unwrap();
    g.output("trace", trace).unwrap();
    g.output("grad", grad).unwrap();
    (g, feeds)
}

/// The limits with a loop limit under the looped kernels' count and at least the steps.
fn unrolling(limits: &DeviceLimits) -> DeviceLimits {
    DeviceLimits {
        max_loop_iterations: T as u64,
        ..limits.clone()
    }
}

fn recurrences(plan: &Plan) -> Vec<&Kernel> {
    plan.kernels
        .iter()
        .filter(|k| matches!(k.op, KernelOp::Recurrence { .. }))
        .collect()
}

/// Compiles the graph of `c` and checks the plan: two recurrence kernels (forward and backward),
/// each dispatched exactly once, unrolled as asked, with the expected rows and pairs.
fn plan(case: &Case, limits: &DeviceLimits, unroll: bool) -> Plan {
    let c = &case.cell;
    let (g, _) = graph(c);
    let what = name(case);
    let plan = compile(&g, &CompileOptions::default(), &case.limits(limits))
        .unwrap_or_else(|e| panic!("{what}: compile: {e}"));
    let recs = recurrences(&plan);
    assert_eq!(recs.len(), 2, "{what}:\n{}", plan.summary());
    for (i, k) in plan.kernels.iter().enumerate() {
        let KernelOp::Recurrence { launch, .. } = &k.op else {
            continue;
        };
        let dispatches = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Dispatch { kernel, .. } if *kernel as usize == i))
            .count();
        assert_eq!(dispatches, 1, "{what}: kernel `{}`", k.label);
        assert_eq!(launch.unroll, unroll, "{what}: kernel `{}`", k.label);
        let pairs = launch.pairs(c.units, k.workgroup_size);
        if c.units > k.workgroup_size as usize {
            assert_eq!(launch.rows, 1, "{what}");
            assert!(pairs > 1, "{what}: {pairs} pairs");
        } else {
            assert_eq!(pairs, 1, "{what}");
            assert!(launch.rows > 1, "{what}: {} rows", launch.rows);
        }
    }
    plan
}

#[test]
fn recurrence_shaders_validate_and_translate_everywhere() {
    let gpu = DeviceLimits::default();
    for case in cases() {
        for (limits, unroll) in [(gpu.clone(), false), (unrolling(&gpu), true)] {
            let plan = plan(&case, &limits, unroll);
            for k in recurrences(&plan) {
                for flush_subnormals in [false, true] {
                    let target = Target {
                        flush_subnormals,
                        ..Target::default()
                    };
                    let src = kernel_source_for(k, &target)
                        .unwrap_or_else(|e| panic!("{}: {e}", name(&case)));
                    check_portable(&k.label, &src.wgsl, ENTRY_POINT, &[])
                        .unwrap_or_else(|e| panic!("{}: {e}", name(&case)));
                    assert_eq!(
                        src.wgsl.matches("workgroupBarrier()").count(),
                        if matches!(&k.op, KernelOp::Recurrence { grad: Some(_), .. }) {
                            1
                        } else {
                            2
                        },
                        "one barrier per step (and the forward's after zeroing)"
                    );
                    // unrolled: the loop over the steps is the only loop
                    assert_eq!(src.wgsl.matches("for (").count() == 1, unroll);
                }
            }
        }
    }
}

/// Runs `plan` on `backend` with `feeds`; returns the outputs.
fn run(backend: &mut dyn Backend, plan: &Plan, feeds: &Feeds) -> Vec<HostTensor> {
    let mut exe = backend.load(Arc::new(plan.clone())).unwrap();
    let inputs: Vec<HostTensor> = plan
        .inputs
        .iter()
        .map(|s| {
            let t = &feeds[&s.name];
            HostTensor::f32(t.shape.clone(), t.data.iter().map(|&x| x as f32).collect()).unwrap()
        })
        .collect();
    let refs: Vec<&HostTensor> = inputs.iter().collect();
    exe.run(&refs).unwrap()
}

#[test]
fn recurrences_match_the_reference_on_the_gpu() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    let limits = backend.limits();
    for case in cases() {
        let (c, what) = (&case.cell, name(&case));
        let (g, feeds) = graph(c);
        let reference = kiln_ir::eval::run(&g, &feeds).unwrap();
        for (limits, unroll) in [(limits.clone(), false), (unrolling(&limits), true)] {
            // lavapipe (Mesa 22.3) takes over 10 minutes to compile the fully unrolled
            // U = 300 BPTT shader (2 x 1,200 terms; LLVM's coroutine frame building, for
            // the barriers, is superlinear in the per-lane branches of every load): on CPU
            // adapters the U = 40 case covers unrolled invocations with several pairs
            if unroll && c.units >= 300 && limits.adapter_class == AdapterClass::Cpu {
                eprintln!("{what} unroll true: skipped on a CPU adapter");
                continue;
            }
            let plan = plan(&case, &limits, unroll);
            let got = run(&mut backend, &plan, &feeds);
            // a sum of kU terms per step, over T dependent steps
            let tol = Tolerance::f32_sum(c.gates() * c.units);
            let mut worst = 0.0f64;
            for ((out, want), t) in reference.outputs.iter().zip(&got) {
                let got = t.to_f64();
                tol.check(&format!("{what} unroll {unroll}: {out}"), &got, &want.data)
                    .unwrap_or_else(|e| panic!("{e}"));
                for (a, b) in got.iter().zip(&want.data) {
                    worst = worst.max((a - b).abs() / (1.0 + b.abs()));
                }
            }
            eprintln!("{what} unroll {unroll}: worst error {worst:.2e}");
            let again = run(&mut backend, &plan, &feeds);
            for (a, b) in got.iter().zip(&again) {
                assert_eq!(a.to_bits(), b.to_bits(), "{what}: same bits twice");
            }
        }
    }
}

/// The backward reading a window of the trace's adjoint — the last step's `h` (a layer
/// returning its last state), every step's `h` (`return_sequences`), the last steps' whole
/// rows — matches the f64 evaluator (whose windows give the zero-padded adjoint's backward
/// bit for bit, `kiln_ir::recurrence`'s tests), for every cell, with validated and portable
/// shaders.
#[test]
fn adjoint_windows_match_the_reference_on_the_gpu() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    let limits = backend.limits();
    for c in [
        cell(CellKind::Lstm, 33, true),
        cell(CellKind::Gru, 33, false),
        cell(CellKind::SimpleRnn, 33, true),
    ] {
        let (mut g, mut feeds) = graph(&c);
        let (u, w) = (c.units, c.trace_width());
        let na = c.forward_arity();
        let grad = g
            .outputs()
            .iter()
            .find(|(n, _)| n == "grad")
            .map(|(_, id)| *id)
            .unwrap();
        let full = g.node(grad).inputs.clone();
        let trace = full[na];
        for (name, steps, width) in [("last_h", 1, u), ("every_h", T, u), ("last_rows", 3, w)] {
            feeds.insert(
                name.to_string(),
                Tensor::new(
                    vec![B, steps, width],
                    data(B * steps * width, 7 + steps as u64, 1.0),
                )
                .unwrap(),
            );
            let d = g.input(name, [B, steps, width], DType::F32).unwrap();
            let out = g.recurrence_grad(c, &full[..na], trace, d).unwrap();
            g.output(format!("grad_{name}"), out).unwrap();
        }
        let reference = kiln_ir::eval::run(&g, &feeds).unwrap();
        let plan = compile(&g, &CompileOptions::default(), &limits).unwrap();
        let recs = recurrences(&plan);
        assert_eq!(recs.len(), 5, "{}", plan.summary());
        for k in recs {
            let src = kernel_source_for(k, &Target::default()).unwrap();
            check_portable(&k.label, &src.wgsl, ENTRY_POINT, &[]).unwrap();
        }
        let got = run(&mut backend, &plan, &feeds);
        let tol = Tolerance::f32_sum(c.gates() * c.units);
        for ((out, want), t) in reference.outputs.iter().zip(&got) {
            tol.check(&format!("{} {out}", c.name()), &t.to_f64(), &want.data)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
