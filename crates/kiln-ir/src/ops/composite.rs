//! Numerically stable compositions of primitives.

use crate::{Graph, NodeId, Result};

impl Graph {
    /// `log(sum(exp(x), axis))` computed as `m + log(sum(exp(x - m)))` with `m = max(x)`,
    /// keeping the axis (size 1).
    pub fn logsumexp(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        self.scoped("logsumexp", |g| {
            let m = g.max(x, &[axis], true)?;
            let z = g.sub(x, m)?;
            let e = g.exp(z)?;
            let s = g.sum(e, &[axis], true)?;
            let l = g.log(s)?;
            g.add(l, m)
        })
    }

    /// Softmax along `axis`: `exp(x - max) / sum(exp(x - max))`.
    pub fn softmax(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        self.scoped("softmax", |g| {
            let m = g.max(x, &[axis], true)?;
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
