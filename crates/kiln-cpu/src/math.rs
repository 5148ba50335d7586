//! Element operations over register blocks, with the interpreter's semantics
//! (`kiln_opt::interp`): f32 arithmetic in f32, transcendental functions in f64 rounded to
//! f32, i32 arithmetic wrapping, i32 division by zero giving 0, comparisons giving 1/0.
//! Each operation is one loop over slices, which the compiler vectorises where the
//! instruction set allows.

use kiln_ir::eval::{apply_binary, apply_unary};
use kiln_ir::{BinaryOp, UnaryOp};

/// `out = op(x)` in f32.
pub fn unary_f32(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    let it = out.iter_mut().zip(x);
    match op {
        UnaryOp::Neg => it.for_each(|(o, &x)| *o = -x),
        UnaryOp::Abs => it.for_each(|(o, &x)| *o = x.abs()),
        UnaryOp::Relu => it.for_each(|(o, &x)| *o = x.max(0.0)),
        UnaryOp::Sqrt => it.for_each(|(o, &x)| *o = x.sqrt()),
        UnaryOp::Recip => it.for_each(|(o, &x)| *o = 1.0 / x),
        UnaryOp::Exp => it.for_each(|(o, &x)| *o = (x as f64).exp() as f32),
        UnaryOp::Log => it.for_each(|(o, &x)| *o = (x as f64).ln() as f32),
        UnaryOp::Tanh => it.for_each(|(o, &x)| *o = (x as f64).tanh() as f32),
        UnaryOp::Sigmoid => it.for_each(|(o, &x)| *o = (1.0 / (1.0 + (-(x as f64)).exp())) as f32),
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
pub fn unary_i32(op: UnaryOp, x: &[i32], out: &mut [i32]) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = apply_unary(op, x as f64) as i32;
    }
}

/// `out = op(a, b)` in f32.
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
        BinaryOp::Max => each!(|x: f32, y: f32| x.max(y)),
        BinaryOp::Min => each!(|x: f32, y: f32| x.min(y)),
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
