//! The plan file: a fixed header followed by the bincode body. All bincode calls of kiln live
//! in this module.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "KILNPLAN"
//! 8       4     format version (u32 LE) = PLAN_FORMAT_VERSION
//! 12      1     length L of the kiln version string (≤ 64)
//! 13      L     kiln version (UTF-8), must equal this build's
//! 13+L    16    cache key digest (u128 LE; 0 for a plan saved without a key)
//! 29+L    8     body length N (u64 LE)
//! 37+L    8     xxh3-64 checksum of every byte before this field and of the body
//! 45+L    N     body: the `Plan`, bincode 2 (standard config, 1 GiB decode limit)
//! ```
//!
//! Decoding checks, in order and before allocating anything the file claims: length, magic,
//! version, kiln version, key, body length against the file, checksum; then decodes with a
//! size limit (a body claiming 2⁴⁰ elements fails without allocating them) and validates the
//! plan's structure ([`validate`]): every index, dtype, range and thread count, so a decoded
//! plan can neither make a backend read out of bounds nor panic it. Loading never executes
//! code.

use crate::plan::{Plan, PLAN_FORMAT_VERSION};
use twox_hash::XxHash3_64;

/// The file magic.
pub const MAGIC: &[u8; 8] = b"KILNPLAN";
/// This build's version, stored in and required of every plan file.
pub const KILN_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Largest body the decoder accepts.
pub const MAX_BODY_BYTES: u64 = 1 << 30;
/// Largest buffer (elements) a plan may declare.
pub const MAX_BUFFER_ELEMENTS: usize = 1 << 31;

/// Why a plan file was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// The file ends before its header does.
    #[error("plan file is truncated: {0} bytes, the header alone needs more")]
    Truncated(usize),
    /// Not a plan file.
    #[error("not a kiln plan file (bad magic)")]
    BadMagic,
    /// Written by another plan format.
    #[error("plan format version {found}, this build reads {expected}")]
    Version {
        /// In the file.
        found: u32,
        /// This build's.
        expected: u32,
    },
    /// Written by another kiln.
    #[error("plan written by kiln {found}, this is kiln {expected}")]
    KilnVersion {
        /// In the file.
        found: String,
        /// This build's.
        expected: String,
    },
    /// The plan was compiled for another key (graph, options or device).
    #[error("plan was compiled for key {found:032x}, expected {expected:032x}")]
    KeyMismatch {
        /// In the file.
        found: u128,
        /// Wanted.
        expected: u128,
    },
    /// The body length disagrees with the file.
    #[error("plan body claims {claimed} bytes, the file holds {actual}")]
    Length {
        /// Claimed.
        claimed: u64,
        /// Present.
        actual: u64,
    },
    /// The checksum does not match (a corrupt file).
    #[error("plan file checksum mismatch (corrupt file)")]
    Checksum,
    /// The body does not decode.
    #[error("plan body does not decode: {0}")]
    Decode(String),
    /// The body decodes but is not a valid plan.
    #[error("invalid plan: {0}")]
    Invalid(String),
    /// Encoding failed.
    #[error("plan encoding failed: {0}")]
    Encode(String),
    /// The file could not be read, or is not a regular file (a FIFO or device is refused
    /// before it is opened).
    #[error("{0}")]
    Io(String),
}

/// Largest plan file: the body limit and the largest header.
pub const MAX_FILE_BYTES: u64 = MAX_BODY_BYTES + 13 + 64 + 16 + 8 + 8;

