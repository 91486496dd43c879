//! Winograd F(2x2, 3x3) (Lavin & Gray, 2016) for 3x3 "same", stride-1 convolutions over
//! channels-last (NHWC) `f32` memory: the transforms into and out of the Winograd domain.
//! The 16 matrix products in between are the caller's, on its GEMM (crnn: libtorch's
//! batched matmul), which is where the convolution's arithmetic goes: 2.25x fewer
//! multiply-adds than the direct convolution.
//!
//! The output is cut into 2x2 tiles, each read through the 4x4 input tile around it (zero
//! outside the image, i.e. "same" padding). With `B`, `G`, `A` the matrices of F(2x2, 3x3),
//! for each tile `d`, kernel `g` and channel pair:
//!
//! - input transform ([`Plan::winograd_input`]): `V = Bᵀ d B`;
//! - kernel transform ([`winograd_weights`]): `U = G g Gᵀ`;
//! - the caller: `M[e] = V[e] · U[e]` for each of the 16 elements `e` (a `[tiles, c_in]` by
//!   `[c_in, c_out]` product);
//! - output transform ([`Plan::winograd_output`]): `y = Aᵀ M A` (+ bias).
//!
//! Training adds the adjoints. With `dM = A dy Aᵀ` ([`Plan::winograd_output_grad`]), the
//! kernel gradient is `Gᵀ (Σ_tiles Vᵀ dM) G` ([`winograd_weight_grad`]), and the input gradient
//! is the same forward convolution run on `dy` with the flipped, transposed kernel
//! ([`winograd_weights_flipped`]).
//!
//! The Winograd domain is laid out `[16][tiles][channels]`, element-major, so that each
//! element is one row-major matrix for the GEMM; the tiles are those of a range of tile rows
//! (a tile row is one image's 2 output rows, `⌈w/2⌉` tiles), so a caller can transform a
//! batch in cache-sized pieces. The transforms only add and subtract, in a fixed order, so
//! every instruction set gives the same bits.

use std::ops::Range;

use crate::error::check_len;
use crate::simd::{Job, LANES, Simd};
use crate::{Error, Plan, Result};

mod kernel;
pub use kernel::{winograd_weight_grad, winograd_weights, winograd_weights_flipped};

/// Elements of a Winograd tile (4 x 4).
pub const TILE_ELEMENTS: usize = 16;

/// The shape of a 3x3 "same", stride-1 convolution's input and output, `[n][h][w][c]`
/// (channels-last), cut into 2x2 output tiles: `⌈h/2⌉` tile rows of `⌈w/2⌉` tiles per
/// image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WinogradShape {
    /// Images.
    pub n: usize,
    /// Rows of each image.
    pub h: usize,
    /// Columns of each image.
    pub w: usize,
}

impl WinogradShape {
    /// Tile rows of one image, `⌈h/2⌉`.
    pub fn tile_rows_per_image(&self) -> usize {
        self.h.div_ceil(2)
    }

    /// Tile rows of the batch, `n ⌈h/2⌉`.
    pub fn tile_rows(&self) -> usize {
        self.n * self.tile_rows_per_image()
    }

    /// Tiles per tile row, `⌈w/2⌉`.
    pub fn tiles_per_row(&self) -> usize {
        self.w.div_ceil(2)
    }

    /// Values of one activation tensor with `c` channels.
    pub fn len(&self, c: usize) -> usize {
        self.n * self.h * self.w * c
    }

    /// The batch's tile rows in consecutive ranges of `per` (the last one shorter), for a
    /// caller that transforms the batch piece by piece.
    pub fn tile_row_chunks(&self, per: usize) -> Vec<Range<usize>> {
        split_rows(&(0..self.tile_rows()), per)
    }

    /// Whether the images are empty.
    pub fn is_empty(&self) -> bool {
        self.n * self.h * self.w == 0
    }

