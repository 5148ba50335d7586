//! The options of [`Sequential::fit`](crate::Sequential::fit): [`Fit`] and its [`Verbosity`].

use kiln_opt::HostTensor;

/// Options of [`Sequential::fit`](crate::Sequential::fit) (Keras defaults).
#[derive(Clone, Debug)]
pub struct Fit {
    /// Passes over the data (default 1).
    pub epochs: usize,
    /// Samples per step (default 32).
    pub batch_size: usize,
    /// Reshuffle the training samples every epoch (default true).
    pub shuffle: bool,
    /// Print progress (default true); `false` silences every [`Verbosity`].
    pub verbose: bool,
    /// Progress style when `verbose` (Keras `verbose`: `Verbosity::from(0 | 1 | 2)`); the
    /// default `Auto` is the progress bar.
    pub verbosity: Verbosity,
    /// Held-out data evaluated after every epoch.
    pub validation_data: Option<(HostTensor, HostTensor)>,
    /// Fraction of the (unshuffled) training data, taken from its end, held out instead.
    pub validation_split: f64,
}

impl Default for Fit {
    fn default() -> Self {
        Fit {
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            verbose: true,
            verbosity: Verbosity::Auto,
            validation_data: None,
            validation_split: 0.0,
        }
    }
}

/// How much [`Sequential::fit`](crate::Sequential::fit) prints (Keras `verbose`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Verbosity {
    /// Keras `"auto"`: a progress bar, unless [`Fit::verbose`](crate::Fit::verbose) is false.
    #[default]
    Auto,
    /// `verbose=0`: nothing.
    Silent,
    /// `verbose=1`: an `Epoch i/n` line and a progress bar per epoch.
    ProgressBar,
    /// `verbose=2`: an `Epoch i/n` line and one summary line per epoch.
    OneLinePerEpoch,
}

impl From<u8> for Verbosity {
    /// Keras's integers: 0 silent, 1 progress bar, 2 (or more) one line per epoch.
    fn from(v: u8) -> Self {
        match v {
            0 => Verbosity::Silent,
            1 => Verbosity::ProgressBar,
            _ => Verbosity::OneLinePerEpoch,
        }
    }
}

impl Verbosity {
    /// The effective style: `verbose == false` silences every style; `Auto` is the bar.
    pub fn resolve(self, verbose: bool) -> Verbosity {
        match (verbose, self) {
            (false, _) | (_, Verbosity::Silent) => Verbosity::Silent,
            (true, Verbosity::Auto) | (true, Verbosity::ProgressBar) => Verbosity::ProgressBar,
            (true, Verbosity::OneLinePerEpoch) => Verbosity::OneLinePerEpoch,
        }
    }
}
