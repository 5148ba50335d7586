//! Reverse-mode automatic differentiation that appends backward nodes to the same graph.
//!
//! One `match` arm per op returns the vector-Jacobian product for each operand, with the
//! math in a comment. Fan-out accumulates with `add`; broadcasts (explicit `Expand` nodes)
//! are undone by summing over the expanded axes.

use crate::{BinaryOp, Constant, DType, Graph, IrError, NodeId, Op, ReduceOp, Result, UnaryOp};

/// Appends the gradient of scalar `loss` with respect to each node of `wrt` and returns the
/// gradient node ids (same shapes as `wrt`). A node `loss` does not depend on gets a zero
/// gradient.
pub fn grad(g: &mut Graph, loss: NodeId, wrt: &[NodeId]) -> Result<Vec<NodeId>> {
    let ln = g.try_node(loss)?;
    if ln.shape.numel() != 1 || !ln.dtype.is_float() {
        return Err(IrError::Shape {
            op: "grad",
            node: ln.name.clone(),
            message: "the loss must be a float tensor with one element".into(),
            got: crate::error::ShapeList(vec![ln.shape.clone()]),
            hint: Some("reduce it with mean_all or sum_all".into()),
        });
    }
    for &w in wrt {
        g.try_node(w)?;
    }
    let n_forward = loss.index() + 1;
    // Which nodes lie on a path to the loss and carry a gradient.
    let mut on_path = vec![false; n_forward];
    on_path[loss.index()] = true;
    for i in (0..n_forward).rev() {
        if on_path[i] {
            for &inp in &g.nodes[i].inputs {
                on_path[inp.index()] = true;
            }
        }
    }
    // Gradient parts per node, combined when the node is reached (all its users are later
    // nodes, so every part has arrived by then).
    let mut parts: Vec<Vec<Part>> = vec![Vec::new(); n_forward];
    let mut adj: Vec<Option<NodeId>> = vec![None; n_forward];
    let seed_shape = g.shape(loss).clone();
    let seed = g.full(1.0, seed_shape, DType::F32);
    parts[loss.index()].push(Part::Full(seed));

    g.scoped("grad", |g| -> Result<()> {
        for i in (0..n_forward).rev() {
            if parts[i].is_empty() {
                continue;
            }
            let id = NodeId::at(i);
            let dy = combine(g, id, std::mem::take(&mut parts[i]))?;
            adj[i] = Some(dy);
            let node = g.node(id).clone();
            if !node.dtype.is_float() {
                continue;
            }
            // d slice = the adjoint placed at its range of the operand: kept as a piece, so
            // that the pieces of an operand cut into parts join into one concat
            if let Op::Slice { axis, start } = node.op {
                let x = node.inputs[0];
                if on_path[x.index()] {
                    parts[x.index()].push(Part::Piece {
                        axis,
                        start,
                        node: dy,
                    });
                }
                continue;
            }
            let contribs = vjp(g, id, dy)?;
            for (inp, d) in node.inputs.iter().zip(contribs) {
                let Some(d) = d else { continue };
                if !on_path[inp.index()] || !g.dtype(*inp).is_float() {
                    continue;
                }
                parts[inp.index()].push(Part::Full(d));
            }
        }
        Ok(())
    })?;
    wrt.iter()
        .map(|&w| match adj.get(w.index()).copied().flatten() {
            Some(d) => Ok(d),
            None => {
                let s = g.shape(w).clone();
                Ok(g.full(0.0, s, g.dtype(w)))
            }
        })
        .collect()
}

/// A gradient contribution to a node.
#[derive(Clone, Copy)]
enum Part {
    /// A whole adjoint (same shape as the node).
    Full(NodeId),
    /// The adjoint of the node's elements `start..` on `axis` (from a slice of it).
    Piece {
        axis: usize,
        start: usize,
        node: NodeId,
    },
}

/// Fewer outer-product parts than this are summed as they are.
const STACK_MIN: usize = 2;

