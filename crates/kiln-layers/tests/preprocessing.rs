//! Preprocessing against Keras's results: the examples of the Keras docs, and small cases
//! worked out by hand from Keras's source (and checked against `keras_preprocessing` 1.1.2).

use kiln_layers::preprocessing::{
    argmax_rows, gather, gather_rows, normalize, pad_sequences, pad_sequences_f32,
    text_to_word_sequence, to_categorical, train_test_split, LabelEncoder, Padding,
    PreprocessingError, Tokenizer, DEFAULT_FILTERS,
};
use kiln_layers::{HostTensor, LayerError};
use std::collections::HashMap;

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

fn index(pairs: &[(&str, usize)]) -> HashMap<String, usize> {
    pairs.iter().map(|&(w, i)| (w.to_owned(), i)).collect()
}

// ------------------------------------------------------------------------------------------
// to_categorical

#[test]
fn to_categorical_keras_doc_example() {
    // keras.utils.to_categorical([0, 1, 2, 3], num_classes=4)
    let y = to_categorical(&[0usize, 1, 2, 3], Some(4)).unwrap();
    assert_eq!(y.shape.dims(), &[4, 4]);
    #[rustfmt::skip]
    let eye = vec![
        1., 0., 0., 0.,
        0., 1., 0., 0.,
        0., 0., 1., 0.,
        0., 0., 0., 1.,
    ];
    assert_eq!(y.to_f32(), eye);
}

#[test]
fn to_categorical_infers_max_plus_one_and_takes_any_integer() {
    let y = to_categorical(&[2i64, 0, 2], None).unwrap();
    assert_eq!(y.shape.dims(), &[3, 3]);
    assert_eq!(y.to_f32(), vec![0., 0., 1., 1., 0., 0., 0., 0., 1.]);
    let y = to_categorical(&[1u8], Some(3)).unwrap();
    assert_eq!(y.to_f32(), vec![0., 1., 0.]);
    assert_eq!(argmax_rows(&y).unwrap(), vec![1]);
    // An empty batch with an explicit class count is fine.
    assert_eq!(
        to_categorical::<usize>(&[], Some(3)).unwrap().shape.dims(),
        &[0, 3]
    );
}

#[test]
fn to_categorical_rejects_bad_labels() {
    match to_categorical(&[0usize, 3, 1], Some(3)) {
        Err(PreprocessingError::LabelOutOfRange {
            label,
            index,
            num_classes,
        }) => assert_eq!((label.as_str(), index, num_classes), ("3", 1, 3)),
        other => panic!("expected LabelOutOfRange, got {other:?}"),
    }
    // NumPy would wrap -1 to the last class; here it is an error.
    assert!(matches!(
        to_categorical(&[0i64, -1], None),
        Err(PreprocessingError::NotAnIndex { index: 1, .. })
    ));
    assert!(matches!(
        to_categorical::<usize>(&[], None),
        Err(PreprocessingError::Invalid { .. })
    ));
    assert!(matches!(
        to_categorical(&[1usize, 2], Some(usize::MAX)),
        Err(PreprocessingError::TooLarge { .. })
    ));
    // Converts into the crate's error for `?` in model code.
    let e: LayerError = to_categorical(&[5usize], Some(2)).unwrap_err().into();
    assert!(e.to_string().contains("label 5"), "{e}");
}

#[test]
fn argmax_rows_first_maximum_wins() {
    let p = HostTensor::f32([3, 3], vec![0.1, 0.7, 0.2, 0.5, 0.5, 0.0, 0., 0., 1.]).unwrap();
    assert_eq!(argmax_rows(&p).unwrap(), vec![1, 0, 2]);
    assert!(argmax_rows(&HostTensor::f32([3], vec![1., 2., 3.]).unwrap()).is_err());
}

// ------------------------------------------------------------------------------------------
// normalize

#[test]
fn normalize_l2_last_axis_leaves_zero_rows() {
    let x = HostTensor::f32([3, 2], vec![3., 4., 0., 0., -1., 0.]).unwrap();
    let y = normalize(&x, -1, 2.0).unwrap();
    assert_eq!(y.shape.dims(), &[3, 2]);
    close(&y.to_f32(), &[0.6, 0.8, 0., 0., -1., 0.]);
    // axis 1 is the same axis
    assert_eq!(normalize(&x, 1, 2.0).unwrap(), y);
}

