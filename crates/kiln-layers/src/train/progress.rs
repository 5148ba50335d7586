//! Keras-style progress output of [`Sequential::fit`](crate::Sequential::fit): the
//! `ProgbarLogger`.
//!
//! ```text
//! Epoch 3/10
//! 1000/1000 [==============================] - 2s 2ms/step - loss: 0.4100 - accuracy: 0.8300
//! ```
//!
//! While an epoch runs on a terminal, the bar is redrawn in place (`\r`) at most every
//! [`ProgressBar::DEFAULT_INTERVAL`], with an ETA and the running averages of the loss and
//! metrics. Those averages live in device accumulators, so each redraw reads them back (and so
//! waits for the device); nothing is read between redraws, and an epoch shorter than the
//! interval reads nothing before its end. When the output is not a terminal (CI logs) only the
//! final line of each epoch is written and nothing is read mid-epoch.

use super::callbacks::{Callback, CallbackContext};
pub use super::options::Verbosity;
use super::Logs;
use crate::Result;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Width of the bar between `[` and `]` (Keras's default).
const BAR_WIDTH: usize = 30;

/// Keras's progress-bar callback (`ProgbarLogger`, counting steps). `fit` adds one
/// automatically (first in the callback order, as Keras does) unless verbosity is silent; it
/// can also be built by hand to write elsewhere.
pub struct ProgressBar {
    verbosity: Verbosity,
    out: Box<dyn Write>,
    dynamic: bool,
    interval: Duration,
    epoch_start: Instant,
    after_first_step: Option<Instant>,
    last_update: Instant,
    prev_width: usize,
}

impl ProgressBar {
    /// Minimum time between two in-place redraws (and two accumulator reads).
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);

    /// A progress bar on stdout, redrawn in place only if stdout is a terminal.
    pub fn new(verbosity: Verbosity) -> Self {
        let dynamic = std::io::stdout().is_terminal();
        Self::to_writer(verbosity, std::io::stdout(), dynamic)
    }

    /// A progress bar writing to `out`; `dynamic` redraws the bar in place during an epoch
    /// (otherwise only the final line of each epoch is written).
    pub fn to_writer(verbosity: Verbosity, out: impl Write + 'static, dynamic: bool) -> Self {
        let now = Instant::now();
        ProgressBar {
            verbosity: verbosity.resolve(true),
            out: Box::new(out),
            dynamic,
            interval: Self::DEFAULT_INTERVAL,
            epoch_start: now,
            after_first_step: None,
            last_update: now,
            prev_width: 0,
        }
    }

    /// Sets the minimum time between two in-place redraws.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Seconds per step, not counting the first step (which includes plan compilation) when
    /// there are others, as Keras estimates it.
    fn per_step(&self, current: usize, now: Instant) -> f64 {
        match self.after_first_step {
            Some(t) if current > 1 => (now - t).as_secs_f64() / (current - 1) as f64,
            _ => (now - self.epoch_start).as_secs_f64() / current.max(1) as f64,
        }
    }

    fn emit(&mut self, s: &str) -> Result<()> {
        // Progress output is best effort: a closed stdout must not abort training.
        let _ = self.out.write_all(s.as_bytes());
        let _ = self.out.flush();
        Ok(())
    }
}

impl Callback for ProgressBar {
    fn on_epoch_begin(&mut self, ctx: &mut CallbackContext<'_>, epoch: usize) -> Result<()> {
        let now = Instant::now();
        self.epoch_start = now;
        self.last_update = now;
        self.after_first_step = None;
        self.prev_width = 0;
        let epochs = ctx.params().epochs;
        if epochs > 1 {
            self.emit(&format!("Epoch {}/{}\n", epoch + 1, epochs))?;
        }
        Ok(())
    }

    fn on_batch_end(&mut self, ctx: &mut CallbackContext<'_>, batch: usize) -> Result<()> {
        let now = Instant::now();
        if batch == 0 {
            self.after_first_step = Some(now);
        }
        let steps = ctx.params().steps;
        let current = batch + 1;
        if !self.dynamic
            || self.verbosity != Verbosity::ProgressBar
            || current >= steps
            || now - self.last_update < self.interval
        {
            return Ok(());
        }
        self.last_update = now;
        let logs = ctx.running_logs()?;
        let eta = self.per_step(current, now) * (steps - current) as f64;
        let line = format!(
            "{} - ETA: {}{}",
            bar(current, steps),
            format_eta(eta),
            format_logs(&logs)
        );
        let width = line.chars().count();
        let pad = " ".repeat(self.prev_width.saturating_sub(width));
        self.prev_width = width;
        self.emit(&format!("\r{line}{pad}"))
    }