/// `(a, d)` when `n` is the product `aᵀ·d` of two matrices, as the matmul rule makes for
/// its right operand.
fn outer_product(g: &Graph, n: NodeId) -> Option<(NodeId, NodeId)> {
    let node = g.node(n);
    if node.op != Op::MatMul {
        return None;
    }
    let t = g.node(node.inputs[0]);
    match &t.op {
        Op::Permute { perm } if perm.as_slice() == [1, 0] => Some((t.inputs[0], node.inputs[1])),
        _ => None,
    }
}

/// The gradient of a weight applied at every step of an unrolled recurrence, `Σₜ aₜᵀ·dₜ`
/// (`aₜ` the state `[B, U]`, `dₜ` the step's pre-activation adjoint `[B, N]`), as one
/// product over all steps instead of T small ones and T − 1 adds.
///
/// The `dₜ` are already stored side by side: the projection of every step's input was one
/// tensor `[B, T, N]` sliced per step, so its adjoint is a concat of `reshape(dₜ, [B, 1,
/// N])` along axis 1. With `A = [B, T, U]` holding `aₜ` at the same positions (zeros where
/// no part of this weight is), the sum is `reshape(A, [B·T, U])ᵀ · reshape(D, [B·T, N])` —
/// both reshapes views, no copy. This is a device-independent rewrite: a device whose loops
/// are limited gets the long product split by the compiler (`kiln-opt`'s
/// `SplitLongMatMuls`). Parts that do not fit this pattern (or when no such concat exists)
/// are returned as they are.
fn stack_recurrent_products(g: &mut Graph, fulls: Vec<NodeId>) -> Result<Vec<NodeId>> {
    let found: Vec<Option<(NodeId, NodeId)>> = fulls.iter().map(|&n| outer_product(g, n)).collect();
    let Some(Some((a0, d0))) = found.iter().find(|f| f.is_some()).copied() else {
        return Ok(fulls);
    };
    let key = |g: &Graph, a: NodeId, d: NodeId| {
        (
            g.shape(a).clone(),
            g.shape(d).clone(),
            g.dtype(a),
            g.dtype(d),
        )
    };
    let want = key(g, a0, d0);
    let (a_shape, d_shape, dt) = (want.0 .0.clone(), want.1 .0.clone(), want.2);
    if a_shape.len() != 2 || d_shape.len() != 2 || a_shape[0] != d_shape[0] {
        return Ok(fulls);
    }
    let (b, u, n) = (a_shape[0], a_shape[1], d_shape[1]);
    let mut stack = Vec::new();
    let mut rest = Vec::new();
    for (&node, f) in fulls.iter().zip(&found) {
        match f {
            Some((a, d)) if key(g, *a, *d) == want => stack.push((*a, *d)),
            _ => rest.push(node),
        }
    }
    if stack.len() < STACK_MIN {
        return Ok(fulls);
    }
    // reshape(dₜ, [B, 1, N]) nodes, then the concat along axis 1 that holds them
    let mut part_of: std::collections::HashMap<NodeId, usize> = Default::default();
    for (i, &(_, d)) in stack.iter().enumerate() {
        part_of.entry(d).or_insert(i);
    }
    let mut reshaped: std::collections::HashMap<NodeId, usize> = Default::default();
    for (i, node) in g.nodes.iter().enumerate() {
        if node.op == Op::Reshape && node.shape.0 == [b, 1, n] {
            if let Some(&p) = part_of.get(&node.inputs[0]) {
                reshaped.insert(NodeId::at(i), p);
            }
        }
    }
    let concat = g.nodes.iter().enumerate().find(|(_, node)| {
        node.op == Op::Concat { axis: 1 } && node.inputs.iter().any(|o| reshaped.contains_key(o))
    });
    let Some((c, c_node)) = concat.map(|(i, node)| (NodeId::at(i), node.clone())) else {
        return Ok(fulls);
    };
    let mut used = vec![false; stack.len()];
    let mut blocks = Vec::with_capacity(c_node.inputs.len());
    for o in &c_node.inputs {
        let s = g.shape(*o).0.clone();
        if s.len() != 3 || s[0] != b || s[2] != n {
            return Ok(fulls);
        }
        match reshaped.get(o) {
            Some(&p) if !used[p] => {
                used[p] = true;
                blocks.push(g.reshape(stack[p].0, [b, 1, u])?);
            }
            _ => blocks.push(g.full(0.0, crate::Shape(vec![b, s[1], u]), dt)),
        }
    }
    if used.iter().any(|&x| !x) {
        return Ok(fulls);
    }
    let t = g.shape(c).0[1];
    let a = g.concat(&blocks, 1)?;
    let a = g.reshape(a, [b * t, u])?;
    let d = g.reshape(c, [b * t, n])?;
    let at = g.transpose(a)?;
    rest.push(g.matmul(at, d)?);
    Ok(rest)
}

