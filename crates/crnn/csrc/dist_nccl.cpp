// ProcessGroupNCCL (the backend torch.distributed uses on CUDA) for the process groups of
// group.hpp; its collectives are dist.cpp's. Compiled only when libtorch_cuda.so and the
// CUDA and NCCL headers of the wheel's own dependencies are there (build.rs), with
// USE_C10D_NCCL and USE_CUDA as libtorch was built; everything called is out of line in
// libtorch_cuda.so / libc10_cuda.so.
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <chrono>

#include "group.hpp"
#include "guard.hpp"

// Like crnn_pg_new, with an NCCL group on CUDA device `device_index` (made the current
// device first, as torch.distributed users do with LOCAL_RANK).
extern "C" int crnn_pg_new_nccl(int store_kind, const char *host, int port, int is_server,
                                const char *file_path, int rank, int world, int64_t timeout_ms,
                                int device_index, void **out, char *error, size_t error_len) {
  *out = nullptr;
  return crnn_shim::guarded(error, error_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    const auto index = static_cast<c10::DeviceIndex>(device_index);
    c10::cuda::set_device(index);
    auto base =
        crnn_shim::make_store(store_kind, host, port, is_server, file_path, world, timeout);
    auto store = crnn_shim::group_store(base, "nccl");
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
    *out = new crnn_shim::Group{base, nccl, timeout, at::Device(at::kCUDA, index)};
  });
}
