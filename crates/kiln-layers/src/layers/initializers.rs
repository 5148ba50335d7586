//! Weight initializers (Keras names, defaults and formulas), seeded and deterministic.
//!
//! Every initializer draws from one counter-based stream ([`kiln_ir::random::Rng`]) given by
//! its seed, in row-major order, so the same seed gives the same bits on every machine. Normal
//! values come from `Rng::normal` (Box–Muller, two uniforms per value); *truncated* normals
//! (the `VarianceScaling` family: `glorot_normal`, `he_normal`, `lecun_normal`, and
//! `truncated_normal`) redraw every value beyond two standard deviations, as TensorFlow's
//! `truncated_normal` does, and scale the standard deviation by `1 / 0.87962566103423978`
//! (the standard deviation of a unit normal truncated at ±2) so that the drawn values have
//! the target standard deviation.

use kiln_ir::random::Rng;

/// The standard deviation of a unit normal truncated to `[-2, 2]` (Keras's
/// `VarianceScaling` divides by it).
pub const TRUNCATED_NORMAL_STDDEV: f64 = 0.879_625_661_034_239_8;

/// How a weight tensor is initialized. The serialized names are Keras's (`glorot_uniform`,
/// `he_normal`...); [`Initializer::from_name`] resolves Keras's string identifiers with their
/// default arguments.
#[derive(Copy, Clone, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initializer {
    /// All zeros (Keras `zeros`, the default for biases).
    #[serde(alias = "zero")]
    Zeros,
    /// All ones (Keras `ones`).
    Ones,
    /// Every value `c` (Keras `Constant(value)`).
    Constant(f64),
    /// Uniform in `±sqrt(6 / (fan_in + fan_out))` (Keras default for kernels).
    #[default]
    GlorotUniform,
    /// Truncated normal, stddev `sqrt(2 / (fan_in + fan_out))` (Keras `glorot_normal`).
    GlorotNormal,
    /// Uniform in `[lo, hi)` (Keras `RandomUniform(minval, maxval)`; the string `uniform` is
    /// `Uniform(-0.05, 0.05)`, see [`Initializer::uniform`]).
    Uniform(f64, f64),
    /// An LSTM bias of `4 * units`: zeros with ones in the forget gate's block
    /// `units .. 2 * units` (Keras `unit_forget_bias`).
    UnitForgetBias(usize),
    /// Normal with `(mean, stddev)`, not truncated (Keras `RandomNormal`; the string `normal`
    /// is `Normal(0.0, 0.05)`, see [`Initializer::normal`]).
    Normal(f64, f64),
    /// Normal with `(mean, stddev)`, values beyond two stddevs redrawn (Keras
    /// `TruncatedNormal`, default `(0.0, 0.05)`). Unlike the `VarianceScaling` family the
    /// stddev is *not* rescaled: the drawn values' stddev is `0.88 stddev`, as in Keras.
    TruncatedNormal(f64, f64),
    /// Uniform in `±sqrt(3 / fan_in)` (Keras `lecun_uniform`).
    LecunUniform,
    /// Truncated normal, stddev `sqrt(1 / fan_in)` (Keras `lecun_normal`).
    LecunNormal,
    /// Uniform in `±sqrt(6 / fan_in)` (Keras `he_uniform`).
    HeUniform,
    /// Truncated normal, stddev `sqrt(2 / fan_in)` (Keras `he_normal`).
    HeNormal,
    /// A (semi-)orthogonal matrix times `gain` (Keras `Orthogonal(gain=1.0)`): the tensor is
    /// viewed as `rows × cols` (`cols` = the last axis), a `max × min` standard-normal matrix
    /// `A` is drawn (row-major), factored `A = QR`, `Q` is sign-corrected by `diag(R)` (so it
    /// is the unique factor with a positive `R` diagonal) and transposed when
    /// `rows < cols`. Rows are orthonormal when `rows <= cols` (an LSTM recurrent kernel
    /// `[units, 4 units]` as a whole), columns otherwise. Needs a weight of rank 2 or more.
    Orthogonal(f64),
}

impl Initializer {
    /// Keras `RandomUniform()` / `'uniform'`: `Uniform(-0.05, 0.05)`.
    pub fn uniform() -> Self {
        Initializer::Uniform(-0.05, 0.05)
    }

    /// Keras `RandomNormal()` / `'normal'`: `Normal(0.0, 0.05)`.
    pub fn normal() -> Self {
        Initializer::Normal(0.0, 0.05)
    }

    /// Keras `Orthogonal()` / `'orthogonal'`: gain 1.
    pub fn orthogonal() -> Self {
        Initializer::Orthogonal(1.0)
    }

