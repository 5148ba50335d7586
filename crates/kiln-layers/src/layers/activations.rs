//! Activation functions (Keras names, defaults and formulas), built from graph ops so that
//! autodiff derives their gradients.

use kiln_ir::{BinaryOp, Graph, NodeId};

/// SELU's `alpha` (Keras `selu`, Klambauer et al. 2017).
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_2;
/// SELU's `scale` (Keras `selu`).
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

/// An activation applied elementwise (softmax: over the last axis).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Identity (Keras `linear`, the default).
    #[default]
    Linear,
    /// `max(x, 0)`
    Relu,
    /// `tanh x`
    Tanh,
    /// `1/(1+e^-x)`
    Sigmoid,
    /// `exp(x) / sum(exp(x))` over the last axis.
    Softmax,
    /// `log(1 + e^x)`, computed as `max(x, 0) + log1p(e^-|x|)` (no overflow for large `x`,
    /// no underflow to 0 for very negative `x`).
    Softplus,
    /// `x / (1 + |x|)`
    Softsign,
    /// Keras 2's piecewise-linear sigmoid: `clip(0.2 x + 0.5, 0, 1)`.
    HardSigmoid,
    /// `x` for `x > 0`, else `alpha (e^x - 1)` with Keras's default `alpha = 1`.
    Elu,
    /// `scale * elu_alpha(x)` with Keras's [`SELU_ALPHA`] and [`SELU_SCALE`].
    Selu,
    /// Keras `gelu` with its default `approximate=False`: `0.5 x (1 + erf(x / √2)) = x Φ(x)`
    /// (not the tanh approximation). `erf` has no graph op, so `Φ` is built from Numerical
    /// Recipes' Chebyshev fit of `erfc` (`erfcc`), whose relative error is below 1.2e-7 for
    /// every `x` — the far negative tail included (there `gelu(x)` is tiny and a fit of `erf`
    /// would lose every digit to `1 + erf` cancelling).
    Gelu,
    /// `e^x` (Keras `exponential`).
    Exponential,
}

impl Activation {
    /// Every activation, in declaration order.
    pub const ALL: [Activation; 12] = [
        Activation::Linear,
        Activation::Relu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softmax,
        Activation::Softplus,
        Activation::Softsign,
        Activation::HardSigmoid,
        Activation::Elu,
        Activation::Selu,
        Activation::Gelu,
        Activation::Exponential,
    ];

    /// Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Softmax => "softmax",
            Activation::Softplus => "softplus",
            Activation::Softsign => "softsign",
            Activation::HardSigmoid => "hard_sigmoid",
            Activation::Elu => "elu",
            Activation::Selu => "selu",
            Activation::Gelu => "gelu",
            Activation::Exponential => "exponential",
        }
    }

    /// The activation called `name` (Keras's string identifiers), if any.
    pub fn from_name(name: &str) -> Option<Activation> {
        Activation::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Appends the activation of `x` to `g`.
    pub fn apply(self, g: &mut Graph, x: NodeId) -> kiln_ir::Result<NodeId> {
        match self {
            Activation::Linear => Ok(x),
            Activation::Relu => g.relu(x),
            Activation::Tanh => g.tanh(x),
            Activation::Sigmoid => g.sigmoid(x),
            Activation::Softmax => {
                let axis = g.shape(x).rank().saturating_sub(1);
                g.softmax(x, axis)
            }
            Activation::Softplus => {
                // max(x, 0) + log1p(exp(-|x|))
                let zero = g.scalar(0.0);
                let pos = g.maximum(x, zero)?;
                let a = g.abs(x)?;
                let na = g.neg(a)?;
                let e = g.exp(na)?;
                let l = log1p(g, e)?;
                g.add(pos, l)
            }
            Activation::Softsign => {
                let a = g.abs(x)?;
                let d = g.add_scalar(a, 1.0)?;
                g.div(x, d)
            }
            Activation::HardSigmoid => {
                let s = g.mul_scalar(x, 0.2)?;
                let s = g.add_scalar(s, 0.5)?;
                g.clip(s, 0.0, 1.0)
            }
            Activation::Elu => elu(g, x, 1.0),
            Activation::Selu => {
                let e = elu(g, x, SELU_ALPHA)?;
                g.mul_scalar(e, SELU_SCALE)
            }
            Activation::Gelu => {
                // 0.5 x (1 + erf(x / sqrt 2)) = x Φ(x)
                let p = normal_cdf(g, x)?;
                g.mul(x, p)
            }
            Activation::Exponential => g.exp(x),
        }
    }
}

