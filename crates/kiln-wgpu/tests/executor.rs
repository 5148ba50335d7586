//! Hand-built plans run on the device and match hand-computed values; variables persist
//! across runs and plans; bad inputs and bad plans are errors; runs allocate nothing.

mod common;

use common::*;
use kiln_ir::testing::Tolerance;
use kiln_ir::{BinaryOp, DType};
use kiln_opt::kernel::{Access, Arg, Body, Expr, KernelOp, MatMulVariant, MatOperand, Store, View};
use kiln_opt::plan::{BufferKind, Step};
use kiln_opt::{Backend, HostTensor, OptError};
use kiln_wgpu::test_backend;
use std::sync::Arc;

fn f32s(t: &HostTensor) -> Vec<f64> {
    t.to_f64()
}

fn check(what: &str, got: &HostTensor, want: &[f64], tol: Tolerance) {
    tol.check(what, &f32s(got), want).unwrap();
}

#[test]
fn describe_and_limits() {
    let Some(b) = test_backend() else { return };
    let d = b.describe();
    assert!(d.contains('(') && d.contains("driver"), "{d}");
    let l = b.limits();
    assert!(l.max_storage_buffers_per_shader_stage >= 8);
    assert!(l.max_compute_workgroups_per_dimension >= 65535);
}

#[test]
fn elementwise_int_reduce_and_matmul_match_the_host() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    let mut p = empty_plan();
    // Elementwise with a transposed and a broadcast operand.
    let a = buffer(&mut p, "a", &[3, 2], DType::F32, BufferKind::Input);
    let bv = buffer(&mut p, "b", &[3], DType::F32, BufferKind::Input);
    let ew = buffer(&mut p, "ew", &[2, 3], DType::F32, BufferKind::Output);
    dispatch(&mut p, elementwise_kernel(), vec![a, bv, ew]);
    // Integer arithmetic.
    let ia = buffer(&mut p, "ia", &[5], DType::I32, BufferKind::Input);
    let ib = buffer(&mut p, "ib", &[5], DType::I32, BufferKind::Input);
    let fv = buffer(&mut p, "f", &[5], DType::F32, BufferKind::Input);
    let io = buffer(&mut p, "int", &[5], DType::I32, BufferKind::Output);
    dispatch(&mut p, int_kernel(), vec![ia, ib, fv, io]);
    // Reductions.
    let x = buffer(&mut p, "x", &[2, 3, 4], DType::F32, BufferKind::Input);
    let bias = buffer(&mut p, "bias", &[4], DType::F32, BufferKind::Input);
    let ms = buffer(
        &mut p,
        "mean_sq",
        &[2, 1, 4],
        DType::F32,
        BufferKind::Output,
    );
    dispatch(&mut p, reduce_sum_kernel(), vec![x, bias, ms]);
    let mx = buffer(&mut p, "max", &[1, 3, 1], DType::F32, BufferKind::Output);
    dispatch(&mut p, reduce_max_kernel(), vec![x, mx]);
    // Matmul with a transposed right operand.
    let (batch, m, k, n) = MM;
    let ma = buffer(&mut p, "ma", &[batch, m, k], DType::F32, BufferKind::Input);
    let mb = buffer(&mut p, "mbt", &[batch, n, k], DType::F32, BufferKind::Input);
    let mo = buffer(&mut p, "mm", &[batch, m, n], DType::F32, BufferKind::Output);
    dispatch(&mut p, matmul_kernel(), vec![ma, mb, mo]);

    let av = values(6, 1);
    let bvals = values(3, 2);
    let (iav, ibv) = (vec![3, -4, 7, 0, -9], vec![2, 5, -7, 0, -3]);
    let fvals = vec![1.7, -2.9, 0.2, 5.5, -0.5];
    let xv = values(24, 3);
    let biasv = values(4, 4);
    let mav = values(batch * m * k, 5);
    let mbv = values(batch * n * k, 6);
    let inputs = [
        HostTensor::f32([3, 2], av.clone()).unwrap(),
        HostTensor::f32([3], bvals.clone()).unwrap(),
        HostTensor::i32([5], iav.clone()).unwrap(),
        HostTensor::i32([5], ibv.clone()).unwrap(),
        HostTensor::f32([5], fvals.clone()).unwrap(),
        HostTensor::f32([2, 3, 4], xv.clone()).unwrap(),
        HostTensor::f32([4], biasv.clone()).unwrap(),
        HostTensor::f32([batch, m, k], mav.clone()).unwrap(),
        HostTensor::f32([batch, n, k], mbv.clone()).unwrap(),
    ];
    let mut exe = backend.load(Arc::new(p)).unwrap();
    let out = exe.run(&inputs.iter().collect::<Vec<_>>()).unwrap();
    check(
        "elementwise",
        &out[0],
        &elementwise_reference(&av, &bvals),
        Tolerance::F32,
    );
    assert_eq!(
        out[1],
        HostTensor::i32([5], int_reference(&iav, &ibv, &fvals)).unwrap()
    );
    check(
        "mean_sq",
        &out[2],
        &reduce_sum_reference(&xv, &biasv),
        Tolerance::f32_sum(3),
    );
    check("max", &out[3], &reduce_max_reference(&xv), Tolerance::F32);
    check(
        "matmul",
        &out[4],
        &matmul_reference(&mav, &mbv),
        Tolerance::f32_sum(k),
    );
}

