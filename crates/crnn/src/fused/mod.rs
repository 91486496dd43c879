//! The conv stack of [`Crnn2d`](crate::Crnn2d) on the CPU with fused kernels: oneDNN
//! (through libtorch) for the convolutions of blocks 2-4, and this module's passes for
//! everything else, block 1's convolution included.
//!
//! Same mathematics as the libtorch-op path (which stays the reference, and the path on
//! other devices and dtypes), different summation order and an own `expm1`:
//!
//! - **Inference** pools first. ELU is increasing and an inference BatchNorm is a per-channel
//!   affine map, so `maxpool(bn(elu(x))) = bn(elu(ext(x)))` with `ext` the window max where the
//!   BatchNorm scale is >= 0 and the min where it is negative: one read of each conv output,
//!   ELU and BatchNorm on a quarter or an eighth of the values. Block 1 computes its
//!   convolution window by window and never stores it. The batch runs through the conv stack
//!   in micro-batches that stay in cache.
//! - **Training** needs the batch statistics of the ELU output at every position. Blocks 2-4:
//!   pass A applies the ELU in place and sums per channel; pass B pools the BatchNorm output
//!   (again by the sign trick), applies dropout and remembers each window's winner. Backward:
//!   pass C (pooled values only) gives d gamma and d beta; pass D is one dense pass that
//!   scatters the pooled gradient, applies the BatchNorm and ELU backward and sums the conv
//!   bias gradient; `at::convolution_backward` does the rest. Block 1 (one input channel,
//!   where oneDNN's backward kernels are slow) does conv, ELU, sums and winners in one pass
//!   (the winner depends only on the sign of gamma), and in the backward pass recomputes conv
//!   and ELU and accumulates conv 1's weight, bias and input gradients directly: its 49 MB
//!   conv output (batch 16, 3 s) is never stored. The GRUs and the dense layer stay on
//!   autograd (their input is a leaf tensor).
//! - Passes run on libtorch's own intra-op (OpenMP) threads through the C++ shim, so they
//!   share the cores with oneDNN and follow `tch::set_num_threads`. The work split is fixed
//!   and partial sums are added in order: results do not depend on the thread count.
//! - x86-64 CPUs with AVX-512 run hand-written kernels that repeat the portable code's
//!   arithmetic step for step (tested bit for bit); others run the portable code, compiled for
//!   AVX2+FMA where present.
//! - Dropout masks are a hash of (key, element index): the same for any thread count.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_conv1;
mod conv;
mod conv1;
mod dense;
mod kernels;
mod math;
mod mel_bins;
mod parallel;

use tch::{Kind, Tensor};

use crate::Result;
use crate::layers::KerasBatchNorm;
pub(crate) use conv::conv2d_same_backward;
use conv::{as_slice, as_slice_mut};
use conv1::{Conv1, GradIn, Plane, Winners};
use dense::PooledOut;
use kernels::{Affine, BnBackward, Geometry};
use math::DropoutMask;

/// Slices per micro-batch of the inference conv stack: a 94-frame slice's second conv output
/// is 1.5 MB, so 8 of them stay in a large L2/L3 (4-8 measured best on this 2-core machine).
pub(crate) const EVAL_MICRO_BATCH: i64 = 8;

/// What the fused passes need of the network.
pub(crate) struct ConvStack<'a> {
    pub bn_in: &'a KerasBatchNorm,
    pub kernels: &'a [Tensor],
    pub biases: &'a [Tensor],
    pub bns: &'a [KerasBatchNorm],
    pub pools: [(usize, usize); 4],
    pub dropout: f64,
}

/// Whether the fused path can run `xs` through this network.
pub(crate) fn applies(stack: &ConvStack<'_>, xs: &Tensor) -> bool {
    xs.device() == tch::Device::Cpu
        && xs.kind() == Kind::Float
        && stack.kernels.iter().all(|k| k.kind() == Kind::Float)
        && stack.kernels.iter().all(|k| {
            let s = k.size();
            s.len() == 4 && s[2] % 2 == 1 && s[3] % 2 == 1
        })
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        t.f_to_kind(Kind::Float)?.f_contiguous()?.f_view([-1])?,
    )?)
}

