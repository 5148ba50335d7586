//! The real data sets in `shared/data` (beside the repository root): sizes, class balance
//! and a few sums, as documented in `shared/data/README.md` and computed with NumPy and
//! `keras_preprocessing` 1.1.2. These tests need the files and FAIL (never skip) without them.

use kiln_layers::datasets::{self, Dataset, DatasetError, DATA_DIR_ENV};
use kiln_layers::preprocessing::{pad_sequences, Padding, Tokenizer};

fn load<T>(what: &str, r: Result<T, DatasetError>) -> T {
    r.unwrap_or_else(|e| panic!("loading {what}: {e}"))
}

fn sum(d: &Dataset) -> f64 {
    d.x.to_f64().iter().sum()
}

#[test]
fn iris_150_by_4_three_balanced_classes() {
    let d = load("iris", datasets::iris());
    assert_eq!(d.x.shape.dims(), &[150, 4]);
    assert_eq!(d.len(), 150);
    assert_eq!(d.num_features(), 4);
    assert_eq!(d.class_names, ["setosa", "versicolor", "virginica"]);
    assert_eq!(d.class_counts(), [50, 50, 50]);
    assert_eq!(&d.x.to_f32()[..4], &[5.1, 3.5, 1.4, 0.2]);
    assert_eq!(d.y[0], 0);
    assert!((sum(&d) - 2078.7).abs() < 1e-3, "{}", sum(&d));
    let one_hot = d.y_one_hot().unwrap();
    assert_eq!(one_hot.shape.dims(), &[150, 3]);

    // The file is sorted by class: a stratified split keeps 10 of each in a 20 % test set.
    let (train, test) = d.split(0.2, 1).unwrap();
    assert_eq!(train.class_counts(), [40, 40, 40]);
    assert_eq!(test.class_counts(), [10, 10, 10]);
    assert_eq!(test.x.shape.dims(), &[30, 4]);
}

#[test]
fn digits_1797_by_64() {
    let d = load("digits", datasets::digits());
    assert_eq!(d.x.shape.dims(), &[1797, 64]);
    assert_eq!(d.num_classes(), 10);
    assert_eq!(
        d.class_counts(),
        [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    );
    let x = d.x.to_f32();
    assert!(x
        .iter()
        .all(|&v| (0.0..=16.0).contains(&v) && v.fract() == 0.0));
    assert_eq!(sum(&d), 561_718.0);
    assert_eq!(&d.y[..2], &[0, 1]);
}

#[test]
fn mnist_5k_500_per_class() {
    let d = load("mnist_5k", datasets::mnist_5k());
    assert_eq!(d.x.shape.dims(), &[5000, 784]);
    assert_eq!(d.class_counts(), [500; 10]);
    let x = d.x.to_f32();
    assert_eq!(x.iter().copied().fold(0.0, f32::max), 255.0);
    assert_eq!(sum(&d), 131_267_102.0);
    // The rows are grouped by class (500 zeros, then 500 ones, …): never cut it in order.
    assert!(d.y[..500].iter().all(|&c| c == 0));
    assert!(d.y[4500..].iter().all(|&c| c == 9));
    let (train, test) = d.split(0.2, 0).unwrap();
    assert_eq!(train.class_counts(), [400; 10]);
    assert_eq!(test.class_counts(), [100; 10]);
}

#[test]
fn imdb_5k_reviews_and_keras_word_index() {
    let d = load("imdb_5k", datasets::imdb_5k());
    assert_eq!(d.len(), 5000);
    assert_eq!(d.class_counts(), [2483, 2517]);
    assert_eq!(d.class_names, ["negative", "positive"]);
    assert_eq!(d.keys[0], "5814_8");
    assert_eq!(d.labels[0], 1);
    assert!(d.texts[0].starts_with("With all this stuff going down at the moment with MJ"));
    assert!(d.texts.iter().any(|t| t.contains("<br />")));
    assert_eq!(d.pairs().filter(|(l, _)| *l == 1).count(), 2517);

    // Keras's Tokenizer on these reviews (keras_preprocessing 1.1.2 gives the same numbers):
    // the first indices are those of Keras's own IMDB word index.
    let mut t = Tokenizer::new().with_num_words(10_000);
    t.fit_on_texts(&d.texts);
    assert_eq!(t.word_index().len(), 43_514);
    let top = [
        "the", "and", "a", "of", "to", "is", "br", "in", "it", "i", "this", "that",
    ];
    for (i, w) in top.iter().enumerate() {
        assert_eq!(t.word_index()[*w], i + 1, "{w}");
    }
    let counts: std::collections::HashMap<&str, usize> = t
        .word_counts()
        .iter()
        .map(|(w, c)| (w.as_str(), *c))
        .collect();
    assert_eq!(
        (counts["the"], t.word_docs()["the"], counts["br"]),
        (68_050, 4962, 20_824)
    );
    let seqs = t.texts_to_sequences(&d.texts);
    assert_eq!((seqs[0].len(), seqs[1].len()), (418, 158));
    assert_eq!(
        &seqs[0][..12],
        &[15, 29, 11, 541, 151, 196, 30, 1, 549, 15, 6040, 208]
    );
    let x = pad_sequences(&seqs, Some(200), Padding::Pre, Padding::Pre, 0).unwrap();
    assert_eq!(x.shape.dims(), &[5000, 200]);
    let v = x.to_f64();
    assert_eq!(v.iter().sum::<f64>(), 601_253_387.0);
    assert_eq!(v.iter().filter(|&&x| x == 0.0).count(), 211_542);
    assert_eq!(&v[..5], &[23., 2370., 745., 106., 12.]);
}

#[test]
fn imdb_50k_full_split_25k_25k_balanced() {
    let (train, test) = load("imdb_50k", datasets::imdb_50k());
    assert_eq!((train.len(), test.len()), (25_000, 25_000));
    assert_eq!(train.class_counts(), [12_500, 12_500]);
    assert_eq!(test.class_counts(), [12_500, 12_500]);
    assert_eq!(train.class_names, ["negative", "positive"]);
    // negative and positive alternate: any prefix is balanced
    assert_eq!(&train.labels[..4], &[0, 1, 0, 1]);
    assert_eq!(&test.labels[..2], &[0, 1]);
    assert!(train.texts[0].starts_with("Story of a man who has unnatural feelings for a pig."));
    assert!(test.texts[0].starts_with("Once again Mr. Costner has dragged out a movie"));
    assert!(test.texts[24_999].starts_with("I was plagued by nightmares involving Sesame Street"));
    assert_eq!(
        (train.keys[0].as_str(), test.keys[24_999].as_str()),
        ("train/0", "test/24999")
    );
    assert!(train
        .texts
        .iter()
        .chain(&test.texts)
        .all(|t| !t.is_empty() && !t.contains('\t')));
    // 49,582 distinct texts, as commonly reported for this data set
    let mut distinct: Vec<&str> = train
        .texts
        .iter()
        .chain(&test.texts)
        .map(String::as_str)
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 49_582);
}