fn matmul_host(
    (batch, m, k, n): (usize, usize, usize, usize),
    a: &[f32],
    ao: &MatOperand,
    b: &[f32],
    bo: &MatOperand,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(batch * m * n);
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                out.push(
                    (0..k)
                        .map(|p| {
                            let x = a[ao.offset
                                + bi * ao.batch_stride
                                + i * ao.row_stride
                                + p * ao.col_stride];
                            let y = b[bo.offset
                                + bi * bo.batch_stride
                                + p * bo.row_stride
                                + j * bo.col_stride];
                            x as f64 * y as f64
                        })
                        .sum(),
                );
            }
        }
    }
    out
}

/// Runs one `[batch, m, k] · [batch, k, n]` product of `variant` on `backend` with an
/// identity epilogue: A and B are whole input buffers (`av`, `bv`), read through `ops`.
fn run_matmul(
    backend: &mut dyn Backend,
    variant: MatMulVariant,
    (batch, m, k, n): (usize, usize, usize, usize),
    (ao, bo): (&MatOperand, &MatOperand),
    av: Vec<f32>,
    bv: Vec<f32>,
) -> HostTensor {
    let mut p = empty_plan();
    let a = buffer(&mut p, "a", &[av.len()], DType::F32, BufferKind::Input);
    let b = buffer(&mut p, "b", &[bv.len()], DType::F32, BufferKind::Input);
    let c = buffer(&mut p, "c", &[batch, m, n], DType::F32, BufferKind::Output);
    let (e, st) = identity_epilogue(2);
    let kern = matmul(
        "mm",
        variant,
        (batch, m, k, n),
        ao.clone(),
        bo.clone(),
        e,
        st,
        args(&[DType::F32, DType::F32, DType::F32]),
    );
    dispatch(&mut p, kern, vec![a, b, c]);
    let mut exe = backend.load(Arc::new(p)).unwrap();
    let ta = HostTensor::f32([av.len()], av).unwrap();
    let tb = HostTensor::f32([bv.len()], bv).unwrap();
    exe.run(&[&ta, &tb]).unwrap().remove(0)
}

