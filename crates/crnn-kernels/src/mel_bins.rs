//! The input BatchNorm, over the mel bins of `[n][f][t]` (Keras `axis=1` on `(mels, frames,
//! 1)`): its batch sums, its affine map and its gradient sums. Each row of `t` values is
//! summed in order in `f64` (scalar: these passes are a few percent of a step).

use crate::error::check_len;
use crate::{ChannelSums, Plan, Result};

fn check(x: usize, f: usize, t: usize) -> Result<()> {
    if f * t == 0 {
        return Ok(());
    }
    check_len("mel plane [n][f][t]", x % (f * t), 0)
}

impl Plan {
    /// Per mel bin `f` of `x` `[n][f][t]`: sum (`a`) and sum of squares (`b`).
    pub fn bin_stats(&self, x: &[f32], f: usize, t: usize) -> Result<ChannelSums> {
        check(x.len(), f, t)?;
        if f * t == 0 || x.is_empty() {
            return Ok(ChannelSums::zeros(f));
        }
        let per = self.rows_per_job(x.len() / (f * t)) * f * t;
        let parts = self.map("bin_stats", x.chunks(per).collect(), |_, chunk| {
            let mut s = ChannelSums::zeros(f);
            for (r, row) in chunk.chunks_exact(t).enumerate() {
                let (mut a, mut b) = (0f64, 0f64);
                for &v in row {
                    a += v as f64;
                    b += v as f64 * v as f64;
                }
                s.a[r % f] += a;
                s.b[r % f] += b;
            }
            s
        })?;
        Ok(ChannelSums::total(parts, f))
    }

    /// `y = scale[f] * x + shift[f]` over `[n][f][t]`.
    pub fn bin_affine(
        &self,
        x: &[f32],
        (f, t): (usize, usize),
        (scale, shift): (&[f32], &[f32]),
        y: &mut [f32],
    ) -> Result<()> {
        check(x.len(), f, t)?;
        check_len("input BatchNorm output", y.len(), x.len())?;
        check_len("input BatchNorm scale", scale.len(), f)?;
        check_len("input BatchNorm shift", shift.len(), f)?;
        if f * t == 0 || x.is_empty() {
            return Ok(());
        }
        let per = self.rows_per_job(x.len() / (f * t)) * f * t;
        self.map(
            "bin_affine",
            y.chunks_mut(per).zip(x.chunks(per)).collect(),
            |_, (yo, xi)| {
                for (r, (orow, xrow)) in yo.chunks_exact_mut(t).zip(xi.chunks_exact(t)).enumerate()
                {
                    let (a, b) = (scale[r % f], shift[r % f]);
                    for (o, v) in orow.iter_mut().zip(xrow) {
                        *o = a * v + b;
                    }
                }
            },
        )?;
        Ok(())
    }

    /// Per mel bin: `sum(dy)` (`a`) and `sum(dy * (x - mean) * invstd)` (`b`), the input
    /// BatchNorm's beta and gamma gradients.
    pub fn bin_grad_sums(
        &self,
        dy: &[f32],
        x: &[f32],
        (f, t): (usize, usize),
        (mean, invstd): (&[f32], &[f32]),
    ) -> Result<ChannelSums> {
        check(x.len(), f, t)?;
        check_len("input gradient", dy.len(), x.len())?;
        check_len("input BatchNorm mean", mean.len(), f)?;
        check_len("input BatchNorm invstd", invstd.len(), f)?;
        if f * t == 0 || x.is_empty() {
            return Ok(ChannelSums::zeros(f));
        }
        let per = self.rows_per_job(x.len() / (f * t)) * f * t;
        let parts = self.map(
            "bin_grad_sums",
            dy.chunks(per).zip(x.chunks(per)).collect(),
            |_, (dc, xc)| {
                let mut s = ChannelSums::zeros(f);
                for (r, (drow, xrow)) in dc.chunks_exact(t).zip(xc.chunks_exact(t)).enumerate() {
                    let (m, is) = (mean[r % f], invstd[r % f]);
                    let (mut a, mut b) = (0f64, 0f64);
                    for (&d, &v) in drow.iter().zip(xrow) {
                        a += d as f64;
                        b += (d * ((v - m) * is)) as f64;
                    }
                    s.a[r % f] += a;
                    s.b[r % f] += b;
                }
                s
            },
        )?;
        Ok(ChannelSums::total(parts, f))
    }
}
