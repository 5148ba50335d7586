//! The host's view of the device state: weights, the learning rate (with a host copy),
//! other variables, the optimizer state and the loss/metric accumulators. Every name comes
//! from [`crate::vars`].

use super::{Logs, Sequential};
use crate::{vars, LayerError, Result};
use kiln_opt::HostTensor;

fn scalar(t: &HostTensor) -> f64 {
    t.to_f64().first().copied().unwrap_or(f64::NAN)
}

impl Sequential {
    /// Puts the optimizer state on the device (slots, step counter, Nadam's schedule) back to
    /// its initial values, as a new Keras optimizer starts: kiln otherwise keeps it across
    /// `compile` calls on the same device. Hyper-parameters (the learning rate...) keep their
    /// values.
    pub fn reset_optimizer_state(&mut self) -> Result<()> {
        let keep: Vec<String> = self
            .compiled
            .as_ref()
            .map(|c| {
                c.optimizer
                    .hyper_params()
                    .into_iter()
                    .map(|h| h.0)
                    .collect()
            })
            .unwrap_or_default();
        for name in self.device.param_names() {
            // every state variable starts at zero (non-zero starts are stored offset)
            if vars::optimizer::is_optimizer(&name) && !keep.contains(&name) {
                let t = self.device.read_param(&name)?;
                let zero = HostTensor::zeros(t.shape.clone(), t.dtype());
                self.device.write_param(&name, &zero)?;
            }
        }
        Ok(())
    }

    /// Zeroes the loss and metric accumulators on the device.
    pub(super) fn reset_accumulators(&mut self) -> Result<()> {
        let nm = self.compiled.as_ref().map(|c| c.metrics.len()).unwrap_or(0);
        let zero = HostTensor::f32([], vec![0.0])?;
        self.device.write_param(vars::metrics::LOSS_SUM, &zero)?;
        self.device.write_param(vars::metrics::STEPS, &zero)?;
        self.device
            .write_param(vars::metrics::FIRST_NONFINITE, &zero)?;
        for i in 0..nm {
            self.device.write_param(&vars::metrics::sum(i), &zero)?;
        }
        Ok(())
    }

    /// Reads the accumulators (waits for the device) as means over `n` samples.
    pub(super) fn read_accumulators(&mut self, n: usize) -> Result<Logs> {
        let n = n.max(1) as f64;
        let mut logs = Logs::new();
        logs.insert(
            "loss".into(),
            scalar(&self.device.read_param(vars::metrics::LOSS_SUM)?) / n,
        );
        let names: Vec<&'static str> = self
            .compiled
            .as_ref()
            .map(|c| c.metrics.iter().map(|m| m.0).collect())
            .unwrap_or_default();
        for (i, name) in names.into_iter().enumerate() {
            let v = scalar(&self.device.read_param(&vars::metrics::sum(i))?);
            logs.insert(name.into(), v / n);
        }
        Ok(logs)
    }

    /// The accumulators as means over `n` samples of the whole group: in data-parallel
    /// training the sums of every rank are added first (collective: every rank calls it).
    pub(super) fn read_epoch_logs(&mut self, n: usize) -> Result<Logs> {
        if self.collective.is_none() {
            return self.read_accumulators(n);
        }
        let local = self.read_accumulators(1)?;
        let keys: Vec<String> = local.keys().cloned().collect();
        let mut sums: Vec<f64> = keys.iter().map(|k| local[k]).collect();
        self.reduce_sums(&mut sums)?;
        let n = n.max(1) as f64;
        Ok(keys
            .into_iter()
            .zip(sums)
            .map(|(k, v)| (k, v / n))
            .collect())
    }

