//! Weight regularizers (Keras `kernel_regularizer` / `bias_regularizer`): penalties added to
//! the training loss — and, as Keras does, to the loss `fit` and `evaluate` report.

use crate::Result;
use kiln_ir::{Graph, NodeId};

/// Keras's default regularization factor (`regularizers.l1()`, `l2()`, `l1_l2()`).
pub const DEFAULT_FACTOR: f64 = 0.01;

/// A penalty on a weight tensor `w`.
#[derive(Copy, Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Regularizer {
    /// `l · Σ|w|`
    L1(f64),
    /// `l · Σw²`
    L2(f64),
    /// `l1 · Σ|w| + l2 · Σw²`
    L1L2 {
        /// L1 factor.
        l1: f64,
        /// L2 factor.
        l2: f64,
    },
}

impl Regularizer {
    /// Keras `regularizers.l1()`: `L1(0.01)`.
    pub fn l1() -> Self {
        Regularizer::L1(DEFAULT_FACTOR)
    }

    /// Keras `regularizers.l2()`: `L2(0.01)`.
    pub fn l2() -> Self {
        Regularizer::L2(DEFAULT_FACTOR)
    }

    /// Keras `regularizers.l1_l2()`: `L1L2 { l1: 0.01, l2: 0.01 }`.
    pub fn l1_l2() -> Self {
        Regularizer::L1L2 {
            l1: DEFAULT_FACTOR,
            l2: DEFAULT_FACTOR,
        }
    }

    /// `(l1, l2)` factors.
    pub fn factors(self) -> (f64, f64) {
        match self {
            Regularizer::L1(l) => (l, 0.0),
            Regularizer::L2(l) => (0.0, l),
            Regularizer::L1L2 { l1, l2 } => (l1, l2),
        }
    }

    /// An error message when a factor is negative or not finite.
    pub fn check(self) -> std::result::Result<(), String> {
        let (l1, l2) = self.factors();
        if !(l1.is_finite() && l2.is_finite() && l1 >= 0.0 && l2 >= 0.0) {
            return Err(format!(
                "regularizer {self:?}: factors must be finite and >= 0 (Keras's default is \
                 {DEFAULT_FACTOR})"
            ));
        }
        Ok(())
    }

    /// Appends the scalar penalty of weight `w` to `g`. The generic entry point: any layer
    /// can regularize any of its weights with it (see `Layer::regularizers`).
    pub fn penalty(self, g: &mut Graph, w: NodeId) -> Result<NodeId> {
        let (l1, l2) = self.factors();
        let mut terms = vec![];
        if l1 != 0.0 {
            let a = g.abs(w)?;
            let s = g.sum_all(a)?;
            terms.push(g.mul_scalar(s, l1)?);
        }
        if l2 != 0.0 {
            let sq = g.square(w)?;
            let s = g.sum_all(sq)?;
            terms.push(g.mul_scalar(s, l2)?);
        }
        Ok(match terms[..] {
            [] => g.scalar(0.0),
            [t] => t,
            [a, b, ..] => g.add(a, b)?,
        })
    }
}
