//! Files kiln writes and the directories they live in: atomic writes (temp file, fsync,
//! rename) and the platform cache directory. Shared by the plan cache, the pipeline cache,
//! model files and the command-line tool.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The platform's per-user cache directory: `$XDG_CACHE_HOME` or `~/.cache` (Linux and other
/// Unix), `~/Library/Caches` (macOS), `%LOCALAPPDATA%` (Windows).
pub fn platform_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(windows) {
        return env("LOCALAPPDATA");
    }
    if cfg!(target_os = "macos") {
        return env("HOME").map(|h| h.join("Library").join("Caches"));
    }
    env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))
}

/// Writes `bytes` to `path` atomically: a unique temp file in the same directory, fsync,
/// rename (readers see the old file or the new one, never a torn one).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("kiln");
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The plan cache directory the environment selects: `None` when `KILN_CACHE` is `off`, `0`
/// or `false`; else `KILN_CACHE_DIR`; else `<platform cache dir>/kiln/plans`. The driver's
/// pipeline cache lives in its `pipelines/` folder.
pub fn plan_cache_dir_from_env() -> Option<PathBuf> {
    if matches!(
        std::env::var("KILN_CACHE").as_deref(),
        Ok("off" | "0" | "false")
    ) {
        return None;
    }
    std::env::var_os("KILN_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| platform_cache_dir().map(|d| d.join("kiln").join("plans")))
}
