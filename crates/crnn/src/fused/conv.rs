//! `at::convolution_backward` through the C++ shim in `csrc/shim.cpp`, and raw access to
//! the `f32` memory of CPU tensors for the kernels.

use std::ffi::{c_char, c_int};

use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::backend::c_message;
use crate::{Error, Result};

unsafe extern "C" {
    fn crnn_conv2d_same_backward(
        grad_output: *const C_tensor,
        input: *const C_tensor,
        weight: *const C_tensor,
        want_input_grad: c_int,
        grad_input: *mut *mut C_tensor,
        grad_weight: *mut *mut C_tensor,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

/// Gradients of a stride-1 "same" conv2d (odd kernel, bias handled by the caller) given the
/// gradient at its output: `(d input, d weight)`, by the kernels autograd would use.
pub(crate) fn conv2d_same_backward(
    grad_output: &Tensor,
    input: &Tensor,
    weight: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let mut error = vec![0 as c_char; 1024];
    let mut gi: *mut C_tensor = std::ptr::null_mut();
    let mut gw: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: the three tensor pointers are live tch tensors borrowed for the call; the shim
    // writes two owned tensor pointers (or null) and a NUL-terminated message into `error`.
    let rc = unsafe {
        crnn_conv2d_same_backward(
            grad_output.as_ptr(),
            input.as_ptr(),
            weight.as_ptr(),
            1,
            &mut gi,
            &mut gw,
            error.as_mut_ptr(),
            error.len(),
        )
    };
    // SAFETY: non-null pointers returned by the shim are fresh heap tensors we now own.
    let grad_weight = (!gw.is_null()).then(|| unsafe { Tensor::from_ptr(gw) });
    // SAFETY: as above.
    let grad_input = (!gi.is_null()).then(|| unsafe { Tensor::from_ptr(gi) });
    match (rc, grad_input, grad_weight) {
        (0, Some(i), Some(w)) => Ok((i, w)),
        (0, _, _) => Err(Error::Shim {
            call: "convolution_backward",
            message: "returned no input or weight gradient".into(),
        }),
        _ => Err(Error::Shim {
            call: "convolution_backward",
            message: c_message(&error),
        }),
    }
}

fn check_f32(t: &Tensor, what: &'static str) -> Result<usize> {
    if t.kind() != Kind::Float || t.device() != Device::Cpu || !t.is_contiguous() {
        return Err(Error::Backend {
            backend: "fused-cpu".into(),
            rule: format!(
                "needs {what} as a contiguous f32 CPU tensor, got {:?} on {:?} with strides {:?}",
                t.kind(),
                t.device(),
                t.stride()
            ),
        });
    }
    Ok(t.numel())
}

/// The memory of a contiguous f32 CPU tensor.
pub(crate) fn as_slice<'a>(t: &'a Tensor, what: &'static str) -> Result<&'a [f32]> {
    let n = check_f32(t, what)?;
    if n == 0 {
        return Ok(&[]);
    }
    // SAFETY: checked contiguous f32 on the CPU with `n` elements; the borrow of `t` keeps
    // the storage alive, and the fused code never writes a tensor it has lent out as a slice.
    Ok(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, n) })
}

/// The memory of a contiguous f32 CPU tensor, to write. The caller owns the tensor (a fresh
/// result of a no-grad op, not shared with autograd or another live slice).
pub(crate) fn as_slice_mut<'a>(t: &'a mut Tensor, what: &'static str) -> Result<&'a mut [f32]> {
    let n = check_f32(t, what)?;
    if n == 0 {
        return Ok(&mut []);
    }
    // SAFETY: as in `as_slice`; the exclusive borrow of `t` stands for exclusive use of the
    // storage (see above).
    Ok(unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) })
}