#[test]
fn matmul_variants_cover_edges_and_transposed_operands() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    let variants = [
        MatMulVariant::RegisterBlocked,
        MatMulVariant::WorkgroupTiled,
        MatMulVariant::WorkgroupTiledWide,
    ];
    let sizes: &[(usize, usize, usize, usize)] = &[
        (1, 1, 1, 1),
        (1, 1, 0, 3),
        (2, 5, 3, 6),
        (3, 33, 17, 70),
        (1, 130, 19, 1),
        (1, 128, 64, 129),
        (2, 67, 5, 65),
        (2, 9, 8, 12),
        (1, 16, 4, 20),
        (1, 257, 21, 300),
    ];
    for variant in variants {
        for &(batch, m, k, n) in sizes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                // A stored [batch, m, k] or [batch, k, m] (read transposed), likewise B.
                let (ao, bo) = (operand(0, m, k, ta), operand(1, k, n, tb));
                let (av, bv) = (values(batch * m * k, 7), values(batch * k * n, 8));
                let want = matmul_host((batch, m, k, n), &av, &ao, &bv, &bo);
                let out = run_matmul(&mut backend, variant, (batch, m, k, n), (&ao, &bo), av, bv);
                check(
                    &format!("{variant:?} {batch}x{m}x{k}x{n} transposed {ta}/{tb}"),
                    &out,
                    &want,
                    Tolerance::f32_sum(k.max(1)),
                );
            }
        }
    }
}

/// The wide 128x128 tiles sum every output in the same order (`p` increasing, one fma
/// per term) as the 64x64 tiles: the same bits, for partial tiles in every dimension,
/// transposed (strided, no vec4 reads) and contiguous (vec4 reads) operands, and unaligned
/// offsets (vec4 reads refused).
#[test]
fn wide_tiles_give_the_bits_of_the_64_tiles() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    for &(batch, m, k, n) in &[(1, 300, 70, 260), (2, 129, 9, 131), (1, 256, 256, 256)] {
        for (ta, tb, shift) in [(false, false, 0), (true, true, 0), (false, false, 1)] {
            let (mut ao, mut bo) = (operand(0, m, k, ta), operand(1, k, n, tb));
            ao.offset += shift;
            bo.offset += shift;
            // values with long mantissas, so that another order of sums would show
            let av: Vec<f32> = (0..batch * m * k + shift)
                .map(|i| ((i * 7919) % 1009) as f32 / 37.0 - 13.0)
                .collect();
            let bv: Vec<f32> = (0..batch * k * n + shift)
                .map(|i| ((i * 104_729) % 997) as f32 / 91.0 - 5.0)
                .collect();
            let bits: Vec<Vec<u32>> = [
                MatMulVariant::WorkgroupTiled,
                MatMulVariant::WorkgroupTiledWide,
            ]
            .into_iter()
            .map(|variant| {
                let dims = (batch, m, k, n);
                let out = run_matmul(
                    &mut backend,
                    variant,
                    dims,
                    (&ao, &bo),
                    av.clone(),
                    bv.clone(),
                );
                out.to_f64().iter().map(|&x| (x as f32).to_bits()).collect()
            })
            .collect();
            let what = format!("{batch}x{m}x{k}x{n} transposed {ta}/{tb}, offset +{shift}");
            assert_eq!(bits[0].len(), batch * m * n, "{what}");
            let differ = bits[0].iter().zip(&bits[1]).filter(|(x, y)| x != y).count();
            assert_eq!(
                differ, 0,
                "{what}: {differ} outputs differ between 64 and 128 tiles"
            );
        }
    }
}

