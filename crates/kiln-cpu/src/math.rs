//! Element operations over register blocks, with the interpreter's semantics
//! (`kiln_opt::interp`): f32 arithmetic in f32, i32 arithmetic wrapping, i32 division by zero
//! giving 0, comparisons giving 1/0. Each operation is one loop over slices, which the
//! compiler vectorises where the instruction set allows. `exp`, `tanh` and `sigmoid` are
//! branch-free f32 polynomials (Cephes' `expf`/`tanhf` coefficients, within a few ulp of the
//! interpreter's f64-then-rounded values) so that they vectorise too; `log` and `pow` call the
//! f64/f32 library functions. `relu`, `max` and `min` propagate NaN (IEEE 754-2019
//! `maximum`/`minimum`, Keras), as the interpreter and the shaders do: Rust's `f32::max`
//! would return the other operand.

use kiln_ir::eval::{apply_binary, apply_unary};
use kiln_ir::{BinaryOp, UnaryOp};

/// `max(x, y)`, NaN when either is NaN; a select the compiler vectorises.
#[inline(always)]
pub fn max_nan(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        x.max(y)
    }
}

/// `min(x, y)`, NaN when either is NaN.
#[inline(always)]
pub fn min_nan(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        x.min(y)
    }
}

/// `max(x, 0)`, NaN for NaN.
#[inline(always)]
pub fn relu(x: f32) -> f32 {
    if x.is_nan() {
        x
    } else {
        x.max(0.0)
    }
}

/// `out = op(x)` in f32.
#[inline(always)]
pub fn unary_f32(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    let it = out.iter_mut().zip(x);
    match op {
        UnaryOp::Neg => it.for_each(|(o, &x)| *o = -x),
        UnaryOp::Abs => it.for_each(|(o, &x)| *o = x.abs()),
        UnaryOp::Relu => it.for_each(|(o, &x)| *o = relu(x)),
        UnaryOp::Sqrt => it.for_each(|(o, &x)| *o = x.sqrt()),
        UnaryOp::Recip => it.for_each(|(o, &x)| *o = 1.0 / x),
        UnaryOp::Exp => it.for_each(|(o, &x)| *o = exp(x)),
        UnaryOp::Log => it.for_each(|(o, &x)| *o = (x as f64).ln() as f32),
        UnaryOp::Tanh => it.for_each(|(o, &x)| *o = tanh(x)),
        UnaryOp::Sigmoid => it.for_each(|(o, &x)| *o = 1.0 / (1.0 + exp(-x))),
        UnaryOp::Sign => it.for_each(|(o, &x)| {
            *o = if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
    }
}

/// `out = op(x)` in i32 (through f64, as the interpreter does).
#[inline(always)]
pub fn unary_i32(op: UnaryOp, x: &[i32], out: &mut [i32]) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = apply_unary(op, x as f64) as i32;
    }
}

/// `out = op(a, b)` in f32.
#[inline(always)]
pub fn binary_f32(op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    let n = out.len();
    let (a, b) = (&a[..n], &b[..n]);
    let t = |c: bool| if c { 1.0 } else { 0.0 };
    macro_rules! each {
        ($f:expr) => {
            for i in 0..n {
                out[i] = $f(a[i], b[i]);
            }
        };
    }
    match op {
        BinaryOp::Add => each!(|x: f32, y: f32| x + y),
        BinaryOp::Sub => each!(|x: f32, y: f32| x - y),
        BinaryOp::Mul => each!(|x: f32, y: f32| x * y),
        BinaryOp::Div => each!(|x: f32, y: f32| x / y),
        BinaryOp::Max => each!(max_nan),
        BinaryOp::Min => each!(min_nan),
        BinaryOp::Pow => each!(|x: f32, y: f32| x.powf(y)),
        BinaryOp::Lt => each!(|x: f32, y: f32| t(x < y)),
        BinaryOp::Le => each!(|x: f32, y: f32| t(x <= y)),
        BinaryOp::Gt => each!(|x: f32, y: f32| t(x > y)),
        BinaryOp::Ge => each!(|x: f32, y: f32| t(x >= y)),
        BinaryOp::Eq => each!(|x: f32, y: f32| t(x == y)),
        BinaryOp::Ne => each!(|x: f32, y: f32| t(x != y)),
    }
}

