//! Elementwise ops with NumPy broadcasting.

use crate::{BinaryOp, DType, Graph, NodeId, Op, Result, Shape, UnaryOp};

/// NumPy broadcast of two shapes, or `None` when they are incompatible.
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> Option<Shape> {
    let r = a.rank().max(b.rank());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.rank() >= r {
            a.0[i + a.rank() - r]
        } else {
            1
        };
        let db = if i + b.rank() >= r {
            b.0[i + b.rank() - r]
        } else {
            1
        };
        *o = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return None;
        };
    }
    Some(Shape(out))
}

impl Graph {
    /// `op(x)` for a float tensor.
    pub fn unary(&mut self, op: UnaryOp, x: NodeId) -> Result<NodeId> {
        let m = op.mnemonic();
        let (s, dt) = self.operands(m, &[x])?.remove(0);
        let float_only = !matches!(
            op,
            UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign | UnaryOp::Relu
        );
        if float_only && !dt.is_float() {
            return Err(self.dtype_err(
                m,
                format!("expects a float operand, got {dt}; hint: cast it to f32 first"),
            ));
        }
        Ok(self.emit(Op::Unary(op), vec![x], s, dt))
    }

    /// `op(a, b)` with NumPy broadcasting; both operands must have the same dtype.
    pub fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        let m = op.mnemonic();
        let ops = self.operands(m, &[a, b])?;
        let ((sa, da), (sb, db)) = (ops[0].clone(), ops[1].clone());
        if da != db {
            return Err(self.dtype_err(
                m,
                format!("operand dtypes differ: {da} and {db}; hint: cast one of them"),
            ));
        }
        if op == BinaryOp::Pow && !da.is_float() {
            return Err(self.dtype_err(m, format!("expects float operands, got {da}")));
        }
        let Some(out) = broadcast_shapes(&sa, &sb) else {
            return Err(self.shape_err(
                m,
                "operands cannot be broadcast together (trailing dims must be equal or 1)",
                vec![sa, sb],
                None,
            ));
        };
        let a = self.broadcast_to(a, &out)?;
        let b = self.broadcast_to(b, &out)?;
        Ok(self.emit(Op::Binary(op), vec![a, b], out, da))
    }

    /// `where(cond, a, b)`: `a` where `cond != 0`, else `b`, broadcasting all three.
    pub fn where_(&mut self, cond: NodeId, a: NodeId, b: NodeId) -> Result<NodeId> {
        let ops = self.operands("where", &[cond, a, b])?;
        if ops[1].1 != ops[2].1 {
            return Err(self.dtype_err(
                "where",
                format!("branch dtypes differ: {} and {}", ops[1].1, ops[2].1),
            ));
        }
        let s =
            broadcast_shapes(&ops[0].0, &ops[1].0).and_then(|s| broadcast_shapes(&s, &ops[2].0));
        let Some(out) = s else {
            return Err(self.shape_err(
                "where",
                "condition and branches cannot be broadcast together",
                ops.into_iter().map(|o| o.0).collect(),
                None,
            ));
        };
        let c = self.broadcast_to(cond, &out)?;
        let a = self.broadcast_to(a, &out)?;
        let b = self.broadcast_to(b, &out)?;
        Ok(self.emit(Op::Where, vec![c, a, b], out, ops[1].1))
    }

    /// Converts `x` to `dtype` (float to int truncates toward zero). A no-op when equal.
    pub fn cast(&mut self, x: NodeId, dtype: DType) -> Result<NodeId> {
        let (s, dt) = self.operands("cast", &[x])?.remove(0);
        if dt == dtype {
            return Ok(x);
        }
        Ok(self.emit(Op::Cast, vec![x], s, dtype))
    }

    /// Identity whose gradient is zero (see [`Op::StopGradient`]).
    pub fn stop_gradient(&mut self, x: NodeId) -> Result<NodeId> {
        let (s, dt) = self.operands("stop_gradient", &[x])?.remove(0);
        Ok(self.emit(Op::StopGradient, vec![x], s, dt))
    }

    /// `-x`
    pub fn neg(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Neg, x)
    }
    /// `e^x`
    pub fn exp(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Exp, x)
    }
    /// `ln x`
    pub fn log(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Log, x)
    }
    /// `sqrt x`
    pub fn sqrt(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Sqrt, x)
    }
    /// `1/x`
    pub fn recip(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Recip, x)
    }
    /// `tanh x`
    pub fn tanh(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Tanh, x)
    }
    /// `1/(1+e^-x)`
    pub fn sigmoid(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Sigmoid, x)
    }
    /// `max(x, 0)`
    pub fn relu(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Relu, x)
    }
    /// `|x|`
    pub fn abs(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Abs, x)
    }
    /// sign of x
    pub fn sign(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Sign, x)
    }
    /// `a + b`
    pub fn add(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Add, a, b)
    }
    /// `a - b`
    pub fn sub(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Sub, a, b)
    }
    /// `a * b`
    pub fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Mul, a, b)
    }
    /// `a / b`
    pub fn div(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Div, a, b)
    }
    /// `max(a, b)`
    pub fn maximum(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Max, a, b)
    }
    /// `min(a, b)`
    pub fn minimum(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Min, a, b)
    }
    /// `a^b`
    pub fn pow(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Pow, a, b)
    }
    /// `x * c` for a float constant `c`.
    pub fn mul_scalar(&mut self, x: NodeId, c: f64) -> Result<NodeId> {
        let c = self.scalar(c);
        self.mul(x, c)
    }
    /// `x + c` for a float constant `c`.
    pub fn add_scalar(&mut self, x: NodeId, c: f64) -> Result<NodeId> {
        let c = self.scalar(c);
        self.add(x, c)
    }
    /// `x * x`
    pub fn square(&mut self, x: NodeId) -> Result<NodeId> {
        self.mul(x, x)
    }
    /// `clip(x, lo, hi)`
    pub fn clip(&mut self, x: NodeId, lo: f64, hi: f64) -> Result<NodeId> {
        let l = self.scalar(lo);
        let h = self.scalar(hi);
        let y = self.maximum(x, l)?;
        self.minimum(y, h)
    }
}
