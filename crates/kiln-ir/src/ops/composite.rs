//! Numerically stable compositions of primitives.

use crate::{Graph, NodeId, Result};

impl Graph {
    /// `log(sum(exp(x), axis))` computed as `m + log(sum(exp(x - m)))` with
    /// `m = stop_gradient(max(x))` (the gradient through `m` cancels exactly), keeping the
    /// axis (size 1).
    pub fn logsumexp(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        self.scoped("logsumexp", |g| {
            let m = g.max(x, &[axis], true)?;
            let m = g.stop_gradient(m)?;
            let z = g.sub(x, m)?;
            let e = g.exp(z)?;
            let s = g.sum(e, &[axis], true)?;
            let l = g.log(s)?;
            g.add(l, m)
        })
    }

    /// Softmax along `axis`: `exp(x - m) / sum(exp(x - m))` with `m = stop_gradient(max(x))`
    /// (softmax is invariant to `m`, so its gradient path cancels exactly).
    pub fn softmax(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        self.scoped("softmax", |g| {
            let m = g.max(x, &[axis], true)?;
            let m = g.stop_gradient(m)?;
            let z = g.sub(x, m)?;
            let e = g.exp(z)?;
            let s = g.sum(e, &[axis], true)?;
            g.div(e, s)
        })
    }

    /// Log-softmax along `axis`: `x - logsumexp(x)`.
    pub fn log_softmax(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        self.scoped("log_softmax", |g| {
            let l = g.logsumexp(x, axis)?;
            g.sub(x, l)
        })
    }
}
