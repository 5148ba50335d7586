//! Initializers: statistics of large draws against Keras's formulas (bounds, mean, standard
//! deviation), orthogonality and the QR characterization of `Orthogonal`, determinism, names.

use kiln_ir::random::Rng;
use kiln_layers::{Dense, Initializer, LayerError, Sequential};
use kiln_opt::interp::CpuBackend;

const FAN_IN: usize = 200;
const FAN_OUT: usize = 300;

fn draw(init: Initializer, seed: u64) -> Vec<f64> {
    init.values_for(&[FAN_IN, FAN_OUT], FAN_IN, FAN_OUT, seed)
        .into_iter()
        .map(f64::from)
        .collect()
}

fn stats(v: &[f64]) -> (f64, f64, f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, var.sqrt(), lo, hi)
}

/// Checks a draw of 60,000 values: mean within 5 standard errors, standard deviation within
/// 2 %, every value within `±bound`, and the extremes within 3 % of the bound (so a too
/// narrow range fails too).
fn check_dist(init: Initializer, mean: f64, std: f64, bound: f64) {
    let v = draw(init, 7);
    let (m, s, lo, hi) = stats(&v);
    let se = std / (v.len() as f64).sqrt();
    assert!(
        (m - mean).abs() < 5.0 * se,
        "{init:?}: mean {m}, expected {mean}"
    );
    assert!(
        (s - std).abs() < 0.02 * std,
        "{init:?}: stddev {s}, expected {std}"
    );
    // f32 rounding may put a value a hair beyond an f64 bound
    let slack = bound * 1e-6;
    assert!(
        lo >= mean - bound - slack && hi <= mean + bound + slack,
        "{init:?}: range [{lo}, {hi}] beyond ±{bound}"
    );
    assert!(
        lo < mean - 0.97 * bound && hi > mean + 0.97 * bound,
        "{init:?}: range [{lo}, {hi}] does not reach ±{bound}"
    );
}

#[test]
fn uniform_families_have_keras_limits() {
    // U(-a, a) has stddev a / sqrt 3
    let u = |a: f64| (0.0, a / 3f64.sqrt(), a);
    let cases = [
        (Initializer::uniform(), u(0.05)),
        (
            Initializer::GlorotUniform,
            u((6.0 / (FAN_IN + FAN_OUT) as f64).sqrt()),
        ),
        (Initializer::LecunUniform, u((3.0 / FAN_IN as f64).sqrt())),
        (Initializer::HeUniform, u((6.0 / FAN_IN as f64).sqrt())),
    ];
    for (init, (m, s, b)) in cases {
        check_dist(init, m, s, b);
    }
    // an asymmetric RandomUniform(minval, maxval)
    let v = draw(Initializer::Uniform(1.0, 3.0), 3);
    let (m, s, lo, hi) = stats(&v);
    assert!((m - 2.0).abs() < 0.01 && (s - 2.0 / 12f64.sqrt()).abs() < 0.01);
    assert!(lo >= 1.0 && hi < 3.0);
}

#[test]
fn truncated_normal_families_have_keras_stddevs() {
    // VarianceScaling(truncated): the drawn values' stddev is sqrt(scale / fan), every value
    // within two of the *pre-scaling* stddevs, i.e. 2 sqrt(scale / fan) / 0.8796...
    let c = 0.879_625_661_034_239_8;
    let vs = |var: f64| (0.0, var.sqrt(), 2.0 * var.sqrt() / c);
    let cases = [
        (
            Initializer::GlorotNormal,
            vs(2.0 / (FAN_IN + FAN_OUT) as f64),
        ),
        (Initializer::HeNormal, vs(2.0 / FAN_IN as f64)),
        (Initializer::LecunNormal, vs(1.0 / FAN_IN as f64)),
        // TruncatedNormal(0, 0.05) is not rescaled: stddev 0.05 * 0.8796, bound 0.1
        (
            Initializer::TruncatedNormal(0.0, 0.05),
            (0.0, 0.05 * c, 0.1),
        ),
        (Initializer::TruncatedNormal(1.0, 0.5), (1.0, 0.5 * c, 1.0)),
    ];
    for (init, (m, s, b)) in cases {
        check_dist(init, m, s, b);
    }
}

