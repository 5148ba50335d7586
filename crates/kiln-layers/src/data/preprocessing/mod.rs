//! Data preprocessing with Keras's names and behaviour: [`to_categorical`], [`normalize`],
//! [`pad_sequences`], the text [`Tokenizer`] (and [`text_to_word_sequence`]), plus
//! scikit-learn-style helpers every example needs: a seeded (optionally stratified)
//! [`train_test_split`], [`gather_rows`] / [`gather`] to apply it, and a [`LabelEncoder`].
//!
//! ## Invariants
//! - Every function returns a [`PreprocessingError`] on bad input; none panics, and sizes
//!   are checked (and allocations tried) before anything big is allocated.
//! - Results are bit-for-bit what the Keras/NumPy reference computes, where noted, or the
//!   documented difference (e.g. negative labels are an error, not NumPy's wrap-around).
//! - Randomness comes from [`kiln_ir::random::Rng`], so a split is a pure function of its
//!   seed.

mod sequences;
mod split;
mod text;

pub use sequences::{pad_sequences, pad_sequences_f32, Padding, SequenceValue, Truncating};
pub use split::{gather, gather_rows, train_test_split, LabelEncoder};
pub use text::{text_to_word_sequence, Tokenizer, DEFAULT_FILTERS};

use crate::error::LayerError;
use kiln_opt::{HostData, HostTensor};
use std::fmt::Display;

