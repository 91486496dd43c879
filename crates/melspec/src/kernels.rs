//! The per-frame arithmetic as plain slice loops, written so the compiler vectorises them.
//! [`MelSpectrogram`](crate::MelSpectrogram) runs them compiled twice: for the baseline x86-64
//! target and, when the CPU has them, with AVX2 + FMA enabled (no FMA contraction happens in
//! Rust without explicit calls, so both give bit-identical results).

use realfft::num_complex::Complex;

/// `out[k] = window[k] * frame[k]` in f32.
#[inline(always)]
pub(crate) fn window_f32(frame: &[f32], window: &[f32], out: &mut [f32]) {
    let n = out.len().min(frame.len()).min(window.len());
    let (frame, window, out) = (&frame[..n], &window[..n], &mut out[..n]);
    for k in 0..n {
        out[k] = window[k] * frame[k];
    }
}

/// `|X|^power` of a spectrum (f64 or f32 FFT output), in f32, into `out`.
///
/// As librosa, the spectrum is first stored as complex64 (each part rounded to f32). For
/// power 2 the result is `re^2 + im^2` computed exactly in f64 and rounded once: the correctly
/// rounded power (librosa squares an already rounded magnitude, which is within 2 ulp of it).
/// Other powers take the correctly rounded magnitude, then `powf` in f32.
#[inline(always)]
pub(crate) fn spectrum_power<T: Copy + Into<f64> + ToF32>(
    spec: &[Complex<T>],
    power: f32,
    out: &mut [f32],
) {
    let n = out.len().min(spec.len());
    let (spec, out) = (&spec[..n], &mut out[..n]);
    if power == 2.0 {
        for k in 0..n {
            let re = f64::from(spec[k].re.to_f32());
            let im = f64::from(spec[k].im.to_f32());
            out[k] = (re * re + im * im) as f32;
        }
        return;
    }
    for k in 0..n {
        let re = f64::from(spec[k].re.to_f32());
        let im = f64::from(spec[k].im.to_f32());
        out[k] = (re * re + im * im).sqrt() as f32;
    }
    if power != 1.0 {
        out.iter_mut().for_each(|m| *m = m.powf(power));
    }
}

/// Packs two windowed real frames into one complex signal: `buf[n] = w[n] a[n] + i w[n] b[n]`,
/// so one complex FFT transforms both (see [`unpack_pair_power`]).
#[inline(always)]
pub(crate) fn pack_windowed_pair(a: &[f32], b: &[f32], window: &[f64], buf: &mut [Complex<f64>]) {
    let n = buf.len().min(a.len()).min(b.len()).min(window.len());
    let (a, b, window, buf) = (&a[..n], &b[..n], &window[..n], &mut buf[..n]);
    for k in 0..n {
        buf[k] = Complex {
            re: window[k] * f64::from(a[k]),
            im: window[k] * f64::from(b[k]),
        };
    }
}

/// Splits the FFT `Y` of `a + i b` (both real) into the spectra of `a` and `b`,
/// `A[k] = (Y[k] + conj Y[N-k]) / 2`, `B[k] = (Y[k] - conj Y[N-k]) / 2i`, and writes
/// `|A[k]|^power`, `|B[k]|^power` for `k = 0 ..= N/2` exactly as [`spectrum_power`] would.
#[inline(always)]
pub(crate) fn unpack_pair_power(
    y: &[Complex<f64>],
    power: f32,
    out_a: &mut [f32],
    out_b: &mut [f32],
) {
    let n = y.len();
    let bins = (n / 2 + 1).min(out_a.len()).min(out_b.len());
    if n == 0 || bins == 0 {
        return;
    }
    let (out_a, out_b) = (&mut out_a[..bins], &mut out_b[..bins]);
    // k = 0 pairs with itself; for k >= 1 the partner is y[n - k], walked backwards.
    let (head, tail) = y.split_at(1);
    pair_power(head[0], head[0], power, &mut out_a[0], &mut out_b[0]);
    let reversed = tail.iter().rev();
    for (((yk, yn), pa), pb) in tail
        .iter()
        .zip(reversed)
        .zip(&mut out_a[1..])
        .zip(&mut out_b[1..])
    {
        pair_power(*yk, *yn, power, pa, pb);
    }
    if power != 2.0 && power != 1.0 {
        out_a.iter_mut().for_each(|m| *m = m.powf(power));
        out_b.iter_mut().for_each(|m| *m = m.powf(power));
    }
}

#[inline(always)]
fn pair_power(yk: Complex<f64>, yn: Complex<f64>, power: f32, pa: &mut f32, pb: &mut f32) {
    let a_re = f64::from((0.5 * (yk.re + yn.re)) as f32);
    let a_im = f64::from((0.5 * (yk.im - yn.im)) as f32);
    let b_re = f64::from((0.5 * (yk.im + yn.im)) as f32);
    let b_im = f64::from((0.5 * (yn.re - yk.re)) as f32);
    let sa = a_re * a_re + a_im * a_im;
    let sb = b_re * b_re + b_im * b_im;
    if power == 2.0 {
        *pa = sa as f32;
        *pb = sb as f32;
    } else {
        *pa = sa.sqrt() as f32;
        *pb = sb.sqrt() as f32;
    }
}

/// Rounding to f32, for the two FFT precisions.
pub(crate) trait ToF32 {
    /// The value rounded to f32.
    fn to_f32(self) -> f32;
}

impl ToF32 for f64 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
}

