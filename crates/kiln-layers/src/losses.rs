//! Losses and metrics as graph compositions (Keras formulas).

use crate::Activation;
use crate::Result;
use kiln_ir::{BinaryOp, Graph, NodeId};

/// Keras's `epsilon()`: probabilities are clipped to `[EPSILON, 1 - EPSILON]`.
pub const EPSILON: f64 = 1e-7;

/// A training loss; the model minimizes its mean over the batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Loss {
    /// `mean((y - p)², axis=-1)`
    #[serde(rename = "mse")]
    MeanSquaredError,
    /// `-mean(y log p + (1 - y) log(1 - p), axis=-1)`, `p` clipped.
    #[serde(rename = "binary_crossentropy")]
    BinaryCrossentropy,
    /// `-sum(y log p, axis=-1)`, `p` normalized to sum 1 and clipped.
    #[serde(rename = "categorical_crossentropy")]
    CategoricalCrossentropy,
}

impl Loss {
    /// Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Loss::MeanSquaredError => "mse",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::CategoricalCrossentropy => "categorical_crossentropy",
        }
    }

    /// The batch loss (mean over samples of the per-sample loss) as a scalar. When the model's
    /// last layer is a softmax (categorical crossentropy) or a sigmoid (binary
    /// crossentropy), `logits` carries its pre-activation output and the loss is computed
    /// from it in the numerically stable form Keras uses (`softmax_cross_entropy_with_logits`,
    /// `sigmoid_cross_entropy_with_logits`). Each form is one reduction over the whole batch.
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
            match (self, logits) {
                (Loss::CategoricalCrossentropy, Some((z, Activation::Softmax))) => {
                    // -sum(y * log_softmax(z)) / batch
                    let ls = g.log_softmax(z, last)?;
                    let a = g.mul(y, ls)?;
                    let s = g.sum_all(a)?;
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
                    let per = self.per_sample_inner(g, p, y, last)?;
                    let s = g.sum_all(per)?;
                    g.mul_scalar(s, 1.0 / batch as f64)
                }
                // mean over the last axis, then over the batch = mean over everything
                _ => self.elementwise_mean(g, p, y),
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
            _ => {
                let pc = g.clip(p, EPSILON, 1.0 - EPSILON)?;
                let lp = g.log(pc)?;
                let one = g.scalar(1.0);
                let q = g.sub(one, pc)?;
                let lq = g.log(q)?;
                let omy = g.sub(one, y)?;
                let a = g.mul(y, lp)?;
                let b = g.mul(omy, lq)?;
                let s = g.add(a, b)?;
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
        let tot = g.sum(p, &[last], true)?;
        let pn = g.div(p, tot)?;
        let pc = g.clip(pn, EPSILON, 1.0 - EPSILON)?;
        let lp = g.log(pc)?;
        let a = g.mul(y, lp)?;
        g.neg(a)
    }

    /// Per-sample loss `[batch]` of predictions `p` against targets `y` (both `[batch, k]`).
    pub fn per_sample(self, g: &mut Graph, p: NodeId, y: NodeId) -> Result<NodeId> {
        let last = g.shape(p).rank() - 1;
        Ok(g.scoped(self.name(), |g| -> kiln_ir::Result<NodeId> {
            match self {
                Loss::MeanSquaredError => {
                    let d = g.sub(y, p)?;
                    let d2 = g.square(d)?;
                    g.mean(d2, &[last], false)
                }
                Loss::BinaryCrossentropy => {
                    let pc = g.clip(p, EPSILON, 1.0 - EPSILON)?;
                    let lp = g.log(pc)?;
                    let one = g.scalar(1.0);
                    let q = g.sub(one, pc)?;
                    let lq = g.log(q)?;
                    let omy = g.sub(one, y)?;
                    let a = g.mul(y, lp)?;
                    let b = g.mul(omy, lq)?;
                    let s = g.add(a, b)?;
                    let m = g.mean(s, &[last], false)?;
                    g.neg(m)
                }
                Loss::CategoricalCrossentropy => {
                    let tot = g.sum(p, &[last], true)?;
                    let pn = g.div(p, tot)?;
                    let pc = g.clip(pn, EPSILON, 1.0 - EPSILON)?;
                    let lp = g.log(pc)?;
                    let a = g.mul(y, lp)?;
                    let s = g.sum(a, &[last], false)?;
                    g.neg(s)
                }
            }
        })?)
    }
}

