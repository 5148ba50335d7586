//! `KILN_CHECK_NUMERICS=1` (like `tf.debugging.enable_check_numerics`): `fit` checks every
//! step — its loss and every variable after it — and on the first non-finite value replays
//! that step from a snapshot of the variables on the reference interpreter
//! ([`kiln_opt::interp::CpuBackend`]), one plan prefix at a time, to name the first kernel
//! that produced a NaN or an infinity. Slow (a read of every variable per step); for
//! debugging only.

use super::Sequential;
use crate::{LayerError, Result};
use kiln_opt::interp::CpuBackend;
use kiln_opt::{Backend, BufferKind, HostData, HostTensor, Plan, Slot, Step};
use std::sync::Arc;

/// The environment variable that turns the check on (`1`) or off (`0`, unset).
pub const CHECK_NUMERICS_ENV: &str = "KILN_CHECK_NUMERICS";

/// Whether `KILN_CHECK_NUMERICS` asks for the check: `1` on, `0` or unset off, anything else
/// an error naming the variable and the accepted values.
pub(crate) fn check_numerics_from_env() -> Result<bool> {
    match std::env::var(CHECK_NUMERICS_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(false),
        Ok(v) if v == "0" => Ok(false),
        Ok(v) if v == "1" => Ok(true),
        Ok(v) => Err(bad_env(&v)),
        Err(std::env::VarError::NotUnicode(v)) => Err(bad_env(&v.to_string_lossy())),
    }
}

fn bad_env(value: &str) -> LayerError {
    LayerError::argument(
        "environment",
        CHECK_NUMERICS_ENV,
        format!("{value:?}"),
        "accepted values are 0 (off, the default) and 1 (check every training step)",
    )
}

fn any_nonfinite(t: &HostTensor) -> bool {
    match &t.data {
        HostData::F32(v) => v.iter().any(|x| !x.is_finite()),
        HostData::I32(_) => false,
    }
}

impl Sequential {
    /// Turns the per-step numerics check of `fit` on or off, overriding
    /// `KILN_CHECK_NUMERICS` (see [`crate::train::numerics`]).
    pub fn set_check_numerics(&mut self, on: bool) {
        self.check_numerics = Some(on);
    }

    /// Whether `fit` checks every step (the setting, else `KILN_CHECK_NUMERICS`).
    pub(crate) fn check_numerics_on(&self) -> Result<bool> {
        match self.check_numerics {
            Some(on) => Ok(on),
            None => check_numerics_from_env(),
        }
    }

    /// One training step on `(xb, yb)` with the check: snapshot, run, check; on a non-finite
    /// value, the [`LayerError::NonFinite`] naming `epoch`, `step`, the first kernel that
    /// produced it (replayed on the interpreter) and the first non-finite variable.
    pub(crate) fn checked_step(
        &mut self,
        epoch: usize,
        step: usize,
        xb: &HostTensor,
        yb: &HostTensor,
    ) -> Result<()> {
        let batch = xb.shape.dims().first().copied().unwrap_or(0);
        let snap = self.snapshot(batch)?;
        self.plan(crate::Mode::Train, batch)?.run(&[xb, yb])?;
        if !self.step_went_nonfinite(&snap)? {
            return Ok(());
        }
        let sum = |t: &HostTensor| t.to_f64().first().copied().unwrap_or(f64::NAN);
        let before = snap
            .iter()
            .find(|(n, _)| n == crate::vars::metrics::LOSS_SUM)
            .map_or(0.0, |(_, t)| sum(t));
        let after = sum(&self.device.read_param(crate::vars::metrics::LOSS_SUM)?);
        let plan = self.plan(crate::Mode::Train, batch)?.plan().clone();
        let kernel = first_nonfinite_kernel(&plan, &snap, &[xb, yb])?;
        let variable = self.first_nonfinite_variable()?;
        Err(LayerError::NonFinite(crate::NonFinite {
            epoch,
            step: Some(step),
            loss: (after - before) / batch.max(1) as f64,
            variable,
            kernel,
        }))
    }

    /// The variables the training plan at `batch` reads (the snapshot a replay starts from).
    pub(crate) fn snapshot(&mut self, batch: usize) -> Result<Vec<(String, HostTensor)>> {
        let names: Vec<String> = self
            .plan(crate::Mode::Train, batch)?
            .plan()
            .params
            .iter()
            .map(|s| s.name.clone())
            .collect();
        names
            .into_iter()
            .map(|n| Ok((n.clone(), self.device.read_param(&n)?)))
            .collect()
    }

    /// Whether the last step left a non-finite loss or variable: the in-plan flag, then
    /// every variable of `snapshot`'s names.
    pub(crate) fn step_went_nonfinite(&mut self, names: &[(String, HostTensor)]) -> Result<bool> {
        if self.first_nonfinite_step()?.is_some() {
            return Ok(true);
        }
        for (n, _) in names {
            if any_nonfinite(&self.device.read_param(n)?) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Replays one run of `plan` from the variables `params` with `inputs` on the reference
/// interpreter, one prefix of the schedule at a time, and returns the label of the first
/// kernel whose run made a value of a buffer it writes NaN or infinite (a value that was
/// finite, or different, before). `None` when the interpreter's run stays finite.
pub fn first_nonfinite_kernel(
    plan: &Plan,
    params: &[(String, HostTensor)],
    inputs: &[&HostTensor],
) -> Result<Option<String>> {
    // every non-constant buffer becomes an output, so each prefix run shows them all
    let probed: Vec<usize> = (0..plan.buffers.len())
        .filter(|&b| !matches!(plan.buffers[b].kind, BufferKind::Constant { .. }))
        .collect();
    let mut probe = plan.clone();
    probe.outputs = probed
        .iter()
        .map(|&b| Slot {
            name: format!("check_numerics/buffer_{b}"),
            buffer: kiln_opt::BufferId(b as u32),
            shape: vec![plan.buffers[b].len].into(),
            dtype: plan.buffers[b].dtype,
            indices: None,
        })
        .collect();
    let run = |steps: usize| -> Result<Vec<HostTensor>> {
        let mut p = probe.clone();
        p.steps.truncate(steps);
        let mut cpu = CpuBackend::new();
        for (n, t) in params {
            cpu.write_param(n, t)?;
        }
        let mut exe = cpu.load(Arc::new(p))?;
        Ok(exe.run(inputs)?)
    };
    let mut before = run(0)?;
    for (i, step) in plan.steps.iter().enumerate() {
        let after = run(i + 1)?;
        if let Step::Dispatch {
            kernel, buffers, ..
        } = step
        {
            let k = plan
                .kernels
                .get(*kernel as usize)
                .ok_or_else(|| LayerError::Usage(format!("step {i}: no kernel {kernel}")))?;
            for (arg, b) in k.args.iter().zip(buffers) {
                let Some(j) = probed.iter().position(|&p| p == b.0 as usize) else {
                    continue;
                };
                if arg.access.writes() && newly_nonfinite(&before[j], &after[j]) {
                    return Ok(Some(k.label.clone()));
                }
            }
        }
        before = after;
    }
    Ok(None)
}

/// Whether `after` holds a NaN or infinity where `before` held another value.
fn newly_nonfinite(before: &HostTensor, after: &HostTensor) -> bool {
    match (&before.data, &after.data) {
        (HostData::F32(b), HostData::F32(a)) => b
            .iter()
            .zip(a)
            .any(|(b, a)| !a.is_finite() && a.to_bits() != b.to_bits()),
        _ => false,
    }
}
