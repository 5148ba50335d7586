//! The slide deck's sentiment LSTM with dropout in kiln: texts lower-cased and stripped of
//! everything but `[a-zA-Z0-9\s]`, `Tokenizer(num_words=2000)`, `pad_sequences` (to the
//! longest text), `Embedding(2000, 128) → LSTM(196, dropout 0.2, recurrent_dropout 0.2) →
//! Dense(classes, softmax)`, categorical crossentropy, Adam, `LabelEncoder` +
//! `to_categorical`, `train_test_split(test_size=0.33)`, batch 32, 7 epochs. The deck used
//! tweets (`Sentiment.csv`, not available here); this runs on the Rotten Tomatoes snippets
//! (`rotten_tomatoes_snippets.tsv.gz`, fresh / rotten), reference TF-IDF + logistic
//! regression 77.0 %.
//!
//! `cargo run --release --example sentiment_dropout -- [--epochs N] [--samples N] [--seed N] [--cpu]`

use kiln::preprocessing::{pad_sequences, train_test_split, LabelEncoder, Padding};
use kiln::{Adam, Dense, Embedding, Fit, HostTensor, Loss, Lstm, Metric, Sequential, Tokenizer};

struct Args {
    epochs: usize,
    samples: Option<usize>,
    seed: u64,
    cpu: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        epochs: 7,
        samples: None,
        seed: 42,
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
            "--samples" => a.samples = Some(num("--samples")?),
            "--seed" => a.seed = num("--seed")? as u64,
            "--cpu" => a.cpu = true,
            "-h" | "--help" => {
                println!("usage: sentiment_dropout [--epochs N] [--samples N] [--seed N] [--cpu]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(a)
}

/// The deck's cleaning: lower-case, keep `[a-zA-Z0-9\s]` (its regex `[^a-zA-z0-9\s]` also
/// keeps `[\]^_` and the backtick, which it did not mean).
fn clean(t: &str) -> String {
    t.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || c.is_whitespace())
        .collect()
}

/// Padded sequences and one-hot labels, split into train and test.
pub struct Data {
    /// Training sequences.
    pub x_train: HostTensor,
    /// Training labels (one-hot).
    pub y_train: HostTensor,
    /// Test sequences.
    pub x_test: HostTensor,
    /// Test labels (one-hot).
    pub y_test: HostTensor,
    /// Class names.
    pub classes: Vec<String>,
}

/// Rows `idx` of `t` (first axis).
fn rows(t: &HostTensor, idx: &[usize]) -> kiln::opt::Result<HostTensor> {
    let d = t.shape.dims();
    let row: usize = d[1..].iter().product();
    let v = t.to_f32();
    let mut out = Vec::with_capacity(idx.len() * row);
    for &i in idx {
        out.extend_from_slice(&v[i * row..(i + 1) * row]);
    }
    let mut dims = d.to_vec();
    dims[0] = idx.len();
    HostTensor::f32(dims, out)
}

/// Loads, cleans, tokenizes, pads and splits the snippets.
pub fn load(samples: Option<usize>, seed: u64) -> Result<Data, Box<dyn std::error::Error>> {
    let mut data = kiln::datasets::rotten_tomatoes()?;
    if let Some(n) = samples {
        // a seeded subset, both classes kept in proportion
        let (_, keep) = train_test_split(
            data.len(),
            (n as f64 / data.len() as f64).clamp(0.01, 0.99),
            seed ^ 7,
            Some(&data.labels),
        )?;
        data = data.select(&keep)?;
    }
    let texts: Vec<String> = data.texts.iter().map(|t| clean(t)).collect();
    let mut tok = Tokenizer::new().with_num_words(2000);
    tok.fit_on_texts(&texts);
    let x = pad_sequences(
        &tok.texts_to_sequences(&texts),
        None,
        Padding::Pre,
        Padding::Pre,
        0,
    )?;
    let names: Vec<&str> = data
        .labels
        .iter()
        .map(|&l| data.class_names[l].as_str())
        .collect();
    let mut enc = LabelEncoder::new();
    let labels = enc.fit_transform(&names)?;
    let y = kiln::to_categorical(&labels, None)?;
    let (train, test) = train_test_split(labels.len(), 0.33, seed, None)?;
    Ok(Data {
        x_train: rows(&x, &train)?,
        y_train: rows(&y, &train)?,
        x_test: rows(&x, &test)?,
        y_test: rows(&y, &test)?,
        classes: enc.classes().to_vec(),
    })
}

/// The deck's model.
pub fn model(
    device: Box<dyn kiln::Backend>,
    len: usize,
    classes: usize,
    seed: u64,
) -> kiln::Result<Sequential> {
    let mut m = Sequential::new(device).seed(seed);
    m.add(Embedding::new(2000, 128).input_length(len))?;
    m.add(Lstm::new(196).dropout(0.2).recurrent_dropout(0.2))?;
    m.add(Dense::new(classes).activation(kiln::Activation::Softmax))?;
    m.compile(
        Loss::CategoricalCrossentropy,
        Adam::default(),
        &[Metric::Accuracy],
    )?;
    Ok(m)
}

#[allow(dead_code)]
fn main() {
    if let Err(e) = run() {
        eprintln!("sentiment_dropout: error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let d = load(args.samples, args.seed)?;
    let len = d.x_train.shape.dims()[1];
    println!(
        "rotten tomatoes: {} train / {} test snippets, padded to {len} words, classes {:?}",
        d.x_train.shape.dims()[0],
        d.x_test.shape.dims()[0],
        d.classes
    );
    let device = if args.cpu {
        Box::new(kiln::opt::interp::CpuBackend::new()) as Box<dyn kiln::Backend>
    } else {
        kiln::default_device()
    };
    let mut m = model(device, len, d.classes.len(), args.seed)?;
    println!("device: {}", m.device());
    println!("{}", m.summary());
    let t0 = std::time::Instant::now();
    m.fit(
        &d.x_train,
        &d.y_train,
        Fit {
            epochs: args.epochs,
            batch_size: 32,
            verbosity: kiln::Verbosity::from(2),
            ..Fit::default()
        },
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let logs = m.evaluate(&d.x_test, &d.y_test, 32)?;
    println!(
        "\nresult: test accuracy {:.2} % (loss {:.4}); {:.0} s for {} epochs ({:.1} s/epoch)",
        logs.get("accuracy").copied().unwrap_or(f64::NAN) * 100.0,
        logs.get("loss").copied().unwrap_or(f64::NAN),
        secs,
        args.epochs,
        secs / args.epochs as f64
    );
    Ok(())
}