    /// The initializer Keras's string identifier `name` denotes, with Keras's default
    /// arguments (`uniform` is `Uniform(-0.05, 0.05)`, `normal` is `Normal(0, 0.05)`,
    /// `truncated_normal` is `TruncatedNormal(0, 0.05)`, `orthogonal` has gain 1, `zero` is
    /// `zeros`).
    pub fn from_name(name: &str) -> Option<Initializer> {
        Some(match name {
            "zeros" | "zero" => Initializer::Zeros,
            "ones" | "one" => Initializer::Ones,
            "glorot_uniform" => Initializer::GlorotUniform,
            "glorot_normal" => Initializer::GlorotNormal,
            "uniform" | "random_uniform" => Initializer::uniform(),
            "normal" | "random_normal" => Initializer::normal(),
            "truncated_normal" => Initializer::TruncatedNormal(0.0, 0.05),
            "lecun_uniform" => Initializer::LecunUniform,
            "lecun_normal" => Initializer::LecunNormal,
            "he_uniform" => Initializer::HeUniform,
            "he_normal" => Initializer::HeNormal,
            "orthogonal" => Initializer::orthogonal(),
            _ => return None,
        })
    }

    /// Keras name of the kind of initializer (`glorot_uniform`, `constant`...).
    pub fn name(self) -> &'static str {
        match self {
            Initializer::Zeros => "zeros",
            Initializer::Ones => "ones",
            Initializer::Constant(_) => "constant",
            Initializer::GlorotUniform => "glorot_uniform",
            Initializer::GlorotNormal => "glorot_normal",
            Initializer::Uniform(..) => "uniform",
            Initializer::Normal(..) => "normal",
            Initializer::TruncatedNormal(..) => "truncated_normal",
            Initializer::LecunUniform => "lecun_uniform",
            Initializer::LecunNormal => "lecun_normal",
            Initializer::HeUniform => "he_uniform",
            Initializer::HeNormal => "he_normal",
            Initializer::Orthogonal(_) => "orthogonal",
            Initializer::UnitForgetBias(_) => "unit_forget_bias",
        }
    }

    /// Whether the initializer can fill a weight of `shape`: an error message (expected vs
    /// actual, with a hint) otherwise. The model checks every weight at `add()`.
    pub fn check(self, shape: &[usize]) -> Result<(), String> {
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        match self {
            Initializer::Orthogonal(gain) => {
                if shape.len() < 2 {
                    return Err(format!(
                        "orthogonal initializer needs a weight of rank 2 or more, got shape \
                         {shape:?}; hint: use it for kernels, not biases"
                    ));
                }
                if !gain.is_finite() {
                    return Err(format!("orthogonal initializer: gain {gain} is not finite"));
                }
            }
            Initializer::Uniform(lo, hi) if !finite(&[lo, hi]) || lo > hi => {
                return Err(format!(
                    "uniform initializer needs finite bounds with minval <= maxval, got \
                     [{lo}, {hi})"
                ));
            }
            Initializer::Normal(m, s) | Initializer::TruncatedNormal(m, s)
                if !finite(&[m, s]) || s < 0.0 =>
            {
                return Err(format!(
                    "{} initializer needs a finite mean and a finite stddev >= 0, got mean \
                     {m}, stddev {s}",
                    self.name()
                ));
            }
            Initializer::Constant(c) if !c.is_finite() => {
                return Err(format!("constant initializer: value {c} is not finite"));
            }
            _ => {}
        }
        Ok(())
    }

    /// `n` values for a flat tensor with the given fans, drawn from stream `seed` (same as
    /// [`Initializer::values_for`] with shape `[n]`; orthogonal treats it as one row).
    pub fn values(self, n: usize, fan_in: usize, fan_out: usize, seed: u64) -> Vec<f32> {
        self.values_for(&[n], fan_in, fan_out, seed)
    }

    /// Row-major values for a tensor of `shape` with the given fans, drawn from stream
    /// `seed`. Only the orthogonal initializer uses the shape beyond its element count; given
    /// a rank-1 shape (which [`Initializer::check`] rejects) it treats it as one row.
    pub fn values_for(self, shape: &[usize], fan_in: usize, fan_out: usize, seed: u64) -> Vec<f32> {
        let n: usize = shape.iter().product();
        let mut rng = Rng::new(seed);
        let glorot_limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
        let fan_avg = (fan_in + fan_out).max(1) as f64 / 2.0;
        let fan_in = fan_in.max(1) as f64;
        let uniform = |rng: &mut Rng, limit: f64| -> Vec<f32> {
            (0..n).map(|_| rng.uniform(-limit, limit) as f32).collect()
        };
        // VarianceScaling(scale, fan, "truncated_normal")
        let scaled_truncated = |rng: &mut Rng, var: f64| -> Vec<f32> {
            let stddev = var.sqrt() / TRUNCATED_NORMAL_STDDEV;
            (0..n)
                .map(|_| (truncated_normal(rng) * stddev) as f32)
                .collect()
        };
        match self {
            Initializer::Zeros => vec![0.0; n],
            Initializer::Ones => vec![1.0; n],
            Initializer::Constant(c) => vec![c as f32; n],
            Initializer::GlorotUniform => uniform(&mut rng, glorot_limit),
            Initializer::GlorotNormal => scaled_truncated(&mut rng, 1.0 / fan_avg),
            Initializer::Uniform(lo, hi) => (0..n).map(|_| rng.uniform(lo, hi) as f32).collect(),
            Initializer::UnitForgetBias(u) => (0..n)
                .map(|i| if (u..2 * u).contains(&i) { 1.0 } else { 0.0 })
                .collect(),
            Initializer::Normal(mean, stddev) => (0..n)
                .map(|_| (mean + stddev * rng.normal()) as f32)
                .collect(),
            Initializer::TruncatedNormal(mean, stddev) => (0..n)
                .map(|_| (mean + stddev * truncated_normal(&mut rng)) as f32)
                .collect(),
            Initializer::LecunUniform => uniform(&mut rng, (3.0 / fan_in).sqrt()),
            Initializer::LecunNormal => scaled_truncated(&mut rng, 1.0 / fan_in),
            Initializer::HeUniform => uniform(&mut rng, (6.0 / fan_in).sqrt()),
            Initializer::HeNormal => scaled_truncated(&mut rng, 2.0 / fan_in),
            Initializer::Orthogonal(gain) => {
                let cols = shape.last().copied().unwrap_or(1).max(1);
                let rows = if shape.len() < 2 { 1 } else { n / cols };
                orthogonal(rows, cols, &mut rng)
                    .into_iter()
                    .map(|v| (gain * v) as f32)
                    .collect()
            }
        }
    }
}

