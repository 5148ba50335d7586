//! Keras `ModelCheckpoint`.

use super::monitor::AutoRule;
use super::{python_float, Callback, CallbackContext, Monitor, MonitorMode};
use crate::train::{Logs, Sequential};
use crate::{LayerError, Result};
use std::path::{Path, PathBuf};

type Saver<'a> = Box<dyn FnMut(&mut Sequential, &Path) -> Result<()> + 'a>;

/// Saves the model after every epoch, or only when the monitored value improves (Keras
/// `ModelCheckpoint`), with [`Sequential::save`] or a saving hook. `filepath` may hold
/// Keras's placeholders: `{epoch}` (1-based, with an optional integer spec such as
/// `{epoch:02d}`) and any log key (`{val_loss:.2f}`).
pub struct ModelCheckpoint<'a> {
    filepath: String,
    monitor: Monitor,
    save_best_only: bool,
    verbose: bool,
    saver: Saver<'a>,
    saved: Vec<PathBuf>,
}

impl ModelCheckpoint<'static> {
    /// Checkpoints the whole model ([`Sequential::save`]) to `filepath` (monitor `val_loss`,
    /// every epoch).
    pub fn new(filepath: &str) -> Self {
        ModelCheckpoint::with_saver(filepath, |model, path| model.save(path))
    }
}

impl<'a> ModelCheckpoint<'a> {
    /// Checkpoints through `saver(model, path)` instead of [`Sequential::save`] (e.g. to keep
    /// weights in memory, or another format).
    pub fn with_saver(
        filepath: &str,
        saver: impl FnMut(&mut Sequential, &Path) -> Result<()> + 'a,
    ) -> Self {
        ModelCheckpoint {
            filepath: filepath.into(),
            monitor: Monitor::new("val_loss", AutoRule::ContainsAccOrFmeasure),
            save_best_only: false,
            verbose: false,
            saver: Box::new(saver),
            saved: vec![],
        }
    }
    /// The monitored value (default `val_loss`).
    pub fn monitor(mut self, monitor: &str) -> Self {
        self.monitor.key = monitor.into();
        self
    }
    /// Save only when the monitored value improves (default false).
    pub fn save_best_only(mut self, only: bool) -> Self {
        self.save_best_only = only;
        self
    }
    /// Direction of improvement (default auto: increase if the name contains `acc`).
    pub fn mode(mut self, mode: MonitorMode) -> Self {
        self.monitor.mode = mode;
        self
    }
    /// Print a line per save (default false).
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }
    /// The paths saved to, in order.
    pub fn saved(&self) -> &[PathBuf] {
        &self.saved
    }
}

/// Fills `{epoch}`, `{epoch:02d}`, `{key}`, `{key:.2f}` in a checkpoint path.
pub(crate) fn format_path(template: &str, epoch: usize, logs: &Logs) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map(|c| open + c).ok_or_else(|| {
            LayerError::Usage(format!("ModelCheckpoint: unclosed `{{` in `{template}`"))
        })?;
        let field = &rest[open + 1..close];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        let bad = || {
            LayerError::Usage(format!(
                "ModelCheckpoint: cannot format `{{{field}}}` in `{template}` (logs: {})",
                logs.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        };
        if name == "epoch" {
            let width: usize = match spec.strip_suffix('d').unwrap_or(spec) {
                "" => 0,
                w => w.trim_start_matches('0').parse().unwrap_or(0),
            };
            out.push_str(&format!("{:0width$}", epoch + 1));
        } else {
            let v = *logs.get(name).ok_or_else(bad)?;
            let prec = spec.strip_prefix('.').and_then(|s| s.strip_suffix('f'));
            match (spec, prec) {
                ("", _) => out.push_str(&python_float(v)),
                (_, Some(p)) => {
                    out.push_str(&format!("{v:.p$}", p = p.parse().map_err(|_| bad())?))
                }
                _ => return Err(bad()),
            }
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Callback for ModelCheckpoint<'_> {
    fn on_epoch_end(
        &mut self,
        ctx: &mut CallbackContext<'_>,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        if !ctx.is_chief() {
            // data-parallel: rank 0 writes the checkpoints (every replica holds the same
            // weights)
            return Ok(());
        }
        let path = PathBuf::from(format_path(&self.filepath, epoch, logs)?);
        if self.save_best_only {
            let Some(&current) = logs.get(&self.monitor.key) else {
                eprintln!(
                    "warning: can save best model only with `{}` available, skipping",
                    self.monitor.key
                );
                return Ok(());
            };
            let had_best = self.monitor.has_best();
            if !self.monitor.is_better(current) {
                if self.verbose {
                    println!(
                        "\nEpoch {}: {} did not improve from {}",
                        epoch + 1,
                        self.monitor.key,
                        if had_best {
                            format_five(self.monitor.best())
                        } else {
                            String::new()
                        }
                    );
                }
                return Ok(());
            }
            if self.verbose {
                // before any save the best is ∓∞, printed `-inf` / `inf` as Keras does
                println!(
                    "\nEpoch {}: {} improved from {} to {}, saving model to {}",
                    epoch + 1,
                    self.monitor.key,
                    format_five(self.monitor.best()),
                    format_five(current),
                    path.display()
                );
            }
            self.monitor.set_best(current);
        } else if self.verbose {
            println!("\nEpoch {}: saving model to {}", epoch + 1, path.display());
        }
        (self.saver)(ctx.model(), &path)?;
        self.saved.push(path);
        Ok(())
    }
}

fn format_five(v: f64) -> String {
    format!("{v:.5}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr() {
        // Values of Python's repr(float).
        for (v, want) in [
            (0.5, "0.5"),
            (1.0, "1.0"),
            (100.0, "100.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e16, "1.5e+16"),
            (123.456, "123.456"),
            (-0.25, "-0.25"),
            (0.30000001192092896, "0.30000001192092896"),
        ] {
            assert_eq!(python_float(v), want, "{v}");
        }
    }

    #[test]
    fn checkpoint_paths_format_like_keras() {
        let mut logs = Logs::new();
        logs.insert("val_loss".into(), 0.12345);
        assert_eq!(
            format_path("w.{epoch:02d}-{val_loss:.2f}.kiln", 4, &logs).unwrap(),
            "w.05-0.12.kiln"
        );
        assert_eq!(format_path("m{epoch}", 0, &logs).unwrap(), "m1");
        assert!(format_path("m{nope}", 0, &logs).is_err());
    }
}
