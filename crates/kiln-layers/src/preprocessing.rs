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

use crate::error::LayerError;
use kiln_ir::random::Rng;
use kiln_opt::{HostData, HostTensor};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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

// ---------------------------------------------------------------------------------------------
// pad_sequences
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------

/// Keras's default `filters`: punctuation, tab and newline (not the apostrophe).
pub const DEFAULT_FILTERS: &str = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n";

/// Splits a text into words like `keras.preprocessing.text.text_to_word_sequence`:
/// lower-case (if `lower`, Unicode-aware like Python's `str.lower`), replace every
/// character of `filters` by `split`, split on `split`, drop empty pieces.
///
/// Errors on an empty `split` (Python raises `ValueError: empty separator`).
pub fn text_to_word_sequence(
    text: &str,
    filters: &str,
    lower: bool,
    split: &str,
) -> Result<Vec<String>> {
    if split.is_empty() {
        return Err(invalid(
            "text_to_word_sequence",
            "empty split separator; use \" \" (the Keras default)",
        ));
    }
    Ok(words(text, filters, lower, split))
}

fn words(text: &str, filters: &str, lower: bool, split: &str) -> Vec<String> {
    let lowered;
    let text = if lower {
        lowered = text.to_lowercase();
        &lowered
    } else {
        text
    };
    let mut translated = String::with_capacity(text.len());
    for c in text.chars() {
        if filters.contains(c) {
            translated.push_str(split);
        } else {
            translated.push(c);
        }
    }
    translated
        .split(split)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A word tokenizer with the semantics of `keras.preprocessing.text.Tokenizer` (word level).
///
/// `fit_on_texts` counts words; `word_index` ranks them by descending count, ties broken by
/// first appearance (Keras sorts its insertion-ordered `word_counts` with a stable sort), with
/// indices from 1 (0 is left for padding) and the `oov_token`, if any, at index 1.
/// `texts_to_sequences` maps words to indices, keeping only indices `< num_words` when
/// `num_words` is set (`Some(0)` counts as unset, as in Keras) and mapping unknown or dropped
/// words to the OOV index when there is an `oov_token` (otherwise they are skipped).
///
/// ```
/// use kiln_layers::preprocessing::Tokenizer;
/// let mut t = Tokenizer::new().with_oov_token("<OOV>");
/// t.fit_on_texts(&["I love my dog", "I love my cat", "You love my dog!"]);
/// assert_eq!(t.word_index()["love"], 2);
/// assert_eq!(t.texts_to_sequences(&["i really love my dog"]), vec![vec![4, 1, 2, 3, 5]]);
/// ```
#[derive(Clone, Debug)]
pub struct Tokenizer {
    num_words: Option<usize>,
    filters: String,
    lower: bool,
    split: String,
    oov_token: Option<String>,
    document_count: usize,
    /// Words in first-appearance order with their counts (Keras's `OrderedDict`).
    counts: Vec<(String, usize)>,
    position: HashMap<String, usize>,
    docs: HashMap<String, usize>,
    word_index: HashMap<String, usize>,
    index_word: HashMap<usize, String>,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Tokenizer {
            num_words: None,
            filters: DEFAULT_FILTERS.to_owned(),
            lower: true,
            split: " ".to_owned(),
            oov_token: None,
            document_count: 0,
            counts: Vec::new(),
            position: HashMap::new(),
            docs: HashMap::new(),
            word_index: HashMap::new(),
            index_word: HashMap::new(),
        }
    }
}

impl Tokenizer {
    /// A tokenizer with Keras's defaults: all words, [`DEFAULT_FILTERS`], lower-casing,
    /// split on `' '`, no OOV token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Keep only word indices `< num_words` (the most frequent words, and the OOV token) in
    /// `texts_to_sequences`.
    pub fn with_num_words(mut self, num_words: usize) -> Self {
        self.num_words = Some(num_words);
        self
    }
    /// Characters replaced by the separator before splitting.
    pub fn with_filters(mut self, filters: &str) -> Self {
        self.filters = filters.to_owned();
        self
    }
    /// Whether texts are lower-cased.
    pub fn with_lower(mut self, lower: bool) -> Self {
        self.lower = lower;
        self
    }
    /// The word separator; errors if empty.
    pub fn with_split(mut self, split: &str) -> Result<Self> {
        if split.is_empty() {
            return Err(invalid(
                "Tokenizer",
                "empty split separator; use \" \" (the Keras default)",
            ));
        }
        self.split = split.to_owned();
        Ok(self)
    }
    /// The out-of-vocabulary token, given index 1.
    pub fn with_oov_token(mut self, token: &str) -> Self {
        self.oov_token = Some(token.to_owned());
        self
    }

