//! The plan-cache driver: one compiled plan per (mode, batch size), loaded on the device
//! once and replayed; compiled plans come from the on-disk [`PlanCache`] when they can.

use super::Sequential;
use crate::layers::Mode;
use crate::{LayerError, Result};
use kiln_opt::cache::{compile_cached, CacheOutcome, PlanCache};
use kiln_opt::{CompileOptions, Executable};
use std::sync::Arc;

impl Sequential {
    /// Uses `cache` for compiled plans instead of the one configured by the environment
    /// (`KILN_CACHE_DIR`, `KILN_CACHE=off`).
    pub fn with_plan_cache(mut self, cache: PlanCache) -> Self {
        self.cache = cache;
        self.cache_env_error = None;
        self
    }

    /// How each plan of this model was obtained: `(mode, batch, hit or miss with reason)`.
    pub fn plan_cache_log(&self) -> &[(Mode, usize, CacheOutcome)] {
        &self.cache_log
    }

    pub(super) fn plan(&mut self, mode: Mode, batch: usize) -> Result<&mut Box<dyn Executable>> {
        if !self.plans.contains_key(&(mode, batch)) {
            // a bad KILN_CACHE* value is an error, not a silently disabled cache
            if let Some(e) = &self.cache_env_error {
                return Err(kiln_opt::OptError::Env(e.clone()).into());
            }
            let g = self.graph(mode, batch)?;
            let options = CompileOptions {
                kind: mode.plan_kind(),
                ..CompileOptions::default()
            };
            let (plan, outcome) = compile_cached(
                &g,
                &options,
                &self.device.limits(),
                &self.device.fingerprint(),
                &self.cache,
            )?;
            self.cache_log.push((mode, batch, outcome));
            let exe = self.device.load(Arc::new(plan))?;
            self.plans.insert((mode, batch), exe);
        }
        self.plans
            .get_mut(&(mode, batch))
            .ok_or_else(|| LayerError::Usage("plan cache".into()))
    }

    /// The compiled plan of `mode` at `batch` (compiling it if needed), for inspection.
    pub fn plan_for(&mut self, mode: Mode, batch: usize) -> Result<kiln_opt::Plan> {
        self.init_weights()?;
        Ok(self.plan(mode, batch)?.plan().clone())
    }
}
