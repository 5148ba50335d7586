//! The grid-search task: scikit-learn's `GridSearchCV` over a Keras classifier
//! (`KerasClassifier(build_fn=model, verbose=0)`, `param_grid = dict(batch_size=[10, 20, 40],
//! epochs=[1, 2, 3])`) in kiln. Every combination is scored by stratified 3-fold
//! cross-validation — a fresh model per fold, trained on two folds and scored (accuracy) on
//! the third — and the best mean wins, as `GridSearchCV(cv=3)` does.
//!
//! The data: scikit-learn's 8 × 8 digits (`digits.csv.gz`, 1797 images, values 0..16 scaled
//! to [0, 1]); the model: `Dense(32, relu) → Dense(10, softmax)`, sparse categorical
//! crossentropy on the integer labels, Adam, accuracy.

use kiln::{Activation, Adam, Dense, Fit, HostTensor, InputLayer, Loss, Metric, Sequential};

/// Hidden units.
pub const HIDDEN: usize = 32;
/// Classes.
pub const CLASSES: usize = 10;
/// Pixel values run 0..16.
pub const SCALE: f32 = 16.0;
/// Folds (`GridSearchCV`'s `cv=3`, its default before scikit-learn 0.22).
pub const FOLDS: usize = 3;

/// The tutorial's grid.
pub const BATCH_SIZES: [usize; 3] = [10, 20, 40];
/// The tutorial's grid.
pub const EPOCHS: [usize; 3] = [1, 2, 3];

/// The digits, features scaled to [0, 1], labels as class ids.
pub struct Data {
    /// f32 `[1797, 64]`.
    pub x: HostTensor,
    /// Class id per row.
    pub labels: Vec<usize>,
}

/// Loads `digits.csv.gz` from [`kiln::datasets::data_dir`] (a clear error when missing).
pub fn load() -> Result<Data, Box<dyn std::error::Error>> {
    let d = kiln::datasets::digits()?;
    let v = d.x.to_f32().into_iter().map(|p| p / SCALE).collect();
    Ok(Data {
        x: HostTensor::f32(d.x.shape.dims().to_vec(), v)?,
        labels: d.y,
    })
}

/// scikit-learn's `StratifiedKFold(n_splits=k, shuffle=False)`: `(train, test)` row indices
/// per fold. Classes are numbered by first appearance; with the labels sorted, fold `i`
/// receives, of class `c`, as many rows as `c` occurs in `sorted[i::k]`, taken in data order
/// (fold 0 the first ones). Each class is spread over the folds within one row.
pub fn stratified_kfold(labels: &[usize], k: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    let k = k.max(1);
    // encode by first appearance
    let mut code: Vec<(usize, usize)> = vec![]; // (label, code)
    let enc: Vec<usize> = labels
        .iter()
        .map(|l| match code.iter().find(|(x, _)| x == l) {
            Some(&(_, c)) => c,
            None => {
                code.push((*l, code.len()));
                code.len() - 1
            }
        })
        .collect();
    let n_classes = code.len();
    let mut sorted = enc.clone();
    sorted.sort_unstable();
    // allocation[c][i] = count of class c in sorted[i::k]
    let mut allocation = vec![vec![0usize; k]; n_classes];
    for (pos, &c) in sorted.iter().enumerate() {
        allocation[c][pos % k] += 1;
    }
    let mut test_fold = vec![0usize; labels.len()];
    for (c, alloc) in allocation.iter().enumerate() {
        let folds = alloc
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| std::iter::repeat_n(i, n));
        let rows = enc
            .iter()
            .enumerate()
            .filter(|(_, &e)| e == c)
            .map(|(r, _)| r);
        for (row, f) in rows.zip(folds) {
            test_fold[row] = f;
        }
    }
    (0..k)
        .map(|i| {
            let (test, train): (Vec<usize>, Vec<usize>) =
                (0..labels.len()).partition(|&r| test_fold[r] == i);
            (train, test)
        })
        .collect()
}

/// `Dense(32, relu) → Dense(10, softmax)` on 64 features, sparse categorical crossentropy,
/// Adam (Keras defaults), accuracy — the `build_fn` of the `KerasClassifier`.
pub fn model(device: Box<dyn kiln::Backend>, seed: u64) -> kiln::Result<Sequential> {
    let mut m = Sequential::new(device).seed(seed);
    m.add(InputLayer::new(&[64]))?;
    m.add(Dense::new(HIDDEN).activation(Activation::Relu))?;
    m.add(Dense::new(CLASSES).activation(Activation::Softmax))?;
    m.compile(
        Loss::SparseCategoricalCrossentropy,
        Adam::default(),
        &[Metric::Accuracy],
    )?;
    Ok(m)
}