    fn on_epoch_end(
        &mut self,
        ctx: &mut CallbackContext<'_>,
        _epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        let now = Instant::now();
        let steps = ctx.params().steps;
        // A stop requested mid-epoch ends the bar where training stopped.
        let current = ctx.steps_run().clamp(1, steps.max(1));
        let elapsed = (now - self.epoch_start).as_secs_f64();
        let per_step = self.per_step(current, now);
        let line = match self.verbosity {
            Verbosity::ProgressBar => format!(
                "{} - {:.0}s {}{}",
                bar(current, steps),
                elapsed,
                format_time(per_step, "step"),
                format_logs(logs)
            ),
            Verbosity::OneLinePerEpoch => format!(
                "{current:>w$}/{steps} - {elapsed:.0}s{} - {} - {}",
                format_logs(logs),
                format_time(elapsed, "epoch"),
                format_time(per_step, "step"),
                w = digits(steps)
            ),
            _ => return Ok(()),
        };
        let pad = " ".repeat(self.prev_width.saturating_sub(line.chars().count()));
        let lead = if self.prev_width > 0 { "\r" } else { "" };
        self.prev_width = 0;
        self.emit(&format!("{lead}{line}{pad}\n"))
    }
}

fn digits(n: usize) -> usize {
    n.max(1).to_string().len()
}

/// `  7/100 [==>...........................]` (Keras's `Progbar`, width 30).
pub(crate) fn bar(current: usize, target: usize) -> String {
    let target = target.max(1);
    let mut s = format!("{current:>w$}/{target} [", w = digits(target));
    let filled = ((BAR_WIDTH as f64) * (current as f64 / target as f64)) as usize;
    let filled = filled.min(BAR_WIDTH);
    if filled > 0 {
        s.push_str(&"=".repeat(filled - 1));
        s.push(if current < target { '>' } else { '=' });
    }
    s.push_str(&".".repeat(BAR_WIDTH - filled));
    s.push(']');
    s
}

/// Keras's ETA: `1:02:03`, `2:03` or `7s`.
pub(crate) fn format_eta(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    if secs > 3600.0 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else if secs > 60.0 {
        format!("{}:{:02}", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Keras's time per unit: `2s/step`, `2ms/step`, `40us/step`.
pub(crate) fn format_time(secs: f64, unit: &str) -> String {
    if secs >= 1.0 || secs == 0.0 {
        format!("{secs:.0}s/{unit}")
    } else if secs >= 1e-3 {
        format!("{:.0}ms/{unit}", secs * 1e3)
    } else {
        format!("{:.0}us/{unit}", secs * 1e6)
    }
}

/// A metric value as Keras prints it: `%.4f` above 1e-3 in magnitude, else `%.4e`.
pub(crate) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else if v.abs() > 1e-3 {
        format!("{v:.4}")
    } else {
        // Rust writes `1.2340e-4`; C's printf (and so Python/Keras) writes `1.2340e-04`.
        let s = format!("{v:.4e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    }
}

/// ` - loss: 0.4100 - accuracy: 0.8300 - val_loss: ...`: training values before validation
/// ones, the loss first.
pub(crate) fn format_logs(logs: &Logs) -> String {
    let mut keys: Vec<&String> = logs.keys().collect();
    keys.sort_by_key(|k| {
        (
            k.starts_with("val_"),
            *k != "loss" && *k != "val_loss",
            (*k).clone(),
        )
    });
    keys.into_iter()
        .map(|k| format!(" - {k}: {}", format_value(logs[k])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_matches_keras_progbar() {
        // Keras: prog_width = int(30 * current / target); '=' * (w - 1) + ('>' or '=')
        assert_eq!(bar(0, 10), format!("{:>2}/10 [{}]", 0, ".".repeat(30)));
        assert_eq!(bar(7, 100), format!("  7/100 [=>{}]", ".".repeat(28)));
        assert_eq!(bar(1000, 1000), format!("1000/1000 [{}]", "=".repeat(30)));
    }

    #[test]
    fn values_and_times_match_keras_formats() {
        assert_eq!(format_value(0.41), "0.4100");
        assert_eq!(format_value(0.000123), "1.2300e-04");
        assert_eq!(format_value(-2.5e-7), "-2.5000e-07");
        assert_eq!(format_value(f64::NAN), "nan");
        assert_eq!(format_eta(7.9), "7s");
        assert_eq!(format_eta(123.0), "2:03");
        assert_eq!(format_eta(3723.0), "1:02:03");
        assert_eq!(format_time(0.002, "step"), "2ms/step");
        assert_eq!(format_time(2.0, "step"), "2s/step");
        assert_eq!(format_time(0.00004, "step"), "40us/step");
        let mut logs = Logs::new();
        for (k, v) in [
            ("val_loss", 0.5),
            ("accuracy", 0.83),
            ("loss", 0.41),
            ("val_accuracy", 0.8),
        ] {
            logs.insert(k.into(), v);
        }
        assert_eq!(
            format_logs(&logs),
            " - loss: 0.4100 - accuracy: 0.8300 - val_loss: 0.5000 - val_accuracy: 0.8000"
        );
    }

    #[test]
    fn verbosity_resolves_like_keras_integers() {
        assert_eq!(Verbosity::from(0), Verbosity::Silent);
        assert_eq!(Verbosity::from(1), Verbosity::ProgressBar);
        assert_eq!(Verbosity::from(2), Verbosity::OneLinePerEpoch);
        assert_eq!(Verbosity::Auto.resolve(true), Verbosity::ProgressBar);
        assert_eq!(Verbosity::OneLinePerEpoch.resolve(false), Verbosity::Silent);
    }
}
