// The two libtorch entry points crnn needs that tch does not wrap:
// - at::convolution_backward with an explicit gradient and output mask (tch's generator skips
//   functions that take a std::array<bool, 3>). The fused CPU training step computes the
//   gradient at each conv output itself and hands it here, so oneDNN's backward-data and
//   backward-weights kernels run exactly as autograd would run them.
// - at::parallel_for, so the fused kernels run on libtorch's own intra-op (OpenMP) threads:
//   a second thread pool would compete for the cores with OpenMP workers that spin-wait
//   after every libtorch op.
//
// Tensors cross the boundary as tch does it: a `torch::Tensor*` (= at::Tensor*). Results are
// new heap tensors owned by the caller (tch's Tensor::from_ptr). Errors never unwind into
// Rust: they are caught and copied into `error`.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/convolution_backward.h>

#include <array>

#include "guard.hpp"

using crnn_shim::guarded;

extern "C" int crnn_conv2d_same_backward(const at::Tensor *grad_output, const at::Tensor *input,
                                         const at::Tensor *weight, int want_input_grad,
                                         at::Tensor **grad_input, at::Tensor **grad_weight,
                                         char *error, size_t error_len) {
  *grad_input = nullptr;
  *grad_weight = nullptr;
  return guarded(error, error_len, [&] {
    const int64_t kh = weight->size(2), kw = weight->size(3);
    const std::array<bool, 3> mask{want_input_grad != 0, true, false};
    auto grads = at::convolution_backward(*grad_output, *input, *weight, std::nullopt,
                                          /*stride=*/{1, 1}, /*padding=*/{kh / 2, kw / 2},
                                          /*dilation=*/{1, 1}, /*transposed=*/false,
                                          /*output_padding=*/{0, 0}, /*groups=*/1, mask);
    if (want_input_grad) {
      *grad_input = new at::Tensor(std::get<0>(grads));
    }
    *grad_weight = new at::Tensor(std::get<1>(grads));
  });
}

// Calls job(context, begin, end) over [0, n) split across libtorch's intra-op threads. `job`
// must not unwind (the Rust side catches panics). Returns 0, or 1 with `error` filled if
// libtorch threw.
extern "C" int crnn_parallel_for(int64_t n, void *context,
                                 void (*job)(void *context, int64_t begin, int64_t end),
                                 char *error, size_t error_len) {
  return guarded(error, error_len, [&] {
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) { job(context, begin, end); });
  });
}
