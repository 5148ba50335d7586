//! Metrics ([`Metric`]): accuracy variants, mse, mae — accumulated on the device.

use super::losses::{mean_error, one_hot, Error};
use super::{Activation, Loss};
use crate::Result;
use kiln_ir::{BinaryOp, Graph, NodeId};

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
    /// `argmax(p) == y` for class-id labels `[batch, 1]` (with
    /// [`Loss::SparseCategoricalCrossentropy`]).
    SparseCategoricalAccuracy,
    /// `mean((y - p)², axis=-1)` (Keras `mse` / `mean_squared_error`).
    #[serde(rename = "mse", alias = "mean_squared_error")]
    MeanSquaredError,
    /// `mean(|y - p|, axis=-1)` (Keras `mae` / `mean_absolute_error`).
    #[serde(rename = "mae", alias = "mean_absolute_error")]
    MeanAbsoluteError,
}

impl Metric {
    /// Name shown in logs (`accuracy` for the generic one, as Keras does).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::BinaryAccuracy => "binary_accuracy",
            Metric::CategoricalAccuracy => "categorical_accuracy",
            Metric::SparseCategoricalAccuracy => "sparse_categorical_accuracy",
            Metric::MeanSquaredError => "mse",
            Metric::MeanAbsoluteError => "mae",
        }
    }

    /// Whether the (resolved) metric reads class-id labels `[batch, 1]`.
    pub fn sparse_labels(self) -> bool {
        self == Metric::SparseCategoricalAccuracy
    }

    /// The concrete metric Keras would pick for `accuracy` given the loss and output width:
    /// binary accuracy for binary crossentropy or one output, sparse categorical accuracy
    /// for sparse crossentropy, else categorical accuracy.
    pub fn resolve(self, loss: Loss, outputs: usize) -> Metric {
        match self {
            Metric::Accuracy if loss == Loss::BinaryCrossentropy || outputs == 1 => {
                Metric::BinaryAccuracy
            }
            Metric::Accuracy if loss == Loss::SparseCategoricalCrossentropy => {
                Metric::SparseCategoricalAccuracy
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
            Metric::CategoricalAccuracy | Metric::SparseCategoricalAccuracy => {
                let src = match logits {
                    Some((z, Activation::Softmax)) => z,
                    _ => p,
                };
                let v = self.per_sample(g, src, y)?;
                Ok(g.sum_all(v)?)
            }
            Metric::MeanSquaredError | Metric::MeanAbsoluteError => {
                // sum over the batch of the per-sample mean over the last axis
                Ok(g.scoped(self.name(), |g| -> kiln_ir::Result<NodeId> {
                    let d = g.sub(y, p)?;
                    let t = if self == Metric::MeanSquaredError {
                        g.square(d)?
                    } else {
                        g.abs(d)?
                    };
                    let s = g.sum_all(t)?;
                    g.mul_scalar(s, 1.0 / k as f64)
                })?)
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
                Metric::SparseCategoricalAccuracy => {
                    let m = g.max(p, &[last], true)?;
                    let is_max = g.binary(BinaryOp::Eq, p, m)?;
                    let is_true = one_hot(g, y, p)?;
                    let both = g.mul(is_max, is_true)?;
                    g.max(both, &[last], false)
                }
                Metric::MeanSquaredError => mean_error(g, p, y, last, Error::Squared),
                Metric::MeanAbsoluteError => mean_error(g, p, y, last, Error::Absolute),
            }
        })?)
    }
}