    /// The step (0-based, since the accumulators were reset) whose loss was first
    /// non-finite, from the in-plan check ([`vars::metrics::FIRST_NONFINITE`]); waits for
    /// the device.
    pub(crate) fn first_nonfinite_step(&mut self) -> Result<Option<usize>> {
        if !self
            .device
            .param_names()
            .iter()
            .any(|n| n == vars::metrics::FIRST_NONFINITE)
        {
            return Ok(None);
        }
        let v = scalar(&self.device.read_param(vars::metrics::FIRST_NONFINITE)?);
        Ok((v >= 1.0).then(|| v as usize - 1))
    }

    /// The first device variable, in model order (the weights layer by layer, then the
    /// other saved variables by name), holding a NaN or an infinity; reads them all.
    pub(crate) fn first_nonfinite_variable(&mut self) -> Result<Option<String>> {
        let mut names: Vec<String> = self
            .stack
            .weight_specs()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut rest: Vec<String> = self
            .device
            .param_names()
            .into_iter()
            .filter(|n| !vars::metrics::is_accumulator(n) && !names.contains(n))
            .collect();
        rest.sort();
        names.extend(rest);
        for n in names {
            let t = self.device.read_param(&n)?;
            if t.to_f64().iter().any(|v| !v.is_finite()) {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    pub(super) fn check_compiled(&self, what: &str) -> Result<()> {
        if self.compiled.is_none() {
            return Err(LayerError::Usage(format!(
                "call compile(loss, optimizer, metrics) before {what}"
            )));
        }
        Ok(())
    }

    /// The learning rate (the device variable [`vars::optimizer::LEARNING_RATE`]). Known on the host after
    /// `compile` and after [`Sequential::set_learning_rate`]; otherwise read from the device.
    pub fn learning_rate(&mut self) -> Result<f32> {
        self.check_compiled("learning_rate")?;
        if let Some(lr) = self.lr {
            return Ok(lr);
        }
        let lr = self
            .device
            .read_param(vars::optimizer::LEARNING_RATE)?
            .to_f32()[0];
        self.lr = Some(lr);
        Ok(lr)
    }

    /// Writes the learning-rate variable; the compiled training plans read it, so the next
    /// step uses it without recompiling (Keras `optimizer.learning_rate.assign`).
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.check_compiled("set_learning_rate")?;
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(LayerError::argument(
                "set_learning_rate",
                "learning_rate",
                lr,
                "must be a finite number >= 0",
            ));
        }
        self.device.write_param(
            vars::optimizer::LEARNING_RATE,
            &HostTensor::f32([], vec![lr])?,
        )?;
        self.lr = Some(lr);
        self.lr_changes += 1;
        Ok(())
    }

    /// Reads the device variable `name` (a weight `dense_1/kernel`, [`vars::optimizer::LEARNING_RATE`], an
    /// optimizer slot, an accumulator...); waits for the device.
    pub fn read_variable(&mut self, name: &str) -> Result<HostTensor> {
        Ok(self.device.read_param(name)?)
    }

    /// All weights in layer order (kernel, bias per Dense), read from the device.
    pub fn get_weights(&mut self) -> Result<Vec<HostTensor>> {
        self.init_weights()?;
        let specs = self.stack.weight_specs();
        specs
            .iter()
            .map(|(n, _)| Ok(self.device.read_param(n)?))
            .collect()
    }

    /// Replaces all weights (same order and shapes as [`Sequential::get_weights`]).
    pub fn set_weights(&mut self, weights: &[HostTensor]) -> Result<()> {
        let specs = self.stack.weight_specs();
        if specs.len() != weights.len() {
            return Err(LayerError::Data(format!(
                "set_weights: the model has {} weight tensors, got {}",
                specs.len(),
                weights.len()
            )));
        }
        for ((name, shape), w) in specs.iter().zip(weights) {
            if w.shape.dims() != shape.as_slice() {
                return Err(LayerError::Data(format!(
                    "set_weights: `{name}` has shape {:?}, got {}",
                    shape, w.shape
                )));
            }
        }
        self.init_weights()?;
        for ((name, _), w) in specs.iter().zip(weights) {
            self.device.write_param(name, w)?;
        }
        Ok(())
    }
}
