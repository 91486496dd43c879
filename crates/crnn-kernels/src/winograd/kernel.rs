//! The kernel side of Winograd F(2x2, 3x3): `U = G g Gᵀ` for the forward convolution and for
//! the input gradient's flipped, transposed kernel, and the kernel gradient
//! `Gᵀ (Σ_tiles Vᵀ dM) G` back from the Winograd domain.

use super::*;

fn check_kernel(kernel_len: usize, cout: usize, cin: usize) -> Result<()> {
    if cout == 0 || cin == 0 {
        return Err(Error::Geometry {
            what: "winograd kernel",
            rule: format!("needs at least one channel in and out, got {cout} x {cin}"),
        });
    }
    check_len("3x3 kernel [c_out][c_in][3][3]", kernel_len, cout * cin * 9)
}

/// `G g Gᵀ` for the 3x3 kernel `g` (row-major), in f64 (`g Gᵀ` first, then `G` on the left).
fn transform_kernel(g: impl Fn(usize, usize) -> f32) -> [f32; TILE_ELEMENTS] {
    let mut t = [[0f64; 4]; 3];
    for (a, ta) in t.iter_mut().enumerate() {
        for (tas, gs) in ta.iter_mut().zip(&G) {
            *tas = (0..3).map(|b| f64::from(g(a, b)) * gs[b]).sum();
        }
    }
    let mut out = [0f32; TILE_ELEMENTS];
    for (p, gp) in G.iter().enumerate() {
        for s in 0..4 {
            out[p * 4 + s] = (0..3).map(|a| gp[a] * t[a][s]).sum::<f64>() as f32;
        }
    }
    out
}

/// The kernel transform `U = G g Gᵀ` of a 3x3 kernel `[c_out][c_in][3][3]` (OIHW, as
/// libtorch stores it), laid out `[16][c_in][c_out]`: element `e` is the `[c_in, c_out]`
/// matrix that the input transform's `[tiles, c_in]` matrix multiplies. Computed in f64,
/// rounded once.
pub fn winograd_weights(kernel: &[f32], cout: usize, cin: usize) -> Result<Vec<f32>> {
    check_kernel(kernel.len(), cout, cin)?;
    let mut u = vec![0f32; TILE_ELEMENTS * cin * cout];
    for o in 0..cout {
        for i in 0..cin {
            let k = &kernel[(o * cin + i) * 9..][..9];
            let t = transform_kernel(|a, b| k[a * 3 + b]);
            for (e, v) in t.into_iter().enumerate() {
                u[(e * cin + i) * cout + o] = v;
            }
        }
    }
    Ok(u)
}

/// The kernel transform of the convolution that carries an output gradient back to the
/// input: the kernel flipped in both spatial directions, inputs and outputs swapped, laid
/// out `[16][c_out][c_in]` (for the input transform of the `c_out`-channel gradient).
pub fn winograd_weights_flipped(kernel: &[f32], cout: usize, cin: usize) -> Result<Vec<f32>> {
    check_kernel(kernel.len(), cout, cin)?;
    let mut u = vec![0f32; TILE_ELEMENTS * cin * cout];
    for o in 0..cout {
        for i in 0..cin {
            let k = &kernel[(o * cin + i) * 9..][..9];
            let t = transform_kernel(|a, b| k[(2 - a) * 3 + (2 - b)]);
            for (e, v) in t.into_iter().enumerate() {
                u[(e * cout + o) * cin + i] = v;
            }
        }
    }
    Ok(u)
}

/// The kernel gradient `[c_out][c_in][3][3]` (OIHW) from its Winograd-domain gradient
/// `dU = Σ_tiles Vᵀ dM`, laid out `[16][c_in][c_out]` (as [`winograd_weights`]): `Gᵀ dU G`, in
/// f64, rounded once.
pub fn winograd_weight_grad(du: &[f32], cout: usize, cin: usize) -> Result<Vec<f32>> {
    check_kernel(cout * cin * 9, cout, cin)?;
    check_len(
        "winograd kernel gradient [16][c_in][c_out]",
        du.len(),
        TILE_ELEMENTS * cin * cout,
    )?;
    let mut out = vec![0f32; cout * cin * 9];
    for o in 0..cout {
        for i in 0..cin {
            let d = |p: usize, s: usize| f64::from(du[((p * 4 + s) * cin + i) * cout + o]);
            // Gᵀ dU first (3x4), then G on the right.
            let mut t = [[0f64; 4]; 3];
            for (a, ta) in t.iter_mut().enumerate() {
                for (s, tas) in ta.iter_mut().enumerate() {
                    *tas = G.iter().enumerate().map(|(p, gp)| gp[a] * d(p, s)).sum();
                }
            }
            for (a, ta) in t.iter().enumerate() {
                for b in 0..3 {
                    let v: f64 = ta.iter().zip(&G).map(|(tas, gs)| tas * gs[b]).sum();
                    out[(o * cin + i) * 9 + a * 3 + b] = v as f32;
                }
            }
        }
    }
    Ok(out)
}
