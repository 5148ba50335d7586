//! Every activation against an independent f64 implementation of Keras's formula (and a few
//! hand-computed values), its autodiff gradient against central finite differences on the
//! f64 evaluator, and the compiled f32 plan (CPU interpreter) against the same reference.

use kiln_ir::eval::{eval, Tensor};
use kiln_ir::{autodiff, DType, Graph};
use kiln_layers::{Activation, Dense, HostTensor, Sequential};
use kiln_opt::interp::CpuBackend;

/// Points away from the kinks (0 for relu/elu/softsign, ±2.5 for hard_sigmoid).
const XS: [f64; 14] = [
    -30.0, -6.0, -3.1, -2.0, -1.0, -0.4, -0.05, 0.03, 0.3, 0.9, 1.7, 2.2, 4.0, 30.0,
];

/// erfc for `z >= 0`: `1 - erf` by erf's Maclaurin series below 2 (cancellation costs at
/// most ~1e-15 there), the Laplace continued fraction
/// `erfc z = e^{-z²}/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + …))))` from 2 on (200 levels,
/// converged to f64 precision).
fn erfc_ref(z: f64) -> f64 {
    assert!(z >= 0.0);
    if z < 2.0 {
        let mut sum = 0.0;
        let mut term = z; // (-1)^n z^(2n+1) / n!
        for n in 0..200 {
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-18 {
                break;
            }
            term *= -z * z / (n + 1) as f64;
        }
        return 1.0 - 2.0 / std::f64::consts::PI.sqrt() * sum;
    }
    let mut f = z;
    for k in (1..=200).rev() {
        f = z + (k as f64 / 2.0) / f;
    }
    (-z * z).exp() / std::f64::consts::PI.sqrt() / f
}

/// `gelu(x) = x Φ(x)`, `Φ(x) = erfc(-x/√2) / 2`.
fn gelu_ref(x: f64) -> f64 {
    let tail = 0.5 * erfc_ref(x.abs() / 2f64.sqrt());
    x * if x < 0.0 { tail } else { 1.0 - tail }
}

/// Keras's formulas in plain f64 (softmax is tested separately).
fn reference(a: Activation, x: f64) -> f64 {
    let selu_alpha = 1.6732632423543772;
    let selu_scale = 1.0507009873554805;
    match a {
        Activation::Linear => x,
        Activation::Relu => x.max(0.0),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Softplus => x.exp().ln_1p(),
        Activation::Softsign => x / (1.0 + x.abs()),
        Activation::HardSigmoid => (0.2 * x + 0.5).clamp(0.0, 1.0),
        Activation::Elu => {
            if x > 0.0 {
                x
            } else {
                x.exp_m1()
            }
        }
        Activation::Selu => selu_scale * if x > 0.0 { x } else { selu_alpha * x.exp_m1() },
        Activation::Gelu => gelu_ref(x),
        Activation::Exponential => x.exp(),
        Activation::Softmax => unreachable!("tested on vectors"),
    }
}

fn elementwise() -> impl Iterator<Item = Activation> {
    Activation::ALL
        .into_iter()
        .filter(|a| *a != Activation::Softmax)
}

/// `act(xs)` on the f64 evaluator.
fn forward(a: Activation, xs: &[f64]) -> Vec<f64> {
    let mut g = Graph::new();
    let x = g.input("x", [xs.len()], DType::F32).unwrap();
    let y = a.apply(&mut g, x).unwrap();
    let feeds = [(
        "x".to_string(),
        Tensor::new([xs.len()], xs.to_vec()).unwrap(),
    )]
    .into();
    eval(&g, &[y], &feeds).unwrap().remove(0).data
}

/// `d sum(w * act(x)) / dx` by autodiff on the f64 evaluator.
fn gradient(a: Activation, xs: &[f64], w: &[f64]) -> Vec<f64> {
    let n = xs.len();
    let mut g = Graph::new();
    let x = g.input("x", [n], DType::F32).unwrap();
    let wn = g.constant(w.to_vec(), [n], DType::F32).unwrap();
    let y = a.apply(&mut g, x).unwrap();
    let yw = g.mul(y, wn).unwrap();
    let l = g.sum_all(yw).unwrap();
    let dx = autodiff::grad(&mut g, l, &[x]).unwrap()[0];
    let feeds = [("x".to_string(), Tensor::new([n], xs.to_vec()).unwrap())].into();
    eval(&g, &[dx], &feeds).unwrap().remove(0).data
}

fn weighted_sum(a: Activation, xs: &[f64], w: &[f64]) -> f64 {
    forward(a, xs).iter().zip(w).map(|(y, w)| y * w).sum()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], abs: f64, rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= abs + rel * w.abs(),
            "{what}[{i}]: got {g}, expected {w} (diff {:e})",
            (g - w).abs()
        );
    }
}

