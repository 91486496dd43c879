//! Block 1's backward pass: conv and ELU recomputed at each window's winner, the conv-1
//! weight, bias and input gradients accumulated as the pass goes.

use super::*;

/// What the block-1 backward pass reads beside the input plane.
#[derive(Debug, Clone, Copy)]
pub struct GradIn<'a> {
    /// Conv 1.
    pub conv: &'a Conv1,
    /// Block 1's geometry.
    pub g: Geometry,
    /// BatchNorm backward coefficients.
    pub bn: &'a BnBackward,
    /// Gradient at each window's winner, after dropout (pass C's output).
    pub gp: &'a [f32],
    /// Window index of each winner.
    pub index: &'a [u8],
}

/// The input BatchNorm in front of conv 1, whose gradients the block-1 backward pass
/// computes too: the conv-1 input is `z = gamma[f] * xhat + beta[f]` per mel bin `f`.
#[derive(Debug, Clone, Copy)]
pub struct InputNorm<'a> {
    /// The normalised input `(x - mean) * invstd`, `[n][f][t]` like the plane.
    pub xhat: &'a [f32],
    /// Per mel bin.
    pub gamma: &'a [f32],
    /// Per mel bin.
    pub beta: &'a [f32],
}

/// The gradients of block 1's backward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv1Grads {
    /// Conv-1 kernel, `[3][3][c]` (tap order; [`Conv1::taps_to_oihw`] gives the kernel's).
    pub kernel: Vec<f64>,
    /// Conv-1 bias, `[c]`.
    pub bias: Vec<f64>,
    /// Input BatchNorm gamma, `[f]`: `sum(dz * xhat)` per mel bin.
    pub in_gamma: Vec<f64>,
    /// Input BatchNorm beta, `[f]`: `sum(dz)` per mel bin.
    pub in_beta: Vec<f64>,
}

impl Conv1Grads {
    fn zeros(c: usize, f: usize) -> Self {
        Self {
            kernel: vec![0.0; 9 * c],
            bias: vec![0.0; c],
            in_gamma: vec![0.0; f],
            in_beta: vec![0.0; f],
        }
    }
}

struct Grad<'a> {
    plane: Plane<'a>,
    gi: GradIn<'a>,
    norm: InputNorm<'a>,
    first_row: usize,
    rows: usize,
    out: Conv1Grads,
}

impl Job for Grad<'_> {
    type Out = Conv1Grads;
    #[inline(always)]
    fn run<S: Simd>(self, s: S) -> Conv1Grads {
        let c = self.gi.g.c;
        let mut job = self;
        by_group!(c, |c0, w| grad_group::<S>(s, &mut job, c0, w));
        job.out
    }
}

/// Row `f` (zero outside `0..rows`) of an `[n][rows][t]` plane, padded with a zero on each
/// side: `out[1 + t] = plane[n][f][t]`.
#[inline(always)]
fn padded_row(src: &[f32], (n, f, rows, t): (usize, isize, usize, usize), out: &mut [f32]) {
    out.fill(0.0);
    if f >= 0 && (f as usize) < rows {
        let start = (n * rows + f as usize) * t;
        out[1..=t].copy_from_slice(&src[start..start + t]);
    }
}