/// A unit normal truncated to `[-2, 2]` by redrawing (TensorFlow's `truncated_normal`).
fn truncated_normal(rng: &mut Rng) -> f64 {
    loop {
        let z = rng.normal();
        if z.abs() <= 2.0 {
            return z;
        }
    }
}

/// A row-major `rows × cols` matrix with orthonormal rows (`rows <= cols`) or columns, as
/// Keras's `Orthogonal`: `A` (`max × min`, row-major standard normals), `A = QR`, `Q` times
/// `sign(diag R)`, transposed when `rows < cols`.
fn orthogonal(rows: usize, cols: usize, rng: &mut Rng) -> Vec<f64> {
    let (m, k) = (rows.max(cols), rows.min(cols));
    let a: Vec<f64> = (0..m * k).map(|_| rng.normal()).collect();
    let q = thin_q(&a, m, k);
    if rows >= cols {
        q
    } else {
        // transpose the m × k factor into k × m (= rows × cols)
        let mut t = vec![0.0; m * k];
        for i in 0..m {
            for j in 0..k {
                t[j * m + i] = q[i * k + j];
            }
        }
        t
    }
}

/// The `m × k` (`m >= k`) factor `Q` of the thin QR factorization of the row-major `a`,
/// normalized so that `R`'s diagonal is positive (Keras multiplies LAPACK's `Q` by
/// `sign(diag R)` to the same end). Modified Gram–Schmidt, run twice per column ("twice is
/// enough" keeps `QᵀQ = I` to rounding for any well-conditioned `a`); Gram–Schmidt's `R`
/// diagonal is the column norms, positive by construction, and the sign correction below
/// makes that explicit.
fn thin_q(a: &[f64], m: usize, k: usize) -> Vec<f64> {
    // columns of a, each contiguous
    let mut q: Vec<Vec<f64>> = (0..k)
        .map(|j| (0..m).map(|i| a[i * k + j]).collect())
        .collect();
    for j in 0..k {
        let (done, rest) = q.split_at_mut(j);
        let v = &mut rest[0];
        for _pass in 0..2 {
            for qi in done.iter() {
                let r: f64 = qi.iter().zip(v.iter()).map(|(x, y)| x * y).sum();
                for (vv, qq) in v.iter_mut().zip(qi) {
                    *vv -= r * qq;
                }
            }
        }
        let r_jj = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if r_jj > 0.0 {
            let s = r_jj.signum() / r_jj; // sign(diag R) / |R_jj|
            for vv in v.iter_mut() {
                *vv *= s;
            }
        }
    }
    let mut out = vec![0.0; m * k];
    for (j, col) in q.iter().enumerate() {
        for (i, v) in col.iter().enumerate() {
            out[i * k + j] = *v;
        }
    }
    out
}
