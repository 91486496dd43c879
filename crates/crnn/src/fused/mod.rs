//! The conv stack of [`Crnn2d`](crate::Crnn2d) on [`ConvBackend::FusedCpu`](crate::ConvBackend):
//! the convolutions of blocks 2-4 by Winograd (`winograd`: `crnn_kernels` transforms,
//! libtorch GEMMs) or by oneDNN through libtorch ([`ConvAlgorithm`]), the [`crnn_kernels`]
//! passes for everything else, block 1's convolution included. This module moves tensors in and out
//! of the passes; the passes themselves (and what each computes) are documented in
//! `crnn_kernels`.
//!
//! - **Inference** pools first (`bn(elu(ext(x)))` on the window extremes) and runs the batch
//!   through the stack in micro-batches sized to the machine's caches
//!   ([`crnn_kernels::Plan::micro_batch`]).
//! - **Training** keeps per block the ELU output (blocks 2-4; block 1's conv output is
//!   recomputed instead of stored), each window's winner and the batch statistics; the GRUs
//!   and the dense layer stay on autograd (their input is a leaf tensor).

use crnn_kernels::{
    Affine, BnBackward, ChannelSums, Conv1, DropoutMask, Geometry, GradIn, InputNorm, Plan, Plane,
    PooledOut, Winners,
};
use tch::{Kind, Tensor};

use crate::layers::KerasBatchNorm;
use crate::{ConvAlgorithm, Result};
pub(crate) use conv::conv2d_same_backward;
use conv::{as_slice, as_slice_mut};
use winograd::Conv3x3;

mod conv;
mod winograd;

/// What the fused passes need of the network.
pub(crate) struct ConvStack<'a> {
    pub bn_in: &'a KerasBatchNorm,
    pub kernels: &'a [Tensor],
    pub biases: &'a [Tensor],
    pub bns: &'a [KerasBatchNorm],
    pub pools: [(usize, usize); 4],
    pub dropout: f64,
    /// How the 3x3 convolutions of blocks 2-4 run.
    pub algorithm: ConvAlgorithm,
}

impl ConvStack<'_> {
    /// Whether block `i`'s convolution runs by Winograd.
    fn winograd(&self, i: usize) -> bool {
        self.algorithm == ConvAlgorithm::Winograd
            && self.kernels.get(i).is_some_and(|k| k.size()[2..] == [3, 3])
    }

    /// The Winograd convolution of each block that runs one (None for the others), its
    /// kernel transformed once for the batch.
    fn winograd_convs(&self) -> Result<Vec<Option<Conv3x3>>> {
        (0..self.kernels.len())
            .map(|i| {
                (i > 0 && self.winograd(i))
                    .then(|| Conv3x3::new(&self.kernels[i], &self.biases[i]))
                    .transpose()
            })
            .collect()
    }

    /// Block `i`'s (`i >= 1`) convolution of the previous block's NHWC output `y`, NHWC out:
    /// by `wino[i]` where there is one, else by oneDNN.
    fn conv_nhwc(
        &self,
        plan: &Plan,
        i: usize,
        wino: &[Option<Conv3x3>],
        y: &Tensor,
    ) -> Result<Tensor> {
        match wino.get(i) {
            Some(Some(conv)) => conv.forward(plan, y),
            _ => nhwc(&conv(&nchw_view(y)?, &self.kernels[i], &self.biases[i])?),
        }
    }
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        t.f_to_kind(Kind::Float)?.f_contiguous()?.f_view([-1])?,
    )?)
}

fn tensor(v: &[f32]) -> Tensor {
    Tensor::from_slice(v)
}

fn f32_tensor(v: &[f64]) -> Tensor {
    tensor(&v.iter().map(|&x| x as f32).collect::<Vec<_>>())
}

