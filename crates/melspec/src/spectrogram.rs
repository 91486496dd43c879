//! [`MelSpectrogram`]: the validated plan (window, filterbank, FFT) and the CPU computation.

use std::sync::Arc;

use ndarray::parallel::prelude::*;
use ndarray::{Array2, ArrayViewMut2, Axis};
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use crate::filters::{filter_bands, hann_window, mel_filterbank};
use crate::kernels;
use crate::{Error, FftPrecision, MelConfig, PadMode, Result, power_to_db};

/// Frames computed per rayon task: large enough to amortise the per-task buffers.
const FRAMES_PER_TASK: usize = 32;

/// A mel-spectrogram plan: validated config, window, filterbank and FFT, made once and reused
/// for any number of signals (and from any number of threads).
#[derive(Clone)]
pub struct MelSpectrogram {
    config: MelConfig,
    window: Vec<f64>,
    window_f32: Vec<f32>,
    filterbank: Array2<f32>,
    /// Per filter: first non-zero bin and its weights.
    bands: Vec<(usize, Vec<f32>)>,
    /// Complex FFT of `n_fft` points: transforms two real frames at once (f64 path).
    fft_pair: Arc<dyn rustfft::Fft<f64>>,
    fft32: Arc<dyn RealToComplex<f32>>,
    kernels: Kernels,
}