    /// `num_words` as configured.
    pub fn num_words(&self) -> Option<usize> {
        self.num_words
    }
    /// The filter characters.
    pub fn filters(&self) -> &str {
        &self.filters
    }
    /// Whether texts are lower-cased.
    pub fn lower(&self) -> bool {
        self.lower
    }
    /// The separator.
    pub fn split(&self) -> &str {
        &self.split
    }
    /// The OOV token, if any.
    pub fn oov_token(&self) -> Option<&str> {
        self.oov_token.as_deref()
    }

    /// Splits one text the way this tokenizer does.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        words(text, &self.filters, self.lower, &self.split)
    }

    /// Updates the vocabulary from `texts` (cumulative over calls, like Keras) and rebuilds
    /// `word_index`.
    pub fn fit_on_texts<S: AsRef<str>>(&mut self, texts: &[S]) {
        for text in texts {
            self.document_count += 1;
            let seq = self.tokenize(text.as_ref());
            let mut seen = BTreeSet::new();
            for w in seq {
                match self.position.get(&w) {
                    Some(&p) => self.counts[p].1 += 1,
                    None => {
                        self.position.insert(w.clone(), self.counts.len());
                        self.counts.push((w.clone(), 1));
                    }
                }
                seen.insert(w);
            }
            for w in seen {
                *self.docs.entry(w).or_insert(0) += 1;
            }
        }
        let mut ranked: Vec<&(String, usize)> = self.counts.iter().collect();
        // Stable: ties keep first-appearance order.
        ranked.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        let vocab = self
            .oov_token
            .iter()
            .chain(ranked.into_iter().map(|(w, _)| w));
        self.word_index.clear();
        for (i, w) in vocab.enumerate() {
            // `dict(zip(...))`: a repeated word (an OOV token that is also a word) keeps its
            // last index, as in Keras.
            self.word_index.insert(w.clone(), i + 1);
        }
        self.index_word = self
            .word_index
            .iter()
            .map(|(w, &i)| (i, w.clone()))
            .collect();
    }

    /// Maps each text to its word indices (see the type's documentation for `num_words`
    /// and the OOV token). Before any fit, every text maps to an empty sequence.
    pub fn texts_to_sequences<S: AsRef<str>>(&self, texts: &[S]) -> Vec<Vec<i32>> {
        let limit = self.num_words.filter(|&n| n > 0);
        let oov = self
            .oov_token
            .as_ref()
            .and_then(|t| self.word_index.get(t).copied());
        texts
            .iter()
            .map(|text| {
                self.tokenize(text.as_ref())
                    .iter()
                    .filter_map(|w| match self.word_index.get(w) {
                        Some(&i) if limit.is_some_and(|n| i >= n) => oov,
                        Some(&i) => Some(i),
                        None => oov,
                    })
                    .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
                    .collect()
            })
            .collect()
    }

    /// Maps index sequences back to space-joined words (Keras `sequences_to_texts`): indices
    /// `>= num_words` and unknown indices become the OOV token if there is one, else they
    /// are dropped.
    pub fn sequences_to_texts<S: AsRef<[i32]>>(&self, seqs: &[S]) -> Vec<String> {
        let limit = self.num_words.filter(|&n| n > 0);
        let oov = self
            .oov_token
            .as_ref()
            .and_then(|t| self.word_index.get(t))
            .and_then(|i| self.index_word.get(i))
            .map(String::as_str);
        seqs.iter()
            .map(|s| {
                let words: Vec<&str> = s
                    .as_ref()
                    .iter()
                    .filter_map(|&i| {
                        let word = usize::try_from(i)
                            .ok()
                            .and_then(|i| self.index_word.get(&i).map(|w| (i, w)));
                        match word {
                            Some((i, _)) if limit.is_some_and(|n| i >= n) => oov,
                            Some((_, w)) => Some(w.as_str()),
                            None => oov,
                        }
                    })
                    .collect();
                words.join(" ")
            })
            .collect()
    }

    /// Word → index (from 1), over every word seen (not cut at `num_words`, as in Keras).
    pub fn word_index(&self) -> &HashMap<String, usize> {
        &self.word_index
    }
    /// Index → word.
    pub fn index_word(&self) -> &HashMap<usize, String> {
        &self.index_word
    }
    /// Word counts in first-appearance order (Keras's `OrderedDict` `word_counts`).
    pub fn word_counts(&self) -> &[(String, usize)] {
        &self.counts
    }
    /// Number of fitted documents containing each word.
    pub fn word_docs(&self) -> &HashMap<String, usize> {
        &self.docs
    }
    /// Number of texts fitted so far.
    pub fn document_count(&self) -> usize {
        self.document_count
    }
    /// The vocabulary size to give an `Embedding` layer: `num_words` if set, else
    /// `word_index().len() + 1` (index 0 is padding).
    pub fn vocab_size(&self) -> usize {
        match self.num_words.filter(|&n| n > 0) {
            Some(n) => n,
            None => self.word_index.len() + 1,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// train/test split
// ---------------------------------------------------------------------------------------------

/// Splits `0..n` into shuffled train and test index lists, like scikit-learn's
/// `train_test_split(..., test_size=test_fraction, shuffle=True)`.
///
/// The test set has `ceil(test_fraction * n)` rows (scikit-learn's rounding). With
/// `stratify = Some(labels)` (one label per row) every class keeps its proportion: the test
/// rows are allocated to classes by largest remainder (ties to the smaller class index) and
/// drawn at random within each class. Seeded with [`kiln_ir::random::Rng`]: the same
/// arguments give the same split.
///
/// Errors if `test_fraction` is not in `(0, 1)`, either side would be empty, or `stratify`
/// does not have `n` labels.
pub fn train_test_split(
    n: usize,
    test_fraction: f64,
    seed: u64,
    stratify: Option<&[usize]>,
) -> Result<(Vec<usize>, Vec<usize>)> {
    const OP: &str = "train_test_split";
    if test_fraction.is_nan() || test_fraction <= 0.0 || test_fraction >= 1.0 {
        return Err(invalid(
            OP,
            format!("test_fraction must be in (0, 1), got {test_fraction}"),
        ));
    }
    let n_test = (test_fraction * n as f64).ceil() as usize;
    if n_test == 0 || n_test >= n {
        return Err(invalid(
            OP,
            format!(
                "with n = {n} and test_fraction = {test_fraction} the {} set would be empty",
                if n_test == 0 { "test" } else { "train" }
            ),
        ));
    }
    let mut rng = Rng::new(seed);
    let (mut train, mut test) = match stratify {
        None => {
            let mut all: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut all);
            let train = all.split_off(n_test);
            (train, all)
        }
        Some(labels) => {
            if labels.len() != n {
                return Err(invalid(
                    OP,
                    format!("stratify has {} labels for n = {n} rows", labels.len()),
                ));
            }
            let mut classes: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (i, &c) in labels.iter().enumerate() {
                classes.entry(c).or_default().push(i);
            }
            // Largest-remainder allocation of n_test over the classes, in exact integer
            // arithmetic: class c gets floor(n_test * m_c / n), and the classes with the
            // largest remainders one more each. A class with a remainder has
            // n_test * m_c / n < m_c (as n_test < n), so the extra one always fits.
            let (nt, nn) = (n_test as u128, n as u128);
            let shares: Vec<(usize, u128)> = classes
                .values()
                .map(|m| {
                    let p = nt * m.len() as u128;
                    ((p / nn) as usize, p % nn)
                })
                .collect();
            let mut take: Vec<usize> = shares.iter().map(|s| s.0).collect();
            let mut order: Vec<usize> = (0..take.len()).collect();
            order.sort_by(|&a, &b| shares[b].1.cmp(&shares[a].1)); // stable: ties to lower class
            let left = n_test - take.iter().sum::<usize>();
            for &c in order.iter().take(left) {
                take[c] += 1;
            }
            let (mut train, mut test) = (Vec::with_capacity(n - n_test), Vec::new());
            for (members, &t) in classes.values_mut().zip(&take) {
                rng.shuffle(members);
                test.extend_from_slice(&members[..t]);
                train.extend_from_slice(&members[t..]);
            }
            (train, test)
        }
    };
    rng.shuffle(&mut train);
    rng.shuffle(&mut test);
    Ok((train, test))
}

/// The rows `idx` of `x` (NumPy `x[idx]`): a tensor `[idx.len(), ...]` of `x`'s dtype.
/// Errors on a scalar `x` or an index past its first dimension.
pub fn gather_rows(x: &HostTensor, idx: &[usize]) -> Result<HostTensor> {
    const OP: &str = "gather_rows";
    check_tensor(OP, x)?;
    let dims = x.shape.dims();
    let Some((&rows, rest)) = dims.split_first() else {
        return Err(invalid(OP, "cannot take rows of a scalar"));
    };
    let width: usize = rest.iter().product();
    if let Some(&bad) = idx.iter().find(|&&i| i >= rows) {
        return Err(invalid(
            OP,
            format!("row {bad} is out of range for shape {}", x.shape),
        ));
    }
    let mut shape = dims.to_vec();
    shape[0] = idx.len();
    fn take<T: Copy>(v: &[T], idx: &[usize], width: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(idx.len() * width);
        for &i in idx {
            out.extend_from_slice(&v[i * width..(i + 1) * width]);
        }
        out
    }
    Ok(match &x.data {
        HostData::F32(v) => HostTensor::f32(shape, take(v, idx, width))?,
        HostData::I32(v) => HostTensor::i32(shape, take(v, idx, width))?,
    })
}

/// The elements `idx` of `v` (for labels, texts…); errors on an index past the end.
pub fn gather<T: Clone>(v: &[T], idx: &[usize]) -> Result<Vec<T>> {
    idx.iter()
        .map(|&i| {
            v.get(i).cloned().ok_or_else(|| {
                invalid(
                    "gather",
                    format!("index {i} is out of range for {} elements", v.len()),
                )
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// LabelEncoder
// ---------------------------------------------------------------------------------------------

/// Encodes string labels as `0..n_classes`, like scikit-learn's `LabelEncoder`: `fit`
/// collects the sorted distinct labels (`classes`), `transform` maps labels to their
/// position there, `inverse_transform` maps back. Unknown labels and codes are errors.
#[derive(Clone, Debug, Default)]
pub struct LabelEncoder {
    classes: Option<Vec<String>>,
}

impl LabelEncoder {
    /// An unfitted encoder.
    pub fn new() -> Self {
        Self::default()
    }
    /// Learns the classes: the distinct labels, sorted (byte order = code point order, as
    /// Python sorts strings).
    pub fn fit<S: AsRef<str>>(&mut self, labels: &[S]) -> &mut Self {
        let set: BTreeSet<&str> = labels.iter().map(AsRef::as_ref).collect();
        self.classes = Some(set.into_iter().map(str::to_owned).collect());
        self
    }
    /// The fitted classes, sorted (empty before `fit`).
    pub fn classes(&self) -> &[String] {
        self.classes.as_deref().unwrap_or(&[])
    }
    /// Each label's class index; errors naming the labels not seen by `fit`.
    pub fn transform<S: AsRef<str>>(&self, labels: &[S]) -> Result<Vec<usize>> {
        let classes = self
            .classes
            .as_ref()
            .ok_or(PreprocessingError::NotFitted("LabelEncoder"))?;
        let mut unseen = BTreeSet::new();
        let codes: Vec<usize> = labels
            .iter()
            .filter_map(|l| {
                let l = l.as_ref();
                let found = classes.binary_search_by(|c| c.as_str().cmp(l)).ok();
                if found.is_none() {
                    unseen.insert(l.to_owned());
                }
                found
            })
            .collect();
        if !unseen.is_empty() {
            return Err(PreprocessingError::UnseenLabels(
                unseen.into_iter().collect(),
            ));
        }
        Ok(codes)
    }
    /// `fit` then `transform`.
    pub fn fit_transform<S: AsRef<str>>(&mut self, labels: &[S]) -> Result<Vec<usize>> {
        self.fit(labels);
        self.transform(labels)
    }
    /// The labels of class indices; errors on an index `>= classes().len()`.
    pub fn inverse_transform(&self, codes: &[usize]) -> Result<Vec<String>> {
        let classes = self
            .classes
            .as_ref()
            .ok_or(PreprocessingError::NotFitted("LabelEncoder"))?;
        codes
            .iter()
            .map(|&c| {
                classes
                    .get(c)
                    .cloned()
                    .ok_or(PreprocessingError::UnknownCode {
                        code: c,
                        num_classes: classes.len(),
                    })
            })
            .collect()
    }
}
