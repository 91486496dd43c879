//! What the fused passes share: the geometry of a conv block in NHWC memory, per-channel
//! sums, the BatchNorm affine maps, the job split, the instruction-set dispatch and the
//! length checks that make the SIMD kernels' raw loads safe.
//!
//! The passes take plain slices (no tensors), so each is tested against a naive
//! transcription. Rows are split into a fixed number of jobs (not one per thread), run on
//! libtorch's intra-op threads, and per-job partial sums are added in job order, so results
//! do not depend on the thread count. Per-channel sums are accumulated in `f64`.

use crate::{Error, Result};

/// Whether the AVX-512 kernels run (the CPU has them and the caller did not turn them off).
pub(crate) fn use_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::avx512::available() && !PORTABLE_ONLY.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Forces the portable kernels (tests compare the two).
pub(crate) static PORTABLE_ONLY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub(crate) fn check_len(what: &'static str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Shape {
            what,
            expected: vec![want as i64],
            got: vec![got as i64],
        })
    }
}

/// Checks that `len` values are whole positions of `c` channels.
pub(crate) fn check_whole_positions(what: &'static str, len: usize, c: usize) -> Result<()> {
    if c > 0 && len.is_multiple_of(c) {
        Ok(())
    } else {
        Err(Error::Shape {
            what,
            expected: vec![-1, c as i64],
            got: vec![len as i64],
        })
    }
}

/// The NUL-terminated message a C function wrote into `buffer`.
pub(crate) fn c_message(buffer: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = buffer
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Jobs per pass: enough to balance a few cores, few enough to keep the partial sums cheap.
const JOBS: usize = 32;

/// Compiles `$body` (an `#[inline(always)]` fn) for AVX-512 and AVX2+FMA and picks the best
/// the CPU has at run time; other targets get the portable build. The bodies use plain
/// `+ - *` and `f32::mul_add` (always fused: an FMA instruction in the AVX builds, libm's
/// `fmaf` elsewhere), so all builds give the same bits.
macro_rules! dispatch {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has every feature `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has every feature `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use dispatch;

/// Shape of one conv block's output and its pooling, in NHWC memory order
/// `[n][f][t][c]` (batch, frequency, time, channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Batch.
    pub n: usize,
    /// Frequency bins.
    pub f: usize,
    /// Time frames.
    pub t: usize,
    /// Channels.
    pub c: usize,
    /// Pool size = stride along frequency.
    pub pf: usize,
    /// Pool size = stride along time.
    pub pt: usize,
}

impl Geometry {
    /// Frequency bins after pooling (floor, as Keras "valid" pooling).
    pub fn fo(&self) -> usize {
        self.f / self.pf
    }
    /// Frames after pooling.
    pub fn to(&self) -> usize {
        self.t / self.pt
    }
    /// Elements of the conv output.
    pub fn len(&self) -> usize {
        self.n * self.f * self.t * self.c
    }
    /// Elements of the pooled output.
    pub fn pooled_len(&self) -> usize {
        self.n * self.fo() * self.to() * self.c
    }
    /// Positions per channel of the conv output (the BatchNorm population).
    pub fn positions(&self) -> usize {
        self.n * self.f * self.t
    }
}

/// Per-channel sums of a pass, in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChannelSums {
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

impl ChannelSums {
    pub(crate) fn zeros(c: usize) -> Self {
        Self {
            a: vec![0.0; c],
            b: vec![0.0; c],
        }
    }
    /// Adds the parts in order (deterministic).
    pub(crate) fn total(parts: Vec<ChannelSums>, c: usize) -> Self {
        let mut out = Self::zeros(c);
        for p in parts {
            for (o, v) in out.a.iter_mut().zip(&p.a) {
                *o += v;
            }
            for (o, v) in out.b.iter_mut().zip(&p.b) {
                *o += v;
            }
        }
        out
    }
}

pub(crate) fn rows_per_job(rows: usize) -> usize {
    rows.div_ceil(JOBS).max(1)
}

/// The per-channel affine map of BatchNorm, `y = scale * x + shift`, and the sign used to
/// pool before it (`max(scale * x + shift) = scale * ext(x) + shift`, `ext` = max where
/// `scale >= 0`, min where it is negative).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Affine {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub sign: Vec<f32>,
}

impl Affine {
    /// From `scale` and `shift`.
    pub fn new(scale: Vec<f32>, shift: Vec<f32>) -> Self {
        let sign = scale
            .iter()
            .map(|&s| if s < 0.0 { -1.0 } else { 1.0 })
            .collect();
        Self { scale, shift, sign }
    }
}

pub(crate) fn check_affine(affine: &Affine, c: usize) -> Result<()> {
    for v in [&affine.scale, &affine.shift, &affine.sign] {
        check_len("BatchNorm scale/shift", v.len(), c)?;
    }
    Ok(())
}

/// Coefficients of the BatchNorm backward for the dense pass:
/// `de = scale * g_scattered + c0 + c1 * (e - mean)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BnBackward {
    pub scale: Vec<f32>,
    pub mean: Vec<f32>,
    pub c0: Vec<f32>,
    pub c1: Vec<f32>,
}

impl BnBackward {
    /// From the training statistics and the sums of [`pooled_grad`]: with `M` positions,
    /// `de = scale * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)`.
    pub fn new(
        gamma: &[f32],
        mean: &[f32],
        invstd: &[f32],
        sums: &ChannelSums,
        positions: usize,
    ) -> Self {
        let m = positions as f64;
        let c = gamma.len();
        let (mut scale, mut c0, mut c1) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
        for ch in 0..c {
            let a = gamma[ch] as f64 * invstd[ch] as f64;
            scale[ch] = a as f32;
            c0[ch] = (-a * sums.a[ch] / m) as f32;
            c1[ch] = (-a * invstd[ch] as f64 * sums.b[ch] / m) as f32;
        }
        Self {
            scale,
            mean: mean.to_vec(),
            c0,
            c1,
        }
    }
}

/// Biased batch statistics from sums over `count` values: `(mean, variance)` per channel.
pub(crate) fn mean_variance(sums: &ChannelSums, count: usize) -> (Vec<f64>, Vec<f64>) {
    let m = count as f64;
    sums.a
        .iter()
        .zip(&sums.b)
        .map(|(&s, &q)| {
            let mean = s / m;
            (mean, (q / m - mean * mean).max(0.0))
        })
        .unzip()
}