fn tensor(v: &[f32]) -> Tensor {
    Tensor::from_slice(v)
}

/// The inference affine map of a Keras BatchNorm, computed as libtorch does:
/// `scale = gamma / sqrt(moving_var + eps)`, `shift = beta - moving_mean * scale`.
fn eval_affine(bn: &KerasBatchNorm) -> Result<Affine> {
    let (gamma, beta) = (to_vec(&bn.gamma)?, to_vec(&bn.beta)?);
    let (mean, var) = (to_vec(&bn.moving_mean)?, to_vec(&bn.moving_variance)?);
    let eps = bn.epsilon() as f32;
    let scale: Vec<f32> = gamma
        .iter()
        .zip(&var)
        .map(|(g, v)| g * (1.0 / (v + eps).sqrt()))
        .collect();
    let shift = beta
        .iter()
        .zip(&mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    Ok(Affine::new(scale, shift))
}

/// A conv output as an owned NHWC `[n, f, t, c]` tensor (no copy when oneDNN already wrote
/// it channels-last, which it does when the kernels are stored channels-last).
fn nhwc(conv_out: &Tensor) -> Result<Tensor> {
    Ok(conv_out.f_permute([0, 2, 3, 1])?.f_contiguous()?)
}

/// An NHWC `[n, f, t, c]` tensor as the NCHW-shaped, channels-last-strided input of a conv.
fn nchw_view(y: &Tensor) -> Result<Tensor> {
    Ok(y.f_permute([0, 3, 1, 2])?)
}

fn geometry(y: &Tensor, pool: (usize, usize)) -> Geometry {
    let s = y.size();
    Geometry {
        n: s[0] as usize,
        f: s[1] as usize,
        t: s[2] as usize,
        c: s[3] as usize,
        pf: pool.0,
        pt: pool.1,
    }
}

/// A fresh `[n, f', t', c]` tensor for a block's pooled output.
fn pooled(g: Geometry) -> Result<Tensor> {
    Ok(Tensor::f_empty(
        [g.n as i64, g.fo() as i64, g.to() as i64, g.c as i64],
        (Kind::Float, tch::Device::Cpu),
    )?)
}

/// Conv 1 (`[c, 1, 3, 3]` kernel, one input channel) in the fused kernels' layout.
fn conv1_params(kernel: &Tensor, bias: &Tensor) -> Result<Conv1> {
    let s = kernel.size();
    if s.len() != 4 || s[1] != 1 || s[2] != 3 || s[3] != 3 {
        return Err(crate::Error::Shape {
            what: "conv-1 kernel",
            expected: vec![-1, 1, 3, 3],
            got: s,
        });
    }
    Ok(Conv1 {
        c: s[0] as usize,
        // [c, 1, 3, 3] -> [3, 3, 1, c]: taps[(kh * 3 + kw) * c + o].
        taps: to_vec(&kernel.f_permute([2, 3, 1, 0])?)?,
        bias: to_vec(bias)?,
    })
}

fn block1_geometry(n: usize, f: usize, t: usize, conv1: &Conv1, pool: (usize, usize)) -> Geometry {
    Geometry {
        n,
        f,
        t,
        c: conv1.c,
        pf: pool.0,
        pt: pool.1,
    }
}

fn conv(x: &Tensor, kernel: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let s = kernel.size();
    Ok(x.f_conv2d(kernel, Some(bias), [1, 1], [s[2] / 2, s[3] / 2], [1, 1], 1)?)
}

/// Inference through the conv stack: `[batch, 1, n_mels, frames]` in, the last block's
/// pooled output `[batch, f', t', channels]` (NHWC, contiguous) out. No autograd.
pub(crate) fn eval_stack(stack: &ConvStack<'_>, xs: &Tensor) -> Result<Tensor> {
    tch::no_grad(|| {
        let size = xs.size();
        let (b, f, t) = (size[0], size[2], size[3]);
        let bn_in = eval_affine(stack.bn_in)?;
        let affines = stack
            .bns
            .iter()
            .map(eval_affine)
            .collect::<Result<Vec<_>>>()?;
        let x = xs.f_contiguous()?;
        let mut z = Tensor::f_empty([b, 1, f, t], (Kind::Float, tch::Device::Cpu))?;
        {
            let (xin, zout) = (
                as_slice(&x, "input")?,
                as_slice_mut(&mut z, "input BatchNorm output")?,
            );
            mel_bins::bin_affine(
                xin,
                f as usize,
                t as usize,
                &bn_in.scale,
                &bn_in.shift,
                zout,
            )?;
        }
        let conv1 = conv1_params(&stack.kernels[0], &stack.biases[0])?;
        let zs = as_slice(&z, "input BatchNorm output")?;
        let plane_len = (f * t) as usize;
        let mut outs = Vec::new();
        let mut start = 0;
        while start < b {
            let len = EVAL_MICRO_BATCH.min(b - start);
            let g0 = block1_geometry(len as usize, f as usize, t as usize, &conv1, stack.pools[0]);
            let mut y = pooled(g0)?;
            let plane = Plane {
                z: &zs[start as usize * plane_len..(start + len) as usize * plane_len],
                f: f as usize,
                t: t as usize,
            };
            conv1::eval(
                plane,
                &conv1,
                g0,
                &affines[0],
                as_slice_mut(&mut y, "block-1 output")?,
            )?;
            let mut h = nchw_view(&y)?;
            for (i, affine) in affines.iter().enumerate().skip(1) {
                let c = nhwc(&conv(&h, &stack.kernels[i], &stack.biases[i])?)?;
                let g = geometry(&c, stack.pools[i]);
                y = pooled(g)?;
                let (cin, yout) = (
                    as_slice(&c, "conv output")?,
                    as_slice_mut(&mut y, "pooled output")?,
                );
                dense::pool_elu_affine(cin, g, affine, yout)?;
                h = nchw_view(&y)?;
            }
            outs.push(y);
            start += len;
        }
        Ok(Tensor::f_cat(&outs, 0)?)
    })
}

/// What the backward pass needs of one block's forward pass.
struct BlockTape {
    /// The conv input (NCHW shape, channels-last strides; block 1: the input-BatchNorm output).
    input: Tensor,
    /// The ELU output at every position, NHWC, which becomes the conv-output gradient in
    /// place. None for block 1, whose conv output is recomputed instead of stored.
    elu: Option<Tensor>,
    geometry: Geometry,
    index: Vec<u8>,
    value: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    gamma: Vec<f32>,
    mask: DropoutMask,
}

/// The saved state of [`train_forward`] for [`train_backward`].
pub(crate) struct Tape {
    input: Tensor,
    in_mean: Vec<f32>,
    in_invstd: Vec<f32>,
    conv1: Conv1,
    blocks: Vec<BlockTape>,
}

/// Batch statistics `(mean, invstd)` from sums over `count` values, after updating `bn`'s
/// moving averages with the biased variance (Keras).
fn batch_statistics(
    bn: &KerasBatchNorm,
    sums: &kernels::ChannelSums,
    count: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (mean, var) = kernels::mean_variance(sums, count);
    let eps = bn.epsilon();
    let invstd = var
        .iter()
        .map(|v| (1.0 / (v + eps).sqrt()) as f32)
        .collect();
    let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    let var32: Vec<f32> = var.iter().map(|&v| v as f32).collect();
    bn.update_moving(&tensor(&mean32), &tensor(&var32));
    Ok((mean32, invstd))
}

fn train_affine(gamma: &[f32], beta: &[f32], mean: &[f32], invstd: &[f32]) -> Affine {
    let scale: Vec<f32> = gamma.iter().zip(invstd).map(|(g, i)| g * i).collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    Affine::new(scale, shift)
}

/// Training forward through the conv stack (batch statistics, moving averages updated,
/// dropout keyed by `key`): the last block's output `[batch, f', t', channels]` as a fresh
/// leaf (the caller sets `requires_grad` and runs the rest on autograd), and the tape.
pub(crate) fn train_forward(
    stack: &ConvStack<'_>,
    xs: &Tensor,
    key: u64,
) -> Result<(Tensor, Tape)> {
    tch::no_grad(|| {
        let size = xs.size();
        let (b, f, t) = (size[0] as usize, size[2] as usize, size[3] as usize);
        let x = xs.f_contiguous()?;
        let xin = as_slice(&x, "input")?;
        let sums = mel_bins::bin_stats(xin, f, t)?;
        let (in_mean, in_invstd) = batch_statistics(stack.bn_in, &sums, b * t)?;
        let aff = train_affine(
            &to_vec(&stack.bn_in.gamma)?,
            &to_vec(&stack.bn_in.beta)?,
            &in_mean,
            &in_invstd,
        );
        let mut z = Tensor::f_empty(
            [b as i64, 1, f as i64, t as i64],
            (Kind::Float, tch::Device::Cpu),
        )?;
        mel_bins::bin_affine(
            xin,
            f,
            t,
            &aff.scale,
            &aff.shift,
            as_slice_mut(&mut z, "input BatchNorm output")?,
        )?;

        // Block 1: conv 1 inside the fused pass, winners by the sign of gamma.
        let conv1 = conv1_params(&stack.kernels[0], &stack.biases[0])?;
        let g = block1_geometry(b, f, t, &conv1, stack.pools[0]);
        let gamma = to_vec(&stack.bns[0].gamma)?;
        let sign: Vec<f32> = gamma
            .iter()
            .map(|&v| if v < 0.0 { -1.0 } else { 1.0 })
            .collect();
        let (mut index, mut value) = (vec![0u8; g.pooled_len()], vec![0f32; g.pooled_len()]);
        let plane = Plane {
            z: as_slice(&z, "input BatchNorm output")?,
            f,
            t,
        };
        let sums = conv1::train_forward(
            plane,
            &conv1,
            g,
            &sign,
            Winners {
                index: &mut index,
                value: &mut value,
            },
        )?;
        let (mean, invstd) = batch_statistics(&stack.bns[0], &sums, g.positions())?;
        let aff = train_affine(&gamma, &to_vec(&stack.bns[0].beta)?, &mean, &invstd);
        let mask = DropoutMask::new(stack.dropout, block_key(key, 0));
        let mut y = pooled(g)?;
        dense::pooled_affine_dropout(
            &value,
            g.c,
            &aff,
            &mask,
            as_slice_mut(&mut y, "block-1 output")?,
        )?;
        let mut blocks = Vec::with_capacity(4);
        blocks.push(BlockTape {
            input: z,
            elu: None,
            geometry: g,
            index,
            value,
            mean,
            invstd,
            gamma,
            mask,
        });

        // Blocks 2-4: oneDNN conv, then the dense passes.
        let mut h = nchw_view(&y)?;
        for i in 1..4 {
            let mut e = nhwc(&conv(&h, &stack.kernels[i], &stack.biases[i])?)?;
            let g = geometry(&e, stack.pools[i]);
            let sums = dense::elu_with_stats(as_slice_mut(&mut e, "conv output")?, g)?;
            let (mean, invstd) = batch_statistics(&stack.bns[i], &sums, g.positions())?;
            let gamma = to_vec(&stack.bns[i].gamma)?;
            let aff = train_affine(&gamma, &to_vec(&stack.bns[i].beta)?, &mean, &invstd);
            let mask = DropoutMask::new(stack.dropout, block_key(key, i));
            y = pooled(g)?;
            let (mut index, mut value) = (vec![0u8; g.pooled_len()], vec![0f32; g.pooled_len()]);
            {
                let (ein, yout) = (
                    as_slice(&e, "ELU output")?,
                    as_slice_mut(&mut y, "block output")?,
                );
                let out = PooledOut {
                    y: yout,
                    index: &mut index,
                    value: &mut value,
                };
                dense::pool_train(ein, g, &aff, &mask, out)?;
            }
            blocks.push(BlockTape {
                input: h,
                elu: Some(e),
                geometry: g,
                index,
                value,
                mean,
                invstd,
                gamma,
                mask,
            });
            h = nchw_view(&y)?;
        }
        Ok((
            y,
            Tape {
                input: x,
                in_mean,
                in_invstd,
                conv1,
                blocks,
            },
        ))
    })
}

fn block_key(key: u64, block: usize) -> u64 {
    let mut z = key ^ ((block as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 29)
}

fn f32_tensor(v: &[f64]) -> Tensor {
    tensor(&v.iter().map(|&x| x as f32).collect::<Vec<_>>())
}

/// Gradients of the conv stack's variables given `dy`, the gradient at the output of
/// [`train_forward`]: `(variable, gradient)` pairs for the conv kernels and biases and the
/// BatchNorm gammas and betas (the input BatchNorm's included).
pub(crate) fn train_backward(
    stack: &ConvStack<'_>,
    tape: Tape,
    dy: &Tensor,
) -> Result<Vec<(Tensor, Tensor)>> {
    tch::no_grad(|| {
        let mut grads = Vec::with_capacity(18);
        // An own copy: pass C rewrites it in place.
        let mut d = dy.f_to_kind(Kind::Float)?.f_contiguous()?;
        if d.data_ptr() == dy.data_ptr() {
            let mut own = d.f_empty_like()?;
            own.f_copy_(&d)?;
            d = own;
        }
        let mut blocks = tape.blocks;
        let mut input_grad = Vec::new();
        for i in (0..4).rev() {
            let Some(mut blk) = blocks.pop() else { break };
            let g = blk.geometry;
            let dslice = as_slice_mut(&mut d, "block output gradient")?;
            let sums =
                dense::pooled_grad(dslice, &blk.value, g.c, &blk.mean, &blk.invstd, &blk.mask)?;
            let bn = BnBackward::new(&blk.gamma, &blk.mean, &blk.invstd, &sums, g.positions());
            let (d_kernel, d_bias) = match blk.elu.as_mut() {
                None => {
                    // Block 1: conv 1's gradients straight from the fused pass.
                    let size = blk.input.size();
                    let plane = Plane {
                        z: as_slice(&blk.input, "conv-1 input")?,
                        f: size[2] as usize,
                        t: size[3] as usize,
                    };
                    let gi = GradIn {
                        conv: &tape.conv1,
                        g,
                        bn: &bn,
                        gp: as_slice(&d, "pooled gradient")?,
                        index: &blk.index,
                    };
                    let (kernel, bias, input) = conv1::grads(plane, &gi)?;
                    input_grad = input;
                    // taps [3][3][1][c] -> [c, 1, 3, 3]
                    let k = f32_tensor(&kernel)
                        .f_view([3, 3, 1, g.c as i64])?
                        .f_permute([3, 2, 0, 1])?
                        .f_contiguous()?;
                    (k, f32_tensor(&bias))
                }
                Some(elu) => {
                    let (eslice, dslice) = (
                        as_slice_mut(elu, "ELU output")?,
                        as_slice(&d, "pooled gradient")?,
                    );
                    let bias = dense::conv_output_grad(eslice, dslice, &blk.index, g, &bn)?;
                    let grad_out = nchw_view(elu)?;
                    let (d_input, d_kernel) =
                        conv2d_same_backward(&grad_out, &blk.input, &stack.kernels[i], true)?;
                    let Some(d_input) = d_input else {
                        return Err(crate::Error::Torch(tch::TchError::Torch(
                            "convolution_backward returned no input gradient".into(),
                        )));
                    };
                    // NHWC gradient of the previous block's output.
                    d = d_input.f_permute([0, 2, 3, 1])?.f_contiguous()?;
                    (d_kernel, f32_tensor(&bias))
                }
            };
            grads.push((stack.kernels[i].shallow_clone(), d_kernel));
            grads.push((stack.biases[i].shallow_clone(), d_bias));
            grads.push((stack.bns[i].gamma.shallow_clone(), f32_tensor(&sums.b)));
            grads.push((stack.bns[i].beta.shallow_clone(), f32_tensor(&sums.a)));
        }
        let size = tape.input.size();
        let (f, t) = (size[2] as usize, size[3] as usize);
        let xin = as_slice(&tape.input, "input")?;
        let sums = mel_bins::bin_grad_sums(&input_grad, xin, f, t, &tape.in_mean, &tape.in_invstd)?;
        grads.push((stack.bn_in.gamma.shallow_clone(), f32_tensor(&sums.b)));
        grads.push((stack.bn_in.beta.shallow_clone(), f32_tensor(&sums.a)));
        Ok(grads)
    })
}

#[cfg(test)]
mod parity_tests;
#[cfg(test)]
mod test_util;
