//! The Keras IMDB sentiment LSTM (`imdb_lstm` tutorial) in kiln: the top 5000 words
//! (`Tokenizer(num_words=5000, oov_token)`, fit on the training texts only: rarer words become
//! one out-of-vocabulary index, as in `imdb.load_data(num_words=5000)`),
//! `pad_sequences(maxlen=500)` (pre-padding and pre-truncation, Keras's defaults),
//! `Embedding(5000, 32) → LSTM(100) → Dense(1, sigmoid)`, binary crossentropy, Adam, 3 epochs,
//! batch 64; trained on the training reviews, accuracy reported on the test reviews.
//!
//! Data (`--data`):
//! - `full` (default): `imdb_50k.tsv.gz`, the tutorial's own 25,000 train / 25,000 test
//!   split (Keras reports 86.79 % test accuracy);
//! - `5k`: `imdb_5k.tsv.gz`, 5000 train-split reviews cut 50/50 by a seeded shuffle (sized
//!   for CI).
//!
//! `--reviews N` keeps N reviews in all (half to train, half to test): the first N/2 of each
//! full split (each prefix is balanced), or the first N of the 5k file before its shuffle.
//!
//! `cargo run --release --example imdb_lstm -- [--data full|5k] [--epochs N] [--maxlen N] [--reviews N] [--seed N] [--log-every STEPS] [--cpu]`
//!
//! The device is `kiln::default_device()` (`KILN_DEVICE` chooses); `--cpu` forces the CPU
//! plan interpreter. Data from `../shared/data` (or `$KILN_DATA_DIR`).

use kiln::preprocessing::{pad_sequences, Padding};
use kiln::{Adam, Dense, Embedding, Fit, HostTensor, Loss, Lstm, Metric, Sequential, Tokenizer};
use std::time::Instant;

const USAGE: &str = "usage: imdb_lstm [--data full|5k] [--epochs N] [--maxlen N] [--reviews N] \
                     [--seed N] [--log-every STEPS] [--cpu]";

/// Which IMDB reviews the example trains and tests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    /// `imdb_50k.tsv.gz`: the full 25,000 train / 25,000 test split (the tutorial's).
    Full,
    /// `imdb_5k.tsv.gz`: 5000 train-split reviews, cut 50/50 by a seeded shuffle.
    Imdb5k,
}

impl Data {
    /// Parses `--data`'s value.
    pub fn parse(s: &str) -> Result<Data, String> {
        match s {
            "full" | "50k" => Ok(Data::Full),
            "5k" => Ok(Data::Imdb5k),
            other => Err(format!("--data {other:?}: expected `full` or `5k`")),
        }
    }
}

