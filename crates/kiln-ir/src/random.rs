//! Counter-based random numbers: value `i` of stream `seed` is a pure function of
//! `(seed, i)`, so initializers and dropout masks are reproducible bit for bit on any device
//! and independent of evaluation order.

/// SplitMix64 finalizer: a bijective 64-bit mixer with good avalanche.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform `[0, 1)` value number `i` of stream `seed` (53 random bits).
pub fn uniform(seed: u64, i: u64) -> f64 {
    let h = mix64(mix64(seed) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A sequential generator over the counter-based stream.
#[derive(Clone, Debug)]
pub struct Rng {
    seed: u64,
    counter: u64,
}

impl Rng {
    /// A stream identified by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { seed, counter: 0 }
    }
    /// Next uniform value in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        let v = uniform(self.seed, self.counter);
        self.counter += 1;
        v
    }
    /// Next uniform value in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }
    /// Next standard normal value (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_f64() * n as f64) as usize).min(n.saturating_sub(1))
    }
    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// A 32-bit integer hash (PCG's RXS-M-XS output function): the building block of the
/// in-graph [`crate::Op::RandomUniform`], written with wrapping `u32` arithmetic only so that
/// every backend (the f64 evaluator, the CPU interpreter, WGSL) computes the same bits.
pub fn hash32(x: u32) -> u32 {
    let v = x.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let w = ((v >> ((v >> 28) + 4)) ^ v).wrapping_mul(277_803_737);
    (w >> 22) ^ w
}

/// Element `index` of `RandomUniform { seed }` at step `counter`: uniform in `[0, 1)` with 24
/// random bits (exactly representable in f32).
pub fn device_uniform(seed: u32, counter: u32, index: u32) -> f32 {
    let h = hash32(index ^ hash32(counter ^ hash32(seed)));
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}
