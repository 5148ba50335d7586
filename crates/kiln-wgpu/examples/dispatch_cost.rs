//! Measures the per-run and per-dispatch cost of the executor, and matmul throughput.
//!
//! `cargo run --release -p kiln-wgpu --example dispatch_cost`

use kiln_ir::{BinaryOp, DType, Shape};
use kiln_opt::kernel::{
    Access, Arg, Body, Expr, Kernel, KernelOp, MatMulVariant, MatOperand, Store, View,
};
use kiln_opt::plan::{
    BufferDesc, BufferId, BufferKind, Plan, PlanStats, Slot, Step, PLAN_FORMAT_VERSION,
};
use kiln_opt::{Backend, HostTensor};
use std::sync::Arc;
use std::time::Instant;

const WG: u32 = 64;

fn plan() -> Plan {
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        kind: kiln_plan::PlanKind::Graph,
        buffers: vec![],
        kernels: vec![],
        steps: vec![],
        inputs: vec![],
        outputs: vec![],
        params: vec![],
        stats: PlanStats::default(),
    }
}

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

fn args(n: usize) -> Vec<Arg> {
    (0..n)
        .map(|i| Arg {
            dtype: DType::F32,
            access: if i + 1 == n {
                Access::Write
            } else {
                Access::Read
            },
        })
        .collect()
}

/// `dispatches` chained `t = t + 1` kernels over `n` elements.
fn chain(n: usize, dispatches: usize) -> Plan {
    let mut p = plan();
    let x = buffer(&mut p, "x", n, BufferKind::Input);
    let mut b = Body::default();
    let v = b.push(
        Expr::Load {
            arg: 0,
            view: View::contiguous(&[n]),
        },
        DType::F32,
    );
    let one = b.push(Expr::Const(1.0), DType::F32);
    let r = b.push(Expr::Binary(BinaryOp::Add, v, one), DType::F32);
    p.kernels.push(Kernel {
        label: "inc".into(),
        op: KernelOp::Elementwise {
            shape: vec![n],
            body: b,
            stores: vec![Store {
                arg: 1,
                offset: 0,
                value: r,
                strides: None,
            }],
            vector: 1,
        },
        args: args(2),
        workgroup_size: WG,
        threads: n as u64,
        nodes: vec![],
    });
    let mut prev = x;
    for i in 0..dispatches {
        let kind = if i + 1 == dispatches {
            BufferKind::Output
        } else {
            BufferKind::Temp
        };
        let t = buffer(&mut p, &format!("t{i}"), n, kind);
        let groups = (n as u32).div_ceil(WG);
        p.steps.push(Step::Dispatch {
            kernel: 0,
            buffers: vec![prev, t],
            workgroups: [groups, 1, 1],
        });
        prev = t;
    }
    p
}

fn matmul(s: usize) -> Plan {
    let mut p = plan();
    let a = buffer(&mut p, "a", s * s, BufferKind::Input);
    let b = buffer(&mut p, "b", s * s, BufferKind::Input);
    let c = buffer(&mut p, "c", s * s, BufferKind::Output);
    let op = |arg| MatOperand {
        arg,
        offset: 0,
        batch_stride: s * s,
        row_stride: s,
        col_stride: 1,
    };
    let launch = kiln_wgpu::codegen::matmul_dispatch(MatMulVariant::RegisterBlocked, 1, s, s);
    let mut epilogue = Body::default();
    let acc = epilogue.push(Expr::Acc(0), DType::F32);
    p.kernels.push(Kernel {
        label: "mm".into(),
        op: KernelOp::MatMul {
            batch: 1,
            m: s,
            n: s,
            k: s,
            a: op(0),
            b: op(1),
            tile: launch.tile,
            variant: MatMulVariant::RegisterBlocked,
            epilogue,
            stores: vec![Store {
                arg: 2,
                offset: 0,
                value: acc,
                strides: None,
            }],
            sums: None,
        },
        args: args(3),
        workgroup_size: launch.workgroup_size,
        threads: launch.threads,
        nodes: vec![],
    });
    p.steps.push(Step::Dispatch {
        kernel: 0,
        buffers: vec![a, b, c],
        workgroups: [launch.workgroups as u32, 1, 1],
    });
    p
}

fn time_runs(backend: &mut kiln_wgpu::WgpuBackend, p: Plan, n_in: usize, reps: usize) -> f64 {
    let inputs: Vec<HostTensor> = (0..n_in)
        .map(|_| {
            HostTensor::f32(
                [p.inputs[0].shape.numel()],
                vec![0.5; p.inputs[0].shape.numel()],
            )
            .unwrap()
        })
        .collect();
    let refs: Vec<&HostTensor> = inputs.iter().collect();
    let mut exe = backend.load(Arc::new(p)).unwrap();
    exe.run(&refs).unwrap(); // warm-up
    let t = Instant::now();
    for _ in 0..reps {
        exe.run(&refs).unwrap();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn main() {
    let Some(mut backend) = kiln_wgpu::test_backend() else {
        return;
    };
    println!("device: {}", backend.describe());
    let one = time_runs(&mut backend, chain(1024, 1), 1, 50);
    let many = time_runs(&mut backend, chain(1024, 101), 1, 20);
    println!(
        "run with 1 dispatch: {:.1} us; with 101 dispatches: {:.1} us => {:.1} us per extra dispatch",
        one * 1e6,
        many * 1e6,
        (many - one) / 100.0 * 1e6
    );
    for s in [128, 256, 512] {
        let t = time_runs(&mut backend, matmul(s), 2, 5);
        println!(
            "matmul {s}x{s}x{s}: {:.2} ms/run, {:.2} GFLOP/s (incl. upload + read-back)",
            t * 1e3,
            2.0 * (s as f64).powi(3) / t / 1e9
        );
    }
}