/// `out = op(a, b)` in i32.
#[inline(always)]
pub fn binary_i32(op: BinaryOp, a: &[i32], b: &[i32], out: &mut [i32]) {
    let n = out.len();
    let (a, b) = (&a[..n], &b[..n]);
    macro_rules! each {
        ($f:expr) => {
            for i in 0..n {
                out[i] = $f(a[i], b[i]);
            }
        };
    }
    match op {
        BinaryOp::Add => each!(|x: i32, y: i32| x.wrapping_add(y)),
        BinaryOp::Sub => each!(|x: i32, y: i32| x.wrapping_sub(y)),
        BinaryOp::Mul => each!(|x: i32, y: i32| x.wrapping_mul(y)),
        BinaryOp::Div => each!(|x: i32, y: i32| x.checked_div(y).unwrap_or(0)),
        BinaryOp::Max => each!(|x: i32, y: i32| x.max(y)),
        BinaryOp::Min => each!(|x: i32, y: i32| x.min(y)),
        BinaryOp::Pow => each!(|x: i32, y: i32| (x as f64).powf(y as f64) as i32),
        _ => each!(|x: i32, y: i32| apply_binary(op, x as f64, y as f64) as i32),
    }
}

/// `e^x` in f32 without branches: `x = n ln 2 + r`, a degree-6 polynomial for `e^r`, then
/// `2^n` built in the exponent bits. Infinite above `ln(f32::MAX)`, NaN stays NaN; below
/// -86.6 (where f32 results are subnormal) the result is `e^-86.6` or 0, an absolute error
/// under 3e-38.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients as published
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let c = x.clamp(-86.6, 88.72);
    let t = c * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = c - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * r * r + r + 1.0;
    // 2^(n-1) (n in -125..=128) from its exponent bits, times 2
    let k = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let scale = f32::from_bits(((k + 126) as u32) << 23);
    let v = y * scale * 2.0;
    if x > 88.722_84 {
        f32::INFINITY
    } else if x < -104.0 {
        0.0
    } else {
        v
    }
}

/// `tanh x` in f32 without branches: an odd polynomial below 0.625, `1 - 2 / (e^2|x| + 1)`
/// above, with the sign of `x`.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients as published
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let mut p = -5.704_988_7e-3;
    p = p * z + 2.063_908_9e-2;
    p = p * z - 5.373_971_6e-2;
    p = p * z + 1.333_144_2e-1;
    p = p * z - 3.333_328_2e-1;
    let small = p * z * x + x;
    let big = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
    let big = if x < 0.0 { -big } else { big };
    if a < 0.625 {
        small
    } else {
        big
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_tanh_match_f64_within_a_few_ulp() {
        let mut worst = (0.0f64, 0.0f64);
        let mut x = -90.0f32;
        while x < 90.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            if want > 1e-37 && want < 3e38 {
                let rel = ((got - want) / want).abs();
                assert!(rel < 4e-7, "exp({x}) = {got}, want {want}");
                worst.0 = worst.0.max(rel);
            }
            let (t, tw) = (tanh(x) as f64, (x as f64).tanh());
            let err = (t - tw).abs() / tw.abs().max(1e-30);
            assert!(
                err < 4e-7 || (t - tw).abs() < 1e-9,
                "tanh({x}) = {t}, want {tw}"
            );
            worst.1 = worst.1.max(err);
            x += 0.001_37;
        }
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(-200.0), 0.0);
        assert!(exp(f32::NAN).is_nan() && tanh(f32::NAN).is_nan());
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
        assert_eq!(tanh(0.0), 0.0);
    }

    #[test]
    fn relu_max_min_propagate_nan() {
        let nan = f32::NAN;
        assert!(relu(nan).is_nan() && max_nan(nan, 1.0).is_nan() && max_nan(1.0, nan).is_nan());
        assert!(min_nan(nan, 1.0).is_nan() && min_nan(1.0, nan).is_nan());
        assert_eq!(
            (relu(-2.0), max_nan(1.0, 2.0), min_nan(1.0, 2.0)),
            (0.0, 2.0, 1.0)
        );
        let (mut o, x, y) = ([0.0; 3], [nan, -1.0, 3.0], [0.0, nan, 1.0]);
        unary_f32(UnaryOp::Relu, &x, &mut o);
        assert!(o[0].is_nan() && o[1] == 0.0 && o[2] == 3.0);
        binary_f32(BinaryOp::Max, &x, &y, &mut o);
        assert!(o[0].is_nan() && o[1].is_nan() && o[2] == 3.0);
        binary_f32(BinaryOp::Min, &x, &y, &mut o);
        assert!(o[0].is_nan() && o[1].is_nan() && o[2] == 1.0);
    }
}
