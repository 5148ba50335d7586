//! Matmul throughput of the library kernels, excluding upload and read-back: a plan runs the
//! same `s x s x s` matmul `r` times in one submit, and the time of `1 + extra` dispatches
//! minus the time of 1 dispatch, divided by `extra`, is the time of one dispatch.
//!
//! `cargo run --release -p kiln-wgpu --example matmul_bench -- [sizes...]`
//!
//! Also printed: GFLOP per CPU-second of the whole process (lavapipe's worker threads
//! included), a figure that moves less than wall time when other processes share the
//! machine; on an idle 2-core machine wall GFLOP/s approaches twice it.
//!
//! Environment: `KILN_BENCH_VARIANT=register|tiled|wide` (default register; `tiled` is the
//! 64x64 workgroup tile, `wide` the 128x128 one), `KILN_BENCH_EXTRA=n` extra dispatches
//! (default: about a second of work at 10 GFLOP/s, 2 to 64; raise it on a GPU),
//! `KILN_BENCH_WG=n` to try another workgroup size (default:
//! `kiln_wgpu::codegen::matmul_dispatch`; the register block is fixed by the variant), `KILN_BENCH_TRANSPOSE_B=1` to read B
//! transposed in place.

use kiln_ir::{DType, Shape};
use kiln_opt::kernel::{
    Access, Arg, Body, Expr, Kernel, KernelOp, MatMulVariant, MatOperand, Store,
};
use kiln_opt::plan::{
    BufferDesc, BufferId, BufferKind, Plan, PlanStats, Slot, Step, PLAN_FORMAT_VERSION,
};
use kiln_opt::{Backend, HostTensor};
use kiln_wgpu::codegen::matmul_dispatch;
use std::sync::Arc;
use std::time::Instant;

