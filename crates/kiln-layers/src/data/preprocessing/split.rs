//! scikit-learn-style helpers: `train_test_split`, `gather_rows` / `gather`, `LabelEncoder`.

use super::{check_tensor, invalid, PreprocessingError, Result};
use kiln_ir::random::Rng;
use kiln_opt::{HostData, HostTensor};
use std::collections::{BTreeMap, BTreeSet};

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
