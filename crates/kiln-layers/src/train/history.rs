//! What `fit` returns and callbacks see: [`Logs`] and [`History`].

use std::collections::BTreeMap;

/// Metric values by name (`loss`, `accuracy`, `val_loss`...).
pub type Logs = BTreeMap<String, f64>;

/// Per-epoch logs returned by [`Sequential::fit`](crate::Sequential::fit) (Keras `History.history`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Values per metric name, one per epoch.
    pub history: BTreeMap<String, Vec<f64>>,
}

impl History {
    /// The last epoch's value of `name`.
    pub fn last(&self, name: &str) -> Option<f64> {
        self.history.get(name).and_then(|v| v.last().copied())
    }
}
