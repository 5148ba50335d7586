//! The Keras char-LSTM text generator (`lstm_text_generation.py`) in kiln: lower-cased
//! Nietzsche, windows of 40 characters every 3, `LSTM(128) → Dense(vocab, softmax)`,
//! categorical crossentropy, RMSprop(lr 0.01), batch 128. After each epoch it samples 400
//! characters at temperatures 0.2 / 0.5 / 1.0 / 1.2 from a random seed window (as the
//! tutorial's LambdaCallback does). The tutorial's first-order Markov-chain baseline is
//! printed first.
//!
//! The one-hot input is built inside the model (`OneHot(vocab)`, a gather from an identity
//! table — the same `[batch, 40, vocab]` tensor the tutorial feeds), so the host holds
//! character indices (32 MB) rather than the 1.8 GB one-hot array.
//!
//! `cargo run --release --example char_lstm -- [--epochs N] [--chars N] [--gen N] [--seed N] [--cpu]`
//!
//! Data: `../shared/data/nietzsche.txt` (or `$KILN_DATA_DIR`).

use kiln::{
    Callback, CallbackContext, Dense, Fit, HostTensor, Logs, Loss, Lstm, Metric, OneHot, RmsProp,
    Sequential,
};
use std::collections::BTreeSet;

const MAXLEN: usize = 40;
const STEP: usize = 3;

struct Args {
    epochs: usize,
    chars: Option<usize>,
    gen: usize,
    seed: u64,
    batch: usize,
    cpu: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        epochs: 1,
        chars: None,
        gen: 400,
        seed: 1,
        batch: 128,
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
            "--chars" => a.chars = Some(num("--chars")?),
            "--gen" => a.gen = num("--gen")?,
            "--seed" => a.seed = num("--seed")? as u64,
            "--batch" => a.batch = num("--batch")?,
            "--cpu" => a.cpu = true,
            "-h" | "--help" => {
                println!("usage: char_lstm [--epochs N] [--chars N] [--gen N] [--seed N] [--batch N] [--cpu]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    if a.batch == 0 || a.epochs == 0 {
        return Err("--batch and --epochs must be at least 1".into());
    }
    Ok(a)
}

/// A tiny deterministic generator for sampling (SplitMix64).
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.next_f64() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// The tutorial's `sample`: reweight `p` by temperature, draw one index.
fn sample(p: &[f32], temperature: f64, rng: &mut Rng) -> usize {
    let logits: Vec<f64> = p
        .iter()
        .map(|&x| (x.max(1e-12) as f64).ln() / temperature)
        .collect();
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
    let total: f64 = w.iter().sum();
    let mut r = rng.next_f64() * total;
    for (i, x) in w.iter().enumerate() {
        r -= x;
        if r <= 0.0 {
            return i;
        }
    }
    w.len() - 1
}

/// The corpus as character indices, and the vocabulary.
struct Corpus {
    vocab: Vec<char>,
    ids: Vec<usize>,
}

impl Corpus {
    fn text(&self, ids: &[usize]) -> String {
        ids.iter().map(|&i| self.vocab[i]).collect()
    }
}

/// First-order Markov chain: P(next | current) from bigram counts (the tutorial's baseline).
fn markov_baseline(c: &Corpus, n: usize, rng: &mut Rng) -> String {
    let v = c.vocab.len();
    let mut counts = vec![0f32; v * v];
    for w in c.ids.windows(2) {
        counts[w[0] * v + w[1]] += 1.0;
    }
    let mut cur = c.ids[rng.below(c.ids.len())];
    let mut out = vec![cur];
    for _ in 0..n {
        let row = &counts[cur * v..(cur + 1) * v];
        cur = sample(row, 1.0, rng);
        out.push(cur);
    }
    c.text(&out)
}

/// Samples text after every epoch, at the tutorial's four temperatures.
struct Sampler<'c> {
    corpus: &'c Corpus,
    n: usize,
    rng: Rng,
}