/// Errors of the preprocessing functions.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessingError {
    /// A class label cannot be encoded (negative, or not below the number of classes).
    #[error(
        "to_categorical: label {label} (position {index}) is not in 0..{num_classes}; \
         hint: pass num_classes = None to use max(label) + 1, or a larger num_classes"
    )]
    LabelOutOfRange {
        /// The offending label, as written.
        label: String,
        /// Its position in the input.
        index: usize,
        /// The number of classes in force.
        num_classes: usize,
    },
    /// A label that is not a class index at all (negative, or too large for `usize`).
    #[error(
        "to_categorical: label {label} (position {index}) is not a class index; \
         labels must be integers >= 0"
    )]
    NotAnIndex {
        /// The offending label, as written.
        label: String,
        /// Its position in the input.
        index: usize,
    },
    /// An axis outside the tensor's rank.
    #[error("{op}: axis {axis} is out of range for a tensor of rank {rank}")]
    Axis {
        /// The function.
        op: &'static str,
        /// The axis asked for.
        axis: isize,
        /// The tensor's rank.
        rank: usize,
    },
    /// An argument outside its domain.
    #[error("{op}: {message}")]
    Invalid {
        /// The function.
        op: &'static str,
        /// What is wrong, with a hint.
        message: String,
    },
    /// The result would be too large to allocate.
    #[error("{op}: a result of {what} elements is too large to allocate")]
    TooLarge {
        /// The function.
        op: &'static str,
        /// The requested size, in words.
        what: String,
    },
    /// A label the encoder was not fitted on.
    #[error("LabelEncoder: y contains previously unseen labels: {0:?}")]
    UnseenLabels(Vec<String>),
    /// An encoded label beyond the fitted classes.
    #[error("LabelEncoder: code {code} is not in 0..{num_classes} (the fitted classes)")]
    UnknownCode {
        /// The offending code.
        code: usize,
        /// Number of fitted classes.
        num_classes: usize,
    },
    /// A method that needs a fitted object was called before `fit`.
    #[error("{0}: not fitted yet; call fit first")]
    NotFitted(&'static str),
    /// Building the result tensor failed.
    #[error(transparent)]
    Tensor(#[from] kiln_opt::OptError),
}

impl From<PreprocessingError> for LayerError {
    fn from(e: PreprocessingError) -> Self {
        LayerError::Data(e.to_string())
    }
}

/// Result alias of this module.
pub type Result<T, E = PreprocessingError> = std::result::Result<T, E>;

fn invalid(op: &'static str, message: impl Into<String>) -> PreprocessingError {
    PreprocessingError::Invalid {
        op,
        message: message.into(),
    }
}

/// Errors if a tensor's data does not fill its shape (its fields are public, so a hand-built
/// one may be inconsistent).
fn check_tensor(op: &'static str, x: &HostTensor) -> Result<()> {
    let len = match &x.data {
        HostData::F32(v) => v.len(),
        HostData::I32(v) => v.len(),
    };
    if len != x.shape.numel() {
        return Err(invalid(
            op,
            format!("tensor of shape {} holds {len} values", x.shape),
        ));
    }
    Ok(())
}

/// `rows * cols`, checked, as the size of a buffer filled with `value` (allocation tried).
fn filled<T: Clone>(op: &'static str, rows: usize, cols: usize, value: T) -> Result<Vec<T>> {
    let n = rows
        .checked_mul(cols)
        .ok_or_else(|| PreprocessingError::TooLarge {
            op,
            what: format!("{rows} x {cols}"),
        })?;
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| PreprocessingError::TooLarge {
            op,
            what: format!("{rows} x {cols}"),
        })?;
    v.resize(n, value);
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// to_categorical
// ---------------------------------------------------------------------------------------------

/// One-hot encodes integer class labels, like `keras.utils.to_categorical`.
///
/// Returns an f32 tensor `[labels.len(), num_classes]` with a single 1 per row. Labels may be
/// any integer type (`usize`, `i64`, `i32`, `u8`, …). With `num_classes = None` the number
/// of classes is `max(label) + 1`, as in Keras.
///
/// Errors (where Keras would raise or silently wrap): a negative label, a label
/// `>= num_classes`, `None` with no labels to infer from, or a result too large to allocate.
///
/// ```
/// use kiln_layers::preprocessing::to_categorical;
/// let y = to_categorical(&[0usize, 2, 1], None).unwrap();
/// assert_eq!(y.shape.dims(), &[3, 3]);
/// assert_eq!(y.to_f32(), vec![1., 0., 0., 0., 0., 1., 0., 1., 0.]);
/// ```
pub fn to_categorical<L>(labels: &[L], num_classes: Option<usize>) -> Result<HostTensor>
where
    L: Copy + Display + TryInto<usize>,
{
    const OP: &str = "to_categorical";
    let mut idx = Vec::with_capacity(labels.len());
    for (i, &l) in labels.iter().enumerate() {
        match l.try_into() {
            Ok(v) => idx.push(v),
            Err(_) => {
                return Err(PreprocessingError::NotAnIndex {
                    label: l.to_string(),
                    index: i,
                })
            }
        }
    }
    let k = match num_classes {
        Some(k) => k,
        None => match idx.iter().max() {
            Some(&m) => m
                .checked_add(1)
                .ok_or_else(|| PreprocessingError::TooLarge {
                    op: OP,
                    what: format!("{} x (usize::MAX + 1)", labels.len()),
                })?,
            None => {
                return Err(invalid(
                    OP,
                    "cannot infer num_classes from an empty label list; pass Some(k)",
                ))
            }
        },
    };
    let mut out = filled(OP, idx.len(), k, 0.0f32)?;
    for (i, &c) in idx.iter().enumerate() {
        if c >= k {
            return Err(PreprocessingError::LabelOutOfRange {
                label: labels[i].to_string(),
                index: i,
                num_classes: k,
            });
        }
        out[i * k + c] = 1.0;
    }
    Ok(HostTensor::f32([idx.len(), k], out)?)
}

/// The class index of each row of a `[n, k]` tensor (argmax, first maximum wins) — the
/// inverse of [`to_categorical`], and how predictions become labels.
pub fn argmax_rows(x: &HostTensor) -> Result<Vec<usize>> {
    check_tensor("argmax_rows", x)?;
    let dims = x.shape.dims();
    if dims.len() != 2 || dims[1] == 0 {
        return Err(invalid(
            "argmax_rows",
            format!("expects a [n, k] tensor with k > 0, got shape {}", x.shape),
        ));
    }
    let k = dims[1];
    let v = x.to_f32();
    Ok(v.chunks(k)
        .map(|row| {
            let mut best = 0;
            for (j, &x) in row.iter().enumerate() {
                if x > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// normalize
// ---------------------------------------------------------------------------------------------

/// Normalizes `x` along `axis` by its `order`-norm, like `keras.utils.normalize` on a NumPy
/// array: `x / norm(x, order, axis)`, with zero norms replaced by 1 (so all-zero rows come
/// back unchanged).
///
/// `axis` may be negative (`-1` = last axis, the Keras default); `order` is the vector norm
/// order: `2.0` (Keras default, Euclidean), `1.0`, any `p > 0`, or `f64::INFINITY` (max
/// absolute value). Computed in f64, returned as f32 (an i32 input is converted, as NumPy's
/// true division does).
///
/// Keras 3's NumPy branch rewrites `axis = axis or -1`, so there `axis = 0` silently means
/// the last axis; here `axis = 0` means axis 0 (the Keras 2 behaviour).
pub fn normalize(x: &HostTensor, axis: isize, order: f64) -> Result<HostTensor> {
    const OP: &str = "normalize";
    check_tensor(OP, x)?;
    let dims = x.shape.dims().to_vec();
    let rank = dims.len();
    let ax = resolve_axis(OP, axis, rank)?;
    if order.is_nan() || order <= 0.0 {
        return Err(invalid(
            OP,
            format!("order must be > 0 (2 for L2, 1 for L1, f64::INFINITY for max), got {order}"),
        ));
    }
    let v = x.to_f64();
    let len = dims[ax];
    let inner: usize = dims[ax + 1..].iter().product();
    let outer: usize = dims[..ax].iter().product();
    let mut out = vec![0f32; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * len * inner + j * inner + i;
            let mut norm = if order == f64::INFINITY {
                (0..len).map(|j| v[at(j)].abs()).fold(0.0, f64::max)
            } else if order == 1.0 {
                (0..len).map(|j| v[at(j)].abs()).sum()
            } else if order == 2.0 {
                (0..len).map(|j| v[at(j)] * v[at(j)]).sum::<f64>().sqrt()
            } else {
                (0..len)
                    .map(|j| v[at(j)].abs().powf(order))
                    .sum::<f64>()
                    .powf(1.0 / order)
            };
            if norm == 0.0 {
                norm = 1.0;
            }
            for j in 0..len {
                out[at(j)] = (v[at(j)] / norm) as f32;
            }
        }
    }
    Ok(HostTensor::f32(dims, out)?)
}

fn resolve_axis(op: &'static str, axis: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    if rank == 0 || axis < -r || axis >= r {
        return Err(PreprocessingError::Axis { op, axis, rank });
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}
