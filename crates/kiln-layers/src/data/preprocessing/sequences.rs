//! Keras `pad_sequences`.

use super::{filled, invalid, Result};
use kiln_opt::HostTensor;
use std::fmt::Display;

/// Where [`pad_sequences`] pads or truncates: Keras's `'pre'` / `'post'`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Padding {
    /// At the start of the sequence (Keras default for both padding and truncating).
    #[default]
    Pre,
    /// At the end of the sequence.
    Post,
}

/// Alias: truncation uses the same two sides as padding.
pub type Truncating = Padding;

/// An element type [`pad_sequences`] accepts.
pub trait SequenceValue: Copy + Display {
    /// The value as i32, if it is an integer that fits.
    fn to_i32(self) -> Option<i32>;
    /// The value as f32.
    fn to_f32(self) -> f32;
}

macro_rules! int_sequence_value {
    ($($t:ty),*) => {$(
        impl SequenceValue for $t {
            fn to_i32(self) -> Option<i32> {
                i32::try_from(self).ok()
            }
            fn to_f32(self) -> f32 {
                self as f32
            }
        }
    )*};
}
int_sequence_value!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

macro_rules! float_sequence_value {
    ($($t:ty),*) => {$(
        impl SequenceValue for $t {
            fn to_i32(self) -> Option<i32> {
                let v = self as f64;
                (v.fract() == 0.0 && v >= i32::MIN as f64 && v <= i32::MAX as f64)
                    .then_some(v as i32)
            }
            fn to_f32(self) -> f32 {
                self as f32
            }
        }
    )*};
}
float_sequence_value!(f32, f64);

/// Pads (and truncates) sequences to one length, like `keras.utils.pad_sequences` with the
/// default `dtype='int32'`: returns an i32 tensor `[seqs.len(), maxlen]`.
///
/// - `maxlen`: `None` = the longest sequence (0 when there are none).
/// - `padding`: where the `value` fill goes when a sequence is short (Keras default `Pre`).
/// - `truncating`: which end is dropped when a sequence is long (Keras default `Pre`, i.e.
///   keep the last `maxlen` values).
///
/// Errors when a value does not fit in i32 (use [`pad_sequences_f32`] for float data) or the
/// result is too large to allocate.
///
/// ```
/// use kiln_layers::preprocessing::{pad_sequences, Padding};
/// let x = pad_sequences(&[vec![1], vec![2, 3], vec![4, 5, 6]], None, Padding::Pre, Padding::Pre, 0).unwrap();
/// assert_eq!(x.to_f32(), vec![0., 0., 1., 0., 2., 3., 4., 5., 6.]);
/// ```
pub fn pad_sequences<S, T>(
    seqs: &[S],
    maxlen: Option<usize>,
    padding: Padding,
    truncating: Truncating,
    value: i32,
) -> Result<HostTensor>
where
    S: AsRef<[T]>,
    T: SequenceValue,
{
    let (n, m, data) = pad_impl(seqs, maxlen, padding, truncating, value, |v: T| {
        v.to_i32().ok_or_else(|| {
            invalid(
                "pad_sequences",
                format!("value {v} does not fit in i32; use pad_sequences_f32 for float data"),
            )
        })
    })?;
    Ok(HostTensor::i32([n, m], data)?)
}

/// [`pad_sequences`] with `dtype='float32'`: the same layout, an f32 tensor.
pub fn pad_sequences_f32<S, T>(
    seqs: &[S],
    maxlen: Option<usize>,
    padding: Padding,
    truncating: Truncating,
    value: f32,
) -> Result<HostTensor>
where
    S: AsRef<[T]>,
    T: SequenceValue,
{
    let (n, m, data) = pad_impl(seqs, maxlen, padding, truncating, value, |v: T| {
        Ok(v.to_f32())
    })?;
    Ok(HostTensor::f32([n, m], data)?)
}

fn pad_impl<S, T, U: Copy>(
    seqs: &[S],
    maxlen: Option<usize>,
    padding: Padding,
    truncating: Truncating,
    value: U,
    conv: impl Fn(T) -> Result<U>,
) -> Result<(usize, usize, Vec<U>)>
where
    S: AsRef<[T]>,
    T: SequenceValue,
{
    let m = maxlen.unwrap_or_else(|| seqs.iter().map(|s| s.as_ref().len()).max().unwrap_or(0));
    let n = seqs.len();
    let mut out = filled("pad_sequences", n, m, value)?;
    for (i, s) in seqs.iter().enumerate() {
        let s = s.as_ref();
        let kept = if s.len() <= m {
            s
        } else {
            match truncating {
                Padding::Pre => &s[s.len() - m..],
                Padding::Post => &s[..m],
            }
        };
        let start = match padding {
            Padding::Pre => m - kept.len(),
            Padding::Post => 0,
        };
        let row = &mut out[i * m..(i + 1) * m];
        for (dst, &v) in row[start..start + kept.len()].iter_mut().zip(kept) {
            *dst = conv(v)?;
        }
    }
    Ok((n, m, out))
}