    /// Values of the Winograd domain of tile rows `rows` with `c` channels,
    /// `16 · rows.len() · ⌈w/2⌉ · c`.
    pub fn domain_len(&self, rows: &Range<usize>, c: usize) -> usize {
        TILE_ELEMENTS * rows.len() * self.tiles_per_row() * c
    }

    fn check(&self, rows: &Range<usize>, c: usize) -> Result<()> {
        if rows.start > rows.end || rows.end > self.tile_rows() {
            return Err(Error::Geometry {
                what: "winograd tile rows",
                rule: format!(
                    "{rows:?} is not a range inside the {} tile rows of {self:?}",
                    self.tile_rows()
                ),
            });
        }
        if c == 0 {
            return Err(Error::Geometry {
                what: "winograd channels",
                rule: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// `G` of F(2x2, 3x3).
const G: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// The 16 element planes of a Winograd-domain buffer, each cut at `cuts` (values per job),
/// regrouped per job: `out[job][e]`.
fn split_domain<'a>(buf: &'a mut [f32], cuts: &[usize]) -> Vec<Vec<&'a mut [f32]>> {
    let per_e = buf.len() / TILE_ELEMENTS;
    let mut jobs: Vec<Vec<&'a mut [f32]>> = cuts.iter().map(|_| Vec::new()).collect();
    for plane in buf.chunks_mut(per_e.max(1)) {
        let mut rest = plane;
        for (job, &len) in jobs.iter_mut().zip(cuts) {
            let (head, tail) = rest.split_at_mut(len.min(rest.len()));
            job.push(head);
            rest = tail;
        }
    }
    jobs
}

/// `rows` in consecutive ranges of `per` (at least 1), the last one shorter.
fn split_rows(rows: &Range<usize>, per: usize) -> Vec<Range<usize>> {
    let per = per.max(1);
    (rows.start..rows.end)
        .step_by(per)
        .map(|r| r..(r + per).min(rows.end))
        .collect()
}

/// The tile rows of `rows` split into at most `jobs` contiguous ranges.
fn job_rows(rows: &Range<usize>, jobs: usize) -> Vec<Range<usize>> {
    split_rows(rows, rows.len().div_ceil(jobs.max(1)))
}

/// Tile rows `rows` split into at most `jobs` ranges, each with its part of the domain
/// buffer `buf` (`c` channels): one item per job of a pass that writes the domain.
fn domain_jobs<'a>(
    jobs: usize,
    g: WinogradShape,
    c: usize,
    rows: &Range<usize>,
    buf: &'a mut [f32],
) -> Vec<(Range<usize>, Vec<&'a mut [f32]>)> {
    let parts = job_rows(rows, jobs);
    let cuts: Vec<usize> = parts
        .iter()
        .map(|r| g.domain_len(r, c) / TILE_ELEMENTS)
        .collect();
    parts.into_iter().zip(split_domain(buf, &cuts)).collect()
}

/// The 16-lane channel spans of `c` channels.
fn channel_spans(c: usize) -> impl Iterator<Item = Range<usize>> {
    (0..c).step_by(LANES).map(move |c0| c0..(c0 + LANES).min(c))
}

// ---- tile walk, shared by the passes that write the domain -------------------------------
//
// The vector code stays in plain loops: a closure passed to `array::map` runs inside core's
// generic `map`, compiled without the instruction set's features, and measured 2.5x slower.

/// Calls `f(n, i, j, at, span)` for every tile (image `n`, tile row `i` of the image, tile
/// column `j`) of tile rows `rows` and every 16-lane span of `c` channels; `at` is the
/// tile's offset in the job's domain planes (which start at `rows.start`).
#[inline(always)]
fn for_each_tile(
    g: WinogradShape,
    c: usize,
    rows: Range<usize>,
    mut f: impl FnMut(usize, usize, usize, usize, Range<usize>),
) {
    let (th, tw) = (g.tile_rows_per_image(), g.tiles_per_row());
    for row in rows.clone() {
        let (n, i) = (row / th, row % th);
        for j in 0..tw {
            let at = ((row - rows.start) * tw + j) * c;
            for span in channel_spans(c) {
                f(n, i, j, at, span);
            }
        }
    }
}

/// The `P x P` patch of `x` (`[n][h][w][c]`, image `n`) whose top-left position is
/// (`r0`, `c0`), for the channels of `span`; zero outside the image (a start of -1 is
/// `usize::MAX`, wrapping to 0 for the next position).
#[inline(always)]
fn gather<S: Simd, const P: usize>(
    s: S,
    x: &[f32],
    g: WinogradShape,
    c: usize,
    (n, r0, c0): (usize, usize, usize),
    span: &Range<usize>,
) -> [[S::F; P]; P] {
    let mut d = [[s.zero(); P]; P];
    for (a, da) in d.iter_mut().enumerate() {
        let r = r0.wrapping_add(a);
        if r >= g.h {
            continue;
        }
        for (b, dab) in da.iter_mut().enumerate() {
            let col = c0.wrapping_add(b);
            if col >= g.w {
                continue;
            }
            let at = ((n * g.h + r) * g.w + col) * c;
            *dab = s.load(&x[at + span.start..at + span.end]);
        }
    }
    d
}

/// Stores a tile's 16 domain values `vals[p][q]` into element plane `4 p + q` at `at`.
#[inline(always)]
fn store_tile<S: Simd>(
    s: S,
    planes: &mut [&mut [f32]],
    at: usize,
    span: &Range<usize>,
    vals: [[S::F; 4]; 4],
) {
    for (p, vp) in vals.into_iter().enumerate() {
        for (q, val) in vp.into_iter().enumerate() {
            let plane = &mut planes[p * 4 + q];
            s.store(&mut plane[at + span.start..at + span.end], val);
        }
    }
}

// ---- input transform --------------------------------------------------------------------

struct Input<'a> {
    x: &'a [f32],
    g: WinogradShape,
    c: usize,
    /// The job's tile rows (where its part of `v` starts).
    rows: Range<usize>,
    v: Vec<&'a mut [f32]>,
}

impl Job for Input<'_> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Self {
            x,
            g,
            c,
            rows,
            mut v,
        } = self;
        for_each_tile(g, c, rows, |n, i, j, at, span| {
            let origin = (n, (2 * i).wrapping_sub(1), (2 * j).wrapping_sub(1));
            let d = gather::<S, 4>(s, x, g, c, origin, &span);
            // Rows: t = d B; then columns: V = Bᵀ t.
            let mut t = [[s.zero(); 4]; 4];
            for (ta, da) in t.iter_mut().zip(&d) {
                *ta = [
                    s.sub(da[0], da[2]),
                    s.add(da[1], da[2]),
                    s.sub(da[2], da[1]),
                    s.sub(da[1], da[3]),
                ];
            }
            let mut vals = [[s.zero(); 4]; 4];
            for q in 0..4 {
                vals[0][q] = s.sub(t[0][q], t[2][q]);
                vals[1][q] = s.add(t[1][q], t[2][q]);
                vals[2][q] = s.sub(t[2][q], t[1][q]);
                vals[3][q] = s.sub(t[1][q], t[3][q]);
            }
            store_tile(s, &mut v, at, &span, vals);
        });
    }
}