impl ToF32 for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

/// Per filter, the banded product of its weights with the power spectrum (filter `m` covers
/// bins `start..start + weights.len()`).
#[inline(always)]
pub(crate) fn mel_product(power: &[f32], bands: &[(usize, Vec<f32>)], mel: &mut [f32]) {
    for (m, (start, weights)) in mel.iter_mut().zip(bands) {
        *m = banded_dot(weights, &power[*start..*start + weights.len()]);
    }
}

/// `sum_k weights[k] * bins[k]` in f32 with eight independent accumulators (one AVX
/// register), summed pairwise: as accurate as librosa's f32 sgemm (<= 6e-7 relative).
#[inline(always)]
pub(crate) fn banded_dot(weights: &[f32], bins: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut w8 = weights.chunks_exact(8);
    let mut b8 = bins.chunks_exact(8);
    for (w, b) in (&mut w8).zip(&mut b8) {
        for j in 0..8 {
            acc[j] += w[j] * b[j];
        }
    }
    for (j, (&w, &b)) in w8.remainder().iter().zip(b8.remainder()).enumerate() {
        acc[j] += w * b;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// `10 log10(max(amin, x)) - offset` for every element, in f32, then returns the max.
/// log10 is evaluated in f64 by a branch-free, vectorisable series (error < 1e-12, so the f32
/// result is the correctly rounded value or 1 ulp from it); +inf stays +inf.
#[inline(always)]
pub(crate) fn to_db(values: &mut [f32], amin: f32, offset: f32) -> f32 {
    for x in values.iter_mut() {
        *x = db_value(*x, amin, offset);
    }
    values.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x))
}

/// `10 log10(max(amin, x)) - offset` of one value (see [`to_db`]).
#[inline(always)]
pub(crate) fn db_value(x: f32, amin: f32, offset: f32) -> f32 {
    let v = x.max(amin);
    let db = 10.0 * (log10_f64(f64::from(v)) as f32) - offset;
    if v < f32::INFINITY { db } else { f32::INFINITY }
}

/// log10 of a positive normal f64: `x = m 2^e` with `m` in [sqrt(1/2), sqrt(2)), then
/// `ln m = 2 atanh(s)`, `s = (m - 1) / (m + 1)`, |s| <= 0.1716, series to `s^17`.
#[inline(always)]
pub(crate) fn log10_f64(x: f64) -> f64 {
    const LOG10_2: f64 = std::f64::consts::LOG10_2;
    const LOG10_E: f64 = std::f64::consts::LOG10_E;
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let big = m > std::f64::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = (e + i64::from(big)) as f64;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = 1.0
        + s2 * (1.0 / 3.0
            + s2 * (1.0 / 5.0
                + s2 * (1.0 / 7.0
                    + s2 * (1.0 / 9.0
                        + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0 + s2 * (1.0 / 15.0 + s2 / 17.0)))))));
    e * LOG10_2 + 2.0 * s * p * LOG10_E
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_log10_is_within_one_ulp_of_f32_log10() {
        let mut x = 1.0e-10f32;
        let mut worst = 0i64;
        while x < 1.0e12 {
            let fast = log10_f64(f64::from(x)) as f32;
            let exact = f64::from(x).log10() as f32;
            worst = worst.max((fast.to_bits() as i64 - exact.to_bits() as i64).abs());
            x *= 1.000_37;
        }
        assert!(worst <= 1, "worst {worst} ulp");
    }

    #[test]
    fn pair_unpacking_equals_two_real_ffts() {
        use rustfft::FftPlanner;
        let n = 64;
        let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.3).sin()).collect();
        let w = vec![1.0f64; n];
        let mut buf = vec![Complex::default(); n];
        pack_windowed_pair(&a, &b, &w, &mut buf);
        FftPlanner::<f64>::new()
            .plan_fft_forward(n)
            .process(&mut buf);
        let (mut pa, mut pb) = (vec![0f32; n / 2 + 1], vec![0f32; n / 2 + 1]);
        unpack_pair_power(&buf, 2.0, &mut pa, &mut pb);
        for (x, p) in [(&a, &pa), (&b, &pb)] {
            let mut c: Vec<Complex<f64>> = x
                .iter()
                .map(|&v| Complex {
                    re: f64::from(v),
                    im: 0.0,
                })
                .collect();
            FftPlanner::<f64>::new().plan_fft_forward(n).process(&mut c);
            let mut want = vec![0f32; n / 2 + 1];
            spectrum_power(&c[..n / 2 + 1], 2.0, &mut want);
            for (g, w) in p.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-6 * w.max(1e-3), "{g} vs {w}");
            }
        }
    }

    #[test]
    fn banded_dot_equals_plain_sum() {
        let w: Vec<f32> = (0..23).map(|i| 0.1 * i as f32).collect();
        let b: Vec<f32> = (0..23).map(|i| 1.0 + i as f32).collect();
        let plain: f64 = w
            .iter()
            .zip(&b)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        assert!((f64::from(banded_dot(&w, &b)) - plain).abs() < 1e-6 * plain);
    }

    #[test]
    fn db_handles_floor_and_infinity() {
        let mut v = [0.0f32, 1.0, 100.0, f32::INFINITY];
        let max = to_db(&mut v, 1e-10, 0.0);
        assert_eq!(&v[..3], &[-100.0, 0.0, 20.0]);
        assert!(v[3].is_infinite() && max.is_infinite());
    }
}