impl std::fmt::Debug for MelSpectrogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelSpectrogram")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MelSpectrogram {
    /// Validates `config` and precomputes the window, the filterbank and the FFT plan.
    pub fn new(config: MelConfig) -> Result<Self> {
        config.validate()?;
        let window = hann_window(config.win_length, config.n_fft);
        let window_f32 = window.iter().map(|&w| w as f32).collect();
        let filterbank = mel_filterbank(&config)?;
        let bands = filter_bands(&filterbank)
            .into_iter()
            .zip(filterbank.outer_iter())
            .map(|((s, e), row)| (s, row.slice(ndarray::s![s..e]).to_vec()))
            .collect();
        let fft_pair = rustfft::FftPlanner::<f64>::new().plan_fft_forward(config.n_fft);
        let fft32 = RealFftPlanner::<f32>::new().plan_fft_forward(config.n_fft);
        Ok(Self {
            config,
            window,
            window_f32,
            filterbank,
            bands,
            fft_pair,
            fft32,
            kernels: Kernels::detect(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MelConfig {
        &self.config
    }

    /// The analysis window (f64, length `n_fft`).
    pub fn window(&self) -> &[f64] {
        &self.window
    }

    /// The filterbank `[n_mels, 1 + n_fft / 2]`.
    pub fn filterbank(&self) -> &Array2<f32> {
        &self.filterbank
    }

    /// Frames a signal of `n_samples` gives.
    pub fn n_frames(&self, n_samples: usize) -> usize {
        self.config.n_frames(n_samples)
    }

    /// Mel power spectrogram `[n_mels, frames]` (librosa `feature.melspectrogram`), frames
    /// computed in parallel on the current rayon pool.
    pub fn power(&self, samples: &[f32]) -> Result<Array2<f32>> {
        self.compute(samples, false)
    }

    /// Log-mel spectrogram in dB `[n_mels, frames]`: [`power`](Self::power) then
    /// [`power_to_db`] with the config's `ref_power`, `amin` and `top_db`, the floor taken
    /// over the whole signal. The logarithm runs inside the parallel frame loop.
    pub fn db(&self, samples: &[f32]) -> Result<Array2<f32>> {
        self.compute(samples, true)
    }

    /// Applies this config's dB conversion to a power spectrogram in place.
    pub fn power_to_db_inplace(&self, s: ArrayViewMut2<'_, f32>) {
        power_to_db(
            s,
            self.config.ref_power,
            self.config.amin,
            self.config.top_db,
        );
    }

    fn compute(&self, samples: &[f32], db: bool) -> Result<Array2<f32>> {
        self.check_signal(samples)?;
        let n_frames = self.n_frames(samples.len());
        let n_mels = self.config.n_mels;
        let amin = self.config.amin as f32;
        let offset = crate::db::db_offset(self.config.ref_power, self.config.amin);
        let mut out = Array2::<f32>::zeros((n_mels, n_frames));
        // Each task computes a block of frames frame-major in its own buffer, then writes the
        // block's columns of the [n_mels, frames] output.
        let max = out
            .axis_chunks_iter_mut(Axis(1), FRAMES_PER_TASK)
            .into_par_iter()
            .enumerate()
            .map_init(
                || FrameWorkspace::new(self),
                |ws, (task, mut block)| -> Result<f32> {
                    let frames = block.ncols();
                    let buf = &mut ws.block[..frames * n_mels];
                    let first = task * FRAMES_PER_TASK;
                    for (i, mels) in buf.chunks_mut(2 * n_mels).enumerate() {
                        self.frame_pair(samples, first + 2 * i, &mut ws.frame, mels)?;
                    }
                    let max = if db {
                        self.kernels.to_db(buf, amin, offset)
                    } else {
                        f32::NEG_INFINITY
                    };
                    for (m, mut row) in block.outer_iter_mut().enumerate() {
                        for (i, o) in row.iter_mut().enumerate() {
                            *o = buf[i * n_mels + m];
                        }
                    }
                    Ok(max)
                },
            )
            .try_reduce(|| f32::NEG_INFINITY, |a, b| Ok(a.max(b)))?;
        if let (true, Some(top)) = (db, self.config.top_db) {
            let floor = max - top as f32;
            out.par_mapv_inplace(|x| x.max(floor));
        }
        Ok(out)
    }

    fn check_signal(&self, samples: &[f32]) -> Result<()> {
        if samples.is_empty() {
            return Err(Error::EmptySignal);
        }
        if !self.config.center && samples.len() < self.config.n_fft {
            return Err(Error::SignalTooShort {
                n_samples: samples.len(),
                n_fft: self.config.n_fft,
            });
        }
        if let Some(index) = samples.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFinite {
                index,
                value: samples[index],
            });
        }
        Ok(())
    }

    /// Frame `t`'s samples, from the signal or, near the ends, padded into `edge`.
    fn frame_samples<'a>(&self, y: &'a [f32], t: usize, edge: &'a mut [f32]) -> &'a [f32] {
        let n_fft = self.config.n_fft;
        let pad = if self.config.center { n_fft / 2 } else { 0 };
        let start = (t * self.config.hop_length) as isize - pad as isize;
        if start >= 0 && start as usize + n_fft <= y.len() {
            return &y[start as usize..start as usize + n_fft];
        }
        for (k, b) in edge.iter_mut().enumerate() {
            *b = padded_sample(y, start + k as isize, self.config.pad_mode);
        }
        edge
    }

    /// Frames `t` and `t + 1` (when `mels` has room for two): window, FFT, |X|^power, banded
    /// mel product into `mels` (frame-major). The f64 path transforms both frames with one
    /// complex FFT; the f32 path runs a real FFT per frame.
    fn frame_pair(
        &self,
        y: &[f32],
        t: usize,
        ws: &mut FrameBuffers,
        mels: &mut [f32],
    ) -> Result<()> {
        let n_mels = self.config.n_mels;
        let (mel_a, mel_b) = mels.split_at_mut(n_mels);
        let k = self.kernels;
        let power = self.config.power;
        match self.config.fft_precision {
            FftPrecision::F64 => {
                let a = self.frame_samples(y, t, &mut ws.edge_a);
                let b: &[f32] = if mel_b.is_empty() {
                    &ws.zeros
                } else {
                    self.frame_samples(y, t + 1, &mut ws.edge_b)
                };
                k.pack_windowed_pair(a, b, &self.window, &mut ws.pair);
                self.fft_pair
                    .process_with_scratch(&mut ws.pair, &mut ws.pair_scratch);
                k.unpack_pair_power(&ws.pair, power, &mut ws.power, &mut ws.power_b);
                k.mel_product(&ws.power, &self.bands, mel_a);
                if !mel_b.is_empty() {
                    k.mel_product(&ws.power_b, &self.bands, mel_b);
                }
            }
            FftPrecision::F32 => {
                for (i, mel) in [mel_a, mel_b].into_iter().enumerate() {
                    if mel.is_empty() {
                        continue;
                    }
                    let frame = self.frame_samples(y, t + i, &mut ws.edge_a);
                    k.window_f32(frame, &self.window_f32, &mut ws.in32);
                    self.fft32
                        .process_with_scratch(&mut ws.in32, &mut ws.spec32, &mut ws.scratch32)
                        .map_err(|e| Error::Fft(e.to_string()))?;
                    k.power_f32(&ws.spec32, power, &mut ws.power);
                    k.mel_product(&ws.power, &self.bands, mel);
                }
            }
        }
        Ok(())
    }
}

/// The kernels of [`crate::kernels`], compiled for the baseline target or for AVX2 + FMA,
/// chosen once per plan by CPU detection.
#[derive(Clone, Copy, Debug)]
enum Kernels {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

macro_rules! dispatch {
    ($self:ident, $name:ident ( $($arg:expr),* )) => {
        match $self {
            Kernels::Baseline => baseline::$name($($arg),*),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernels::Avx2` is only made by `Kernels::detect` after
            // `is_x86_feature_detected!` confirmed AVX2 and FMA on this CPU.
            Kernels::Avx2 => unsafe { avx2::$name($($arg),*) },
        }
    };
}

impl Kernels {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Kernels::Avx2;
        }
        Kernels::Baseline
    }
    fn pack_windowed_pair(self, a: &[f32], b: &[f32], window: &[f64], buf: &mut [Complex<f64>]) {
        dispatch!(self, pack_windowed_pair(a, b, window, buf))
    }
    fn unpack_pair_power(
        self,
        y: &[Complex<f64>],
        power: f32,
        out_a: &mut [f32],
        out_b: &mut [f32],
    ) {
        dispatch!(self, unpack_pair_power(y, power, out_a, out_b))
    }
    fn window_f32(self, frame: &[f32], window: &[f32], out: &mut [f32]) {
        dispatch!(self, window_f32(frame, window, out))
    }
    fn power_f32(self, spec: &[Complex<f32>], power: f32, out: &mut [f32]) {
        dispatch!(self, power_f32(spec, power, out))
    }
    fn mel_product(self, power: &[f32], bands: &[(usize, Vec<f32>)], mel: &mut [f32]) {
        dispatch!(self, mel_product(power, bands, mel))
    }
    fn to_db(self, values: &mut [f32], amin: f32, offset: f32) -> f32 {
        dispatch!(self, to_db(values, amin, offset))
    }
}

/// The kernels for the baseline target.
mod baseline {
    pub(super) use super::kernels::{
        mel_product, pack_windowed_pair, spectrum_power as power_f32, to_db, unpack_pair_power,
        window_f32,
    };
}

/// The same kernels compiled with AVX2 + FMA enabled.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use realfft::num_complex::Complex;

    use super::kernels;

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn pack_windowed_pair(
        a: &[f32],
        b: &[f32],
        window: &[f64],
        buf: &mut [Complex<f64>],
    ) {
        kernels::pack_windowed_pair(a, b, window, buf)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn unpack_pair_power(
        y: &[Complex<f64>],
        power: f32,
        out_a: &mut [f32],
        out_b: &mut [f32],
    ) {
        kernels::unpack_pair_power(y, power, out_a, out_b)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn window_f32(frame: &[f32], window: &[f32], out: &mut [f32]) {
        kernels::window_f32(frame, window, out)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn power_f32(spec: &[Complex<f32>], power: f32, out: &mut [f32]) {
        kernels::spectrum_power(spec, power, out)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn mel_product(power: &[f32], bands: &[(usize, Vec<f32>)], mel: &mut [f32]) {
        kernels::mel_product(power, bands, mel)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn to_db(values: &mut [f32], amin: f32, offset: f32) -> f32 {
        kernels::to_db(values, amin, offset)
    }
}

/// The signal extended by the config's centre padding (numpy's rule), as one vector: what
/// the device path uploads.
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
pub(crate) fn padded_signal(config: &MelConfig, y: &[f32]) -> Result<Vec<f32>> {
    if y.is_empty() {
        return Err(Error::EmptySignal);
    }
    if let Some(index) = y.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite {
            index,
            value: y[index],
        });
    }
    if !config.center {
        if y.len() < config.n_fft {
            return Err(Error::SignalTooShort {
                n_samples: y.len(),
                n_fft: config.n_fft,
            });
        }
        return Ok(y.to_vec());
    }
    let pad = (config.n_fft / 2) as isize;
    Ok((-pad..y.len() as isize + pad)
        .map(|i| padded_sample(y, i, config.pad_mode))
        .collect())
}

/// Sample `i` of the signal extended at both ends (`i` may be negative or past the end).
fn padded_sample(y: &[f32], i: isize, mode: PadMode) -> f32 {
    let n = y.len() as isize;
    if (0..n).contains(&i) {
        return y[i as usize];
    }
    match mode {
        PadMode::Constant => 0.0,
        PadMode::Reflect => y[reflect_index(i, y.len())],
    }
}

/// numpy's repeated reflection: `j = i mod 2(N - 1)`, then `j >= N -> 2(N - 1) - j`;
/// a one-sample signal repeats its sample.
pub(crate) fn reflect_index(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let j = i.rem_euclid(period);
    if j >= n as isize {
        (period - j) as usize
    } else {
        j as usize
    }
}

/// Per-task buffers: one frame's FFT buffers and a block of mel frames.
struct FrameWorkspace {
    frame: FrameBuffers,
    block: Vec<f32>,
}

impl FrameWorkspace {
    fn new(plan: &MelSpectrogram) -> Self {
        Self {
            frame: FrameBuffers::new(plan),
            block: vec![0.0; FRAMES_PER_TASK * plan.config.n_mels],
        }
    }
}

/// Buffers of one frame pair's computation.
struct FrameBuffers {
    pair: Vec<Complex<f64>>,
    pair_scratch: Vec<Complex<f64>>,
    in32: Vec<f32>,
    spec32: Vec<Complex<f32>>,
    scratch32: Vec<Complex<f32>>,
    power: Vec<f32>,
    power_b: Vec<f32>,
    edge_a: Vec<f32>,
    edge_b: Vec<f32>,
    zeros: Vec<f32>,
}

impl FrameBuffers {
    fn new(plan: &MelSpectrogram) -> Self {
        let n_fft = plan.config.n_fft;
        let n_bins = plan.config.n_bins();
        let f64_path = plan.config.fft_precision == FftPrecision::F64;
        let (pair, pair_scratch) = if f64_path {
            (
                vec![Complex::default(); n_fft],
                vec![Complex::default(); plan.fft_pair.get_inplace_scratch_len()],
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let (in32, spec32, scratch32) = if f64_path {
            (Vec::new(), Vec::new(), Vec::new())
        } else {
            (
                plan.fft32.make_input_vec(),
                plan.fft32.make_output_vec(),
                plan.fft32.make_scratch_vec(),
            )
        };
        Self {
            pair,
            pair_scratch,
            in32,
            spec32,
            scratch32,
            power: vec![0.0; n_bins],
            power_b: vec![0.0; n_bins],
            edge_a: vec![0.0; n_fft],
            edge_b: vec![0.0; n_fft],
            zeros: vec![0.0; n_fft],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// numpy's `np.pad(np.arange(n), p, mode="reflect")`, written out by hand for small cases.
    #[test]
    fn reflect_matches_numpy_including_repeats() {
        // np.pad([0,1,2], 5, "reflect") = [1 0 1 2 1 | 0 1 2 | 1 0 1 2 1] (numpy 2.4)
        let got: Vec<usize> = (-5..8).map(|i| reflect_index(i, 3)).collect();
        assert_eq!(got, vec![1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1]);
        assert_eq!(reflect_index(-3, 1), 0);
        // np.pad([0,1], 3, 'reflect') = [1 0 1 | 0 1 | 0 1 0]
        let got: Vec<usize> = (-3..5).map(|i| reflect_index(i, 2)).collect();
        assert_eq!(got, vec![1, 0, 1, 0, 1, 0, 1, 0]);
    }

    #[test]
    fn frame_count_is_one_plus_n_over_hop() {
        let plan = MelSpectrogram::new(MelConfig::default()).unwrap();
        for n in [1usize, 100, 511, 512, 513, 1024, 1536, 2047, 2048, 48_077] {
            let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.01).sin()).collect();
            let s = plan.power(&y).unwrap();
            assert_eq!(s.dim(), (128, 1 + n / 512), "n = {n}");
        }
    }

    #[test]
    fn bad_signals_are_errors() {
        let plan = MelSpectrogram::new(MelConfig::default()).unwrap();
        assert!(matches!(plan.power(&[]), Err(Error::EmptySignal)));
        assert!(matches!(
            plan.power(&[0.0, f32::NAN]),
            Err(Error::NonFinite { index: 1, .. })
        ));
        let no_center = MelSpectrogram::new(MelConfig {
            center: false,
            ..MelConfig::default()
        })
        .unwrap();
        assert!(matches!(
            no_center.power(&[0.0; 100]),
            Err(Error::SignalTooShort { .. })
        ));
    }
}
