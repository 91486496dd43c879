//! The input BatchNorm, over the mel bins of `[n][f][t]` (Keras `axis=1` on `(mels, frames,
//! 1)`): its batch sums, its affine map, and its gradient sums.

use super::kernels::{ChannelSums, rows_per_job};
use super::parallel::par_map;
use crate::Result;

/// Per mel bin `f` of `x` `[n][f][t]`: sum (`a`) and sum of squares (`b`).
pub(crate) fn bin_stats(x: &[f32], f: usize, t: usize) -> Result<ChannelSums> {
    if f * t == 0 {
        return Ok(ChannelSums::zeros(f));
    }
    let per = rows_per_job(x.len() / (f * t)) * f * t;
    let parts = par_map(x.chunks(per).collect(), |_, chunk| {
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
pub(crate) fn bin_affine(
    x: &[f32],
    f: usize,
    t: usize,
    scale: &[f32],
    shift: &[f32],
    y: &mut [f32],
) -> Result<()> {
    if f * t == 0 {
        return Ok(());
    }
    let per = rows_per_job(x.len() / (f * t)) * f * t;
    par_map(
        y.chunks_mut(per).zip(x.chunks(per)).collect(),
        |_, (yo, xi)| {
            for (r, (orow, xrow)) in yo.chunks_exact_mut(t).zip(xi.chunks_exact(t)).enumerate() {
                let (a, b) = (scale[r % f], shift[r % f]);
                for (o, v) in orow.iter_mut().zip(xrow) {
                    *o = a * v + b;
                }
            }
        },
    )?;
    Ok(())
}

/// Per mel bin: `sum(dy)` (`a`) and `sum(dy * (x - mean) * invstd)` (`b`), the BatchNorm
/// beta and gamma gradients.
pub(crate) fn bin_grad_sums(
    dy: &[f32],
    x: &[f32],
    f: usize,
    t: usize,
    mean: &[f32],
    invstd: &[f32],
) -> Result<ChannelSums> {
    if f * t == 0 {
        return Ok(ChannelSums::zeros(f));
    }
    let per = rows_per_job(x.len() / (f * t)) * f * t;
    let parts = par_map(
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