/// The adjoint of `x` from its parts: whole parts are summed in arrival order (products
/// `aₜᵀ·dₜ` of a recurrence first joined into one, see [`stack_recurrent_products`]); pieces that
/// share one axis and do not overlap become one concat (zeros in the gaps), otherwise each
/// piece is padded with zeros and added.
fn combine(g: &mut Graph, x: NodeId, parts: Vec<Part>) -> Result<NodeId> {
    let shape = g.shape(x).clone();
    let dt = g.dtype(x);
    let mut pieces: Vec<(usize, usize, NodeId)> = Vec::new();
    let mut total: Option<NodeId> = None;
    let add = |g: &mut Graph, total: &mut Option<NodeId>, d: NodeId| -> Result<()> {
        *total = Some(match *total {
            None => d,
            Some(prev) => g.add(prev, d)?,
        });
        Ok(())
    };
    let mut fulls = Vec::new();
    for p in parts {
        match p {
            Part::Full(d) => fulls.push(d),
            Part::Piece { axis, start, node } => pieces.push((axis, start, node)),
        }
    }
    for d in stack_recurrent_products(g, fulls)? {
        add(g, &mut total, d)?;
    }
    if pieces.is_empty() {
        return Ok(total.expect("combine is called with at least one part"));
    }
    let len = |g: &Graph, axis: usize, n: NodeId| g.shape(n).0[axis];
    let axis = pieces[0].0;
    let mut sorted = pieces.clone();
    sorted.sort_by_key(|p| p.1);
    let disjoint = sorted.iter().all(|p| p.0 == axis)
        && sorted
            .windows(2)
            .all(|w| w[0].1 + len(g, axis, w[0].2) <= w[1].1);
    let zeros = |g: &mut Graph, axis: usize, n: usize| {
        let mut s = shape.0.clone();
        s[axis] = n;
        g.full(0.0, crate::Shape(s), dt)
    };
    // one concat per group of pieces laid out along one axis
    let groups: Vec<Vec<(usize, usize, NodeId)>> = if disjoint {
        vec![sorted]
    } else {
        pieces.into_iter().map(|p| vec![p]).collect()
    };
    for group in groups {
        let axis = group[0].0;
        let mut seq = Vec::new();
        let mut at = 0;
        for (_, start, node) in group {
            if start > at {
                seq.push(zeros(g, axis, start - at));
            }
            at = start + len(g, axis, node);
            seq.push(node);
        }
        if at < shape.0[axis] {
            seq.push(zeros(g, axis, shape.0[axis] - at));
        }
        let joined = g.concat(&seq, axis)?;
        add(g, &mut total, joined)?;
    }
    Ok(total.expect("at least one piece"))
}