/// Reads a plan file's bytes with bounded work: refuses a non-regular file without opening
/// it (a FIFO never blocks), checks the magic on the first 8 bytes and the file length
/// against [`MAX_FILE_BYTES`] before reading the body. [`decode`] the result.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, CodecError> {
    use std::io::Read as _;
    let io = |e: std::io::Error| CodecError::Io(e.to_string());
    let (mut f, len) = crate::files::open_regular(path).map_err(io)?;
    let mut magic = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        match f.read(&mut magic[got..]).map_err(io)? {
            0 => return Err(CodecError::Truncated(got)),
            n => got += n,
        }
    }
    if &magic != MAGIC {
        return Err(CodecError::BadMagic);
    }
    if len > MAX_FILE_BYTES {
        return Err(CodecError::Length {
            claimed: len,
            actual: MAX_FILE_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    bytes.extend_from_slice(&magic);
    f.take(MAX_FILE_BYTES - 8)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_BODY_BYTES as usize }>()
}

/// The canonical bytes of a serializable value (bincode, standard config): what cache keys
/// hash (the graph part of a plan cache key), so that every bincode call stays here.
pub fn canonical_bytes<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Encodes `plan` as a plan file for cache key `key` (0 for none).
pub fn encode(plan: &Plan, key: u128) -> Result<Vec<u8>, CodecError> {
    let body = bincode::serde::encode_to_vec(plan, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(frame(&body, key))
}

/// Frames an encoded plan body as a plan file: this build's header, `key`, the body length
/// and the checksum, then `body`. [`encode`] is `frame` of the bincode body; the fuzz
/// targets use it to hand arbitrary bodies to [`decode`] past the checksum.
pub fn frame(body: &[u8], key: u128) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&PLAN_FORMAT_VERSION.to_le_bytes());
    let v = KILN_VERSION.as_bytes();
    out.push(v.len().min(64) as u8);
    out.extend_from_slice(&v[..v.len().min(64)]);
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let mut h = XxHash3_64::with_seed(0);
    h.write(&out);
    h.write(body);
    out.extend_from_slice(&h.finish().to_le_bytes());
    out.extend_from_slice(body);
    out
}

use std::hash::Hasher as _;

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(CodecError::Truncated(self.b.len()))?;
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn u128(&mut self) -> Result<u128, CodecError> {
        let mut a = [0u8; 16];
        a.copy_from_slice(self.take(16)?);
        Ok(u128::from_le_bytes(a))
    }
}

/// The header fields of a plan file, read without decoding the body.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// Plan format version.
    pub format_version: u32,
    /// kiln version that wrote it.
    pub kiln_version: String,
    /// Cache key digest (0 for none).
    pub key: u128,
    /// Body bytes.
    pub body_len: u64,
}

/// Reads and checks the header (magic, versions, lengths, checksum) without decoding.
pub fn read_header(bytes: &[u8]) -> Result<(Header, usize), CodecError> {
    let mut r = Reader { b: bytes, at: 0 };
    if bytes.len() < 8 {
        return Err(CodecError::Truncated(bytes.len()));
    }
    if r.take(8)? != MAGIC {
        return Err(CodecError::BadMagic);
    }
    let format_version = r.u32()?;
    if format_version != PLAN_FORMAT_VERSION {
        return Err(CodecError::Version {
            found: format_version,
            expected: PLAN_FORMAT_VERSION,
        });
    }
    let vl = r.take(1)?[0] as usize;
    let kiln_version = String::from_utf8_lossy(r.take(vl)?).into_owned();
    if kiln_version != KILN_VERSION {
        return Err(CodecError::KilnVersion {
            found: kiln_version,
            expected: KILN_VERSION.into(),
        });
    }
    let key = r.u128()?;
    let body_len = r.u64()?;
    let header_end = r.at;
    let checksum = r.u64()?;
    let actual = (bytes.len() - r.at) as u64;
    if body_len != actual || body_len > MAX_BODY_BYTES {
        return Err(CodecError::Length {
            claimed: body_len,
            actual,
        });
    }
    let mut h = XxHash3_64::with_seed(0);
    h.write(&bytes[..header_end]);
    h.write(&bytes[r.at..]);
    if h.finish() != checksum {
        return Err(CodecError::Checksum);
    }
    Ok((
        Header {
            format_version,
            kiln_version,
            key,
            body_len,
        },
        r.at,
    ))
}

/// Decodes and validates a plan file; with `expected_key`, also requires that key.
pub fn decode(bytes: &[u8], expected_key: Option<u128>) -> Result<Plan, CodecError> {
    let (header, body_at) = read_header(bytes)?;
    if let Some(k) = expected_key {
        if header.key != k {
            return Err(CodecError::KeyMismatch {
                found: header.key,
                expected: k,
            });
        }
    }
    let (plan, used): (Plan, usize) =
        bincode::serde::decode_from_slice(&bytes[body_at..], config())
            .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() - body_at {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes after the plan",
            bytes.len() - body_at - used
        )));
    }
    crate::validate::structure(&plan).map_err(|e| CodecError::Invalid(e.message))?;
    Ok(plan)
}
