//! Keras `CSVLogger`.

use super::{io_error, Callback, CallbackContext};
use crate::train::Logs;
use crate::Result;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

/// Writes the epoch logs to a CSV file (Keras `CSVLogger`): an `epoch` column (0-based),
/// then the log keys sorted, fixed at the first epoch; `NA` for a missing value. Values are
/// written as Python writes floats (`0.5`, `1.0`, `1e-05`, `nan`), lines end with `\n`
/// (Python's csv module writes `\r\n`). The file is truncated at the start of training, or
/// appended to with `append` (the header only if the file is empty); every row is one
/// `write` of a whole line, flushed, so a crash leaves complete lines.
pub struct CsvLogger {
    path: PathBuf,
    separator: char,
    append: bool,
    file: Option<File>,
    keys: Option<Vec<String>>,
    header: bool,
}

impl CsvLogger {
    /// Logs to `path`; `append` keeps what the file holds.
    pub fn new(path: impl Into<PathBuf>, append: bool) -> Self {
        CsvLogger {
            path: path.into(),
            separator: ',',
            append,
            file: None,
            keys: None,
            header: true,
        }
    }
    /// Field separator (default `,`).
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }
}

impl Callback for CsvLogger {
    fn on_train_begin(&mut self, ctx: &mut CallbackContext<'_>) -> Result<()> {
        if !ctx.is_chief() {
            // data-parallel: rank 0 writes the log (with the logs of the whole group)
            self.file = None;
            return Ok(());
        }
        let err = |e| io_error("CsvLogger", &self.path, e);
        let file = if self.append {
            self.header = match File::open(&self.path) {
                Ok(f) => {
                    let mut first = String::new();
                    BufReader::new(f).read_line(&mut first).map_err(err)?;
                    first.is_empty()
                }
                Err(_) => true,
            };
            OpenOptions::new()
                .append(true)
                .create(true)
                .open(&self.path)
                .map_err(err)?
        } else {
            self.header = true;
            File::create(&self.path).map_err(err)?
        };
        self.file = Some(file);
        self.keys = None;
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        _ctx: &mut CallbackContext<'_>,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        let keys = self
            .keys
            .get_or_insert_with(|| logs.keys().cloned().collect());
        let sep = self.separator.to_string();
        let mut text = String::new();
        if self.header {
            let mut cols = vec!["epoch".to_string()];
            cols.extend(keys.iter().cloned());
            text.push_str(&cols.join(&sep));
            text.push('\n');
            self.header = false;
        }
        let mut row = vec![epoch.to_string()];
        row.extend(keys.iter().map(|k| match logs.get(k) {
            Some(&v) => python_float(v),
            None => "NA".into(),
        }));
        text.push_str(&row.join(&sep));
        text.push('\n');
        if let Some(f) = &mut self.file {
            f.write_all(text.as_bytes())
                .and_then(|_| f.flush())
                .map_err(|e| io_error("CsvLogger", &self.path, e))?;
        }
        Ok(())
    }

    fn on_train_end(&mut self, _ctx: &mut CallbackContext<'_>, _logs: &Logs) -> Result<()> {
        self.file = None;
        Ok(())
    }
}

/// `repr(float)` of Python: shortest round-trip digits, scientific below 1e-4 and from 1e16.
pub fn python_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: `-1.2345e-5`.
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let body = if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else if exp + 1 >= n {
            format!("{digits}{}.0", "0".repeat((exp + 1 - n) as usize))
        } else {
            let (a, b) = digits.split_at((exp + 1) as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{esign}{:02}", exp.abs())
    }
}