/// The gradient contribution to each operand of node `y` given its adjoint `dy`.
fn vjp(g: &mut Graph, y: NodeId, dy: NodeId) -> Result<Vec<Option<NodeId>>> {
    let node = g.node(y).clone();
    let x = |i: usize| node.inputs[i];
    Ok(match &node.op {
        Op::Input { .. } | Op::Param { .. } | Op::Constant(_) => vec![],
        Op::Unary(u) => vec![match u {
            // d(-x) = -dy
            UnaryOp::Neg => Some(g.neg(dy)?),
            // d e^x = dy * y
            UnaryOp::Exp => Some(g.mul(dy, y)?),
            // d ln x = dy / x
            UnaryOp::Log => Some(g.div(dy, x(0))?),
            // d sqrt x = dy * 0.5 / y
            UnaryOp::Sqrt => {
                let h = g.mul_scalar(dy, 0.5)?;
                Some(g.div(h, y)?)
            }
            // d (1/x) = -dy * y²
            UnaryOp::Recip => {
                let y2 = g.mul(y, y)?;
                let t = g.mul(dy, y2)?;
                Some(g.neg(t)?)
            }
            // d tanh = dy * (1 - y²)
            UnaryOp::Tanh => {
                let y2 = g.mul(y, y)?;
                let one = g.scalar(1.0);
                let d = g.sub(one, y2)?;
                Some(g.mul(dy, d)?)
            }
            // d sigmoid = dy * y * (1 - y)
            UnaryOp::Sigmoid => {
                let one = g.scalar(1.0);
                let c = g.sub(one, y)?;
                let d = g.mul(y, c)?;
                Some(g.mul(dy, d)?)
            }
            // d relu = dy * [x > 0]
            UnaryOp::Relu => {
                let zero = g.scalar(0.0);
                let m = g.binary(BinaryOp::Gt, x(0), zero)?;
                Some(g.mul(dy, m)?)
            }
            // d |x| = dy * sign(x)
            UnaryOp::Abs => {
                let s = g.sign(x(0))?;
                Some(g.mul(dy, s)?)
            }
            // d sign = 0 almost everywhere
            UnaryOp::Sign => None,
        }],
        Op::Binary(b) => {
            let (a, bb) = (x(0), x(1));
            match b {
                // d(a+b) = (dy, dy)
                BinaryOp::Add => vec![Some(dy), Some(dy)],
                // d(a-b) = (dy, -dy)
                BinaryOp::Sub => vec![Some(dy), Some(g.neg(dy)?)],
                // d(ab) = (dy b, dy a)
                BinaryOp::Mul => vec![Some(g.mul(dy, bb)?), Some(g.mul(dy, a)?)],
                // d(a/b) = (dy / b, -dy y / b)
                BinaryOp::Div => {
                    let da = g.div(dy, bb)?;
                    let t = g.mul(da, y)?;
                    vec![Some(da), Some(g.neg(t)?)]
                }
                // d max(a,b) = (dy [a >= b], dy [a < b])  (ties go to a)
                BinaryOp::Max | BinaryOp::Min => {
                    let (ca, cb) = if *b == BinaryOp::Max {
                        (BinaryOp::Ge, BinaryOp::Lt)
                    } else {
                        (BinaryOp::Le, BinaryOp::Gt)
                    };
                    let ma = g.binary(ca, a, bb)?;
                    let mb = g.binary(cb, a, bb)?;
                    vec![Some(g.mul(dy, ma)?), Some(g.mul(dy, mb)?)]
                }
                // d a^b = (dy b a^(b-1), dy y ln a)
                BinaryOp::Pow => {
                    let one = g.scalar(1.0);
                    let bm1 = g.sub(bb, one)?;
                    let p = g.pow(a, bm1)?;
                    let t = g.mul(bb, p)?;
                    let da = g.mul(dy, t)?;
                    let la = g.log(a)?;
                    let t2 = g.mul(y, la)?;
                    let db = g.mul(dy, t2)?;
                    vec![Some(da), Some(db)]
                }
                // comparisons are piecewise constant
                _ => vec![None, None],
            }
        }
        // d where(c, a, b) = (none, where(c, dy, 0), where(c, 0, dy))
        Op::Where => {
            let z = g.scalar(0.0);
            let da = g.where_(x(0), dy, z)?;
            let db = g.where_(x(0), z, dy)?;
            vec![None, Some(da), Some(db)]
        }
        Op::Reduce { op, axes } => {
            let xs = g.shape(x(0)).clone();
            match op {
                // d sum = broadcast dy back over the reduced axes
                ReduceOp::Sum => vec![Some(g.expand(dy, xs)?)],
                // d mean = broadcast dy / count
                ReduceOp::Mean => {
                    let cnt: usize = axes.iter().map(|&a| xs.0[a]).product();
                    let s = g.mul_scalar(dy, 1.0 / cnt as f64)?;
                    vec![Some(g.expand(s, xs)?)]
                }
                // d max = dy shared evenly by the elements equal to the max
                ReduceOp::Max => {
                    let ye = g.expand(y, xs.clone())?;
                    let mask = g.binary(BinaryOp::Eq, x(0), ye)?;
                    let cnt = g.sum(mask, axes, true)?;
                    let share = g.div(dy, cnt)?;
                    let se = g.expand(share, xs)?;
                    vec![Some(g.mul(mask, se)?)]
                }
            }
        }
        // d reshape = reshape back
        Op::Reshape => {
            let xs = g.shape(x(0)).clone();
            vec![Some(g.reshape(dy, xs)?)]
        }
        // d permute = inverse permute
        Op::Permute { perm } => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            vec![Some(g.permute(dy, &inv)?)]
        }
        // d expand = sum over the expanded axes (keeping them)
        Op::Expand => {
            let xs = g.shape(x(0)).clone();
            let axes: Vec<usize> = (0..xs.rank())
                .filter(|&d| xs.0[d] == 1 && node.shape.0[d] != 1)
                .collect();
            vec![Some(g.sum(dy, &axes, true)?)]
        }
        // d(AB) = (dy Bᵀ, Aᵀ dy)
        Op::MatMul => {
            let bt = g.transpose(x(1))?;
            let at = g.transpose(x(0))?;
            vec![Some(g.matmul(dy, bt)?), Some(g.matmul(at, dy)?)]
        }
        // stop_gradient: the result is treated as a constant
        Op::StopGradient => vec![None],
        // handled by `grad` (pieces of the operand's adjoint)
        Op::Slice { .. } => unreachable!("slices are differentiated in grad"),
        // d concat = the matching slice of dy for each operand
        Op::Concat { axis } => {
            let mut at = 0;
            let mut v = Vec::with_capacity(node.inputs.len());
            for &i in &node.inputs {
                let n = g.shape(i).0[*axis];
                v.push(Some(g.slice(dy, *axis, at, n)?));
                at += n;
            }
            v
        }
        // d gather = scatter-add of dy into the picked rows; indices get none
        Op::Gather => {
            let rows = g.shape(x(0)).0[0];
            vec![Some(g.scatter_add(x(1), dy, rows)?), None]
        }
        // noise: no gradient
        Op::RandomUniform { .. } => vec![None],
        // d scatter_add = gather of dy at the indices
        Op::ScatterAdd => vec![None, Some(g.gather(dy, x(0))?)],
        Op::Recurrence(c) => recurrence_vjp(g, c, &node.inputs, y, dy)?,
        // the backward is not differentiated again
        Op::RecurrenceGrad(_) => {
            return Err(IrError::Invalid {
                id: y,
                op: node.op.mnemonic(),
                message: "second derivatives of a fused recurrence are not supported".into(),
            })
        }
        // d cast = cast back (float sources only; integer sources get no gradient)
        Op::Cast => {
            let dt = g.dtype(x(0));
            vec![if dt.is_float() {
                Some(g.cast(dy, dt)?)
            } else {
                None
            }]
        }
    })
}

