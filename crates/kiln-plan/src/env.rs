//! The `KILN_*` environment variables, parsed strictly in one place: a set variable with a
//! value outside its accepted set is an [`EnvError`] naming the variable, the value and what
//! is accepted — never silently ignored. An unset variable means its default.
//!
//! | variable | accepted | default |
//! |---|---|---|
//! | `KILN_CACHE` | `on`, `off`, `1`, `0`, `true`, `false`, `yes`, `no` (any case) | on |
//! | `KILN_CACHE_DIR` | a non-empty path | the platform cache dir |
//! | `KILN_CACHE_MAX_MB` | a whole number of MiB | 512 |
//! | `KILN_DUMP` | `all` or comma-separated pass names | none |
//! | `KILN_ADAPTER` | a non-empty adapter-name substring | best adapter |
//! | `KILN_REQUIRE_GPU` | as `KILN_CACHE` | off |
//! | `KILN_SUBGROUPS` | as `KILN_CACHE` | on |
//!
//! (`KILN_DEVICE`, the device choice, is parsed by the `kiln` crate.)

use std::path::PathBuf;

/// A `KILN_*` variable holds a value kiln does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}={value:?} is not valid: expected {accepted}")]
pub struct EnvError {
    /// The variable.
    pub var: &'static str,
    /// Its value (lossily decoded).
    pub value: String,
    /// The values it accepts, in words.
    pub accepted: String,
}

/// Accepted spellings of a boolean variable.
pub const BOOL_ACCEPTED: &str = "one of on, off, 1, 0, true, false, yes, no";

/// The raw value of `var`: `None` when unset.
fn raw(var: &'static str) -> Option<String> {
    std::env::var_os(var).map(|v| v.to_string_lossy().into_owned())
}

fn err(var: &'static str, value: &str, accepted: impl Into<String>) -> EnvError {
    EnvError {
        var,
        value: value.to_string(),
        accepted: accepted.into(),
    }
}

/// Parses a boolean variable's value (see [`BOOL_ACCEPTED`]).
pub fn parse_bool(var: &'static str, value: &str) -> Result<bool, EnvError> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "1" | "true" | "yes" => Ok(true),
        "off" | "0" | "false" | "no" => Ok(false),
        _ => Err(err(var, value, BOOL_ACCEPTED)),
    }
}

/// Reads boolean variable `var` (default `default` when unset).
pub fn bool_var(var: &'static str, default: bool) -> Result<bool, EnvError> {
    raw(var).map_or(Ok(default), |v| parse_bool(var, &v))
}

/// `KILN_CACHE`: whether the plan and pipeline caches are on (default on).
pub fn cache_enabled() -> Result<bool, EnvError> {
    bool_var("KILN_CACHE", true)
}

/// `KILN_CACHE_DIR`: the cache directory when set; set but empty is an error (it would
/// otherwise mean the current directory).
pub fn cache_dir() -> Result<Option<PathBuf>, EnvError> {
    match std::env::var_os("KILN_CACHE_DIR") {
        None => Ok(None),
        Some(v) if v.is_empty() => Err(err(
            "KILN_CACHE_DIR",
            "",
            "a non-empty directory path (unset it for the default, or KILN_CACHE=off)",
        )),
        Some(v) => Ok(Some(PathBuf::from(v))),
    }
}

/// `KILN_CACHE_MAX_MB`: the plan cache size cap in MiB (default 512).
pub fn cache_max_mb() -> Result<u64, EnvError> {
    const VAR: &str = "KILN_CACHE_MAX_MB";
    match raw(VAR) {
        None => Ok(512),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|mb| *mb <= u64::MAX >> 20)
            .ok_or_else(|| err(VAR, &v, "a whole number of MiB, e.g. 512")),
    }
}

/// `KILN_DUMP`: the passes whose IR to print (`all` or comma-separated names from `known`);
/// empty when unset.
pub fn dump(known: &[&str]) -> Result<Vec<String>, EnvError> {
    const VAR: &str = "KILN_DUMP";
    let Some(v) = raw(VAR) else {
        return Ok(vec![]);
    };
    let accepted = || format!("`all` or comma-separated pass names: {}", known.join(", "));
    if v == "all" {
        return Ok(known.iter().map(|s| s.to_string()).collect());
    }
    let names: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
    if names.iter().any(|n| !known.contains(&n.as_str())) {
        return Err(err(VAR, &v, accepted()));
    }
    Ok(names)
}

/// `KILN_ADAPTER`: the adapter-name substring to require, when set (empty is an error).
pub fn adapter() -> Result<Option<String>, EnvError> {
    match raw("KILN_ADAPTER") {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(err(
            "KILN_ADAPTER",
            &v,
            "a non-empty part of an adapter name (see `kiln devices`)",
        )),
        Some(v) => Ok(Some(v)),
    }
}

/// `KILN_REQUIRE_GPU`: whether tests must fail, not skip, without a GPU adapter.
pub fn require_gpu() -> Result<bool, EnvError> {
    bool_var("KILN_REQUIRE_GPU", false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_strict() {
        assert_eq!(parse_bool("KILN_CACHE", "OFF"), Ok(false));
        assert_eq!(parse_bool("KILN_CACHE", "1"), Ok(true));
        let e = parse_bool("KILN_CACHE", "maybe").unwrap_err();
        assert_eq!(e.var, "KILN_CACHE");
        let msg = e.to_string();
        assert!(msg.contains("KILN_CACHE") && msg.contains("off"), "{msg}");
    }
}