// ---- output transform -------------------------------------------------------------------

struct Output<'a> {
    m: &'a [f32],
    g: WinogradShape,
    k: usize,
    bias: Option<&'a [f32]>,
    /// Tiles in the chunk (the stride between element planes of `m`).
    chunk_tiles: usize,
    chunk_start: usize,
    /// `(tile row, its output rows)` for each tile row of the job.
    pieces: Vec<(usize, &'a mut [f32])>,
}

impl Job for Output<'_> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Self {
            m,
            g,
            k,
            bias,
            chunk_tiles,
            chunk_start,
            pieces,
        } = self;
        let (th, tw) = (g.tile_rows_per_image(), g.tiles_per_row());
        let plane = chunk_tiles * k;
        for (row, piece) in pieces {
            let out_rows = (g.h - 2 * (row % th)).min(2);
            for j in 0..tw {
                let tile = (row - chunk_start) * tw + j;
                let out_cols = (g.w - 2 * j).min(2);
                for span in channel_spans(k) {
                    let at = tile * k;
                    let mut e = [s.zero(); TILE_ELEMENTS];
                    for (idx, v) in e.iter_mut().enumerate() {
                        let o = idx * plane + at;
                        *v = s.load(&m[o + span.start..o + span.end]);
                    }
                    let bias = bias.map_or(s.zero(), |b| s.load(&b[span.clone()]));
                    // Over p: u = Aᵀ M; then over s: y = u A.
                    let mut u = [[s.zero(); 4]; 2];
                    for q in 0..4 {
                        u[0][q] = s.add(s.add(e[q], e[4 + q]), e[8 + q]);
                        u[1][q] = s.sub(s.sub(e[4 + q], e[8 + q]), e[12 + q]);
                    }
                    for (a, ua) in u.iter().enumerate().take(out_rows) {
                        let y = [
                            s.add(s.add(s.add(ua[0], ua[1]), ua[2]), bias),
                            s.add(s.sub(s.sub(ua[1], ua[2]), ua[3]), bias),
                        ];
                        for (b, val) in y.into_iter().enumerate().take(out_cols) {
                            let o = (a * g.w + 2 * j + b) * k;
                            s.store(&mut piece[o + span.start..o + span.end], val);
                        }
                    }
                }
            }
        }
    }
}

