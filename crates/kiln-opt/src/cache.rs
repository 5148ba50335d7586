//! Cache keys and the on-disk plan cache.
//!
//! A [`CacheKey`] hashes everything a plan depends on, part by part: the canonical graph, the
//! compile options, the pass-pipeline version, a hash of the compiler's sources (taken at
//! build time, so any compiler change invalidates old plans), the kiln version, the device
//! fingerprint
//! (backend, adapter, driver, wgpu/naga versions — given by the backend) and the device limits
//! that change code generation. Compilation is deterministic, so the same key always means
//! the same plan bytes.
//!
//! [`PlanCache`] stores one plan file per key (`<digest>.kplan`, see [`crate::codec`]) and its
//! key parts beside it (`<digest>.key`, text), under `KILN_CACHE_DIR` or the platform cache
//! directory (`…/kiln/plans`); `KILN_CACHE=off` disables it. Writes are atomic (temp file,
//! fsync, rename), so concurrent processes never see a torn file. Every unreadable, corrupt,
//! stale or mismatched entry is a logged miss, removed and rewritten after a fresh compile —
//! never a crash and never a wrong plan. The cache keeps under a size cap
//! (`KILN_CACHE_MAX_MB`, default 512) by evicting the least recently used entries.

use crate::codec::{self, CodecError, KILN_VERSION};
use crate::{compile, CompileOptions, DeviceLimits, Plan, Result};
use kiln_ir::Graph;
pub use kiln_plan::files::{plan_cache_dir_from_env, platform_cache_dir, write_atomic};
use std::hash::Hasher as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use twox_hash::{XxHash3_128, XxHash3_64};

/// Version of the pass pipeline and lowering; bump when they change what plans contain.
pub const PIPELINE_VERSION: u32 = 3;

/// The hash of everything a plan depends on, kept part by part so a miss can be explained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey {
    /// `(part name, part hash)` in a fixed order.
    pub parts: Vec<(String, u64)>,
    /// Digest of all parts.
    pub digest: u128,
}

fn h64(bytes: &[u8]) -> u64 {
    let mut h = XxHash3_64::with_seed(0);
    h.write(bytes);
    h.finish()
}

impl CacheKey {
    /// The key of compiling `graph` with `options` for a device with `limits` and
    /// fingerprint `device` (see [`crate::Backend::fingerprint`]).
    pub fn new(
        graph: &Graph,
        options: &CompileOptions,
        limits: &DeviceLimits,
        device: &str,
    ) -> CacheKey {
        let graph_bytes =
            codec::canonical_bytes(graph).unwrap_or_else(|_| format!("{graph:?}").into_bytes());
        let parts = vec![
            ("graph".to_string(), h64(&graph_bytes)),
            (
                "options".to_string(),
                h64(format!("{options:?}").as_bytes()),
            ),
            ("pipeline".to_string(), PIPELINE_VERSION as u64),
            (
                "compiler".to_string(),
                h64(env!("KILN_COMPILER_HASH").as_bytes()),
            ),
            ("kiln".to_string(), h64(KILN_VERSION.as_bytes())),
            ("device".to_string(), h64(device.as_bytes())),
            ("limits".to_string(), h64(format!("{limits:?}").as_bytes())),
        ];
        let mut h = XxHash3_128::with_seed(0);
        for (name, v) in &parts {
            h.write(name.as_bytes());
            h.write(&v.to_le_bytes());
        }
        CacheKey {
            parts,
            digest: h.finish_128(),
        }
    }