fn buffer(p: &mut Plan, name: &str, n: usize, kind: BufferKind) -> BufferId {
    p.buffers.push(BufferDesc {
        name: name.into(),
        dtype: DType::F32,
        len: n,
        kind: kind.clone(),
    });
    let id = BufferId(p.buffers.len() as u32 - 1);
    let slot = Slot {
        name: name.into(),
        buffer: id,
        shape: Shape::new(vec![n]),
        dtype: DType::F32,
        indices: None,
    };
    match kind {
        BufferKind::Input => p.inputs.push(slot),
        BufferKind::Output => p.outputs.push(slot),
        _ => {}
    }
    id
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn plan(s: usize, reps: usize, variant: MatMulVariant) -> Plan {
    let mut p = Plan {
        format_version: PLAN_FORMAT_VERSION,
        kind: kiln_plan::PlanKind::Graph,
        buffers: vec![],
        kernels: vec![],
        steps: vec![],
        inputs: vec![],
        outputs: vec![],
        params: vec![],
        stats: PlanStats::default(),
    };
    let a = buffer(&mut p, "a", s * s, BufferKind::Input);
    let b = buffer(&mut p, "b", s * s, BufferKind::Input);
    let c = buffer(&mut p, "c", s * s, BufferKind::Output);
    let dense = |arg| MatOperand {
        arg,
        offset: 0,
        batch_stride: s * s,
        row_stride: s,
        col_stride: 1,
    };
    let bop = if std::env::var("KILN_BENCH_TRANSPOSE_B").as_deref() == Ok("1") {
        MatOperand {
            row_stride: 1,
            col_stride: s,
            ..dense(1)
        }
    } else {
        dense(1)
    };
    let mut launch = matmul_dispatch(variant, 1, s, s);
    if let Some(wg) = env_parse::<u32>("KILN_BENCH_WG") {
        launch = variant.launch_in(wg, 1, s, s);
    }
    let mut epilogue = Body::default();
    let acc = epilogue.push(Expr::Acc(0), DType::F32);
    p.kernels.push(Kernel {
        label: "mm".into(),
        op: KernelOp::MatMul {
            batch: 1,
            m: s,
            n: s,
            k: s,
            a: dense(0),
            b: bop,
            tile: launch.tile,
            variant,
            epilogue,
            stores: vec![Store {
                arg: 2,
                offset: 0,
                value: acc,
                strides: None,
            }],
            sums: None,
        },
        args: [Access::Read, Access::Read, Access::Write]
            .map(|access| Arg {
                dtype: DType::F32,
                access,
            })
            .to_vec(),
        workgroup_size: launch.workgroup_size,
        threads: launch.threads,
        nodes: vec![],
    });
    let groups = launch.workgroups.max(1);
    let x = groups.min(65535);
    for _ in 0..reps {
        p.steps.push(Step::Dispatch {
            kernel: 0,
            buffers: vec![a, b, c],
            workgroups: [x as u32, groups.div_ceil(x) as u32, 1],
        });
    }
    p
}

/// CPU seconds used so far by this process, all threads (lavapipe's workers included), from
/// `/proc/self/stat` (clock ticks of 10 ms); 0 where unavailable.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name: utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

/// (wall seconds, CPU seconds) per run of `p` (best of `runs` after a warm-up).
fn time_run(backend: &mut kiln_wgpu::WgpuBackend, p: Plan, s: usize, runs: usize) -> (f64, f64) {
    let a = HostTensor::f32([s * s], (0..s * s).map(|i| (i % 7) as f32 * 0.25).collect())
        .expect("input");
    let b = HostTensor::f32([s * s], (0..s * s).map(|i| (i % 5) as f32 * 0.5).collect())
        .expect("input");
    let (av, bv) = (a.to_f32(), b.to_f32());
    let transposed = std::env::var("KILN_BENCH_TRANSPOSE_B").as_deref() == Ok("1");
    let mut exe = backend.load(Arc::new(p)).expect("load");
    let c = exe.run(&[&a, &b]).expect("run")[0].to_f32();
    // Spot-check entries (corners, edges and a spread inside) against the host.
    for q in 0..64usize {
        let (i, j) = match q {
            0 => (0, 0),
            1 => (s - 1, s - 1),
            2 => (0, s - 1),
            3 => (s - 1, 0),
            _ => ((q * 7919) % s, (q * 104_729 + 13) % s),
        };
        let want: f64 = (0..s)
            .map(|p| {
                let bij = if transposed {
                    bv[j * s + p]
                } else {
                    bv[p * s + j]
                };
                av[i * s + p] as f64 * bij as f64
            })
            .sum();
        let got = c[i * s + j] as f64;
        assert!(
            (got - want).abs() <= 1e-4 * want.abs() + 1e-3,
            "{s}^3: c[{i}, {j}] = {got}, expected {want}"
        );
    }
    (0..runs)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_seconds());
            exe.run(&[&a, &b]).expect("run");
            (t.elapsed().as_secs_f64(), cpu_seconds() - c)
        })
        .fold((f64::INFINITY, f64::INFINITY), |(w, c), (w2, c2)| {
            (w.min(w2), c.min(c2))
        })
}

fn main() {
    let Some(mut backend) = kiln_wgpu::test_backend() else {
        return;
    };
    let variant = match std::env::var("KILN_BENCH_VARIANT").as_deref() {
        Ok("tiled") => MatMulVariant::WorkgroupTiled,
        Ok("wide") => MatMulVariant::WorkgroupTiledWide,
        _ => MatMulVariant::RegisterBlocked,
    };
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![256, 512, 1024, 2048]
    } else {
        sizes
    };
    println!("device: {}", backend.describe());
    for s in sizes {
        let l = plan(s, 1, variant).kernels[0].clone();
        let KernelOp::MatMul { tile, .. } = l.op else {
            unreachable!()
        };
        let flop = 2.0 * (s as f64).powi(3);
        // Enough extra dispatches for about a second of work at 10 GFLOP/s.
        let extra = env_parse("KILN_BENCH_EXTRA").unwrap_or(((1e10 / flop) as usize).clamp(2, 64));
        let runs = if s >= 2048 { 2 } else { 3 };
        let one = time_run(&mut backend, plan(s, 1, variant), s, runs);
        let many = time_run(&mut backend, plan(s, 1 + extra, variant), s, runs);
        let t = (many.0 - one.0) / extra as f64;
        let cpu = (many.1 - one.1) / extra as f64;
        println!(
            "{variant:?} tile {tile:?} wg {}: {s}^3: {:.2} ms/dispatch, {:.2} GFLOP/s; {:.2} GFLOP per CPU-second ({extra} extra dispatches in one submit)",
            l.workgroup_size,
            t * 1e3,
            flop / t / 1e9,
            flop / cpu / 1e9
        );
    }
}