/// The narrowest window of the trace's adjoint `dy` (see
/// [`Adjoint`](crate::recurrence::Adjoint)) that holds all that is not zero. `combine`
/// builds the adjoint of a sliced node as a concat of its pieces and zero blocks: a layer
/// reads `h = slice(trace, 2, 0, U)`, so the trace's adjoint is `concat([dh, 0], 2)`, and
/// when only the last step is read `dh = concat([0, d_last], 1)`. Peeling those two concats
/// leaves `d_last [B, 1, U]` (or `dh [B, T, U]`), and the zero blocks — the largest tensors
/// of the backward — are never written nor read. Any other form is passed whole.
fn adjoint_window(g: &Graph, c: &crate::recurrence::Cell, trace: NodeId, dy: NodeId) -> NodeId {
    let zero = |n: NodeId| matches!(g.node(n).op, Op::Constant(Constant::Fill(v)) if v == 0.0);
    let two = |n: NodeId, axis: usize| {
        let node = g.node(n);
        (node.op == Op::Concat { axis } && node.inputs.len() == 2)
            .then(|| (node.inputs[0], node.inputs[1]))
    };
    let mut d = dy;
    if let Some((h, rest)) = two(d, 2) {
        if g.shape(h).0[2] == c.units && zero(rest) {
            d = h;
        }
    }
    if let Some((early, late)) = two(d, 1) {
        if zero(early) {
            d = late;
        }
    }
    let (b, t) = (g.shape(trace).0[0], g.shape(trace).0[1]);
    match crate::recurrence::Adjoint::of_dims(c, b, t, &g.shape(d).0) {
        Some(_) => d,
        None => dy,
    }
}