    /// The names of the parts that differ between `self` and `other` (empty when equal).
    pub fn explain_miss(&self, other: &CacheKey) -> Vec<String> {
        self.parts
            .iter()
            .filter(|(n, v)| other.parts.iter().find(|(m, _)| m == n).map(|(_, w)| w) != Some(v))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn to_text(&self) -> String {
        self.parts
            .iter()
            .map(|(n, v)| format!("{n} {v:016x}\n"))
            .collect()
    }

    fn from_text(digest: u128, text: &str) -> Option<CacheKey> {
        let parts = text
            .lines()
            .map(|l| {
                let (n, v) = l.split_once(' ')?;
                Some((n.to_string(), u64::from_str_radix(v, 16).ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(CacheKey { parts, digest })
    }
}

/// The result of a cache lookup.
#[derive(Debug)]
pub enum Lookup {
    /// A valid plan for the key.
    Hit(Box<Plan>),
    /// No usable entry; the reason says why (not cached, corrupt, stale...).
    Miss(String),
}

/// How [`compile_cached`] obtained its plan.
#[derive(Clone, Debug, PartialEq)]
pub enum CacheOutcome {
    /// Loaded from the cache: no graph compilation.
    Hit,
    /// Compiled (and stored when possible); the reason for the miss.
    Miss(String),
    /// The cache is disabled.
    Disabled,
}

/// One entry of the cache directory.
#[derive(Clone, Debug)]
pub struct CacheEntry {
    /// The plan file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Last use (modification time; hits refresh it).
    pub last_used: SystemTime,
}

/// What [`PlanCache::clear_all`] did.
#[derive(Clone, Debug, Default)]
pub struct ClearReport {
    /// Plan files removed.
    pub removed: usize,
    /// Files that could not be removed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// The on-disk plan cache (see the module page).
#[derive(Clone, Debug)]
pub struct PlanCache {
    dir: Option<PathBuf>,
    max_bytes: u64,
}

impl PlanCache {
    /// The cache configured by the environment: disabled by `KILN_CACHE=off`, in
    /// `KILN_CACHE_DIR` or the platform cache directory, capped by `KILN_CACHE_MAX_MB`.
    /// A bad value of one of these variables is logged as an error and disables the cache
    /// (nothing is written where the user did not mean); [`PlanCache::try_from_env`]
    /// returns it instead.
    pub fn from_env() -> PlanCache {
        PlanCache::try_from_env().unwrap_or_else(|e| {
            log::error!("kiln cache: {e}; the plan cache is off");
            PlanCache::disabled()
        })
    }

    /// The cache configured by the environment, as [`PlanCache::from_env`]; a bad value of
    /// `KILN_CACHE`, `KILN_CACHE_DIR` or `KILN_CACHE_MAX_MB` is an error naming it.
    pub fn try_from_env() -> std::result::Result<PlanCache, kiln_plan::EnvError> {
        let Some(dir) = kiln_plan::files::plan_cache_dir()? else {
            return Ok(PlanCache::disabled());
        };
        let max_mb = kiln_plan::env::cache_max_mb()?;
        Ok(PlanCache {
            dir: Some(dir),
            max_bytes: max_mb << 20,
        })
    }

    /// A cache in `dir` with a size cap in bytes.
    pub fn at(dir: impl Into<PathBuf>, max_bytes: u64) -> PlanCache {
        PlanCache {
            dir: Some(dir.into()),
            max_bytes,
        }
    }

    /// A cache that stores nothing.
    pub fn disabled() -> PlanCache {
        PlanCache {
            dir: None,
            max_bytes: 0,
        }
    }

    /// The directory, when enabled.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn plan_path(&self, key: &CacheKey) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{:032x}.kplan", key.digest)))
    }

    /// Looks `key` up. Corrupt, stale or mismatched entries are removed and reported as a
    /// miss with the reason.
    pub fn get(&self, key: &CacheKey) -> Lookup {
        let Some(path) = self.plan_path(key) else {
            return Lookup::Miss("the cache is disabled".into());
        };
        if let Err(e) = std::fs::metadata(&path) {
            if e.kind() == std::io::ErrorKind::NotFound {
                let why = match self.closest(key) {
                    Some(parts) if !parts.is_empty() => format!(
                        "not cached (nearest entry differs in: {})",
                        parts.join(", ")
                    ),
                    _ => "not cached".into(),
                };
                return Lookup::Miss(why);
            }
        }
        // bounded, regular files only: a FIFO or oversized entry is rejected, never read
        match codec::read_file(&path).and_then(|bytes| codec::decode(&bytes, Some(key.digest))) {
            Ok(plan) => {
                if let Ok(f) = std::fs::File::options().write(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
                Lookup::Hit(Box::new(plan))
            }
            Err(e) => {
                log::warn!("kiln cache: discarding {}: {e}", path.display());
                let _ = std::fs::remove_file(&path);
                Lookup::Miss(format!("cache entry rejected: {e}"))
            }
        }
    }

    /// The parts in which the cached key nearest to `key` differs from it.
    fn closest(&self, key: &CacheKey) -> Option<Vec<String>> {
        let dir = self.dir.as_ref()?;
        let mut best: Option<Vec<String>> = None;
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("key") {
                continue;
            }
            let digest = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| u128::from_str_radix(s, 16).ok());
            let Some(other) =
                digest.and_then(|d| CacheKey::from_text(d, &std::fs::read_to_string(&p).ok()?))
            else {
                continue;
            };
            let diff = key.explain_miss(&other);
            if best.as_ref().is_none_or(|b| diff.len() < b.len()) {
                best = Some(diff);
            }
        }
        best
    }

    /// Stores `plan` under `key` atomically, then evicts least recently used entries above
    /// the size cap.
    pub fn put(&self, key: &CacheKey, plan: &Plan) -> std::io::Result<()> {
        let (Some(dir), Some(path)) = (self.dir.as_ref(), self.plan_path(key)) else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)?;
        let bytes = codec::encode(plan, key.digest).map_err(std::io::Error::other)?;
        write_atomic(&path, &bytes)?;
        write_atomic(&path.with_extension("key"), key.to_text().as_bytes())?;
        self.evict(&path)
    }

    fn evict(&self, keep: &Path) -> std::io::Result<()> {
        let mut entries = self.list();
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        entries.sort_by_key(|e| e.last_used);
        for e in entries {
            if total <= self.max_bytes {
                break;
            }
            if e.path == keep {
                continue;
            }
            let _ = std::fs::remove_file(&e.path);
            let _ = std::fs::remove_file(e.path.with_extension("key"));
            total = total.saturating_sub(e.bytes);
        }
        Ok(())
    }

    /// All plan files in the cache.
    pub fn list(&self) -> Vec<CacheEntry> {
        let Some(dir) = &self.dir else { return vec![] };
        let Ok(rd) = std::fs::read_dir(dir) else {
            return vec![];
        };
        rd.flatten()
            .filter(|e| e.path().extension().and_then(|x| x.to_str()) == Some("kplan"))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some(CacheEntry {
                    path: e.path(),
                    bytes: m.len(),
                    last_used: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                })
            })
            .collect()
    }

    /// Removes every entry; returns how many plan files were removed. Use
    /// [`PlanCache::clear_all`] to learn what could not be removed.
    pub fn clear(&self) -> usize {
        self.clear_all().removed
    }

    /// Removes every entry (plan file and key file) and reports what could not be removed
    /// and why.
    pub fn clear_all(&self) -> ClearReport {
        let mut report = ClearReport::default();
        for e in self.list() {
            match std::fs::remove_file(&e.path) {
                Ok(()) => report.removed += 1,
                Err(err) => report.failed.push((e.path.clone(), err.to_string())),
            }
            let key = e.path.with_extension("key");
            match std::fs::remove_file(&key) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    report.failed.push((key, err.to_string()))
                }
                _ => {}
            }
        }
        report
    }

    /// Checks every entry: `(path, Ok or the reason it would be rejected)`.
    pub fn verify(&self) -> Vec<(PathBuf, std::result::Result<(), CodecError>)> {
        self.list()
            .into_iter()
            .map(|e| {
                let r = codec::read_file(&e.path).and_then(|b| codec::decode(&b, None).map(|_| ()));
                (e.path, r)
            })
            .collect()
    }
}

/// Compiles `graph` through `cache`: a hit does no graph compilation; a miss compiles and
/// stores the plan (a failure to store is logged, never an error).
pub fn compile_cached(
    graph: &Graph,
    options: &CompileOptions,
    limits: &DeviceLimits,
    device: &str,
    cache: &PlanCache,
) -> Result<(Plan, CacheOutcome)> {
    if cache.dir().is_none() {
        return Ok((compile(graph, options, limits)?, CacheOutcome::Disabled));
    }
    let key = CacheKey::new(graph, options, limits, device);
    match cache.get(&key) {
        Lookup::Hit(plan) => Ok((*plan, CacheOutcome::Hit)),
        Lookup::Miss(why) => {
            log::info!("kiln cache: miss ({why})");
            let plan = compile(graph, options, limits)?;
            if let Err(e) = cache.put(&key, &plan) {
                log::warn!("kiln cache: could not store a plan: {e}");
            }
            Ok((plan, CacheOutcome::Miss(why)))
        }
    }
}