#[test]
fn random_normal_is_not_truncated() {
    let v = draw(Initializer::normal(), 11);
    let (m, s, lo, hi) = stats(&v);
    assert!(m.abs() < 5.0 * 0.05 / (v.len() as f64).sqrt(), "mean {m}");
    assert!((s - 0.05).abs() < 0.001, "stddev {s}");
    // 60,000 normals: P(max |z| < 3) ~ 1e-35
    assert!(
        lo < -0.15 && hi > 0.15,
        "range [{lo}, {hi}] looks truncated"
    );
    let v = draw(Initializer::Normal(2.0, 0.5), 12);
    let (m, s, _, _) = stats(&v);
    assert!((m - 2.0).abs() < 0.01 && (s - 0.5).abs() < 0.01, "{m} {s}");
}

#[test]
fn constants() {
    assert!(draw(Initializer::Zeros, 1).iter().all(|v| *v == 0.0));
    assert!(draw(Initializer::Ones, 1).iter().all(|v| *v == 1.0));
    assert!(draw(Initializer::Constant(0.3), 1)
        .iter()
        .all(|v| *v == 0.3f32 as f64));
}

/// `a (n × k) · b (k × m)`, row-major.
fn matmul(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            c[i * m + j] = (0..k).map(|l| a[i * k + l] * b[l * m + j]).sum();
        }
    }
    c
}

fn transpose(a: &[f64], r: usize, c: usize) -> Vec<f64> {
    let mut t = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = a[i * c + j];
        }
    }
    t
}

fn assert_identity(p: &[f64], n: usize, what: &str) {
    for i in 0..n {
        for j in 0..n {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!(
                (p[i * n + j] - want).abs() < 1e-5,
                "{what}: entry ({i}, {j}) = {}",
                p[i * n + j]
            );
        }
    }
}

#[test]
fn orthogonal_is_keras_sign_corrected_qr() {
    // (shape, seed); [3, 12] is an LSTM recurrent kernel [units, 4 units] with 3 units
    for (shape, seed) in [
        (vec![6usize, 4], 1u64),
        (vec![5, 5], 2),
        (vec![3, 12], 3),
        (vec![2, 3, 4], 4),
        (vec![40, 160], 5),
    ] {
        let cols = *shape.last().unwrap();
        let rows: usize = shape.iter().product::<usize>() / cols;
        let q: Vec<f64> = Initializer::orthogonal()
            .values_for(&shape, rows, cols, seed)
            .into_iter()
            .map(f64::from)
            .collect();
        assert_eq!(q.len(), rows * cols);
        // The semi-orthogonal factor as m × k (m >= k): the values, or their transpose.
        let (m, k) = (rows.max(cols), rows.min(cols));
        let qm = if rows >= cols {
            q.clone()
        } else {
            transpose(&q, rows, cols)
        };
        let qtq = matmul(&transpose(&qm, m, k), &qm, k, m, k);
        assert_identity(&qtq, k, &format!("{shape:?}: QᵀQ"));
        // Keras draws A (m × k, row-major normals) and returns Q of A = QR with diag R > 0:
        // then R = QᵀA must be upper triangular with a positive diagonal.
        let mut rng = Rng::new(seed);
        let a: Vec<f64> = (0..m * k).map(|_| rng.normal()).collect();
        let r = matmul(&transpose(&qm, m, k), &a, k, m, k);
        for i in 0..k {
            assert!(
                r[i * k + i] > 0.0,
                "{shape:?}: R[{i},{i}] = {}",
                r[i * k + i]
            );
            for j in 0..i {
                assert!(
                    r[i * k + j].abs() < 1e-4,
                    "{shape:?}: R[{i},{j}] = {} below the diagonal",
                    r[i * k + j]
                );
            }
        }
        // gain scales the same matrix
        let q2 = Initializer::Orthogonal(2.0).values_for(&shape, rows, cols, seed);
        for (a, b) in q.iter().zip(&q2) {
            assert!((2.0 * a - *b as f64).abs() < 1e-6);
        }
    }
}

