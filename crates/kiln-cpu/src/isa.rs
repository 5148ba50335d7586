//! The instruction sets the loops of this crate are compiled for, chosen once per run from
//! the CPU (one detection for the whole backend). The loops never fuse a multiply into an
//! add nor reassociate a sum, so every choice gives the same bits
//! (`recurrence::tests::every_instruction_set_gives_the_same_bits`).

/// An instruction set a hot loop may be compiled for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// The build's own target (SSE2 on x86-64, NEON on aarch64).
    Baseline,
    /// AVX2 + FMA: 8-wide.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F (with AVX2 + FMA): 16-wide.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The widest instruction set this CPU runs.
    pub(crate) fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            // `is_x86_feature_detected!` caches its answer: a load per call
            if std::arch::is_x86_feature_detected!("fma") {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Isa::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    return Isa::Avx2;
                }
            }
        }
        Isa::Baseline
    }

    /// Every instruction set this CPU runs, widest first (tests compare their bits).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut v = vec![Isa::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            let fma = std::arch::is_x86_feature_detected!("fma");
            if fma && std::arch::is_x86_feature_detected!("avx2") {
                v.insert(0, Isa::Avx2);
            }
            if fma && std::arch::is_x86_feature_detected!("avx512f") {
                v.insert(0, Isa::Avx512);
            }
        }
        v
    }
}
