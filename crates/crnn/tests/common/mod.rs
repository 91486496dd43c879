//! Shared by the integration tests: running a test on every device, and a toy data set.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};

use crnn::SliceSource;

/// `test_device!(body, name_cpu, name_cuda)`: two tests calling `body(device)`, on the CPU
/// and on CUDA device 0. Without CUDA (`tch::Cuda::is_available()` false) the CUDA test
/// passes and says on the terminal (not the captured output) that it skipped, and why.
#[macro_export]
macro_rules! test_device {
    ($body:ident, $cpu:ident, $cuda:ident) => {
        #[test]
        fn $cpu() {
            $body(tch::Device::Cpu);
        }

        #[test]
        fn $cuda() {
            if tch::Cuda::is_available() {
                $body(tch::Device::Cuda(0));
            } else {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "{}: skipped (no CUDA device: tch::Cuda::is_available() is false)",
                    stringify!($cuda)
                );
            }
        }
    };
}

/// Two classes: class 0 has its energy in the low mel bands, class 1 in the high ones.
/// For crops, slice `i` comes from a song of `2 * frames` frames, which
/// [`SliceSource::write_crop`] reads at any start (`write_slice` keeps the data the tests
/// were written with).
pub struct Toy {
    n: usize,
    frames: usize,
    /// Makes every slice start with a NaN.
    pub poison: AtomicBool,
}

impl Toy {
    pub fn new(n: usize) -> Self {
        Self::with_frames(n, 16)
    }

    pub fn with_frames(n: usize, frames: usize) -> Self {
        Self {
            n,
            frames,
            poison: AtomicBool::new(false),
        }
    }

    /// The song frames `start..start + frames` of slice `index`'s song.
    fn write_window(&self, index: usize, start: usize, out: &mut [f32]) {
        let (class, song) = (index % 2, index / 2);
        let f = self.frames;
        for (k, v) in out.iter_mut().enumerate() {
            let (mel, t) = (k / f, start + k % f);
            let hot = if class == 0 { mel < 64 } else { mel >= 64 };
            let noise = (((song * 131 + mel * 17 + t * 29) % 97) as f32 / 97.0 - 0.5) * 6.0;
            *v = if hot { -20.0 } else { -60.0 } + noise + (t as f32 * 0.1);
        }
        if self.poison.load(Ordering::Relaxed) {
            out[0] = f32::NAN;
        }
    }
}

impl SliceSource for Toy {
    fn len(&self) -> usize {
        self.n
    }
    fn slice_shape(&self) -> (usize, usize) {
        (128, self.frames)
    }
    fn write_slice(&self, index: usize, out: &mut [f32]) -> crnn::Result<()> {
        let (class, f) = (index % 2, self.frames);
        for (k, v) in out.iter_mut().enumerate() {
            let (mel, t) = (k / f, k % f);
            let hot = if class == 0 { mel < 64 } else { mel >= 64 };
            let noise = (((index * 131 + k * 17) % 97) as f32 / 97.0 - 0.5) * 6.0;
            *v = if hot { -20.0 } else { -60.0 } + noise + (t as f32 * 0.1);
        }
        if self.poison.load(Ordering::Relaxed) {
            out[0] = f32::NAN;
        }
        Ok(())
    }
    fn crop_windows(&self, _index: usize) -> Option<usize> {
        Some(self.frames + 1)
    }
    fn write_crop(&self, index: usize, start: usize, out: &mut [f32]) -> crnn::Result<()> {
        self.write_window(index, start, out);
        Ok(())
    }
    fn label(&self, index: usize) -> usize {
        index % 2
    }
}
