//! Weight initializers (Keras names and formulas), seeded and deterministic.

use kiln_ir::random::Rng;

/// How a weight tensor is initialized.
#[derive(Copy, Clone, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initializer {
    /// All zeros (Keras default for biases).
    Zeros,
    /// Uniform in `±sqrt(6 / (fan_in + fan_out))` (Keras default for kernels).
    #[default]
    GlorotUniform,
    /// Uniform in `[lo, hi)`.
    Uniform(f64, f64),
    /// An LSTM bias of `4 * units`: zeros with ones in the forget gate's block
    /// `units .. 2 * units` (Keras `unit_forget_bias`).
    UnitForgetBias(usize),
}

impl Initializer {
    /// `n` values for a tensor with the given fans, drawn from stream `seed`.
    pub fn values(self, n: usize, fan_in: usize, fan_out: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        match self {
            Initializer::Zeros => vec![0.0; n],
            Initializer::GlorotUniform => {
                let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
                (0..n).map(|_| rng.uniform(-limit, limit) as f32).collect()
            }
            Initializer::Uniform(lo, hi) => (0..n).map(|_| rng.uniform(lo, hi) as f32).collect(),
            Initializer::UnitForgetBias(u) => (0..n)
                .map(|i| if (u..2 * u).contains(&i) { 1.0 } else { 0.0 })
                .collect(),
        }
    }
}