// ---- output-transform adjoint -----------------------------------------------------------

struct OutputGrad<'a> {
    dy: &'a [f32],
    g: WinogradShape,
    k: usize,
    rows: Range<usize>,
    dm: Vec<&'a mut [f32]>,
}

impl Job for OutputGrad<'_> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd>(self, s: S) {
        let Self {
            dy,
            g,
            k,
            rows,
            mut dm,
        } = self;
        for_each_tile(g, k, rows, |n, i, j, at, span| {
            let d = gather::<S, 2>(s, dy, g, k, (n, 2 * i, 2 * j), &span);
            // Over rows: w = A dy; then over columns: dM = w Aᵀ.
            let zero = s.zero();
            let mut w = [[zero; 2]; 4];
            for b in 0..2 {
                w[0][b] = d[0][b];
                w[1][b] = s.add(d[0][b], d[1][b]);
                w[2][b] = s.sub(d[0][b], d[1][b]);
                w[3][b] = s.sub(zero, d[1][b]);
            }
            let mut vals = [[zero; 4]; 4];
            for (vp, wp) in vals.iter_mut().zip(&w) {
                *vp = [
                    wp[0],
                    s.add(wp[0], wp[1]),
                    s.sub(wp[0], wp[1]),
                    s.sub(zero, wp[1]),
                ];
            }
            store_tile(s, &mut dm, at, &span, vals);
        });
    }
}

impl Plan {
    /// Input transform `V = Bᵀ d B` of the tiles in tile rows `rows` of `x`
    /// (`[n][h][w][c]`), into `v` (`[16][tiles][c]`, [`WinogradShape::domain_len`] values).
    pub fn winograd_input(
        &self,
        x: &[f32],
        g: WinogradShape,
        c: usize,
        rows: Range<usize>,
        v: &mut [f32],
    ) -> Result<()> {
        g.check(&rows, c)?;
        check_len("winograd input [n][h][w][c]", x.len(), g.len(c))?;
        check_len("winograd domain", v.len(), g.domain_len(&rows, c))?;
        if rows.is_empty() || g.is_empty() {
            return Ok(());
        }
        let items = domain_jobs(self.jobs(), g, c, &rows, v);
        self.map("winograd_input", items, |_, (part, v)| {
            self.run(Input {
                x,
                g,
                c,
                rows: part,
                v,
            });
        })?;
        Ok(())
    }

