//! Losses and metrics as graph compositions (Keras formulas).

use super::Activation;
use crate::Result;
use kiln_ir::{BinaryOp, Graph, NodeId};

/// Keras's `epsilon()`: probabilities are clipped to `[EPSILON, 1 - EPSILON]`.
pub const EPSILON: f64 = 1e-7;

/// A training loss; the model minimizes its mean over the batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Loss {
    /// `mean((y - p)², axis=-1)`
    #[serde(rename = "mse", alias = "mean_squared_error")]
    MeanSquaredError,
    /// `mean(|y - p|, axis=-1)` (Keras `mae` / `mean_absolute_error`).
    #[serde(rename = "mae", alias = "mean_absolute_error")]
    MeanAbsoluteError,
    /// `-mean(y log p + (1 - y) log(1 - p), axis=-1)`, `p` clipped.
    #[serde(rename = "binary_crossentropy")]
    BinaryCrossentropy,
    /// `-sum(y log p, axis=-1)`, `p` normalized to sum 1 and clipped.
    #[serde(rename = "categorical_crossentropy")]
    CategoricalCrossentropy,
    /// Categorical crossentropy against integer class ids: the labels are `[batch, 1]` (or
    /// `[batch]`) class indices `0..k` — f32 or i32 — instead of one-hot rows; one-hot rows
    /// are built in-graph by comparing the labels with `0..k`. From the logits when the last
    /// layer is a softmax, like [`Loss::CategoricalCrossentropy`].
    #[serde(rename = "sparse_categorical_crossentropy")]
    SparseCategoricalCrossentropy,
}

impl Loss {
    /// Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Loss::MeanSquaredError => "mse",
            Loss::MeanAbsoluteError => "mae",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::CategoricalCrossentropy => "categorical_crossentropy",
            Loss::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
        }
    }

    /// Whether the labels are class ids (`[batch, 1]`) rather than the prediction's shape.
    pub fn sparse_labels(self) -> bool {
        self == Loss::SparseCategoricalCrossentropy
    }

    /// The per-sample label shape for a model whose per-sample output is `output`: the
    /// output's shape, or for sparse crossentropy the output's with the class axis of size 1.
    pub fn label_shape(self, output: &[usize]) -> Vec<usize> {
        let mut s = output.to_vec();
        if self.sparse_labels() {
            if let Some(last) = s.last_mut() {
                *last = 1;
            }
        }
        s
    }

    /// The batch loss (mean over samples of the per-sample loss) as a scalar. When the model's
    /// last layer is a softmax (categorical crossentropy) or a sigmoid (binary
    /// crossentropy), `logits` carries its pre-activation output and the loss is computed
    /// from it in the numerically stable form Keras uses (`softmax_cross_entropy_with_logits`,
    /// `sigmoid_cross_entropy_with_logits`).
    pub fn batch_mean(
        self,
        g: &mut Graph,
        p: NodeId,
        y: NodeId,
        logits: Option<(NodeId, Activation)>,
    ) -> Result<NodeId> {
        let last = g.shape(p).rank() - 1;
        let batch = g.shape(p).dims().first().copied().unwrap_or(1).max(1);
        Ok(g.scoped(self.name(), |g| -> kiln_ir::Result<NodeId> {
            let (loss, y) = match self {
                Loss::SparseCategoricalCrossentropy => {
                    (Loss::CategoricalCrossentropy, one_hot(g, y, p)?)
                }
                l => (l, y),
            };
            match (loss, logits) {
                (Loss::CategoricalCrossentropy, Some((z, Activation::Softmax))) => {
                    // -sum(y * log_softmax(z)) / batch, summed per sample first (as Keras
                    // does): the class sums ride in the softmax's row reduction and the sum
                    // over samples in the metrics' reduction over the batch
                    let ls = g.log_softmax(z, last)?;
                    let a = g.mul(y, ls)?;
                    let per = g.sum(a, &[last], false)?;
                    let s = g.sum_all(per)?;
                    g.mul_scalar(s, -1.0 / batch as f64)
                }
                (Loss::BinaryCrossentropy, Some((z, Activation::Sigmoid))) => {
                    // max(z, 0) - z y + log(1 + exp(-|z|)), averaged
                    let zero = g.scalar(0.0);
                    let relu = g.maximum(z, zero)?;
                    let zy = g.mul(z, y)?;
                    let a = g.abs(z)?;
                    let na = g.neg(a)?;
                    let e = g.exp(na)?;
                    let l1p = g.add_scalar(e, 1.0)?;
                    let lg = g.log(l1p)?;
                    let d = g.sub(relu, zy)?;
                    let t = g.add(d, lg)?;
                    g.mean_all(t)
                }
                (Loss::CategoricalCrossentropy, _) => {
                    let per = loss.per_sample_inner(g, p, y, last)?;
                    let s = g.sum_all(per)?;
                    g.mul_scalar(s, 1.0 / batch as f64)
                }
                // mean over the last axis, then over the batch = mean over everything
                _ => loss.elementwise_mean(g, p, y),
            }
        })?)
    }

    /// The elementwise term of mse / binary crossentropy, averaged over all elements.
    fn elementwise_mean(self, g: &mut Graph, p: NodeId, y: NodeId) -> kiln_ir::Result<NodeId> {
        let t = match self {
            Loss::MeanSquaredError => {
                let d = g.sub(y, p)?;
                g.square(d)?
            }
            Loss::MeanAbsoluteError => {
                let d = g.sub(y, p)?;
                g.abs(d)?
            }
            _ => {
                let s = binary_log_likelihood(g, p, y)?;
                g.neg(s)?
            }
        };
        g.mean_all(t)
    }

    /// Per-sample categorical crossentropy on probabilities `[batch, k]` -> `[batch, k]`
    /// terms `-y log(p / sum p)` (summed by the caller).
    fn per_sample_inner(
        self,
        g: &mut Graph,
        p: NodeId,
        y: NodeId,
        last: usize,
    ) -> kiln_ir::Result<NodeId> {
        let lp = log_normalized(g, p, last)?;
        let a = g.mul(y, lp)?;
        g.neg(a)
    }

    /// Per-sample loss `[batch]` of predictions `p` against targets `y` (both `[batch, k]`;
    /// `y` is `[batch, 1]` class ids for sparse crossentropy).
    pub fn per_sample(self, g: &mut Graph, p: NodeId, y: NodeId) -> Result<NodeId> {
        let last = g.shape(p).rank() - 1;
        Ok(g.scoped(self.name(), |g| -> kiln_ir::Result<NodeId> {
            let (loss, y) = match self {
                Loss::SparseCategoricalCrossentropy => {
                    (Loss::CategoricalCrossentropy, one_hot(g, y, p)?)
                }
                l => (l, y),
            };
            match loss {
                Loss::MeanSquaredError => mean_error(g, p, y, last, Error::Squared),
                Loss::MeanAbsoluteError => mean_error(g, p, y, last, Error::Absolute),
                Loss::BinaryCrossentropy => {
                    let s = binary_log_likelihood(g, p, y)?;
                    let m = g.mean(s, &[last], false)?;
                    g.neg(m)
                }
                Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy => {
                    let lp = log_normalized(g, p, last)?;
                    let a = g.mul(y, lp)?;
                    let s = g.sum(a, &[last], false)?;
                    g.neg(s)
                }
            }
        })?)
    }
}