#[test]
fn hand_computed_values() {
    // gelu(1) = 0.5 (1 + erf(1/sqrt 2)) = Φ(1) = 0.8413447460685429; gelu(-1) = -Φ(-1)
    // gelu(-6) = -6 Φ(-6) = -5.9195e-9 (Φ(-6) = 9.865876450377e-10): the tail keeps its digits
    let v = forward(Activation::Gelu, &[-6.0]);
    assert_close(
        "gelu tail",
        &v,
        &[-6.0 * 9.865_876_450_377e-10],
        0.0,
        1.5e-7,
    );
    let v = forward(Activation::Gelu, &[1.0, -1.0, 0.0]);
    assert_close(
        "gelu",
        &v,
        &[0.841_344_746_068_542_9, -0.158_655_253_931_457_05, 0.0],
        0.0,
        1.5e-7,
    );
    // softplus(0) = ln 2; softplus(-100) = e^-100 (not 0); softplus(100) = 100
    let v = forward(Activation::Softplus, &[0.0, -100.0, 100.0]);
    assert_close(
        "softplus",
        &v,
        &[std::f64::consts::LN_2, (-100f64).exp(), 100.0],
        0.0,
        1e-12,
    );
    // hard_sigmoid: 0.2 * 1 + 0.5 = 0.7; clipped at ±2.5
    let v = forward(Activation::HardSigmoid, &[1.0, -3.0, 3.0, -1.0]);
    assert_close("hard_sigmoid", &v, &[0.7, 0.0, 1.0, 0.3], 1e-15, 0.0);
    // softsign(3) = 3/4
    let v = forward(Activation::Softsign, &[3.0, -1.0]);
    assert_close("softsign", &v, &[0.75, -0.5], 1e-15, 0.0);
    // selu(1) = scale; selu(-inf) -> -scale * alpha = -1.7580993408473766
    let v = forward(Activation::Selu, &[1.0, -50.0]);
    assert_close(
        "selu",
        &v,
        &[1.050_700_987_355_480_5, -1.758_099_340_847_376_6],
        1e-12,
        0.0,
    );
    // elu(-1) = e^-1 - 1
    let v = forward(Activation::Elu, &[-1.0, 2.0]);
    assert_close("elu", &v, &[-0.632_120_558_828_557_7, 2.0], 1e-12, 0.0);
    let v = forward(Activation::Exponential, &[1.0]);
    assert_close("exponential", &v, &[std::f64::consts::E], 1e-12, 0.0);
}

#[test]
fn forward_matches_the_f64_formulas() {
    for a in elementwise() {
        let got = forward(a, &XS);
        let want: Vec<f64> = XS.iter().map(|&x| reference(a, x)).collect();
        // gelu's erfc is a fit with relative error < 1.2e-7
        let rel = if a == Activation::Gelu { 1.5e-7 } else { 1e-12 };
        assert_close(a.name(), &got, &want, 1e-300, rel);
    }
}

#[test]
fn gradients_match_central_differences() {
    let w: Vec<f64> = (0..XS.len()).map(|i| 0.5 + 0.1 * i as f64).collect();
    let h = 1e-6;
    for a in Activation::ALL {
        // exponential(30) is 1e13: finite differences there measure rounding, not slope
        let xs: Vec<f64> = XS
            .iter()
            .copied()
            .filter(|x| a != Activation::Exponential || x.abs() < 10.0)
            .collect();
        let w = &w[..xs.len()];
        let got = gradient(a, &xs, w);
        let want: Vec<f64> = (0..xs.len())
            .map(|i| {
                let mut up = xs.clone();
                up[i] += h;
                let mut down = xs.clone();
                down[i] -= h;
                (weighted_sum(a, &up, w) - weighted_sum(a, &down, w)) / (2.0 * h)
            })
            .collect();
        assert_close(&format!("d {}", a.name()), &got, &want, 1e-6, 1e-5);
        assert!(
            got.iter().all(|v| v.is_finite()),
            "{}: non-finite gradient {got:?}",
            a.name()
        );
    }
}

#[test]
fn softmax_over_the_last_axis() {
    let mut g = Graph::new();
    let x = g.input("x", [2, 3], DType::F32).unwrap();
    let y = Activation::Softmax.apply(&mut g, x).unwrap();
    let xs = vec![1.0, 2.0, 3.0, -1.0, 0.0, 1000.0];
    let feeds = [("x".to_string(), Tensor::new([2, 3], xs).unwrap())].into();
    let got = eval(&g, &[y], &feeds).unwrap().remove(0).data;
    let z = 1.0 + 1f64.exp() + 2f64.exp();
    let want = [1.0 / z, 1f64.exp() / z, 2f64.exp() / z, 0.0, 0.0, 1.0];
    assert_close("softmax", &got, &want, 1e-12, 1e-12);
}

#[test]
fn compiled_plans_match_the_reference_in_f32() {
    // Dense(14) with identity kernel rows: output j = x_j (bias 0), then the activation.
    let n = XS.len();
    for a in elementwise() {
        let mut m = Sequential::new(Box::new(CpuBackend::new()));
        m.add(Dense::new(n).activation(a).input_dim(n)).unwrap();
        let mut eye = vec![0f32; n * n];
        for i in 0..n {
            eye[i * n + i] = 1.0;
        }
        m.set_weights(&[
            HostTensor::f32([n, n], eye).unwrap(),
            HostTensor::f32([n], vec![0.0; n]).unwrap(),
        ])
        .unwrap();
        let x = HostTensor::f32([1, n], XS.iter().map(|&v| v as f32).collect()).unwrap();
        let got: Vec<f64> = m.predict(&x, 1).unwrap().to_f64();
        let want: Vec<f64> = XS.iter().map(|&x| reference(a, x)).collect();
        assert_close(&format!("{} (f32 plan)", a.name()), &got, &want, 2e-6, 2e-6);
    }
}

#[test]
fn keras_names_round_trip() {
    for a in Activation::ALL {
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{}\"", a.name()));
        assert_eq!(Activation::from_name(a.name()), Some(a));
        assert_eq!(serde_json::from_str::<Activation>(&json).unwrap(), a);
    }
    assert_eq!(
        Activation::from_name("hard_sigmoid"),
        Some(Activation::HardSigmoid)
    );
    assert_eq!(Activation::from_name("swish"), None);
}
