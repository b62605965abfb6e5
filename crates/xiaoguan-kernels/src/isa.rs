//! Which instruction-set path the kernels take, chosen at run time.
//!
//! The workspace is compiled for x86-64-v3 (AVX2, FMA, F16C), so AVX2 is the floor of every
//! SIMD path; VNNI paths are `#[target_feature]` functions entered only after
//! `is_x86_feature_detected!` said yes. `XIAOGUAN_KERNELS_ISA=scalar|avx2|avxvnni|avx512vnni`
//! lowers the default choice (it never raises it above what the CPU has).

use std::sync::OnceLock;

/// Kernel families, ordered from slowest to fastest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, any layout.
    Scalar,
    /// `vpmaddubsw` + `vpmaddwd` with the sign trick (|w| × sign(a, w)), 8 interleaved rows.
    Avx2,
    /// 256-bit `vpdpbusd` (AVX-VNNI), u8-biased weights, 8 interleaved rows.
    AvxVnni,
    /// 512-bit `vpdpbusd` (AVX-512 VNNI + BW + VL + F), u8-biased weights, 16 interleaved rows.
    Avx512Vnni,
}

pub const ALL_ISAS: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512Vnni];

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }

    pub fn parse(s: &str) -> Option<Isa> {
        ALL_ISAS.iter().copied().find(|i| i.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this CPU (and this build) can run the path.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c"),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => Isa::Avx2.is_supported() && is_x86_feature_detected!("avxvnni"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                Isa::Avx2.is_supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest path this CPU has, ignoring the environment.
    pub fn detected() -> Isa {
        *ALL_ISAS.iter().rev().find(|i| i.is_supported()).unwrap_or(&Isa::Scalar)
    }

    /// Every path this CPU can run, slowest first (tests run each).
    pub fn available() -> Vec<Isa> {
        ALL_ISAS.iter().copied().filter(|i| i.is_supported()).collect()
    }

    /// The default path: `detected()`, lowered by `XIAOGUAN_KERNELS_ISA` if set (read once).
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            let det = Isa::detected();
            match std::env::var("XIAOGUAN_KERNELS_ISA") {
                Ok(v) => match Isa::parse(&v) {
                    Some(want) if want <= det => want,
                    // Asked for more than the CPU has, or a typo: the best it really has.
                    _ => det,
                },
                Err(_) => det,
            }
        })
    }

    /// Output rows interleaved per packed block.
    pub fn nr(self) -> usize {
        match self {
            Isa::Avx512Vnni => 16,
            _ => 8,
        }
    }

    /// Weights stored as u8 = w + 128 (VNNI's `vpdpbusd` takes u8 × s8); AVX2 and scalar keep s8.
    pub fn biased(self) -> bool {
        matches!(self, Isa::AvxVnni | Isa::Avx512Vnni)
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One line for logs and benches: the path taken by default and what the CPU offers.
pub fn isa_report() -> String {
    let avail: Vec<&str> = Isa::available().iter().map(|i| i.name()).collect();
    format!("isa={} (detected {}, available {})", Isa::best(), Isa::detected(), avail.join(","))
}