/// Column sums of B riding in the product's kernel (`KernelOp::MatMul::sums`): the
/// register-blocked kernels sum in the epilogue, the workgroup-tiled one while it stages B;
/// either way column `j` is `Σ_p B[p, j]` in increasing `p` from +0.0 in f32 — the same bits
/// as the host's sequential sum — for shapes with several row tiles (only the first row
/// stores), partial tiles in `k` and `n`, `k = 0` and a transposed `B`.
#[test]
fn matmul_column_sums_are_the_sequential_sums() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    for variant in [
        MatMulVariant::RegisterBlocked,
        MatMulVariant::WorkgroupTiled,
        MatMulVariant::WorkgroupTiledWide,
    ] {
        for &(m, k, n) in &[
            (1, 1, 1),
            (130, 37, 70),
            (3, 0, 5),
            (65, 200, 129),
            (2, 16, 64),
            (260, 13, 259),
        ] {
            for tb in [false, true] {
                let bo = operand(1, k, n, tb);
                let mut p = empty_plan();
                let a = buffer(&mut p, "a", &[m * k], DType::F32, BufferKind::Input);
                let b = buffer(&mut p, "b", &[k * n], DType::F32, BufferKind::Input);
                let c = buffer(&mut p, "c", &[1, m, n], DType::F32, BufferKind::Output);
                let s = buffer(&mut p, "s", &[n], DType::F32, BufferKind::Output);
                let kern = matmul_with_sums(variant, (m, k, n), bo.clone());
                dispatch(&mut p, kern, vec![a, b, c, s]);
                // Values whose sums round: thirds, tenths and a few large magnitudes.
                let av = values(m * k, 3);
                let bv: Vec<f32> = (0..k * n)
                    .map(|i| {
                        let x = ((i * 7919) % 101) as f32 / 3.0 - 16.0;
                        if i % 17 == 0 {
                            x * 1.0e4
                        } else {
                            x / 10.0
                        }
                    })
                    .collect();
                let at = |p: usize, j: usize| bv[p * bo.row_stride + j * bo.col_stride];
                let want: Vec<u32> = (0..n)
                    .map(|j| (0..k).fold(0.0f32, |acc, p| acc + at(p, j)).to_bits())
                    .collect();
                let mut exe = backend.load(Arc::new(p)).unwrap();
                let ta = HostTensor::f32([m * k], av.clone()).unwrap();
                let tbv = HostTensor::f32([k * n], bv.clone()).unwrap();
                let out = exe.run(&[&ta, &tbv]).unwrap();
                let what = format!("{variant:?} {m}x{k}x{n} transposed {tb}");
                let got: Vec<u32> = out[1]
                    .to_f64()
                    .iter()
                    .map(|&x| (x as f32).to_bits())
                    .collect();
                assert_eq!(got, want, "{what}: column sums");
                // The product, within f32 rounding of the sum of |terms| (B's large values
                // make cancelling sums, where a relative tolerance would not hold).
                let got = out[0].to_f64();
                for i in 0..m {
                    for j in 0..n {
                        let (mut want, mut mag) = (0.0f64, 0.0f64);
                        for p in 0..k {
                            let t = av[i * k + p] as f64 * at(p, j) as f64;
                            want += t;
                            mag += t.abs();
                        }
                        let diff = (got[i * n + j] - want).abs();
                        assert!(
                            diff <= 1e-6 * mag * (k as f64).sqrt().max(1.0) + 1e-30,
                            "{what}: product [{i}, {j}] = {}, want {want} (|terms| {mag})",
                            got[i * n + j]
                        );
                    }
                }
            }
        }
    }
}