/// `log(1 + u)` for `u >= 0`, accurate for small `u`: below `1e-4` the series `u - u²/2`
/// (relative error < u²/3), else `log(1 + u)`.
fn log1p(g: &mut Graph, u: NodeId) -> kiln_ir::Result<NodeId> {
    let small = g.scalar(1e-4);
    let is_small = g.binary(BinaryOp::Lt, u, small)?;
    let half = g.mul_scalar(u, -0.5)?;
    let f = g.add_scalar(half, 1.0)?;
    let series = g.mul(u, f)?;
    let one_plus = g.add_scalar(u, 1.0)?;
    let l = g.log(one_plus)?;
    g.where_(is_small, series, l)
}

/// `x` for `x > 0`, else `alpha (e^x - 1)`. The exponential sees `min(x, 0)`, so the branch
/// `where` discards never overflows (its gradient would be `0 * inf`).
fn elu(g: &mut Graph, x: NodeId, alpha: f64) -> kiln_ir::Result<NodeId> {
    let zero = g.scalar(0.0);
    let pos = g.binary(BinaryOp::Gt, x, zero)?;
    let neg = g.minimum(x, zero)?;
    let e = g.exp(neg)?;
    let em1 = g.add_scalar(e, -1.0)?;
    let branch = g.mul_scalar(em1, alpha)?;
    g.where_(pos, x, branch)
}

/// Coefficients of the Chebyshev fit of `erfc` in Numerical Recipes (`erfcc`): for `z >= 0`,
/// `erfc(z) = t exp(-z² + c0 + c1 t + … + c9 t⁹)`, `t = 1 / (1 + z/2)`, with a *relative*
/// error below 1.2e-7 everywhere.
const ERFC_C: [f64; 10] = [
    -1.265_512_23,
    1.000_023_68,
    0.374_091_96,
    0.096_784_18,
    -0.186_288_06,
    0.278_868_07,
    -1.135_203_98,
    1.488_515_87,
    -0.822_152_23,
    0.170_872_77,
];

/// `Φ(x) = (1 + erf(x / √2)) / 2`, the standard normal CDF: with `c = erfc(|x| / √2) / 2`,
/// `Φ(x) = c` for `x < 0` and `1 - c` otherwise. Computing the tail `c` directly keeps the
/// relative accuracy (1.2e-7) for very negative `x`, where `1 + erf` would cancel.
fn normal_cdf(g: &mut Graph, x: NodeId) -> kiln_ir::Result<NodeId> {
    let a = g.abs(x)?;
    let z = g.mul_scalar(a, std::f64::consts::FRAC_1_SQRT_2)?;
    let hz = g.mul_scalar(z, 0.5)?;
    let den = g.add_scalar(hz, 1.0)?;
    let t = g.recip(den)?;
    // Horner: c0 + t (c1 + t (c2 + … + t c9))
    let mut poly = g.mul_scalar(t, ERFC_C[9])?;
    for &c in ERFC_C[1..9].iter().rev() {
        let s = g.add_scalar(poly, c)?;
        poly = g.mul(t, s)?;
    }
    let poly = g.add_scalar(poly, ERFC_C[0])?;
    let z2 = g.square(z)?;
    let ex = g.sub(poly, z2)?;
    let e = g.exp(ex)?;
    let erfc = g.mul(t, e)?;
    let tail = g.mul_scalar(erfc, 0.5)?;
    let one = g.scalar(1.0);
    let upper = g.sub(one, tail)?;
    let zero = g.scalar(0.0);
    let neg = g.binary(BinaryOp::Lt, x, zero)?;
    g.where_(neg, tail, upper)
}