#[test]
fn same_seed_same_bits() {
    for init in [
        Initializer::GlorotUniform,
        Initializer::GlorotNormal,
        Initializer::HeNormal,
        Initializer::HeUniform,
        Initializer::LecunUniform,
        Initializer::LecunNormal,
        Initializer::uniform(),
        Initializer::normal(),
        Initializer::TruncatedNormal(0.0, 0.05),
        Initializer::orthogonal(),
    ] {
        let a = init.values_for(&[30, 20], 30, 20, 99);
        let b = init.values_for(&[30, 20], 30, 20, 99);
        let c = init.values_for(&[30, 20], 30, 20, 100);
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{init:?}"
        );
        assert_ne!(a, c, "{init:?}: another seed gives other values");
    }
}

#[test]
fn keras_names_and_defaults() {
    assert_eq!(
        Initializer::from_name("uniform"),
        Some(Initializer::Uniform(-0.05, 0.05))
    );
    assert_eq!(
        Initializer::from_name("normal"),
        Some(Initializer::Normal(0.0, 0.05))
    );
    assert_eq!(Initializer::from_name("zero"), Some(Initializer::Zeros));
    assert_eq!(
        Initializer::from_name("orthogonal"),
        Some(Initializer::Orthogonal(1.0))
    );
    for name in [
        "lecun_uniform",
        "glorot_normal",
        "glorot_uniform",
        "he_normal",
        "he_uniform",
        "lecun_normal",
        "ones",
        "zeros",
    ] {
        let i = Initializer::from_name(name).unwrap();
        assert_eq!(i.name(), name);
        assert_eq!(serde_json::to_string(&i).unwrap(), format!("\"{name}\""));
    }
    assert_eq!(Initializer::from_name("identity"), None);
    for i in [
        Initializer::Constant(0.5),
        Initializer::Orthogonal(1.5),
        Initializer::normal(),
    ] {
        let json = serde_json::to_string(&i).unwrap();
        assert_eq!(serde_json::from_str::<Initializer>(&json).unwrap(), i);
    }
    assert_eq!(
        serde_json::from_str::<Initializer>("\"zero\"").unwrap(),
        Initializer::Zeros
    );
}

#[test]
fn model_uses_the_initializers_and_rejects_orthogonal_biases() {
    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    m.add(
        Dense::new(8)
            .input_dim(8)
            .kernel_initializer(Initializer::orthogonal())
            .bias_initializer(Initializer::Constant(0.25)),
    )
    .unwrap();
    let w = m.get_weights().unwrap();
    let k: Vec<f64> = w[0].to_f64();
    let ktk = matmul(&transpose(&k, 8, 8), &k, 8, 8, 8);
    assert_identity(&ktk, 8, "Dense kernel");
    assert!(w[1].to_f32().iter().all(|b| *b == 0.25));

    let mut m = Sequential::new(Box::new(CpuBackend::new()));
    let e = m
        .add(
            Dense::new(3)
                .input_dim(2)
                .bias_initializer(Initializer::orthogonal()),
        )
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, LayerError::Shape { .. }), "{msg}");
    assert!(
        msg.contains("dense_1") && msg.contains("bias") && msg.contains("[3]"),
        "{msg}"
    );
    let e = m
        .add(
            Dense::new(3)
                .input_dim(2)
                .kernel_initializer(Initializer::Uniform(1.0, -1.0)),
        )
        .unwrap_err();
    assert!(e.to_string().contains("minval <= maxval"), "{e}");
}