/// The elementwise error of [`mean_error`].
#[derive(Copy, Clone)]
pub(super) enum Error {
    /// `(y - p)²`
    Squared,
    /// `|y - p|`
    Absolute,
}

/// The per-sample mean error over axis `last` (mse / mae, as losses and as metrics).
pub(super) fn mean_error(
    g: &mut Graph,
    p: NodeId,
    y: NodeId,
    last: usize,
    error: Error,
) -> kiln_ir::Result<NodeId> {
    let d = g.sub(y, p)?;
    let e = match error {
        Error::Squared => g.square(d)?,
        Error::Absolute => g.abs(d)?,
    };
    g.mean(e, &[last], false)
}

/// The binary crossentropy's elementwise log-likelihood `y log p + (1 - y) log(1 - p)`, with
/// `p` clipped to `[EPSILON, 1 - EPSILON]` (Keras); the losses negate and average it.
fn binary_log_likelihood(g: &mut Graph, p: NodeId, y: NodeId) -> kiln_ir::Result<NodeId> {
    let pc = g.clip(p, EPSILON, 1.0 - EPSILON)?;
    let lp = g.log(pc)?;
    let one = g.scalar(1.0);
    let q = g.sub(one, pc)?;
    let lq = g.log(q)?;
    let omy = g.sub(one, y)?;
    let a = g.mul(y, lp)?;
    let b = g.mul(omy, lq)?;
    g.add(a, b)
}

/// `log(p / sum(p))` over axis `last`, the normalized probabilities clipped to
/// `[EPSILON, 1 - EPSILON]` (Keras's categorical crossentropy on probabilities).
fn log_normalized(g: &mut Graph, p: NodeId, last: usize) -> kiln_ir::Result<NodeId> {
    let tot = g.sum(p, &[last], true)?;
    let pn = g.div(p, tot)?;
    let pc = g.clip(pn, EPSILON, 1.0 - EPSILON)?;
    g.log(pc)
}

/// One-hot rows `[batch, k]` from class ids `y` (`[batch, 1]`) for predictions `p`
/// (`[batch, k]`): `y == [0, 1, …, k-1]`, broadcast (a constant iota, no gather).
pub(super) fn one_hot(g: &mut Graph, y: NodeId, p: NodeId) -> kiln_ir::Result<NodeId> {
    let k = g.shape(p).dims().last().copied().unwrap_or(1);
    let iota = g.constant((0..k).map(|i| i as f64).collect(), [k], kiln_ir::DType::F32)?;
    g.binary(BinaryOp::Eq, y, iota)
}