struct Args {
    data: Data,
    epochs: usize,
    maxlen: usize,
    reviews: Option<usize>,
    seed: u64,
    log_every: usize,
    cpu: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        data: Data::Full,
        epochs: 3,
        maxlen: 500,
        reviews: None,
        seed: 7,
        log_every: 0,
        cpu: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let num = |name: &str, v: Result<String, String>| -> Result<usize, String> {
            v?.parse().map_err(|e| format!("{name}: {e}"))
        };
        match flag.as_str() {
            "--data" => a.data = Data::parse(&value("--data")?)?,
            "--epochs" => a.epochs = num("--epochs", value("--epochs"))?,
            "--maxlen" => a.maxlen = num("--maxlen", value("--maxlen"))?,
            "--reviews" => a.reviews = Some(num("--reviews", value("--reviews"))?),
            "--seed" => a.seed = num("--seed", value("--seed"))? as u64,
            "--log-every" => a.log_every = num("--log-every", value("--log-every"))?,
            "--cpu" => a.cpu = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    if a.maxlen == 0 || a.epochs == 0 {
        return Err("--maxlen and --epochs must be at least 1".into());
    }
    if a.reviews.is_some_and(|n| n < 2) {
        return Err("--reviews must be at least 2 (one to train, one to test)".into());
    }
    Ok(a)
}

/// Train/test tensors: padded word indices `[n, maxlen]` and labels `[n, 1]`.
pub struct Split {
    /// Training sequences.
    pub x_train: HostTensor,
    /// Training labels.
    pub y_train: HostTensor,
    /// Test sequences.
    pub x_test: HostTensor,
    /// Test labels.
    pub y_test: HostTensor,
}

type BoxError = Box<dyn std::error::Error>;

/// The first `n` rows of `d` (all of them if it has fewer).
fn head(d: kiln::datasets::TextDataset, n: usize) -> Result<kiln::datasets::TextDataset, BoxError> {
    let idx: Vec<usize> = (0..n.min(d.len())).collect();
    Ok(d.select(&idx)?)
}

/// The train and test reviews of `data` (`reviews`: how many in all, see the crate page).
fn load(
    data: Data,
    reviews: Option<usize>,
    seed: u64,
) -> Result<(kiln::datasets::TextDataset, kiln::datasets::TextDataset), BoxError> {
    match data {
        Data::Full => {
            let (mut train, mut test) = kiln::datasets::imdb_50k()?;
            if let Some(n) = reviews {
                train = head(train, n / 2)?;
                test = head(test, n - n / 2)?;
            }
            Ok((train, test))
        }
        Data::Imdb5k => {
            let mut data = kiln::datasets::imdb_5k()?;
            if let Some(n) = reviews {
                data = head(data, n)?;
            }
            // a seeded shuffle, then the first half trains
            let mut order: Vec<usize> = (0..data.len()).collect();
            let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let half = data.len() / 2;
            Ok((data.select(&order[..half])?, data.select(&order[half..])?))
        }
    }
}

/// Loads `data`, tokenizes the reviews (vocabulary from the training reviews only) and pads
/// them to `maxlen`.
pub fn prepare(
    data: Data,
    reviews: Option<usize>,
    maxlen: usize,
    seed: u64,
) -> Result<Split, BoxError> {
    let (train, test) = load(data, reviews, seed)?;
    let clean =
        |t: &[String]| -> Vec<String> { t.iter().map(|r| r.replace("<br />", " ")).collect() };
    let (train_texts, test_texts) = (clean(&train.texts), clean(&test.texts));
    // words outside the top 5000 stay in the sequence as one out-of-vocabulary index, as
    // `keras.datasets.imdb.load_data(num_words=5000)` keeps them (its `oov_char`)
    let mut tok = Tokenizer::new()
        .with_num_words(5000)
        .with_oov_token("<oov>");
    tok.fit_on_texts(&train_texts);
    let pad = |texts: &[String]| {
        pad_sequences(
            &tok.texts_to_sequences(texts),
            Some(maxlen),
            Padding::Pre,
            Padding::Pre,
            0,
        )
    };
    let labels = |l: &[usize]| HostTensor::f32([l.len(), 1], l.iter().map(|&v| v as f32).collect());
    Ok(Split {
        x_train: pad(&train_texts)?,
        y_train: labels(&train.labels)?,
        x_test: pad(&test_texts)?,
        y_test: labels(&test.labels)?,
    })
}

/// The tutorial's model.
pub fn model(device: Box<dyn kiln::Backend>, maxlen: usize, seed: u64) -> kiln::Result<Sequential> {
    let mut m = Sequential::new(device).seed(seed);
    m.add(Embedding::new(5000, 32).input_length(maxlen))?;
    m.add(Lstm::new(100))?;
    m.add(Dense::new(1).activation(kiln::Activation::Sigmoid))?;
    m.compile(
        Loss::BinaryCrossentropy,
        Adam::new(0.001),
        &[Metric::Accuracy],
    )?;
    Ok(m)
}

#[allow(dead_code)]
fn main() {
    if let Err(e) = run() {
        eprintln!("imdb_lstm: error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), BoxError> {
    let args = parse_args()?;
    let t_start = Instant::now();
    let split = prepare(args.data, args.reviews, args.maxlen, args.seed)?;
    let (n_train, n_test) = (split.x_train.shape.dims()[0], split.x_test.shape.dims()[0]);
    println!(
        "imdb ({}): {n_train} train / {n_test} test reviews, maxlen {}, prepared in {:.1} s",
        match args.data {
            Data::Full => "imdb_50k, the full split",
            Data::Imdb5k => "imdb_5k, seeded 50/50 split",
        },
        args.maxlen,
        t_start.elapsed().as_secs_f64()
    );
    let device = if args.cpu {
        Box::new(kiln::opt::interp::CpuBackend::new()) as Box<dyn kiln::Backend>
    } else {
        kiln::default_device()
    };
    let mut m = model(device, args.maxlen, args.seed)?;
    println!("device: {}", m.device());
    println!("{}", m.summary());
    let steps = n_train.div_ceil(64);
    let t0 = Instant::now();
    let mut stamps = vec![];
    let mut epoch_logs = vec![];
    let mut timer = kiln::LambdaCallback::new()
        .on_batch_end(|step| {
            if args.log_every > 0 && (step + 1) % args.log_every == 0 {
                println!(
                    "  step {}/{steps}: {:.1} s",
                    step + 1,
                    t0.elapsed().as_secs_f64()
                );
            }
        })
        .on_epoch_end(|_, logs| {
            stamps.push(t0.elapsed().as_secs_f64());
            epoch_logs.push(logs.clone());
        });
    m.fit_with_callbacks(
        &split.x_train,
        &split.y_train,
        Fit {
            epochs: args.epochs,
            batch_size: 64,
            ..Fit::default()
        },
        &mut [&mut timer],
    )?;
    drop(timer);
    let t_fit = t0.elapsed().as_secs_f64();
    let logs = m.evaluate(&split.x_test, &split.y_test, 64)?;
    let acc = logs.get("accuracy").copied().unwrap_or(f64::NAN);
    println!(
        "\nresult: test accuracy {:.2} % (loss {:.4}) on {n_test} test reviews",
        acc * 100.0,
        logs.get("loss").copied().unwrap_or(f64::NAN)
    );
    let mut prev = 0.0;
    for (e, (t, l)) in stamps.iter().zip(&epoch_logs).enumerate() {
        let get = |k: &str| l.get(k).copied().unwrap_or(f64::NAN);
        println!(
            "  epoch {}: loss {:.4}, accuracy {:.4}; {:.1} s ({:.1} samples/s)",
            e + 1,
            get("loss"),
            get("accuracy"),
            t - prev,
            n_train as f64 / (t - prev)
        );
        prev = *t;
    }
    println!(
        "wall time: {:.1} s in all ({t_fit:.1} s training, {:.1} s test evaluation)",
        t_start.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64() - t_fit
    );
    Ok(())
}