/// The adjoints of a recurrence's operands: `d xp` from the backward op; `dr = Σ h_inᵀ·d rec`
/// over all steps as one product (`h_in`, the state that entered the product, is read from the
/// trace); `drb = Σ d rec`; `d mask = Σ h_{t-1} ⊙ (d rec_t·rᵀ + d h_in_t)` (pruned when
/// unused, as for a dropout mask drawn from noise).
fn recurrence_vjp(
    g: &mut Graph,
    c: &crate::recurrence::Cell,
    ops: &[NodeId],
    trace: NodeId,
    dy: NodeId,
) -> Result<Vec<Option<NodeId>>> {
    let d = g.recurrence_grad(*c, ops, trace, adjoint_window(g, c, trace, dy))?;
    let dims = g.shape(trace).dims().to_vec();
    let (b, t, u, ku) = (dims[0], dims[1], c.units, c.gates() * c.units);
    // d xp and d rec as [B·T, kU] views (GRU: the two column halves of the result; LSTM and
    // SimpleRNN: the result itself), reshaped before slicing so that they stay views
    let d2 = g.reshape(d, [b * t, c.grad_width()])?;
    let (dxp2, dr) = match c.kind {
        crate::recurrence::CellKind::Gru => (g.slice(d2, 1, 0, ku)?, g.slice(d2, 1, ku, ku)?),
        _ => (d2, d2),
    };
    let dxp = g.reshape(dxp2, [b, t, ku])?;
    // dr = Σ h_inᵀ·d rec over all B·T rows: h_in is stored in the trace (zero at step 0), so
    // both operands are strided views, no copies
    let w = c.trace_width();
    let tr = g.reshape(trace, [b * t, w])?;
    let hin = g.slice(tr, 1, c.h_in_column(), u)?;
    let hint = g.transpose(hin)?;
    let mut v = vec![Some(dxp), Some(g.matmul(hint, dr)?)];
    // d mask = Σ_t h_{t-1} ⊙ (d rec_t·rᵀ + dtrace_hin_t), over steps 1.. (usually pruned)
    let dmask = match c.mask_operand() {
        Some(_) if t > 1 => {
            let h = g.slice(trace, 2, 0, u)?;
            let hp = g.slice(h, 1, 0, t - 1)?;
            let rt = g.transpose(ops[1])?;
            let dh = g.matmul(dr, rt)?;
            let dh = g.reshape(dh, [b, t, u])?;
            let dyh = g.slice(dy, 2, c.h_in_column(), u)?;
            let dh = g.add(dh, dyh)?;
            let dh = g.slice(dh, 1, 1, t - 1)?;
            let p = g.mul(hp, dh)?;
            Some(g.sum(p, &[1], false)?)
        }
        Some(_) => Some(g.full(0.0, [b, u], DType::F32)),
        None => None,
    };
    if let Some(i) = c.rb_operand() {
        let s = g.sum(dr, &[0], false)?;
        let rb_shape = g.shape(ops[i]).clone();
        v.push(Some(g.reshape(s, rb_shape)?));
    }
    if c.masked {
        v.push(dmask);
    }
    Ok(v)
}
