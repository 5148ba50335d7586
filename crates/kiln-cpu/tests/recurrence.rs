//! Fused recurrences (`Op::Recurrence`, `Op::RecurrenceGrad`) on the native backend: the
//! trace and the BPTT result against the f64 evaluator, for every cell, masked or not, over
//! a batch that spans several row blocks with a ragged last one; and the same bits on 1 and
//! 4 threads.

use kiln_cpu::NativeBackend;
use kiln_ir::eval::{Feeds, Tensor};
use kiln_ir::recurrence::{Cell, CellActivation, CellKind};
use kiln_ir::testing::Tolerance;
use kiln_ir::{DType, Graph};
use kiln_opt::kernel::KernelOp;
use kiln_opt::{compile, Backend, CompileOptions, HostTensor};
use std::sync::Arc;

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // exactly representable in f32, so both sides see the same inputs
            ((s >> 40) as f64 / (1u64 << 24) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn cell(kind: CellKind, units: usize, masked: bool) -> Cell {
    Cell {
        kind,
        units,
        activation: CellActivation::Tanh,
        recurrent_activation: CellActivation::Sigmoid,
        masked,
    }
}

/// A graph with the forward (`trace`) and the backward (`grad`) of one recurrence over
/// inputs `xp`, `r`, (`rb`), (`mask`), `dtrace`, and feeds for them: `xp` and `dtrace` in
/// [-0.5, 0.5), `r` scaled by `1/√U` (a well-conditioned recurrence), a mask of 0 and 1.25.
fn case(c: Cell, b: usize, t: usize) -> (Graph, Feeds) {
    let (u, ku, w) = (c.units, c.gates() * c.units, c.trace_width());
    let mut g = Graph::new();
    let mut feeds = Feeds::new();
    let mut leaf = |g: &mut Graph, name: &str, shape: Vec<usize>, data: Vec<f64>| {
        feeds.insert(name.into(), Tensor::new(shape.clone(), data).unwrap());
        g.input(name, shape, DType::F32).unwrap()
    };
    let scale = |v: Vec<f64>, s: f64| v.into_iter().map(|x| x * s).collect::<Vec<_>>();
    let xp = leaf(
        &mut g,
        "xp",
        vec![b, t, ku],
        scale(values(b * t * ku, 1), 0.5),
    );
    let r = leaf(
        &mut g,
        "r",
        vec![u, ku],
        scale(values(u * ku, 2), 1.0 / (u as f64).sqrt()),
    );
    let mut extra = vec![];
    if c.kind == CellKind::Gru {
        extra.push(leaf(&mut g, "rb", vec![ku], scale(values(ku, 3), 0.5)));
    }
    if c.masked {
        let m = values(b * u, 4)
            .into_iter()
            .map(|v| if v > -0.6 { 1.25 } else { 0.0 })
            .collect();
        extra.push(leaf(&mut g, "mask", vec![b, u], m));
    }
    let dtrace = leaf(
        &mut g,
        "dtrace",
        vec![b, t, w],
        scale(values(b * t * w, 5), 0.5),
    );
    let trace = g.recurrence(c, xp, r, &extra).unwrap();
    let mut ops = vec![xp, r];
    ops.extend(&extra);
    let grad = g.recurrence_grad(c, &ops, trace, dtrace).unwrap();
    g.output("trace", trace).unwrap();
    g.output("grad", grad).unwrap();
    (g, feeds)
}

/// Every cell, masked and not, plus other activations.
fn cells(units: usize) -> Vec<Cell> {
    let mut v = vec![];
    for kind in [CellKind::Lstm, CellKind::Gru, CellKind::SimpleRnn] {
        for masked in [false, true] {
            v.push(cell(kind, units, masked));
        }
    }
    v.push(Cell {
        activation: CellActivation::Relu,
        recurrent_activation: CellActivation::HardSigmoid,
        ..cell(CellKind::Lstm, units, true)
    });
    v.push(Cell {
        activation: CellActivation::Sigmoid,
        recurrent_activation: CellActivation::HardSigmoid,
        ..cell(CellKind::Gru, units, false)
    });
    v.push(Cell {
        activation: CellActivation::Linear,
        ..cell(CellKind::SimpleRnn, units, false)
    });
    v
}

/// Runs `g` on the native backend inside a pool of `threads` threads; checks that both ops
/// became recurrence kernels. Returns the outputs.
fn run(g: &Graph, feeds: &Feeds, threads: usize) -> Vec<Vec<f32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut b = NativeBackend::new();
        let plan = compile(g, &CompileOptions::default(), &b.limits()).unwrap();
        let fused = plan
            .kernels
            .iter()
            .filter(|k| matches!(k.op, KernelOp::Recurrence { .. }))
            .count();
        assert_eq!(fused, 2, "{}", plan.summary());
        let plan = Arc::new(plan);
        let inputs: Vec<HostTensor> = plan
            .inputs
            .iter()
            .map(|s| {
                let t = &feeds[&s.name];
                HostTensor::f32(t.shape.clone(), t.data.iter().map(|&x| x as f32).collect())
                    .unwrap()
            })
            .collect();
        let refs: Vec<&HostTensor> = inputs.iter().collect();
        let mut exe = b.load(plan).unwrap();
        exe.run(&refs).unwrap().iter().map(|t| t.to_f32()).collect()
    })
}

#[test]
fn recurrences_match_the_f64_evaluator() {
    // 37 rows: blocks of 16, 16 and 5
    let (b, t, u) = (37, 9, 33);
    for c in cells(u) {
        let (g, feeds) = case(c, b, t);
        // the op table's f32 tolerance (the errors seen are about 1e-7)
        let tol = Tolerance::F32;
        let mut be = NativeBackend::new();
        if let Err(e) = kiln_opt::testing::check_graph(&mut be, &g, &feeds, tol) {
            panic!("{c:?}: {e}");
        }
    }
}

#[test]
fn one_unit_and_one_step() {
    for (b, t) in [(1, 1), (37, 1), (3, 4)] {
        for c in cells(1) {
            let (g, feeds) = case(c, b, t);
            let mut be = NativeBackend::new();
            if let Err(e) = kiln_opt::testing::check_graph(&mut be, &g, &feeds, Tolerance::F32) {
                panic!("{c:?} B={b} T={t}: {e}");
            }
        }
    }
}

#[test]
fn recurrences_give_the_same_bits_on_1_and_4_threads() {
    let (b, t, u) = (37, 9, 33);
    for c in cells(u).into_iter().take(6) {
        let (g, feeds) = case(c, b, t);
        let bits = |o: Vec<Vec<f32>>| -> Vec<Vec<u32>> {
            o.iter()
                .map(|v| v.iter().map(|x| x.to_bits()).collect())
                .collect()
        };
        let one = bits(run(&g, &feeds, 1));
        let four = bits(run(&g, &feeds, 4));
        assert!(one == four, "{c:?}: 1 and 4 threads differ");
        assert!(four == bits(run(&g, &feeds, 4)), "{c:?}: runs differ");
    }
}