    /// Output transform `y = Aᵀ M A + bias` of the tiles in tile rows `rows`: reads `m`
    /// (`[16][tiles][k]`) and writes the output positions of those tiles in `y`
    /// (`[n][h][w][k]`, the whole tensor; other positions are left as they are).
    pub fn winograd_output(
        &self,
        m: &[f32],
        g: WinogradShape,
        k: usize,
        bias: Option<&[f32]>,
        rows: Range<usize>,
        y: &mut [f32],
    ) -> Result<()> {
        g.check(&rows, k)?;
        check_len("winograd domain", m.len(), g.domain_len(&rows, k))?;
        check_len("winograd output [n][h][w][k]", y.len(), g.len(k))?;
        if let Some(b) = bias {
            check_len("bias", b.len(), k)?;
        }
        if rows.is_empty() || g.is_empty() {
            return Ok(());
        }
        let th = g.tile_rows_per_image();
        // Every tile row's output rows, then those of `rows`.
        let mut pieces: Vec<(usize, &mut [f32])> = y
            .chunks_mut(g.h * g.w * k)
            .flat_map(|image| image.chunks_mut(2 * g.w * k))
            .enumerate()
            .skip(rows.start)
            .take(rows.len())
            .collect();
        debug_assert_eq!(pieces.len(), rows.len());
        debug_assert!(pieces.iter().all(|(r, _)| r / th < g.n));
        let per = rows.len().div_ceil(self.jobs()).max(1);
        let mut items = Vec::new();
        while !pieces.is_empty() {
            let rest = pieces.split_off(per.min(pieces.len()));
            items.push(pieces);
            pieces = rest;
        }
        let chunk_tiles = rows.len() * g.tiles_per_row();
        self.map("winograd_output", items, |_, pieces| {
            self.run(Output {
                m,
                g,
                k,
                bias,
                chunk_tiles,
                chunk_start: rows.start,
                pieces,
            });
        })?;
        Ok(())
    }

    /// Adjoint of the output transform, `dM = A dy Aᵀ`, for the tiles in tile rows `rows` of
    /// the output gradient `dy` (`[n][h][w][k]`), into `dm` (`[16][tiles][k]`).
    pub fn winograd_output_grad(
        &self,
        dy: &[f32],
        g: WinogradShape,
        k: usize,
        rows: Range<usize>,
        dm: &mut [f32],
    ) -> Result<()> {
        g.check(&rows, k)?;
        check_len("winograd output gradient [n][h][w][k]", dy.len(), g.len(k))?;
        check_len("winograd domain", dm.len(), g.domain_len(&rows, k))?;
        if rows.is_empty() || g.is_empty() {
            return Ok(());
        }
        let items = domain_jobs(self.jobs(), g, k, &rows, dm);
        self.map("winograd_output_grad", items, |_, (part, dm)| {
            self.run(OutputGrad {
                dy,
                g,
                k,
                rows: part,
                dm,
            });
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_splits() {
        let g = WinogradShape { n: 2, h: 5, w: 7 };
        assert_eq!(
            (g.tile_rows_per_image(), g.tile_rows(), g.tiles_per_row()),
            (3, 6, 4)
        );
        assert_eq!(g.domain_len(&(1..3), 5), 16 * 2 * 4 * 5);
        assert!(g.check(&(0..7), 1).is_err());
        assert!(g.check(&(0..6), 0).is_err());
        assert_eq!(job_rows(&(3..10), 3), vec![3..6, 6..9, 9..10]);
        assert_eq!(g.tile_row_chunks(4), vec![0..4, 4..6]);
        assert_eq!(
            g.tile_row_chunks(0),
            (0..6).map(|r| r..r + 1).collect::<Vec<_>>()
        );
        let mut buf: Vec<f32> = (0..32).map(|v| v as f32).collect();
        let jobs = split_domain(&mut buf, &[1, 1]);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[1][3], &[7.0]);
    }
}