/// One grid point's cross-validation result.
#[derive(Clone, Debug)]
pub struct CvResult {
    /// `batch_size`.
    pub batch_size: usize,
    /// `epochs`.
    pub epochs: usize,
    /// Accuracy on each held-out fold.
    pub scores: Vec<f64>,
}

impl CvResult {
    /// Mean of the fold scores (`mean_test_score`).
    pub fn mean(&self) -> f64 {
        self.scores.iter().sum::<f64>() / self.scores.len().max(1) as f64
    }
    /// Population standard deviation of the fold scores (`std_test_score`, NumPy's
    /// `std`).
    pub fn std(&self) -> f64 {
        let m = self.mean();
        (self.scores.iter().map(|s| (s - m).powi(2)).sum::<f64>() / self.scores.len().max(1) as f64)
            .sqrt()
    }
    /// The parameters as scikit-learn prints them.
    pub fn params(&self) -> String {
        format!(
            "{{'batch_size': {}, 'epochs': {}}}",
            self.batch_size, self.epochs
        )
    }
}

/// The grid in `ParameterGrid` order (keys sorted, the last one varying fastest).
pub fn grid(batch_sizes: &[usize], epochs: &[usize]) -> Vec<(usize, usize)> {
    batch_sizes
        .iter()
        .flat_map(|&b| epochs.iter().map(move |&e| (b, e)))
        .collect()
}

/// Cross-validates every grid point: for each fold a fresh model (`model(.., seed)`: new
/// weights, optimizer state reset) is fitted on the other folds (shuffled each epoch,
/// silent) and scored by `evaluate`'s accuracy on the fold, as `KerasClassifier` calls its
/// `build_fn` for every fit. All the models run on `device`, handed from one to the next
/// (`into_device`), so each plan's device code is built once. `progress` is called after
/// each grid point.
pub fn grid_search(
    data: &Data,
    batch_sizes: &[usize],
    epochs: &[usize],
    seed: u64,
    device: Box<dyn kiln::Backend>,
    progress: &mut dyn FnMut(&CvResult),
) -> Result<Vec<CvResult>, Box<dyn std::error::Error>> {
    let folds = stratified_kfold(&data.labels, FOLDS);
    let y_all: Vec<f32> = data.labels.iter().map(|&c| c as f32).collect();
    let y_all = HostTensor::f32([y_all.len()], y_all)?;
    let mut split = vec![];
    for (train, test) in &folds {
        split.push((
            kiln::preprocessing::gather_rows(&data.x, train)?,
            kiln::preprocessing::gather_rows(&y_all, train)?,
            kiln::preprocessing::gather_rows(&data.x, test)?,
            kiln::preprocessing::gather_rows(&y_all, test)?,
        ));
    }
    let mut results = vec![];
    let mut device = Some(device);
    for (batch_size, n_epochs) in grid(batch_sizes, epochs) {
        let mut scores = vec![];
        for (xtr, ytr, xte, yte) in &split {
            let dev = device.take().ok_or("the device was not handed back")?;
            let mut m = model(dev, seed)?;
            m.reset_optimizer_state()?;
            m.fit(
                xtr,
                ytr,
                Fit {
                    epochs: n_epochs,
                    batch_size,
                    verbose: false,
                    ..Fit::default()
                },
            )?;
            let n_test = xte.shape.dims()[0];
            let logs = m.evaluate(xte, yte, n_test)?;
            scores.push(logs["accuracy"]);
            device = Some(m.into_device());
        }
        let r = CvResult {
            batch_size,
            epochs: n_epochs,
            scores,
        };
        progress(&r);
        results.push(r);
    }
    Ok(results)
}

/// The best result (the first of equal means, as `GridSearchCV`'s rank 1).
pub fn best(results: &[CvResult]) -> Option<&CvResult> {
    results
        .iter()
        .fold(None, |b: Option<&CvResult>, r| match b {
            Some(b) if b.mean() >= r.mean() => Some(b),
            _ => Some(r),
        })
}

/// The tutorial's report: `Best: <mean> using {...}`, then `<mean> (<std>) with: {...}` per
/// grid point, numbers as Python's `%f`.
pub fn report(results: &[CvResult]) -> String {
    let mut s = String::new();
    if let Some(b) = best(results) {
        s.push_str(&format!("Best: {:.6} using {}\n", b.mean(), b.params()));
    }
    for r in results {
        s.push_str(&format!(
            "{:.6} ({:.6}) with: {}\n",
            r.mean(),
            r.std(),
            r.params()
        ));
    }
    s
}