#[test]
fn normalize_axis_0_and_other_orders() {
    // columns (3, 4) and (4, 3) both have norm 5
    let x = HostTensor::f32([2, 2], vec![3., 4., 4., 3.]).unwrap();
    close(
        &normalize(&x, 0, 2.0).unwrap().to_f32(),
        &[0.6, 0.8, 0.8, 0.6],
    );
    // L1: [1, 3] / 4; max norm: [1, -3] / 3
    let x = HostTensor::f32([1, 2], vec![1., 3.]).unwrap();
    close(&normalize(&x, -1, 1.0).unwrap().to_f32(), &[0.25, 0.75]);
    let x = HostTensor::f32([1, 2], vec![1., -3.]).unwrap();
    close(
        &normalize(&x, -1, f64::INFINITY).unwrap().to_f32(),
        &[1. / 3., -1.],
    );
    // p = 3: (1 + 8)^(1/3)
    let x = HostTensor::f32([2], vec![1., 2.]).unwrap();
    let n = 9f32.powf(1. / 3.);
    close(&normalize(&x, 0, 3.0).unwrap().to_f32(), &[1. / n, 2. / n]);
    // middle axis of a rank-3 tensor [2, 2, 1]: pairs (x[b, 0, 0], x[b, 1, 0])
    let x = HostTensor::i32([2, 2, 1], vec![3, 4, 0, 5]).unwrap();
    let y = normalize(&x, 1, 2.0).unwrap();
    assert_eq!(y.shape.dims(), &[2, 2, 1]);
    close(&y.to_f32(), &[0.6, 0.8, 0., 1.]);
}

#[test]
fn normalize_rejects_bad_axis_and_order() {
    let x = HostTensor::f32([2, 2], vec![1., 2., 3., 4.]).unwrap();
    assert!(matches!(
        normalize(&x, 2, 2.0),
        Err(PreprocessingError::Axis {
            axis: 2,
            rank: 2,
            ..
        })
    ));
    assert!(normalize(&x, -3, 2.0).is_err());
    assert!(normalize(&x, -1, 0.0).is_err());
    assert!(normalize(&x, -1, f64::NAN).is_err());
    assert!(normalize(&HostTensor::f32([], vec![1.]).unwrap(), -1, 2.0).is_err());
}

// ------------------------------------------------------------------------------------------
// pad_sequences

fn doc_sequences() -> Vec<Vec<i32>> {
    vec![vec![1], vec![2, 3], vec![4, 5, 6]]
}

#[test]
fn pad_sequences_keras_doc_examples() {
    use Padding::{Post, Pre};
    let s = doc_sequences();
    // keras.utils.pad_sequences(sequence)
    let x = pad_sequences(&s, None, Pre, Pre, 0).unwrap();
    assert_eq!(
        x,
        HostTensor::i32([3, 3], vec![0, 0, 1, 0, 2, 3, 4, 5, 6]).unwrap()
    );
    // value=-1
    let x = pad_sequences(&s, None, Pre, Pre, -1).unwrap();
    assert_eq!(x.to_f32(), vec![-1., -1., 1., -1., 2., 3., 4., 5., 6.]);
    // padding='post'
    let x = pad_sequences(&s, None, Post, Pre, 0).unwrap();
    assert_eq!(x.to_f32(), vec![1., 0., 0., 2., 3., 0., 4., 5., 6.]);
    // maxlen=2 (truncating 'pre' keeps the end)
    let x = pad_sequences(&s, Some(2), Pre, Pre, 0).unwrap();
    assert_eq!(x.shape.dims(), &[3, 2]);
    assert_eq!(x.to_f32(), vec![0., 1., 2., 3., 5., 6.]);
}

#[test]
fn pad_sequences_truncating_post_and_empty_rows() {
    use Padding::{Post, Pre};
    let x = pad_sequences(&[vec![1i64, 2, 3, 4, 5]], Some(3), Pre, Post, 0).unwrap();
    assert_eq!(x.to_f32(), vec![1., 2., 3.]);
    let x = pad_sequences(
        &[vec![1i64], vec![1, 2, 3, 4, 5, 6]],
        Some(4),
        Post,
        Post,
        0,
    )
    .unwrap();
    assert_eq!(x.to_f32(), vec![1., 0., 0., 0., 1., 2., 3., 4.]);
    let x = pad_sequences(&[vec![], vec![7usize]], Some(3), Pre, Pre, 0).unwrap();
    assert_eq!(x.to_f32(), vec![0., 0., 0., 0., 0., 7.]);
    // no sequences at all
    let none: Vec<Vec<i32>> = Vec::new();
    assert_eq!(
        pad_sequences(&none, None, Pre, Pre, 0)
            .unwrap()
            .shape
            .dims(),
        &[0, 0]
    );
    // slices work as well as Vecs
    let rows: [&[i32]; 2] = [&[1, 2], &[3]];
    assert_eq!(
        pad_sequences(&rows, None, Post, Pre, 9).unwrap().to_f32(),
        vec![1., 2., 3., 9.]
    );
}

