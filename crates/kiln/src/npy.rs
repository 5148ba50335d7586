//! NumPy `.npy` files (format 1.0/2.0), the subset the `kiln` tool exchanges: little-endian
//! `float32` (`<f4`) and `int32` (`<i4`) arrays in C order. Anything else is a clear error
//! naming the file and what was found.

use crate::opt::{HostData, HostTensor};
use std::path::Path;

/// Errors reading or writing `.npy` files.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not an npy file kiln can read.
    #[error("{path}: {message}")]
    Format {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn fmt_err(path: &Path, message: impl Into<String>) -> NpyError {
    NpyError::Format {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The largest `.npy` file [`read`] accepts (64 GiB).
pub const MAX_NPY_BYTES: u64 = 1 << 36;

/// Reads an `.npy` file into a host tensor: a regular file of at most [`MAX_NPY_BYTES`].
pub fn read(path: &Path) -> Result<HostTensor, NpyError> {
    // regular files only (a FIFO is refused before it is opened), of bounded size
    let bytes =
        crate::opt::files::read_regular(path, MAX_NPY_BYTES).map_err(|source| NpyError::Io {
            path: path.display().to_string(),
            source,
        })?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(fmt_err(path, "not a NumPy .npy file (bad magic)"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(fmt_err(path, format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + hlen)
        .ok_or_else(|| fmt_err(path, "truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| fmt_err(path, "header is not text"))?;
    let field = |name: &str| -> Option<&str> {
        let i = header.find(&format!("'{name}'"))?;
        let rest = header[i + name.len() + 2..]
            .trim_start()
            .strip_prefix(':')?
            .trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next());
    let dtype = match descr {
        Some("<f4") => crate::ir::DType::F32,
        Some("<i4") => crate::ir::DType::I32,
        other => {
            return Err(fmt_err(
                path,
                format!("dtype {other:?} is not supported (use float32 '<f4' or int32 '<i4')"),
            ))
        }
    };
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(fmt_err(
            path,
            "Fortran-ordered arrays are not supported (save with np.ascontiguousarray)",
        ));
    }
    let shape_src = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| fmt_err(path, "no shape in the header"))?;
    let shape = shape_src
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| fmt_err(path, format!("bad shape entry `{s}`")))
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let n: usize = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| fmt_err(path, "shape overflows"))?;
    let data = &bytes[start + hlen..];
    if data.len() != n.saturating_mul(4) {
        return Err(fmt_err(
            path,
            format!(
                "shape {shape:?} needs {} data bytes, the file has {}",
                n * 4,
                data.len()
            ),
        ));
    }
    let words = data.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]);
    let data = match dtype {
        crate::ir::DType::F32 => HostData::F32(words.map(f32::from_le_bytes).collect()),
        crate::ir::DType::I32 => HostData::I32(words.map(i32::from_le_bytes).collect()),
    };
    Ok(HostTensor {
        shape: shape.into(),
        data,
    })
}

/// Writes a host tensor as an `.npy` file (version 1.0), atomically.
pub fn write(path: &Path, t: &HostTensor) -> Result<(), NpyError> {
    let descr = match t.data {
        HostData::F32(_) => "<f4",
        HostData::I32(_) => "<i4",
    };
    let dims = t.shape.dims();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for w in t.to_bits() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    crate::opt::cache::write_atomic(path, &out).map_err(|source| NpyError::Io {
        path: path.display().to_string(),
        source,
    })
}
