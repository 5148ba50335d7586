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

use crate::kernel::{Body, Expr, KernelOp, MatMulVariant};
use crate::plan::{BufferKind, Plan, Step, PLAN_FORMAT_VERSION};
use crate::schedule;
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
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_BODY_BYTES as usize }>()
}

/// Encodes `plan` as a plan file for cache key `key` (0 for none).
pub fn encode(plan: &Plan, key: u128) -> Result<Vec<u8>, CodecError> {
    let body = bincode::serde::encode_to_vec(plan, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
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
    h.write(&body);
    out.extend_from_slice(&h.finish().to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
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
    validate(&plan).map_err(CodecError::Invalid)?;
    Ok(plan)
}

fn check_body(
    body: &Body,
    nargs: usize,
    rank: usize,
    accs: usize,
    what: &str,
) -> Result<(), String> {
    for (i, n) in body.nodes.iter().enumerate() {
        let before = |x: u32| {
            if (x as usize) < i {
                Ok(())
            } else {
                Err(format!(
                    "{what}: expression {i} uses {x}, which is not before it"
                ))
            }
        };
        match &n.expr {
            Expr::Load { arg, view } => {
                if *arg as usize >= nargs {
                    return Err(format!("{what}: load of arg {arg} of {nargs}"));
                }
                if view.strides.len() != rank {
                    return Err(format!(
                        "{what}: view of rank {} in a rank-{rank} phase",
                        view.strides.len()
                    ));
                }
            }
            Expr::Gather {
                arg, view, index, ..
            } => {
                before(*index)?;
                if *arg as usize >= nargs || view.strides.len() != rank {
                    return Err(format!("{what}: gather from arg {arg} of {nargs}"));
                }
            }
            Expr::Random {
                counter, strides, ..
            } => {
                before(*counter)?;
                if strides.len() != rank {
                    return Err(format!("{what}: random strides of rank {}", strides.len()));
                }
            }
            Expr::Const(_) => {}
            Expr::Unary(_, a) | Expr::Cast(a) => before(*a)?,
            Expr::Binary(_, a, b) => {
                before(*a)?;
                before(*b)?;
            }
            Expr::Select(c, a, b) => {
                before(*c)?;
                before(*a)?;
                before(*b)?;
            }
            Expr::Acc(j) => {
                if *j as usize >= accs {
                    return Err(format!("{what}: accumulator {j} of {accs}"));
                }
            }
        }
    }
    Ok(())
}

fn check_stores(
    stores: &[crate::kernel::Store],
    body: &Body,
    nargs: usize,
    rank: usize,
    what: &str,
) -> Result<(), String> {
    for s in stores {
        if s.strides.as_ref().is_some_and(|st| st.len() != rank) {
            return Err(format!(
                "{what}: a store has {} strides over a rank-{rank} iteration shape",
                s.strides.as_ref().map_or(0, |st| st.len())
            ));
        }
        if s.arg as usize >= nargs || s.value as usize >= body.nodes.len() {
            return Err(format!(
                "{what}: store of value {} into arg {}",
                s.value, s.arg
            ));
        }
    }
    Ok(())
}

/// Structural validation of a plan: indices, dtypes, ranks, accumulator use, thread counts,
/// and that every range any step reads or writes lies inside its buffer.
pub fn validate(plan: &Plan) -> Result<(), String> {
    if plan.format_version != PLAN_FORMAT_VERSION {
        return Err(format!("format version {}", plan.format_version));
    }
    for (i, b) in plan.buffers.iter().enumerate() {
        if b.len == 0 || b.len > MAX_BUFFER_ELEMENTS {
            return Err(format!("buffer {i} (`{}`) has {} elements", b.name, b.len));
        }
        if let BufferKind::Constant { values } = &b.kind {
            if values.len() != b.len {
                return Err(format!(
                    "constant buffer {i} has {} values for {} elements",
                    values.len(),
                    b.len
                ));
            }
        }
    }
    for (ki, k) in plan.kernels.iter().enumerate() {
        let n = k.args.len();
        let what = format!("kernel {ki} (`{}`)", k.label);
        if k.workgroup_size == 0 || k.workgroup_size > 1024 {
            return Err(format!("{what}: workgroup size {}", k.workgroup_size));
        }
        match &k.op {
            KernelOp::Elementwise {
                shape,
                body,
                stores,
                ..
            } => {
                check_body(body, n, shape.len(), 0, &what)?;
                check_stores(stores, body, n, shape.len(), &what)?;
            }
            KernelOp::Reduce {
                in_shape,
                axes,
                stages,
                epilogue,
                stores,
                broadcast,
                broadcast_stores,
                tree,
            } => {
                let outputs: u64 = in_shape
                    .iter()
                    .enumerate()
                    .filter(|(d, _)| !axes.contains(d))
                    .map(|(_, &e)| e as u64)
                    .product();
                if *tree == 0
                    || (*tree > 1 && k.workgroup_size != *tree)
                    || k.threads < outputs.saturating_mul(*tree as u64)
                {
                    return Err(format!(
                        "{what}: reduce tree {tree} does not match its launch"
                    ));
                }
                if stages.is_empty()
                    || axes.iter().any(|&a| a >= in_shape.len())
                    || axes.windows(2).any(|w| w[0] >= w[1])
                {
                    return Err(format!("{what}: bad axes {axes:?} or no stages"));
                }
                let mut accs = 0;
                for st in stages {
                    check_body(&st.body, n, in_shape.len(), accs, &what)?;
                    check_stores(&st.stores, &st.body, n, in_shape.len(), &what)?;
                    if st
                        .folds
                        .iter()
                        .any(|f| f.value as usize >= st.body.nodes.len())
                    {
                        return Err(format!("{what}: fold of a missing value"));
                    }
                    accs += st.folds.len();
                }
                check_body(epilogue, n, in_shape.len(), accs, &what)?;
                check_stores(stores, epilogue, n, in_shape.len(), &what)?;
                check_body(broadcast, n, in_shape.len(), accs, &what)?;
                check_stores(broadcast_stores, broadcast, n, in_shape.len(), &what)?;
            }
            KernelOp::ScatterAdd {
                cols,
                index,
                src,
                dst,
                ..
            } => {
                if [index.arg, src.arg, dst.arg]
                    .iter()
                    .any(|&a| a as usize >= n)
                    || !k
                        .args
                        .get(dst.arg as usize)
                        .is_some_and(|a| a.access.writes())
                    || k.threads < *cols as u64
                {
                    return Err(format!("{what}: scatter-add args or threads"));
                }
            }
            KernelOp::MatMul {
                batch,
                m,
                n: nn,
                a,
                b,
                tile,
                variant,
                epilogue,
                stores,
                ..
            } => {
                if a.arg as usize >= n || b.arg as usize >= n {
                    return Err(format!("{what}: operand arg out of range"));
                }
                check_body(epilogue, n, 3, 1, &what)?;
                check_stores(stores, epilogue, n, 3, &what)?;
                let (t, wg, threads) = variant.launch(*batch, *m, *nn);
                if *tile != t || k.workgroup_size != wg || k.threads < threads {
                    return Err(format!(
                        "{what}: launch does not match the {variant:?} contract"
                    ));
                }
                let _ = MatMulVariant::RegisterBlocked;
            }
        }
    }
    for (si, step) in plan.steps.iter().enumerate() {
        match step {
            Step::Dispatch {
                kernel,
                buffers,
                workgroups,
            } => {
                let k = plan
                    .kernels
                    .get(*kernel as usize)
                    .ok_or(format!("step {si}: kernel {kernel} does not exist"))?;
                if buffers.len() != k.args.len() {
                    return Err(format!(
                        "step {si}: {} buffers for {} args",
                        buffers.len(),
                        k.args.len()
                    ));
                }
                for (b, a) in buffers.iter().zip(&k.args) {
                    let buf = plan
                        .buffers
                        .get(b.0 as usize)
                        .ok_or(format!("step {si}: buffer {} does not exist", b.0))?;
                    if buf.dtype != a.dtype {
                        return Err(format!(
                            "step {si}: buffer {} is {}, the kernel binds {}",
                            b.0, buf.dtype, a.dtype
                        ));
                    }
                }
                let launched = workgroups
                    .iter()
                    .fold(k.workgroup_size as u64, |a, &w| a.saturating_mul(w as u64));
                if workgroups.contains(&0) || launched < k.threads.min(1) {
                    return Err(format!("step {si}: workgroups {workgroups:?}"));
                }
            }
            Step::Copy { src, dst } => {
                let (s, d) = (
                    plan.buffers
                        .get(src.0 as usize)
                        .ok_or(format!("step {si}: bad copy source"))?,
                    plan.buffers
                        .get(dst.0 as usize)
                        .ok_or(format!("step {si}: bad copy target"))?,
                );
                if s.len != d.len || s.dtype != d.dtype || src == dst {
                    return Err(format!("step {si}: copy between mismatched buffers"));
                }
            }
        }
        let (reads, writes) = schedule::step_ranges(plan, step);
        for r in reads.iter().chain(&writes) {
            let len = plan.buffers.get(r.buffer as usize).map_or(0, |b| b.len);
            if r.end > len || r.start > r.end {
                return Err(format!(
                    "step {si}: range [{}, {}) of buffer {} (len {len})",
                    r.start, r.end, r.buffer
                ));
            }
        }
    }
    for slot in plan.inputs.iter().chain(&plan.outputs).chain(&plan.params) {
        let b = plan.buffers.get(slot.buffer.0 as usize).ok_or(format!(
            "slot `{}`: buffer {} does not exist",
            slot.name, slot.buffer.0
        ))?;
        if b.dtype != slot.dtype || slot.shape.numel() > b.len {
            return Err(format!("slot `{}` does not fit its buffer", slot.name));
        }
    }
    schedule::check_plan(plan)
}
