//! Matrix product.

use crate::{DType, Graph, NodeId, Op, Result, Shape};

impl Graph {
    /// Batched matrix product `[.., m, k] x [.., k, n] -> [.., m, n]`. Batch dims broadcast
    /// NumPy-style (the builder expands them); both operands must be f32 of rank >= 2.
    pub fn matmul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        let ops = self.operands("matmul", &[a, b])?;
        let ((sa, da), (sb, db)) = (ops[0].clone(), ops[1].clone());
        if da != DType::F32 || db != DType::F32 {
            return Err(
                self.dtype_err("matmul", format!("expects f32 operands, got {da} and {db}"))
            );
        }
        if sa.rank() < 2 || sb.rank() < 2 {
            return Err(self.shape_err(
                "matmul",
                "operands must have rank >= 2",
                vec![sa, sb],
                Some("reshape a vector to [1, n] or [n, 1]".into()),
            ));
        }
        let (m, k) = (sa.0[sa.rank() - 2], sa.0[sa.rank() - 1]);
        let (k2, n) = (sb.0[sb.rank() - 2], sb.0[sb.rank() - 1]);
        if k != k2 {
            return Err(self.shape_err(
                "matmul",
                format!("inner dimensions differ: {k} vs {k2} (expected [.., m, k] x [.., k, n])"),
                vec![sa, sb],
                Some("transpose one operand?".into()),
            ));
        }
        let ba = Shape(sa.0[..sa.rank() - 2].to_vec());
        let bb = Shape(sb.0[..sb.rank() - 2].to_vec());
        let Some(batch) = super::elementwise::broadcast_shapes(&ba, &bb) else {
            return Err(self.shape_err(
                "matmul",
                "batch dimensions cannot be broadcast",
                vec![sa, sb],
                None,
            ));
        };
        let mut ta = batch.0.clone();
        ta.extend([m, k]);
        let mut tb = batch.0.clone();
        tb.extend([k, n]);
        let a = self.broadcast_to(a, &Shape(ta))?;
        let b = self.broadcast_to(b, &Shape(tb))?;
        let mut out = batch.0;
        out.extend([m, n]);
        Ok(self.emit(Op::MatMul, vec![a, b], Shape(out), DType::F32))
    }
}