/// A metric reported during training and evaluation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Keras `accuracy`: binary accuracy for binary crossentropy or one output, else
    /// categorical accuracy.
    Accuracy,
    /// `mean(round(p) == y)` per sample (threshold 0.5).
    BinaryAccuracy,
    /// `argmax(p) == argmax(y)`.
    CategoricalAccuracy,
}

impl Metric {
    /// Name shown in logs (`accuracy` for the generic one, as Keras does).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::BinaryAccuracy => "binary_accuracy",
            Metric::CategoricalAccuracy => "categorical_accuracy",
        }
    }

    /// The concrete metric Keras would pick for `accuracy` given the loss and output width.
    pub fn resolve(self, loss: Loss, outputs: usize) -> Metric {
        match self {
            Metric::Accuracy if loss == Loss::BinaryCrossentropy || outputs == 1 => {
                Metric::BinaryAccuracy
            }
            Metric::Accuracy => Metric::CategoricalAccuracy,
            m => m,
        }
    }

    /// The metric summed over the batch (a scalar; the model divides by the sample count).
    /// `logits` as in [`Loss::batch_mean`]: argmax of a softmax is the argmax of its logits.
    pub fn batch_sum(
        self,
        g: &mut Graph,
        p: NodeId,
        y: NodeId,
        logits: Option<(NodeId, Activation)>,
    ) -> Result<NodeId> {
        let last = g.shape(p).rank() - 1;
        let k = g.shape(p).dims()[last].max(1);
        match self {
            Metric::BinaryAccuracy | Metric::Accuracy => {
                Ok(g.scoped(self.name(), |g| -> kiln_ir::Result<NodeId> {
                    let half = g.scalar(0.5);
                    let pred = g.binary(BinaryOp::Gt, p, half)?;
                    let hit = g.binary(BinaryOp::Eq, pred, y)?;
                    let s = g.sum_all(hit)?;
                    g.mul_scalar(s, 1.0 / k as f64)
                })?)
            }
            Metric::CategoricalAccuracy => {
                let src = match logits {
                    Some((z, Activation::Softmax)) => z,
                    _ => p,
                };
                let v = self.per_sample(g, src, y)?;
                Ok(g.sum_all(v)?)
            }
        }
    }

    /// Per-sample metric value `[batch]` (already resolved).
    pub fn per_sample(self, g: &mut Graph, p: NodeId, y: NodeId) -> Result<NodeId> {
        let last = g.shape(p).rank() - 1;
        Ok(g.scoped(self.name(), |g| -> kiln_ir::Result<NodeId> {
            match self {
                Metric::BinaryAccuracy | Metric::Accuracy => {
                    let half = g.scalar(0.5);
                    let pred = g.binary(BinaryOp::Gt, p, half)?;
                    let hit = g.binary(BinaryOp::Eq, pred, y)?;
                    g.mean(hit, &[last], false)
                }
                Metric::CategoricalAccuracy => {
                    let m = g.max(p, &[last], true)?;
                    let is_max = g.binary(BinaryOp::Eq, p, m)?;
                    let ymax = g.max(y, &[last], true)?;
                    let is_true = g.binary(BinaryOp::Eq, y, ymax)?;
                    let both = g.mul(is_max, is_true)?;
                    let any = g.max(both, &[last], false)?;
                    Ok(any)
                }
            }
        })?)
    }
}