/// A matmul reading both operands from one arena buffer at offsets, with a fused epilogue
/// that loads a bias (strides [0, 0, 1]) and writes two outputs: `y = acc + bias` into the
/// arena at an offset (the arena is `ReadWrite`) and `relu(y) * 2` into its own buffer.
#[test]
fn matmul_epilogue_loads_and_stores_through_the_arena() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    for variant in [
        MatMulVariant::RegisterBlocked,
        MatMulVariant::WorkgroupTiled,
        MatMulVariant::WorkgroupTiledWide,
    ] {
        let (batch, m, k, n) = (2usize, 9usize, 7usize, 21usize);
        let (a_off, b_off) = (3usize, 3 + batch * m * k + 5);
        let y_off = b_off + batch * k * n + 2;
        let arena_len = y_off + batch * m * n + 1;
        let mut e = Body::default();
        let acc = e.push(Expr::Acc(0), DType::F32);
        let bias = e.push(
            Expr::Load {
                arg: 1,
                view: View {
                    offset: 1,
                    strides: vec![0, 0, 1],
                },
            },
            DType::F32,
        );
        let y = e.push(Expr::Binary(BinaryOp::Add, acc, bias), DType::F32);
        let r = e.push(Expr::Unary(kiln_ir::UnaryOp::Relu, y), DType::F32);
        let two = e.push(Expr::Const(2.0), DType::F32);
        let z = e.push(Expr::Binary(BinaryOp::Mul, r, two), DType::F32);
        let stores = vec![
            Store {
                arg: 0,
                offset: y_off,
                value: y,
                strides: None,
            },
            Store {
                arg: 2,
                offset: 0,
                value: z,
                strides: None,
            },
        ];
        let kargs = vec![
            Arg {
                dtype: DType::F32,
                access: Access::ReadWrite,
            },
            Arg {
                dtype: DType::F32,
                access: Access::Read,
            },
            Arg {
                dtype: DType::F32,
                access: Access::Write,
            },
        ];
        let ao = dense(0, a_off, m, k);
        let bo = MatOperand {
            arg: 0,
            offset: b_off,
            batch_stride: k * n,
            row_stride: 1,
            col_stride: k,
        };
        let kern = matmul(
            "mm_epi",
            variant,
            (batch, m, k, n),
            ao.clone(),
            bo.clone(),
            e,
            stores,
            kargs,
        );
        let mut p = empty_plan();
        let arena = buffer(&mut p, "arena", &[arena_len], DType::F32, BufferKind::Param);
        let bias_b = buffer(&mut p, "bias", &[n + 1], DType::F32, BufferKind::Input);
        let zb = buffer(&mut p, "z", &[batch, m, n], DType::F32, BufferKind::Output);
        dispatch(&mut p, kern, vec![arena, bias_b, zb]);
        let name = format!("arena_{variant:?}");
        p.params[0].name = name.clone();
        let arena_v = values(arena_len, 11);
        let bias_v = values(n + 1, 12);
        backend
            .write_param(
                &name,
                &HostTensor::f32([arena_len], arena_v.clone()).unwrap(),
            )
            .unwrap();
        let mut exe = backend.load(Arc::new(p)).unwrap();
        let out = exe
            .run(&[&HostTensor::f32([n + 1], bias_v.clone()).unwrap()])
            .unwrap();
        let mm = matmul_host((batch, m, k, n), &arena_v, &ao, &arena_v, &bo);
        let yv: Vec<f64> = mm
            .iter()
            .enumerate()
            .map(|(o, v)| v + bias_v[1 + o % n] as f64)
            .collect();
        let zv: Vec<f64> = yv.iter().map(|v| v.max(0.0) * 2.0).collect();
        check(
            &format!("{variant:?} z"),
            &out[0],
            &zv,
            Tolerance::f32_sum(k),
        );
        let arena_after = backend.read_param(&name).unwrap().to_f32();
        let got_y = HostTensor::f32(
            [batch * m * n],
            arena_after[y_off..y_off + batch * m * n].to_vec(),
        )
        .unwrap();
        check(
            &format!("{variant:?} y"),
            &got_y,
            &yv,
            Tolerance::f32_sum(k),
        );
        // Everything else in the arena is untouched.
        assert_eq!(arena_after[..y_off], arena_v[..y_off]);
        assert_eq!(
            arena_after[y_off + batch * m * n..],
            arena_v[y_off + batch * m * n..]
        );
    }
}

/// `out = x + w` (a temp), `w <- out` via a copy step: a running sum in the variable `w`.
fn accumulate_plan(dims: &[usize]) -> kiln_opt::Plan {
    let mut p = empty_plan();
    let x = buffer(&mut p, "x", dims, DType::F32, BufferKind::Input);
    let w = buffer(&mut p, "w", dims, DType::F32, BufferKind::Param);
    let t = buffer(&mut p, "t", dims, DType::F32, BufferKind::Temp);
    let out = buffer(&mut p, "out", dims, DType::F32, BufferKind::Output);
    dispatch(&mut p, add_kernel(dims, "add"), vec![x, w, t]);
    dispatch(&mut p, scale_kernel(dims, 1.0), vec![t, out]);
    p.steps.push(Step::Copy { src: t, dst: w });
    p
}

