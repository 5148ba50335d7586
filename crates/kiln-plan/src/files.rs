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

/// Writes `bytes` to `path` atomically: a unique temp file `.NAME.PID.N.tmp` in the same
/// directory, fsync, rename (readers see the old file or the new one, never a torn one).
/// First removes the temp files that processes no longer alive left in that directory
/// (interrupted saves), so they never accumulate.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    remove_stale_temps(dir);
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

/// The process id of a temp file name `.NAME.PID.N.tmp` that [`write_atomic`] writes.
fn temp_owner(file_name: &str) -> Option<u32> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let n = parts.next()?;
    let pid = parts.next()?;
    let name = parts.next()?;
    if name.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` may still be alive (`true` where kiln cannot tell).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Removes the `.NAME.PID.N.tmp` files in `dir` whose writing process is gone; returns how
/// many it removed. Failures are ignored (the next save tries again).
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        let regular = e.file_type().is_ok_and(|t| t.is_file());
        if regular && !process_alive(pid) && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Opens `path` for reading only if it is a regular file (a FIFO, device, socket or
/// directory is refused before it is opened, so it can never block), and returns the file
/// with its length.
pub fn open_regular(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    let not_regular = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, device, socket or directory)",
        )
    };
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let f = std::fs::File::open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(not_regular());
    }
    Ok((f, m.len()))
}

/// Reads a regular file of at most `max_bytes` bytes whole (see [`open_regular`]); a longer
/// file is an error before anything is read.
pub fn read_regular(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let (f, len) = open_regular(path)?;
    if len > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{len} bytes is larger than the {max_bytes} bytes kiln reads from such a file"),
        ));
    }
    let mut out = Vec::with_capacity(len as usize);
    f.take(max_bytes + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file grew past {max_bytes} bytes while it was read"),
        ));
    }
    Ok(out)
}

/// The plan cache directory the environment selects ([`crate::env`]): `None` when
/// `KILN_CACHE` is off; else `KILN_CACHE_DIR`; else `<platform cache dir>/kiln/plans`. The
/// driver's pipeline cache lives in its `pipelines/` folder. A bad value of either variable
/// is an error.
pub fn plan_cache_dir() -> Result<Option<PathBuf>, crate::env::EnvError> {
    if !crate::env::cache_enabled()? {
        return Ok(None);
    }
    Ok(crate::env::cache_dir()?
        .or_else(|| platform_cache_dir().map(|d| d.join("kiln").join("plans"))))
}

/// [`plan_cache_dir`] for callers that cannot fail: a bad variable is logged as an error and
/// disables the cache (nothing is written to a place the user did not mean). Prefer
/// [`plan_cache_dir`].
pub fn plan_cache_dir_from_env() -> Option<PathBuf> {
    plan_cache_dir().unwrap_or_else(|e| {
        log::error!("kiln: {e}; the cache is off");
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_parse() {
        assert_eq!(temp_owner(".model.safetensors.4242.7.tmp"), Some(4242));
        assert_eq!(temp_owner(".x.1.0.tmp"), Some(1));
        assert_eq!(temp_owner("x.1.0.tmp"), None);
        assert_eq!(temp_owner(".x.y.0.tmp"), None);
        assert_eq!(temp_owner("..1.0.tmp"), None);
    }

    #[test]
    fn a_save_removes_temp_files_of_dead_processes_only() {
        let dir = std::env::temp_dir().join(format!("kiln-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // 4194305 is above Linux's largest pid: never alive
        let dead = dir.join(".model.safetensors.4194305.2.tmp");
        let alive = dir.join(format!(".plan.kplan.{}.0.tmp", std::process::id()));
        let other = dir.join("notes.tmp");
        for f in [&dead, &alive, &other] {
            std::fs::write(f, b"partial").unwrap();
        }
        write_atomic(&dir.join("x.kplan"), b"new").unwrap();
        assert_eq!(std::fs::read(dir.join("x.kplan")).unwrap(), b"new");
        assert_eq!(!dead.exists(), cfg!(target_os = "linux"));
        assert!(alive.exists() && other.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn non_regular_files_are_refused_unopened() {
        let e = read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        let e = read_regular(Path::new("/"), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }
}
