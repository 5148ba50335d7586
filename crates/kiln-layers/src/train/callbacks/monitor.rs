//! [`Monitor`]: "did the monitored value improve?", shared by the callbacks that watch a
//! metric ([`EarlyStopping`](super::EarlyStopping),
//! [`ReduceLrOnPlateau`](super::ReduceLrOnPlateau), [`ModelCheckpoint`](super::ModelCheckpoint)).

use crate::train::Logs;

/// Whether a monitored quantity should decrease or increase (Keras `mode`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum MonitorMode {
    /// Increase for names containing `acc` (EarlyStopping: ending in `acc`, `accuracy`,
    /// `auc`), else decrease — as each Keras callback decides.
    #[default]
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

/// How [`MonitorMode::Auto`] picks the direction from the monitored name; each Keras
/// callback has its own rule, kept here side by side.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum AutoRule {
    /// EarlyStopping: higher is better for names ending in `acc`, `accuracy` or `auc`.
    AccuracySuffix,
    /// ReduceLROnPlateau: higher is better for names containing `acc`.
    ContainsAcc,
    /// ModelCheckpoint: names containing `acc` or starting with `fmeasure`.
    ContainsAccOrFmeasure,
}

/// A monitored log value with its best so far: the direction ([`MonitorMode`]), the minimum
/// change that counts (`min_delta`), and a warning printed once when the value is missing.
#[derive(Clone, Debug)]
pub(crate) struct Monitor {
    /// The log key (`val_loss`).
    pub(crate) key: String,
    /// Direction of improvement.
    pub(crate) mode: MonitorMode,
    /// Minimum change counted as an improvement (non-negative).
    pub(crate) min_delta: f64,
    auto: AutoRule,
    /// The best value so far (`None`: none yet).
    best: Option<f64>,
    warned: bool,
}

impl Monitor {
    /// Monitors `key` in auto mode with no minimum delta.
    pub(crate) fn new(key: &str, auto: AutoRule) -> Self {
        Monitor {
            key: key.into(),
            mode: MonitorMode::Auto,
            min_delta: 0.0,
            auto,
            best: None,
            warned: false,
        }
    }

    /// With `min_delta` as the minimum change counted as an improvement.
    pub(crate) fn min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = min_delta;
        self
    }

    /// Whether higher values are better.
    pub(crate) fn higher_is_better(&self) -> bool {
        let k = &self.key;
        match (self.mode, self.auto) {
            (MonitorMode::Min, _) => false,
            (MonitorMode::Max, _) => true,
            (MonitorMode::Auto, AutoRule::AccuracySuffix) => {
                k.ends_with("acc") || k.ends_with("accuracy") || k.ends_with("auc")
            }
            (MonitorMode::Auto, AutoRule::ContainsAcc) => k.contains("acc"),
            (MonitorMode::Auto, AutoRule::ContainsAccOrFmeasure) => {
                k.contains("acc") || k.starts_with("fmeasure")
            }
        }
    }

    /// Whether `value` beats `reference` by more than `min_delta` (Keras:
    /// `current - min_delta > reference` in max mode, `current + min_delta < reference` in
    /// min mode).
    pub(crate) fn improves(&self, value: f64, reference: f64) -> bool {
        if self.higher_is_better() {
            value - self.min_delta > reference
        } else {
            value + self.min_delta < reference
        }
    }

    /// The best value so far, or the worst possible one (`∓∞`) before any.
    pub(crate) fn best(&self) -> f64 {
        self.best.unwrap_or(if self.higher_is_better() {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        })
    }

    /// Whether a best value was recorded.
    pub(crate) fn has_best(&self) -> bool {
        self.best.is_some()
    }

    /// Records `value` as the best.
    pub(crate) fn set_best(&mut self, value: f64) {
        self.best = Some(value);
    }

    /// Forgets the best value (a new fit).
    pub(crate) fn reset(&mut self) {
        self.best = None;
    }

    /// Whether `value` improves on the best so far.
    pub(crate) fn is_better(&self, value: f64) -> bool {
        self.improves(value, self.best())
    }

    /// The monitored value in `logs`; `None` (with a warning the first time, naming `who`)
    /// when the logs lack it.
    pub(crate) fn value(&mut self, who: &str, logs: &Logs) -> Option<f64> {
        let v = logs.get(&self.key).copied();
        if v.is_none() && !self.warned {
            eprintln!(
                "warning: {who} conditioned on metric `{}` which is not available. Available \
                 metrics are: {}",
                self.key,
                logs.keys().cloned().collect::<Vec<_>>().join(",")
            );
            self.warned = true;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_direction_follows_each_keras_callback() {
        let m = |key: &str, auto| Monitor::new(key, auto).higher_is_better();
        assert!(m("val_accuracy", AutoRule::AccuracySuffix));
        assert!(!m("val_acc_loss", AutoRule::AccuracySuffix));
        assert!(m("val_acc_loss", AutoRule::ContainsAcc));
        assert!(m("fmeasure", AutoRule::ContainsAccOrFmeasure));
        assert!(!m("val_loss", AutoRule::ContainsAcc));
    }

    #[test]
    fn improvement_needs_more_than_min_delta() {
        let mut m = Monitor::new("val_loss", AutoRule::ContainsAcc);
        m.min_delta = 0.5;
        assert!(m.is_better(1.0), "anything finite beats +inf");
        m.set_best(1.0);
        assert!(!m.is_better(0.75));
        assert!(m.is_better(0.25));
        m.mode = MonitorMode::Max;
        m.reset();
        assert_eq!(m.best(), f64::NEG_INFINITY);
    }
}