fn add_kernel(dims: &[usize], label: &str) -> kiln_opt::kernel::Kernel {
    let mut b = Body::default();
    let x = b.push(
        Expr::Load {
            arg: 0,
            view: View::contiguous(dims),
        },
        DType::F32,
    );
    let w = b.push(
        Expr::Load {
            arg: 1,
            view: View::contiguous(dims),
        },
        DType::F32,
    );
    b.push(Expr::Binary(BinaryOp::Add, x, w), DType::F32);
    let n = dims.iter().product::<usize>() as u64;
    kernel(
        label,
        KernelOp::Elementwise {
            shape: dims.to_vec(),
            stores: result_store(2, &b),
            body: b,
            vector: 1,
        },
        args(&[DType::F32; 3]),
        n,
    )
}

fn scale_kernel(dims: &[usize], s: f64) -> kiln_opt::kernel::Kernel {
    let mut b = Body::default();
    let x = b.push(
        Expr::Load {
            arg: 0,
            view: View::contiguous(dims),
        },
        DType::F32,
    );
    let c = b.push(Expr::Const(s), DType::F32);
    b.push(Expr::Binary(BinaryOp::Mul, x, c), DType::F32);
    let n = dims.iter().product::<usize>() as u64;
    kernel(
        "scale",
        KernelOp::Elementwise {
            shape: dims.to_vec(),
            stores: result_store(1, &b),
            body: b,
            vector: 1,
        },
        args(&[DType::F32; 2]),
        n,
    )
}

#[test]
fn params_persist_across_runs_and_plans_and_runs_allocate_nothing() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    let mut train = backend.load(Arc::new(accumulate_plan(&[4]))).unwrap();
    assert_eq!(backend.param_names(), vec!["w".to_string()]);
    assert_eq!(
        backend.read_param("w").unwrap(),
        HostTensor::zeros([4], DType::F32)
    );
    backend
        .write_param(
            "w",
            &HostTensor::f32([4], vec![1.0, 2.0, 3.0, 4.0]).unwrap(),
        )
        .unwrap();

    // A second plan reading the same variable: out = 2 * w.
    let mut p = empty_plan();
    let w = buffer(&mut p, "w", &[4], DType::F32, BufferKind::Param);
    let o = buffer(&mut p, "out", &[4], DType::F32, BufferKind::Output);
    dispatch(&mut p, scale_kernel(&[4], 2.0), vec![w, o]);
    let mut predict = backend.load(Arc::new(p)).unwrap();

    let x = HostTensor::f32([4], vec![0.5, 0.5, 0.5, 0.5]).unwrap();
    let created = backend.buffers_created();
    for step in 1..=3 {
        let out = train.run(&[&x]).unwrap();
        let want: Vec<f32> = (1..=4).map(|i| i as f32 + 0.5 * step as f32).collect();
        assert_eq!(
            out[0],
            HostTensor::f32([4], want.clone()).unwrap(),
            "step {step}"
        );
        let seen = predict.run(&[]).unwrap();
        assert_eq!(
            seen[0].to_f32(),
            want.iter().map(|v| v * 2.0).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        backend.buffers_created(),
        created,
        "runs must not create buffers"
    );
    assert_eq!(
        backend.read_param("w").unwrap().to_f32(),
        vec![2.5, 3.5, 4.5, 5.5]
    );
    let after_first_read = backend.buffers_created();
    backend.read_param("w").unwrap();
    assert_eq!(
        backend.buffers_created(),
        after_first_read,
        "read-back buffers are reused"
    );

    // Loading the same plan again reuses every pipeline and shader module.
    let (modules, pipelines) = (backend.shader_modules(), backend.pipelines());
    let _again = backend.load(Arc::new(accumulate_plan(&[4]))).unwrap();
    assert_eq!(
        (backend.shader_modules(), backend.pipelines()),
        (modules, pipelines)
    );
}