/// One channel group of one job: every conv row of the job's pooled rows in row-major order.
/// Per row, pass 1 recomputes conv 1 and the ELU at each position, turns the pooled
/// gradient into the conv-output gradient `dx` (BatchNorm and ELU backward) and keeps it in
/// a row buffer; pass 2 runs over the buffer once per tap, accumulating
/// `G = sum_t dx * xhat(tap)` in registers. With `z = gamma * xhat + beta`, the kernel
/// gradient is `sum_rows gamma G + beta S` (`S = sum_t dx` over the tap's valid columns), and
/// the input BatchNorm's are `sum_taps w . G` and `w . S` per input row: the input gradient
/// itself is never formed.
#[inline(always)]
fn grad_group<S: Simd, const N: usize>(s: S, job: &mut Grad<'_>, c0: usize, w: usize) {
    let (plane, gi, norm) = (job.plane, job.gi, job.norm);
    let (g, conv, bn) = (gi.g, gi.conv, gi.bn);
    let (fo_n, to_n, c, t_n) = (g.fo(), g.to(), g.c, g.t);
    let bias = params::<S, N>(s, &conv.bias, c0, w);
    let taps = group_taps::<S, N>(s, conv, c0, w);
    let scale = params::<S, N>(s, &bn.scale, c0, w);
    let mean = params::<S, N>(s, &bn.mean, c0, w);
    let k0 = params::<S, N>(s, &bn.c0, c0, w);
    let k1 = params::<S, N>(s, &bn.c1, c0, w);
    let zero = s.zero();
    let mut acc_bias = Sums::<S, N>::new(s);
    let mut kernel = [[s.dzero(); N]; 9];
    let mut rowbuf = vec![zero; t_n * N];
    let mut zp: [Vec<f32>; 3] = std::array::from_fn(|_| vec![0f32; t_n + 2]);
    let mut xp: [Vec<f32>; 3] = std::array::from_fn(|_| vec![0f32; t_n + 2]);
    let out = &mut job.out;
    for r in job.first_row..job.first_row + job.rows {
        let (n, fo) = (r / fo_n, r % fo_n);
        let last_f = if fo + 1 == fo_n {
            g.f
        } else {
            fo * g.pf + g.pf
        };
        for f in fo * g.pf..last_f {
            for kh in 0..3 {
                let fi = f as isize + kh as isize - 1;
                padded_row(plane.z, (n, fi, g.f, t_n), &mut zp[kh]);
                padded_row(norm.xhat, (n, fi, g.f, t_n), &mut xp[kh]);
            }
            // Pass 1: dx at every position of the row.
            let i = f - fo * g.pf;
            let in_window = f < fo_n * g.pf;
            for t in 0..t_n {
                let zs = [
                    zp[0][t],
                    zp[0][t + 1],
                    zp[0][t + 2],
                    zp[1][t],
                    zp[1][t + 1],
                    zp[1][t + 2],
                    zp[2][t],
                    zp[2][t + 1],
                    zp[2][t + 2],
                ];
                let x = conv_at::<S, N>(s, &bias, &taps, &zs);
                let window = (in_window && t < to_n * g.pt)
                    .then(|| (t / g.pt, (i * g.pt + t % g.pt) as u32));
                for v in 0..N {
                    let e = elu_vec(s, x[v]);
                    let base = match window {
                        Some((to, k)) => {
                            let lanes = span(c0, w, v);
                            let at = (r * to_n + to) * c;
                            let (a, b) = (at + lanes.start, at + lanes.end);
                            let gv = s.load(&gi.gp[a..b]);
                            let hit = s.keep(s.ieq(s.load_u8(&gi.index[a..b]), s.isplat(k)), gv);
                            s.fma(scale[v], hit, k0[v])
                        }
                        None => k0[v],
                    };
                    let de = s.fma(k1[v], s.sub(e, mean[v]), base);
                    let dx = s.select(s.gt(e, zero), de, s.fma(de, e, de));
                    acc_bias.add(s, v, dx);
                    rowbuf[t * N + v] = dx;
                }
                acc_bias.next(s);
            }
            // S: dx summed over the columns whose tap input lies inside the plane (kw = 0
            // reads column t - 1, so column 0 has none; kw = 2 reads t + 1, so the last has
            // none): the middle columns once, the two ends as the tap allows.
            let mut mid = [zero; N];
            for t in 1..t_n.saturating_sub(1) {
                for v in 0..N {
                    mid[v] = s.add(mid[v], rowbuf[t * N + v]);
                }
            }
            let column_sums = |kw: usize| -> [S::F; N] {
                let mut sum = mid;
                if t_n == 1 {
                    if kw != 1 {
                        return [zero; N];
                    }
                    return std::array::from_fn(|v| rowbuf[v]);
                }
                for (v, o) in sum.iter_mut().enumerate() {
                    if kw != 0 {
                        *o = s.add(rowbuf[v], *o);
                    }
                    if kw != 2 {
                        *o = s.add(*o, rowbuf[(t_n - 1) * N + v]);
                    }
                }
                sum
            };
            // Pass 2: per tap, over the row buffer.
            for (kh, xrow) in xp.iter().enumerate() {
                let fi = f as isize + kh as isize - 1;
                if fi < 0 || fi as usize >= g.f {
                    continue;
                }
                let fi = fi as usize;
                let (gamma, beta) = (
                    s.dsplat(f64::from(norm.gamma[fi])),
                    s.dsplat(f64::from(norm.beta[fi])),
                );
                for kw in 0..3 {
                    let tap = kh * 3 + kw;
                    let mut acc = [zero; N];
                    for (t, &xv) in xrow[kw..kw + t_n].iter().enumerate() {
                        let xb = s.splat(xv);
                        for v in 0..N {
                            acc[v] = s.fma(rowbuf[t * N + v], xb, acc[v]);
                        }
                    }
                    let sum = column_sums(kw);
                    let (mut dgamma, mut dbeta) = (zero, zero);
                    for v in 0..N {
                        // kernel += gamma * G + beta * S, in f64.
                        kernel[tap][v] = s.dfma(s.widen(acc[v]), gamma, kernel[tap][v]);
                        kernel[tap][v] = s.dfma(s.widen(sum[v]), beta, kernel[tap][v]);
                        dgamma = s.fma(taps[tap][v], acc[v], dgamma);
                        dbeta = s.fma(taps[tap][v], sum[v], dbeta);
                    }
                    out.in_gamma[fi] += f64::from(s.tree_sum(dgamma));
                    out.in_beta[fi] += f64::from(s.tree_sum(dbeta));
                }
            }
        }
    }
    for (tap, row) in kernel.iter().enumerate() {
        add_lanes(s, row, &mut out.kernel[tap * c..(tap + 1) * c], c0, w);
    }
    acc_bias.finish(s, &mut out.bias, c0, w);
}