/// The inference affine map of a Keras BatchNorm (moving statistics).
fn eval_affine(bn: &KerasBatchNorm) -> Result<Affine> {
    Ok(Affine::inference(
        &to_vec(&bn.gamma)?,
        &to_vec(&bn.beta)?,
        &to_vec(&bn.moving_mean)?,
        &to_vec(&bn.moving_variance)?,
        bn.epsilon() as f32,
    ))
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

/// Conv 1 (`[c, 1, 3, 3]` kernel, one input channel) in the passes' layout.
fn conv1_params(kernel: &Tensor, bias: &Tensor) -> Result<Conv1> {
    let s = kernel.size();
    if s.len() != 4 || s[1] != 1 || s[2] != 3 || s[3] != 3 {
        return Err(crate::Error::Shape {
            what: "conv-1 kernel",
            expected: vec![-1, 1, 3, 3],
            got: s,
        });
    }
    Ok(Conv1::from_oihw(
        &to_vec(&kernel.f_contiguous()?)?,
        &to_vec(bias)?,
    )?)
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

/// Bytes one slice keeps live in the inference stack: block 1's pooled output and block 2's
/// conv output (the largest pair), in f32.
fn eval_bytes_per_slice(stack: &ConvStack<'_>, f: usize, t: usize) -> usize {
    let (f1, t1) = (f / stack.pools[0].0.max(1), t / stack.pools[0].1.max(1));
    let c1 = stack.kernels.first().map_or(1, |k| k.size()[0] as usize);
    let c2 = stack.kernels.get(1).map_or(1, |k| k.size()[0] as usize);
    4 * f1 * t1 * (c1 + c2)
}

/// Inference through the conv stack: `[batch, 1, n_mels, frames]` in, the last block's
/// pooled output `[batch, f', t', channels]` (NHWC, contiguous) out. No autograd.
pub(crate) fn eval_stack(plan: &Plan, stack: &ConvStack<'_>, xs: &Tensor) -> Result<Tensor> {
    tch::no_grad(|| {
        let size = xs.size();
        let (b, f, t) = (size[0], size[2] as usize, size[3] as usize);
        let bn_in = eval_affine(stack.bn_in)?;
        let affines = stack
            .bns
            .iter()
            .map(eval_affine)
            .collect::<Result<Vec<_>>>()?;
        let x = xs.f_contiguous()?;
        let mut z = Tensor::f_empty([b, 1, f as i64, t as i64], (Kind::Float, tch::Device::Cpu))?;
        plan.bin_affine(
            as_slice(&x, "input")?,
            (f, t),
            (&bn_in.scale, &bn_in.shift),
            as_slice_mut(&mut z, "input BatchNorm output")?,
        )?;
        let conv1 = conv1_params(&stack.kernels[0], &stack.biases[0])?;
        let zs = as_slice(&z, "input BatchNorm output")?;
        let micro = plan.micro_batch(eval_bytes_per_slice(stack, f, t)) as i64;
        let wino = stack.winograd_convs()?;
        let plane_len = f * t;
        let mut outs = Vec::new();
        let mut start = 0;
        while start < b {
            let len = micro.min(b - start);
            let g0 = block1_geometry(len as usize, f, t, &conv1, stack.pools[0]);
            let mut y = pooled(g0)?;
            let plane = Plane {
                z: &zs[start as usize * plane_len..(start + len) as usize * plane_len],
                f,
                t,
            };
            plan.conv1_eval(
                plane,
                &conv1,
                g0,
                &affines[0],
                as_slice_mut(&mut y, "block-1 output")?,
            )?;
            for (i, affine) in affines.iter().enumerate().skip(1) {
                let c = stack.conv_nhwc(plan, i, &wino, &y)?;
                let g = geometry(&c, stack.pools[i]);
                y = pooled(g)?;
                plan.pool_elu_affine(
                    as_slice(&c, "conv output")?,
                    g,
                    affine,
                    as_slice_mut(&mut y, "pooled output")?,
                )?;
            }
            outs.push(y);
            start += len;
        }
        Ok(Tensor::f_cat(&outs, 0)?)
    })
}

/// What the backward pass needs of one block's forward pass.
struct BlockTape {
    /// The conv input: the previous block's output, NHWC `[n, f, t, c]` contiguous (block 1:
    /// the input-BatchNorm output, `[n, 1, f, t]`).
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
    /// The input BatchNorm's gamma and beta as the forward pass read them.
    in_gamma: Vec<f32>,
    in_beta: Vec<f32>,
    conv1: Conv1,
    blocks: Vec<BlockTape>,
}

/// Batch statistics `(mean, invstd)` from sums over `count` values, after updating `bn`'s
/// moving averages with the biased variance (Keras).
fn batch_statistics(
    bn: &KerasBatchNorm,
    sums: &ChannelSums,
    count: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let stats = sums.batch_statistics(count, bn.epsilon());
    bn.f_update_moving(
        &Tensor::f_from_slice(&stats.mean)?,
        &Tensor::f_from_slice(&stats.var)?,
    )?;
    Ok((stats.mean, stats.invstd))
}

/// Training forward through the conv stack (batch statistics, moving averages updated,
/// dropout keyed by `key`): the last block's output `[batch, f', t', channels]` as a fresh
/// leaf (the caller sets `requires_grad` and runs the rest on autograd), and the tape.
pub(crate) fn train_forward(
    plan: &Plan,
    stack: &ConvStack<'_>,
    xs: &Tensor,
    key: u64,
) -> Result<(Tensor, Tape)> {
    tch::no_grad(|| {
        let size = xs.size();
        let (b, f, t) = (size[0] as usize, size[2] as usize, size[3] as usize);
        let x = xs.f_contiguous()?;
        let xin = as_slice(&x, "input")?;
        let sums = plan.bin_stats(xin, f, t)?;
        let (in_mean, in_invstd) = batch_statistics(stack.bn_in, &sums, b * t)?;
        let (in_gamma, in_beta) = (to_vec(&stack.bn_in.gamma)?, to_vec(&stack.bn_in.beta)?);
        let aff = Affine::training(&in_gamma, &in_beta, &in_mean, &in_invstd);
        let mut z = Tensor::f_empty(
            [b as i64, 1, f as i64, t as i64],
            (Kind::Float, tch::Device::Cpu),
        )?;
        plan.bin_affine(
            xin,
            (f, t),
            (&aff.scale, &aff.shift),
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
        let sums = plan.conv1_train_forward(
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
        let aff = Affine::training(&gamma, &to_vec(&stack.bns[0].beta)?, &mean, &invstd);
        let mask = DropoutMask::new(stack.dropout, block_key(key, 0));
        let mut y = pooled(g)?;
        plan.pooled_affine_dropout(
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

        // Blocks 2-4: Winograd or oneDNN conv, then the dense passes.
        let wino = stack.winograd_convs()?;
        for i in 1..stack.kernels.len() {
            let mut e = stack.conv_nhwc(plan, i, &wino, &y)?;
            let g = geometry(&e, stack.pools[i]);
            let sums = plan.elu_with_stats(as_slice_mut(&mut e, "conv output")?, g)?;
            let (mean, invstd) = batch_statistics(&stack.bns[i], &sums, g.positions())?;
            let gamma = to_vec(&stack.bns[i].gamma)?;
            let aff = Affine::training(&gamma, &to_vec(&stack.bns[i].beta)?, &mean, &invstd);
            let mask = DropoutMask::new(stack.dropout, block_key(key, i));
            let input = std::mem::replace(&mut y, pooled(g)?);
            let (mut index, mut value) = (vec![0u8; g.pooled_len()], vec![0f32; g.pooled_len()]);
            plan.pool_train(
                as_slice(&e, "ELU output")?,
                g,
                &aff,
                &mask,
                PooledOut {
                    y: as_slice_mut(&mut y, "block output")?,
                    index: &mut index,
                    value: &mut value,
                },
            )?;
            blocks.push(BlockTape {
                input,
                elu: Some(e),
                geometry: g,
                index,
                value,
                mean,
                invstd,
                gamma,
                mask,
            });
        }
        Ok((
            y,
            Tape {
                input: x,
                in_mean,
                in_invstd,
                in_gamma,
                in_beta,
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

/// Gradients of the conv stack's variables given `dy`, the gradient at the output of
/// [`train_forward`]: `(variable, gradient)` pairs for the conv kernels and biases and the
/// BatchNorm gammas and betas (the input BatchNorm's included).
pub(crate) fn train_backward(
    plan: &Plan,
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
        let mut input_grads = None;
        for i in (0..blocks.len()).rev() {
            let Some(mut blk) = blocks.pop() else { break };
            let g = blk.geometry;
            let sums = plan.pooled_grad(
                as_slice_mut(&mut d, "block output gradient")?,
                &blk.value,
                g.c,
                (&blk.mean, &blk.invstd),
                &blk.mask,
            )?;
            let bn = BnBackward::new(&blk.gamma, &blk.mean, &blk.invstd, &sums, g.positions());
            let (d_kernel, d_bias) = match blk.elu.as_mut() {
                None => {
                    // Block 1: conv 1's and the input BatchNorm's gradients straight from
                    // the fused pass.
                    let size = blk.input.size();
                    let (f, t) = (size[2] as usize, size[3] as usize);
                    let plane = Plane {
                        z: as_slice(&blk.input, "conv-1 input")?,
                        f,
                        t,
                    };
                    let gi = GradIn {
                        conv: &tape.conv1,
                        g,
                        bn: &bn,
                        gp: as_slice(&d, "pooled gradient")?,
                        index: &blk.index,
                    };
                    // xhat = (x - mean) * invstd, as invstd * x - mean * invstd.
                    let shift: Vec<f32> = tape
                        .in_mean
                        .iter()
                        .zip(&tape.in_invstd)
                        .map(|(m, i)| -m * i)
                        .collect();
                    let x = as_slice(&tape.input, "input")?;
                    let mut xhat = vec![0f32; x.len()];
                    plan.bin_affine(x, (f, t), (&tape.in_invstd, &shift), &mut xhat)?;
                    let norm = InputNorm {
                        xhat: &xhat,
                        gamma: &tape.in_gamma,
                        beta: &tape.in_beta,
                    };
                    let c1 = plan.conv1_grads(plane, gi, norm)?;
                    input_grads = Some((f32_tensor(&c1.in_gamma), f32_tensor(&c1.in_beta)));
                    let k = tensor(&tape.conv1.taps_to_oihw(&c1.kernel))
                        .f_view([g.c as i64, 1, 3, 3])?;
                    (k, f32_tensor(&c1.bias))
                }
                Some(elu) => {
                    let bias = plan.conv_output_grad(
                        as_slice_mut(elu, "ELU output")?,
                        (as_slice(&d, "pooled gradient")?, &blk.index),
                        g,
                        &bn,
                    )?;
                    // The NHWC gradient of the previous block's output.
                    let d_kernel;
                    (d, d_kernel) = if stack.winograd(i) {
                        winograd::conv3x3_backward(plan, elu, &blk.input, &stack.kernels[i])?
                    } else {
                        let (d_input, d_kernel) = conv2d_same_backward(
                            &nchw_view(elu)?,
                            &nchw_view(&blk.input)?,
                            &stack.kernels[i],
                        )?;
                        (d_input.f_permute([0, 2, 3, 1])?.f_contiguous()?, d_kernel)
                    };
                    (d_kernel, f32_tensor(&bias))
                }
            };
            grads.push((stack.kernels[i].shallow_clone(), d_kernel));
            grads.push((stack.biases[i].shallow_clone(), d_bias));
            grads.push((stack.bns[i].gamma.shallow_clone(), f32_tensor(&sums.b)));
            grads.push((stack.bns[i].beta.shallow_clone(), f32_tensor(&sums.a)));
        }
        let Some((d_gamma, d_beta)) = input_grads else {
            return Err(crate::Error::Backend {
                backend: "fused-cpu".into(),
                rule: "has no block 1 on its tape (an empty conv stack)".into(),
            });
        };
        grads.push((stack.bn_in.gamma.shallow_clone(), d_gamma));
        grads.push((stack.bn_in.beta.shallow_clone(), d_beta));
        Ok(grads)
    })
}

#[cfg(test)]
mod parity_tests;