#[test]
fn in_place_update_through_a_read_write_arg() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    // w <- w + x in one dispatch: arg 1 is the param buffer, loaded and stored (ReadWrite).
    let mut p = empty_plan();
    let x = buffer(&mut p, "x", &[3], DType::F32, BufferKind::Input);
    let w = buffer(&mut p, "acc", &[3], DType::F32, BufferKind::Param);
    let mut k = add_kernel(&[3], "inplace");
    k.args.truncate(2);
    k.args[1].access = Access::ReadWrite;
    if let KernelOp::Elementwise { stores, .. } = &mut k.op {
        stores[0].arg = 1;
    }
    dispatch(&mut p, k, vec![x, w]);
    let mut exe = backend.load(Arc::new(p)).unwrap();
    let xv = HostTensor::f32([3], vec![1.0, -2.0, 0.25]).unwrap();
    exe.run(&[&xv]).unwrap();
    exe.run(&[&xv]).unwrap();
    assert_eq!(
        backend.read_param("acc").unwrap().to_f32(),
        vec![2.0, -4.0, 0.5]
    );

    // Binding one buffer to a read arg and a written arg of the same dispatch is an error.
    let mut p = empty_plan();
    let x = buffer(&mut p, "x", &[3], DType::F32, BufferKind::Input);
    let w = buffer(&mut p, "acc", &[3], DType::F32, BufferKind::Param);
    dispatch(&mut p, add_kernel(&[3], "aliased"), vec![x, w, w]);
    let e = backend.load(Arc::new(p)).err().expect("aliased args");
    assert!(e.to_string().contains("distinct"), "{e}");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    let mut exe = backend.load(Arc::new(accumulate_plan(&[4]))).unwrap();
    let good = HostTensor::f32([4], vec![0.0; 4]).unwrap();
    let wrong_shape = HostTensor::f32([2, 2], vec![0.0; 4]).unwrap();
    let wrong_dtype = HostTensor::i32([4], vec![0; 4]).unwrap();
    assert!(matches!(exe.run(&[]), Err(OptError::Input(_))));
    assert!(matches!(exe.run(&[&good, &good]), Err(OptError::Input(_))));
    assert!(matches!(exe.run(&[&wrong_shape]), Err(OptError::Input(_))));
    assert!(matches!(exe.run(&[&wrong_dtype]), Err(OptError::Input(_))));
    exe.run(&[&good]).unwrap();
    assert!(matches!(
        backend.write_param("w", &HostTensor::f32([5], vec![0.0; 5]).unwrap()),
        Err(OptError::Param { .. })
    ));
    assert!(matches!(
        backend.read_param("nope"),
        Err(OptError::Param { .. })
    ));
}

#[test]
fn bad_plans_are_errors_not_panics() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    // A variable clash: `w` exists as [4], this plan declares [5].
    backend.load(Arc::new(accumulate_plan(&[4]))).unwrap();
    assert!(matches!(
        backend.load(Arc::new(accumulate_plan(&[5]))),
        Err(OptError::Param { .. })
    ));

    // A malformed kernel body.
    let mut p = accumulate_plan(&[3]);
    p.params[0].name = "w3".into();
    if let KernelOp::Elementwise { body, .. } = &mut p.kernels[0].op {
        body.nodes[2].expr = Expr::Binary(BinaryOp::Add, 0, 7);
    }
    // (rejected by the one validator, before any shader is generated)
    let e = backend.load(Arc::new(p)).err().expect("malformed kernel");
    assert!(matches!(e, OptError::Plan(_)), "{e}");
    assert!(e.to_string().contains("not before it"), "{e}");

    // Too few workgroups for the kernel's threads.
    let mut p = accumulate_plan(&[300]);
    p.params[0].name = "w300".into();
    if let Step::Dispatch { workgroups, .. } = &mut p.steps[0] {
        *workgroups = [1, 1, 1];
    }
    assert!(matches!(backend.load(Arc::new(p)), Err(OptError::Plan(_))));

    // A workgroup larger than the device allows: the validator compares it with the
    // device's limits before any shader or pipeline exists.
    let mut p = accumulate_plan(&[3]);
    p.params[0].name = "w3b".into();
    p.kernels[1].workgroup_size = 1 << 16;
    let e = backend
        .load(Arc::new(p))
        .err()
        .expect("oversized workgroup");
    assert!(matches!(e, OptError::Plan(_)), "{e}");
    assert!(e.to_string().contains("workgroup size 65536"), "{e}");

    // A dtype mismatch between a kernel arg and its buffer.
    let mut p = accumulate_plan(&[2]);
    p.params[0].name = "w2".into();
    p.kernels[0].args[0].access = Access::Read;
    p.kernels[0].args[0].dtype = DType::I32;
    assert!(matches!(backend.load(Arc::new(p)), Err(OptError::Plan(_))));
}