#[test]
fn rotten_tomatoes_12808_snippets() {
    let d = load("rotten_tomatoes", datasets::rotten_tomatoes());
    assert_eq!(d.len(), 12_808);
    assert_eq!(d.class_counts(), [5405, 7403]);
    assert_eq!(d.class_names, ["rotten", "fresh"]);
    assert_eq!(d.keys[0], "a_grin_without_a_cat");
    assert_eq!(d.texts[0], "A three-hour cinema master class.");
    assert_eq!(d.labels[0], 1);
    let mut movies = d.keys.clone();
    movies.sort();
    movies.dedup();
    assert_eq!(movies.len(), 508);
    let sub = d.select(&[1, 0]).unwrap();
    assert_eq!(sub.texts[1], d.texts[0]);
}

#[test]
fn texts_nietzsche_and_austen() {
    let n = load("nietzsche", datasets::text("nietzsche"));
    assert_eq!(n.chars().count(), 600_901);
    assert!(n.starts_with("PREFACE\n\n\nSUPPOSING that Truth is a woman"));
    let a = load("austen", datasets::text("austen_pride_and_prejudice.txt"));
    assert_eq!(a.chars().count(), 684_768);
    assert!(a.starts_with("PRIDE AND PREJUDICE"));
    assert!(a.contains("It is a truth universally acknowledged"));
    assert!(matches!(
        datasets::text("../etc/passwd"),
        Err(DatasetError::UnknownText(_))
    ));
}

#[test]
fn data_dir_is_found() {
    let dir = datasets::data_dir();
    assert!(
        dir.join("README.md").is_file(),
        "no shared/data at {} (set {DATA_DIR_ENV} or check out shared/ beside the repository)",
        dir.display()
    );
}

/// Runs only inside the child process started by `missing_file_is_a_clear_error`, where
/// `KILN_DATA_DIR` points at an empty folder; elsewhere it does nothing.
#[test]
fn missing_file_child() {
    if std::env::var_os("KILN_DATASETS_TEST_CHILD").is_none() {
        return;
    }
    let err = datasets::iris().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DatasetError::Missing { .. }), "{err:?}");
    assert!(
        msg.contains("iris.csv") && msg.contains("shared/data"),
        "{msg}"
    );
    let dir = std::env::var("KILN_DATA_DIR").unwrap();
    assert!(msg.contains(&dir), "{msg}");
    assert!(matches!(
        datasets::imdb_5k(),
        Err(DatasetError::Missing { .. })
    ));
    let e = datasets::imdb_50k().unwrap_err();
    assert!(matches!(e, DatasetError::Missing { .. }), "{e:?}");
    assert!(e.to_string().contains("imdb_50k.tsv.gz"), "{e}");
    let e: kiln_layers::LayerError = datasets::mnist_5k().unwrap_err().into();
    assert!(e.to_string().contains("mnist_5k.csv.gz"), "{e}");
    println!("CHILD-OK");
}

#[test]
fn missing_file_is_a_clear_error() {
    // A child process, so the environment change cannot race the other tests.
    let empty = std::env::temp_dir().join(format!("kiln-no-data-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "missing_file_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KILN_DATASETS_TEST_CHILD", "1")
        .env(DATA_DIR_ENV, &empty)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&empty);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
