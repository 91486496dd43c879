//! The 3x3 convolutions of blocks 2-4 by Winograd F(2x2, 3x3): the transforms are
//! [`crnn_kernels`] passes, the 16 products in the Winograd domain are libtorch batched
//! matmuls (`bmm`, MKL's GEMM). A batch goes through in chunks of tile rows sized so that a
//! chunk's Winograd-domain data stays in cache ([`crnn_kernels::Plan::micro_batch`]).

use std::ops::Range;

use crnn_kernels::{
    Plan, TILE_ELEMENTS, WinogradShape, winograd_weight_grad, winograd_weights,
    winograd_weights_flipped,
};
use tch::{Kind, Tensor};

use super::conv::{as_slice, as_slice_mut};
use super::{tensor, to_vec};
use crate::{Error, Result};

/// `(c_out, c_in)` of a 3x3 kernel, or an error naming the shape.
fn kernel_dims(kernel: &Tensor) -> Result<(usize, usize)> {
    match kernel.size()[..] {
        [o, i, 3, 3] => Ok((o as usize, i as usize)),
        _ => Err(Error::Shape {
            what: "Winograd 3x3 kernel",
            expected: vec![-1, -1, 3, 3],
            got: kernel.size(),
        }),
    }
}

/// The shape of an NHWC `[n, h, w, c]` tensor, and `c`.
fn shape(x: &Tensor) -> Result<(WinogradShape, usize)> {
    match x.size()[..] {
        [n, h, w, c] => Ok((
            WinogradShape {
                n: n as usize,
                h: h as usize,
                w: w as usize,
            },
            c as usize,
        )),
        _ => Err(Error::Shape {
            what: "Winograd NHWC activations",
            expected: vec![-1, -1, -1, -1],
            got: x.size(),
        }),
    }
}

fn empty(size: &[usize]) -> Result<Tensor> {
    let size: Vec<i64> = size.iter().map(|&s| s as i64).collect();
    Ok(Tensor::f_empty(size, (Kind::Float, tch::Device::Cpu))?)
}

/// The batch's tile rows in chunks whose Winograd-domain data (`channels` summed over the
/// buffers a chunk holds at once) fits the plan's cache budget.
fn chunks(plan: &Plan, g: WinogradShape, channels: usize) -> Vec<Range<usize>> {
    let bytes_per_row = 4 * TILE_ELEMENTS * g.tiles_per_row() * channels;
    g.tile_row_chunks(plan.micro_batch(2 * bytes_per_row))
}

/// `[16, tiles, c]` for chunk `rows`.
fn domain(g: WinogradShape, rows: &Range<usize>, c: usize) -> Result<Tensor> {
    empty(&[TILE_ELEMENTS, rows.len() * g.tiles_per_row(), c])
}

/// The input transform of tile rows `rows` of `xs` (`c` channels) as a `[16, tiles, c]`
/// tensor.
fn input_domain(
    plan: &Plan,
    xs: &[f32],
    g: WinogradShape,
    c: usize,
    rows: &Range<usize>,
) -> Result<Tensor> {
    let mut v = domain(g, rows, c)?;
    plan.winograd_input(
        xs,
        g,
        c,
        rows.clone(),
        as_slice_mut(&mut v, "Winograd domain")?,
    )?;
    Ok(v)
}

/// Winograd forward of the convolution with Winograd-domain kernel `u` (`[16, c_in, c_out]`)
/// on `x` (`[n, h, w, c_in]`, NHWC contiguous): `[n, h, w, c_out]`.
fn forward_with(
    plan: &Plan,
    x: &Tensor,
    u: &Tensor,
    cout: usize,
    bias: Option<&[f32]>,
) -> Result<Tensor> {
    let (g, cin) = shape(x)?;
    let xs = as_slice(x, "Winograd input")?;
    let mut y = empty(&[g.n, g.h, g.w, cout])?;
    let ys = as_slice_mut(&mut y, "Winograd output")?;
    for rows in chunks(plan, g, cin + cout) {
        let v = input_domain(plan, xs, g, cin, &rows)?;
        let m = v.f_bmm(u)?;
        plan.winograd_output(as_slice(&m, "Winograd product")?, g, cout, bias, rows, ys)?;
    }
    Ok(y)
}

/// A 3x3 "same" convolution with its kernel in the Winograd domain, transformed once per
/// batch.
pub(crate) struct Conv3x3 {
    /// `[16, c_in, c_out]`.
    u: Tensor,
    bias: Vec<f32>,
    cout: usize,
}

impl Conv3x3 {
    /// The convolution by `kernel` (`[c_out, c_in, 3, 3]`) plus `bias`.
    pub(crate) fn new(kernel: &Tensor, bias: &Tensor) -> Result<Self> {
        let (cout, cin) = kernel_dims(kernel)?;
        let u = tensor(&winograd_weights(&to_vec(kernel)?, cout, cin)?).f_view([
            TILE_ELEMENTS as i64,
            cin as i64,
            cout as i64,
        ])?;
        Ok(Self {
            u,
            bias: to_vec(bias)?,
            cout,
        })
    }

    /// The convolution of `x` (`[n, h, w, c_in]`, NHWC contiguous): `[n, h, w, c_out]`,
    /// NHWC contiguous.
    pub(crate) fn forward(&self, plan: &Plan, x: &Tensor) -> Result<Tensor> {
        forward_with(plan, x, &self.u, self.cout, Some(&self.bias))
    }
}

/// Gradients of [`Conv3x3::forward`] given `dy` (`[n, h, w, c_out]`, NHWC contiguous) at its output:
/// `(d x` as `[n, h, w, c_in]` NHWC, `d kernel` as `[c_out, c_in, 3, 3])`. The bias gradient
/// is the caller's (the sum of `dy`).
pub(crate) fn conv3x3_backward(
    plan: &Plan,
    dy: &Tensor,
    x: &Tensor,
    kernel: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (cout, cin) = kernel_dims(kernel)?;
    let (g, c) = shape(x)?;
    if c != cin || shape(dy)? != (g, cout) {
        return Err(Error::Shape {
            what: "Winograd output gradient",
            expected: vec![g.n as i64, g.h as i64, g.w as i64, cout as i64],
            got: dy.size(),
        });
    }
    let k = to_vec(kernel)?;
    let uf = tensor(&winograd_weights_flipped(&k, cout, cin)?).f_view([
        TILE_ELEMENTS as i64,
        cout as i64,
        cin as i64,
    ])?;
    let dx = forward_with(plan, dy, &uf, cin, None)?;
    let (xs, dys) = (
        as_slice(x, "Winograd input")?,
        as_slice(dy, "Winograd gradient")?,
    );
    let mut du = Tensor::f_zeros(
        [TILE_ELEMENTS as i64, cin as i64, cout as i64],
        (Kind::Float, tch::Device::Cpu),
    )?;
    for rows in chunks(plan, g, cin + cout) {
        let v = input_domain(plan, xs, g, cin, &rows)?;
        let mut dm = domain(g, &rows, cout)?;
        plan.winograd_output_grad(
            dys,
            g,
            cout,
            rows,
            as_slice_mut(&mut dm, "Winograd gradient domain")?,
        )?;
        // In place; the returned handle is `du` itself.
        let _ = du.f_baddbmm_(&v.f_transpose(1, 2)?, &dm)?;
    }
    let dk = winograd_weight_grad(&to_vec(&du)?, cout, cin)?;
    Ok((dx, tensor(&dk).f_view([cout as i64, cin as i64, 3, 3])?))
}