#[test]
fn pad_sequences_f32_and_range_errors() {
    use Padding::{Post, Pre};
    // pad_sequences([[0.5, 1.5], [2.5]], dtype='float32', padding='post', value=-1.0)
    let x = pad_sequences_f32(&[vec![0.5f32, 1.5], vec![2.5]], None, Post, Pre, -1.0).unwrap();
    assert_eq!(
        x,
        HostTensor::f32([2, 2], vec![0.5, 1.5, 2.5, -1.0]).unwrap()
    );
    assert!(matches!(
        pad_sequences(&[vec![1i64 << 40]], None, Pre, Pre, 0),
        Err(PreprocessingError::Invalid { .. })
    ));
    assert!(pad_sequences(&[vec![0.5f32]], None, Pre, Pre, 0).is_err());
    assert!(matches!(
        pad_sequences(&[vec![1i32], vec![2]], Some(usize::MAX), Pre, Pre, 0),
        Err(PreprocessingError::TooLarge { .. })
    ));
}

// ------------------------------------------------------------------------------------------
// Tokenizer

const TUTORIAL: [&str; 3] = ["I love my dog", "I love my cat", "You love my dog!"];

#[test]
fn text_to_word_sequence_keras_rules() {
    let w = |t| text_to_word_sequence(t, DEFAULT_FILTERS, true, " ").unwrap();
    // the apostrophe is not a filter; '-', '!' and tab are
    assert_eq!(
        w("Don't stop--believing!\tNow"),
        ["don't", "stop", "believing", "now"]
    );
    // Unicode lower-casing with the final sigma, like Python; '\r' is not a separator
    assert_eq!(w("ΣΊΣΥΦΟΣ  Straße\rTab"), ["σίσυφος", "straße\rtab"]);
    assert_eq!(
        text_to_word_sequence("A,b", "", false, ",").unwrap(),
        ["A", "b"]
    );
    assert!(text_to_word_sequence("a b", DEFAULT_FILTERS, true, "").is_err());
    assert!(Tokenizer::new().with_split("").is_err());
}

#[test]
fn tokenizer_tutorial_corpus() {
    // counts: i 2, love 3, my 3, dog 2, cat 1, you 1; stable sort by count, ties in order of
    // first appearance: love, my, i, dog, cat, you
    let mut t = Tokenizer::new().with_num_words(100);
    t.fit_on_texts(&TUTORIAL);
    let expected = index(&[
        ("love", 1),
        ("my", 2),
        ("i", 3),
        ("dog", 4),
        ("cat", 5),
        ("you", 6),
    ]);
    assert_eq!(t.word_index(), &expected);
    assert_eq!(t.document_count(), 3);
    assert_eq!(
        t.texts_to_sequences(&["i really love my dog", "my dog loves my manatee"]),
        vec![vec![3, 1, 2, 4], vec![2, 4, 2]]
    );

    let mut t = Tokenizer::new().with_oov_token("<OOV>");
    t.fit_on_texts(&TUTORIAL);
    assert_eq!(t.word_index()["<OOV>"], 1);
    assert_eq!(t.word_index()["love"], 2);
    assert_eq!(t.word_index()["you"], 7);
    assert_eq!(
        t.texts_to_sequences(&["i really love my dog", "my dog loves my manatee"]),
        vec![vec![4, 1, 2, 3, 5], vec![3, 5, 1, 3, 1]]
    );
    assert_eq!(t.vocab_size(), 8);
}

const CORPUS: [&str; 3] = [
    "The cat sat on the mat.",
    "The dog ate my homework!",
    "My cat, the DOG?",
];

