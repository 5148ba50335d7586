//! The Keras IMDB sentiment LSTM (`imdb_lstm` tutorial) in kiln: the top 5000 words
//! (`Tokenizer(num_words=5000, oov_token)`: rarer words become one out-of-vocabulary index,
//! as in `imdb.load_data(num_words=5000)`), `pad_sequences(maxlen=500)` (pre-padding and
//! pre-truncation, Keras's defaults), `Embedding(5000, 32) → LSTM(100) → Dense(1, sigmoid)`,
//! binary crossentropy, Adam, 3 epochs, batch 64, on `imdb_5k.tsv.gz` split 50/50 (the
//! tutorial uses the full 25k/25k set and reports 86.79 %).
//!
//! `cargo run --release --example imdb_lstm -- [--epochs N] [--maxlen N] [--reviews N] [--seed N] [--cpu]`
//!
//! Data: `../shared/data/imdb_5k.tsv.gz` (or `$KILN_DATA_DIR`).

use kiln::preprocessing::{pad_sequences, Padding};
use kiln::{Adam, Dense, Embedding, Fit, HostTensor, Loss, Lstm, Metric, Sequential, Tokenizer};

struct Args {
    epochs: usize,
    maxlen: usize,
    reviews: Option<usize>,
    seed: u64,
    cpu: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        epochs: 3,
        maxlen: 500,
        reviews: None,
        seed: 7,
        cpu: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            it.next()
                .ok_or(format!("{name} needs a value"))?
                .parse()
                .map_err(|e| format!("{name}: {e}"))
        };
        match flag.as_str() {
            "--epochs" => a.epochs = num("--epochs")?,
            "--maxlen" => a.maxlen = num("--maxlen")?,
            "--reviews" => a.reviews = Some(num("--reviews")?),
            "--seed" => a.seed = num("--seed")? as u64,
            "--cpu" => a.cpu = true,
            "-h" | "--help" => {
                println!(
                    "usage: imdb_lstm [--epochs N] [--maxlen N] [--reviews N] [--seed N] [--cpu]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    if a.maxlen == 0 || a.epochs == 0 {
        return Err("--maxlen and --epochs must be at least 1".into());
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

/// Tokenizes the reviews (vocabulary from the training half only), pads, splits 50/50.
pub fn prepare(
    reviews: Option<usize>,
    maxlen: usize,
    seed: u64,
) -> Result<Split, Box<dyn std::error::Error>> {
    let mut data = kiln::datasets::imdb_5k()?;
    if let Some(n) = reviews {
        let idx: Vec<usize> = (0..n.min(data.len())).collect();
        data = data.select(&idx)?;
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
    let train = data.select(&order[..half])?;
    let test = data.select(&order[half..])?;
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

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let split = prepare(args.reviews, args.maxlen, args.seed)?;
    println!(
        "imdb: {} train / {} test reviews, maxlen {}",
        split.x_train.shape.dims()[0],
        split.x_test.shape.dims()[0],
        args.maxlen
    );
    let device = if args.cpu {
        Box::new(kiln::opt::interp::CpuBackend::new()) as Box<dyn kiln::Backend>
    } else {
        kiln::default_device()
    };
    let mut m = model(device, args.maxlen, args.seed)?;
    println!("device: {}", m.device());
    println!("{}", m.summary());
    let t0 = std::time::Instant::now();
    let mut stamps = vec![];
    let mut timer =
        kiln::LambdaCallback::new().on_epoch_end(|_, _| stamps.push(t0.elapsed().as_secs_f64()));
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
    let logs = m.evaluate(&split.x_test, &split.y_test, 64)?;
    let acc = logs.get("accuracy").copied().unwrap_or(f64::NAN);
    println!(
        "\nresult: test accuracy {:.2} % (loss {:.4})",
        acc * 100.0,
        logs.get("loss").copied().unwrap_or(f64::NAN)
    );
    let n = split.x_train.shape.dims()[0] as f64;
    let mut prev = 0.0;
    for (e, t) in stamps.iter().enumerate() {
        println!(
            "  epoch {} {:.1} s ({:.1} samples/s)",
            e + 1,
            t - prev,
            n / (t - prev)
        );
        prev = *t;
    }
    Ok(())
}