#[test]
fn two_dimensional_grids_number_threads_row_major() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    // 1000 threads on a [4, 4, 1] grid of 64-wide groups: gid = x + y * (4 * 64).
    let n = 1000;
    let mut p = empty_plan();
    let x = buffer(&mut p, "x", &[n], DType::F32, BufferKind::Input);
    let o = buffer(&mut p, "o", &[n], DType::F32, BufferKind::Output);
    dispatch(&mut p, scale_kernel(&[n], 3.0), vec![x, o]);
    if let Step::Dispatch { workgroups, .. } = &mut p.steps[0] {
        *workgroups = [4, 4, 1];
    }
    let mut exe = backend.load(Arc::new(p)).unwrap();
    let xv = values(n, 9);
    let out = exe
        .run(&[&HostTensor::f32([n], xv.clone()).unwrap()])
        .unwrap();
    assert_eq!(
        out[0].to_f32(),
        xv.iter().map(|v| v * 3.0).collect::<Vec<_>>()
    );
}

/// CPU adapters flush stored values below 2^-60 to zero (subnormal arithmetic is very slow
/// on CPUs and llvmpipe does not enable flush-to-zero); larger values are exact.
#[test]
fn cpu_adapters_flush_tiny_values_at_stores() {
    let Some(mut backend) = test_backend() else {
        return;
    };
    let cpu = backend.gpu().info.device_type == wgpu::DeviceType::Cpu;
    let mut g = kiln_ir::Graph::new();
    let x = g.input("x", [4], DType::F32).unwrap();
    let tiny = g.mul_scalar(x, 1e-20).unwrap();
    let small = g.mul_scalar(x, 1e-10).unwrap();
    g.output("tiny", tiny).unwrap();
    g.output("small", small).unwrap();
    let plan =
        kiln_opt::compile(&g, &kiln_opt::CompileOptions::default(), &backend.limits()).unwrap();
    let src =
        kiln_wgpu::codegen::kernel_source_for(&plan.kernels[0], &backend.gpu().codegen_target())
            .unwrap();
    assert_eq!(src.wgsl.contains("select("), cpu, "{}", src.wgsl);
    let mut exe = backend.load(Arc::new(plan)).unwrap();
    let xv = HostTensor::f32([4], vec![1.0, -2.0, 3.0, 40.0]).unwrap();
    let out = exe.run(&[&xv]).unwrap();
    // every |x| * 1e-20 <= 4e-19 < 2^-60: all flushed on a CPU adapter
    let want_tiny: Vec<f32> = if cpu {
        vec![0.0; 4]
    } else {
        [1.0f32, -2.0, 3.0, 40.0]
            .iter()
            .map(|v| v * 1e-20)
            .collect()
    };
    assert_eq!(out[0].to_f32(), want_tiny);
    let want_small: Vec<f32> = [1.0f32, -2.0, 3.0, 40.0]
        .iter()
        .map(|v| v * 1e-10)
        .collect();
    assert_eq!(out[1].to_f32(), want_small);
}