#[test]
fn tokenizer_counts_ties_and_num_words() {
    // counts in first-appearance order: the 4, cat 2, sat 1, on 1, mat 1, dog 2, ate 1, my 2,
    // homework 1 → the, cat, dog, my, sat, on, mat, ate, homework
    let mut t = Tokenizer::new();
    t.fit_on_texts(&CORPUS);
    let counts: Vec<(&str, usize)> = t
        .word_counts()
        .iter()
        .map(|(w, c)| (w.as_str(), *c))
        .collect();
    assert_eq!(
        counts,
        [
            ("the", 4),
            ("cat", 2),
            ("sat", 1),
            ("on", 1),
            ("mat", 1),
            ("dog", 2),
            ("ate", 1),
            ("my", 2),
            ("homework", 1)
        ]
    );
    let expected = index(&[
        ("the", 1),
        ("cat", 2),
        ("dog", 3),
        ("my", 4),
        ("sat", 5),
        ("on", 6),
        ("mat", 7),
        ("ate", 8),
        ("homework", 9),
    ]);
    assert_eq!(t.word_index(), &expected);
    assert_eq!(t.word_docs()["the"], 3);
    assert_eq!(t.word_docs()["cat"], 2);
    assert_eq!(t.word_docs()["homework"], 1);
    assert_eq!(t.index_word()[&3], "dog");
    let probe = ["the dog sat on my cat", "a cat!"];
    assert_eq!(
        t.texts_to_sequences(&probe),
        vec![vec![1, 3, 5, 6, 4, 2], vec![2]]
    );

    // num_words = 4 keeps indices 1..=3; word_index itself is not cut (as in Keras)
    let mut t = Tokenizer::new().with_num_words(4);
    t.fit_on_texts(&CORPUS);
    assert_eq!(t.word_index().len(), 9);
    assert_eq!(t.texts_to_sequences(&probe), vec![vec![1, 3, 2], vec![2]]);

    // with an OOV token: <OOV> 1, the 2, cat 3, dog 4, …; dropped words become 1
    let mut t = Tokenizer::new().with_num_words(4).with_oov_token("<OOV>");
    t.fit_on_texts(&CORPUS);
    assert_eq!(
        t.texts_to_sequences(&probe),
        vec![vec![2, 1, 1, 1, 1, 3], vec![1, 3]]
    );
    assert_eq!(
        t.sequences_to_texts(&[vec![2, 1, 1, 1, 1, 3], vec![9, 0, 3, 5]]),
        ["the <OOV> <OOV> <OOV> <OOV> cat", "<OOV> <OOV> cat <OOV>"]
    );
}

#[test]
fn tokenizer_is_cumulative_and_configurable() {
    let mut t = Tokenizer::new();
    t.fit_on_texts(&["b a"]);
    assert_eq!(t.word_index(), &index(&[("b", 1), ("a", 2)]));
    t.fit_on_texts(&["a".to_string()]);
    assert_eq!(t.word_index(), &index(&[("a", 1), ("b", 2)]));

    // each word once: first appearance decides
    let mut t = Tokenizer::new().with_lower(false).with_filters("");
    t.fit_on_texts(&["Hello hello hello!"]);
    assert_eq!(
        t.word_index(),
        &index(&[("Hello", 1), ("hello", 2), ("hello!", 3)])
    );
    let mut t = Tokenizer::new().with_split(",").unwrap().with_filters("");
    t.fit_on_texts(&["x y,z,,x y"]);
    assert_eq!(t.word_index(), &index(&[("x y", 1), ("z", 2)]));

    // an OOV token that is also a word keeps its later index, as Keras's dict(zip(...)) does
    let mut t = Tokenizer::new().with_oov_token("x");
    t.fit_on_texts(&["y x x"]);
    assert_eq!(t.word_index(), &index(&[("x", 2), ("y", 3)]));
    assert_eq!(t.texts_to_sequences(&["x z"]), vec![vec![2, 2]]);

    // before any fit everything is out of vocabulary
    assert_eq!(
        Tokenizer::new().texts_to_sequences(&["a b"]),
        vec![Vec::<i32>::new()]
    );
}

// ------------------------------------------------------------------------------------------
// train_test_split, gather

fn check_partition(n: usize, train: &[usize], test: &[usize]) {
    let mut all: Vec<usize> = train.iter().chain(test).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
}

#[test]
fn train_test_split_sizes_and_seeds() {
    // scikit-learn: n_test = ceil(0.25 * 10) = 3
    let (train, test) = train_test_split(10, 0.25, 7, None).unwrap();
    assert_eq!((train.len(), test.len()), (7, 3));
    check_partition(10, &train, &test);
    assert_eq!(
        train_test_split(10, 0.25, 7, None).unwrap(),
        (train.clone(), test)
    );
    let other = train_test_split(10, 0.25, 8, None).unwrap();
    assert_ne!(other.0, train);
    // shuffled, not just a cut
    let (train, _) = train_test_split(1000, 0.2, 1, None).unwrap();
    assert!(train.windows(2).any(|w| w[0] > w[1]));
}