// ---- inference --------------------------------------------------------------------------

impl Plan {
    /// Block 1's backward pass: from the gradient at each window's winner (after dropout,
    /// pass C) and the BatchNorm backward coefficients, the conv-1 kernel and bias gradients
    /// and the gradients of the input BatchNorm in front of conv 1 (`norm`: its normalised
    /// input and parameters). Conv 1 and the ELU are recomputed from the input plane.
    pub fn conv1_grads(
        &self,
        plane: Plane<'_>,
        gi: GradIn<'_>,
        norm: InputNorm<'_>,
    ) -> Result<Conv1Grads> {
        let g = gi.g;
        check(&plane, gi.conv, g)?;
        check_len("pooled gradient", gi.gp.len(), g.pooled_len())?;
        check_len("pool index", gi.index.len(), g.pooled_len())?;
        check_len("normalised input", norm.xhat.len(), plane.z.len())?;
        check_len("input BatchNorm gamma", norm.gamma.len(), g.f)?;
        check_len("input BatchNorm beta", norm.beta.len(), g.f)?;
        gi.bn.check(g.c)?;
        let pooled_rows = g.n * g.fo();
        let per = self.rows_per_job(pooled_rows);
        let jobs: Vec<usize> = (0..pooled_rows).step_by(per).collect();
        let parts = self.map("conv1_grads", jobs, |_, first| {
            self.run(Grad {
                plane,
                gi,
                norm,
                first_row: first,
                rows: per.min(pooled_rows - first),
                out: Conv1Grads::zeros(g.c, g.f),
            })
        })?;
        let mut total = Conv1Grads::zeros(g.c, g.f);
        for p in parts {
            for (a, b) in [
                (&mut total.kernel, &p.kernel),
                (&mut total.bias, &p.bias),
                (&mut total.in_gamma, &p.in_gamma),
                (&mut total.in_beta, &p.in_beta),
            ] {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
            }
        }
        Ok(total)
    }
}