impl Sampler<'_> {
    fn generate(&mut self, model: &mut Sequential) -> kiln::Result<()> {
        let ids = &self.corpus.ids;
        let start = self.rng.below(ids.len() - MAXLEN - 1);
        for temperature in [0.2, 0.5, 1.0, 1.2] {
            let mut window: Vec<usize> = ids[start..start + MAXLEN].to_vec();
            let mut generated = self.corpus.text(&window);
            println!("----- temperature {temperature}");
            println!("----- seed: \"{}\"", generated.replace('\n', " "));
            for _ in 0..self.n {
                let x = HostTensor::f32([1, MAXLEN], window.iter().map(|&i| i as f32).collect())?;
                let p = model.predict_on_batch(&x)?.to_f32();
                let next = sample(&p, temperature, &mut self.rng);
                generated.push(self.corpus.vocab[next]);
                window.remove(0);
                window.push(next);
            }
            println!("{}\n", &generated[MAXLEN..]);
        }
        Ok(())
    }
}

impl Callback for Sampler<'_> {
    fn on_epoch_end(
        &mut self,
        ctx: &mut CallbackContext<'_>,
        epoch: usize,
        _logs: &mut Logs,
    ) -> kiln::Result<()> {
        println!("\n----- generating text after epoch {}", epoch + 1);
        self.generate(ctx.model())
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let path = kiln::datasets::data_path("nietzsche.txt");
    let raw = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "reading {}: {e} (see ../shared/data/README.md)",
            path.display()
        )
    })?;
    let mut text: Vec<char> = raw.to_lowercase().chars().collect();
    if let Some(n) = args.chars {
        text.truncate(n.max(MAXLEN + 2));
    }
    let vocab: Vec<char> = text
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index = |ch: char| vocab.binary_search(&ch).unwrap_or(0);
    let corpus = Corpus {
        ids: text.iter().map(|&ch| index(ch)).collect(),
        vocab,
    };
    let v = corpus.vocab.len();
    println!("corpus length: {}", text.len());
    println!("total chars: {v}");
    // windows of MAXLEN characters every STEP, and the character after each
    let starts: Vec<usize> = (0..text.len() - MAXLEN).step_by(STEP).collect();
    println!("nb sequences: {}", starts.len());
    let mut xs = Vec::with_capacity(starts.len() * MAXLEN);
    let mut ys = vec![0f32; starts.len() * v];
    for (n, &s) in starts.iter().enumerate() {
        xs.extend(corpus.ids[s..s + MAXLEN].iter().map(|&i| i as f32));
        ys[n * v + corpus.ids[s + MAXLEN]] = 1.0;
    }
    let x = HostTensor::f32([starts.len(), MAXLEN], xs)?;
    let y = HostTensor::f32([starts.len(), v], ys)?;

    let mut rng = Rng(args.seed);
    println!("\n----- first-order Markov chain baseline:");
    println!("{}\n", markov_baseline(&corpus, args.gen, &mut rng));

    let device = if args.cpu {
        Box::new(kiln::opt::interp::CpuBackend::new()) as Box<dyn kiln::Backend>
    } else {
        kiln::default_device()
    };
    let mut model = Sequential::new(device).seed(args.seed);
    model.add(OneHot::new(v).input_length(MAXLEN))?;
    model.add(Lstm::new(128))?;
    model.add(Dense::new(v).activation(kiln::Activation::Softmax))?;
    model.compile(
        Loss::CategoricalCrossentropy,
        RmsProp::new(0.01),
        &[Metric::Accuracy],
    )?;
    println!("device: {}", model.device());
    println!("{}", model.summary());

    let mut sampler = Sampler {
        corpus: &corpus,
        n: args.gen,
        rng: Rng(args.seed ^ 0x5eed),
    };
    let t0 = std::time::Instant::now();
    let mut stamps = vec![];
    let mut timer =
        kiln::LambdaCallback::new().on_epoch_end(|_, _| stamps.push(t0.elapsed().as_secs_f64()));
    let history = model.fit_with_callbacks(
        &x,
        &y,
        Fit {
            epochs: args.epochs,
            batch_size: args.batch,
            ..Fit::default()
        },
        &mut [&mut timer, &mut sampler],
    )?;
    drop(timer);
    let losses = history.history.get("loss").cloned().unwrap_or_default();
    println!(
        "\nresult: loss per epoch {:?}",
        losses.iter().map(|l| format!("{l:.4}")).collect::<Vec<_>>()
    );
    let mut prev = 0.0;
    for (e, t) in stamps.iter().enumerate() {
        println!(
            "  epoch {} {:.1} s ({:.0} samples/s, text generation included)",
            e + 1,
            t - prev,
            starts.len() as f64 / (t - prev)
        );
        prev = *t;
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("char_lstm: error: {e}");
        std::process::exit(1);
    }
}