#[test]
fn train_test_split_stratified_keeps_proportions() {
    let y: Vec<usize> = (0..100)
        .map(|i| match i % 10 {
            0..=5 => 0,
            6..=8 => 1,
            _ => 2,
        })
        .collect();
    let (train, test) = train_test_split(100, 0.2, 3, Some(&y)).unwrap();
    check_partition(100, &train, &test);
    let count = |idx: &[usize], c| idx.iter().filter(|&&i| y[i] == c).count();
    assert_eq!(
        [count(&test, 0), count(&test, 1), count(&test, 2)],
        [12, 6, 2]
    );
    assert_eq!(
        [count(&train, 0), count(&train, 1), count(&train, 2)],
        [48, 24, 8]
    );

    // 5/5/3 rows, test 30 % → ceil(3.9) = 4; exact shares 20/13, 20/13, 12/13: floors 1, 1, 0,
    // the two leftover rows go to the largest remainders (class 2, then class 0 on the tie)
    let y = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2];
    let (train, test) = train_test_split(13, 0.3, 11, Some(&y)).unwrap();
    check_partition(13, &train, &test);
    let count = |c| test.iter().filter(|&&i| y[i] == c).count();
    assert_eq!([count(0), count(1), count(2)], [2, 1, 1]);
}

#[test]
fn train_test_split_errors() {
    for f in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
        assert!(train_test_split(10, f, 0, None).is_err(), "{f}");
    }
    assert!(train_test_split(1, 0.5, 0, None).is_err());
    assert!(train_test_split(0, 0.5, 0, None).is_err());
    assert!(train_test_split(10, 0.99, 0, None).is_err()); // ceil(9.9) = 10 leaves no train
    assert!(train_test_split(10, 0.2, 0, Some(&[0, 1])).is_err());
}

#[test]
fn gather_rows_and_labels() {
    let x = HostTensor::f32([3, 2], vec![0., 1., 10., 11., 20., 21.]).unwrap();
    let g = gather_rows(&x, &[2, 0, 2]).unwrap();
    assert_eq!(
        g,
        HostTensor::f32([3, 2], vec![20., 21., 0., 1., 20., 21.]).unwrap()
    );
    let xi = HostTensor::i32([3, 1, 1], vec![5, 6, 7]).unwrap();
    assert_eq!(
        gather_rows(&xi, &[1]).unwrap(),
        HostTensor::i32([1, 1, 1], vec![6]).unwrap()
    );
    assert!(gather_rows(&x, &[3]).is_err());
    assert!(gather_rows(&HostTensor::f32([], vec![1.]).unwrap(), &[0]).is_err());
    // a hand-built tensor whose data does not fill its shape is an error, not a panic
    let broken = HostTensor {
        shape: [3, 2].into(),
        data: kiln_opt::HostData::F32(vec![1.0]),
    };
    assert!(gather_rows(&broken, &[2]).is_err());
    assert!(normalize(&broken, -1, 2.0).is_err());
    assert!(argmax_rows(&broken).is_err());
    assert_eq!(gather(&["a", "b", "c"], &[2, 0]).unwrap(), ["c", "a"]);
    assert!(gather(&[1, 2], &[2]).is_err());
}

// ------------------------------------------------------------------------------------------
// LabelEncoder

#[test]
fn label_encoder_like_scikit_learn() {
    // le.fit(["paris", "paris", "tokyo", "amsterdam"]); le.classes_ → amsterdam, paris, tokyo
    let mut le = LabelEncoder::new();
    le.fit(&["paris", "paris", "tokyo", "amsterdam"]);
    assert_eq!(le.classes(), ["amsterdam", "paris", "tokyo"]);
    assert_eq!(
        le.transform(&["tokyo", "tokyo", "paris"]).unwrap(),
        [2, 2, 1]
    );
    assert_eq!(
        le.inverse_transform(&[2, 2, 1]).unwrap(),
        ["tokyo", "tokyo", "paris"]
    );
    match le.transform(&["paris", "rome", "berlin", "rome"]) {
        Err(PreprocessingError::UnseenLabels(l)) => assert_eq!(l, ["berlin", "rome"]),
        other => panic!("expected UnseenLabels, got {other:?}"),
    }
    assert!(matches!(
        le.inverse_transform(&[3]),
        Err(PreprocessingError::UnknownCode {
            code: 3,
            num_classes: 3
        })
    ));
    // upper case sorts before lower case (code points), as in Python
    let mut le = LabelEncoder::new();
    let owned = vec!["b".to_string(), "B".to_string(), "a".to_string()];
    assert_eq!(le.fit_transform(&owned).unwrap(), [2, 0, 1]);
    assert!(matches!(
        LabelEncoder::new().transform(&["a"]),
        Err(PreprocessingError::NotFitted(_))
    ));
}
