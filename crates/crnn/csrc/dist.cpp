// c10d collectives for data-parallel training: a store (TCPStore or FileStore) and a
// ProcessGroupGloo, and all-reduce (sum), broadcast and barrier on any group of group.hpp
// (Gloo here, NCCL from dist_nccl.cpp). Everything
// called here is out of line in libtorch_cpu.so (constructors, virtual collectives, the
// device helpers), so nothing of gloo is compiled into this object: the gloo headers in
// gloo-headers/ are needed only because ProcessGroupGloo.hpp includes them
// (see gloo-headers/PROVENANCE.md for which gloo they are and why they match the wheel's).
//
// The group is an opaque heap object owned by the Rust side (crnn_pg_free). Errors never
// unwind into Rust: they are caught and copied into `error`, as in shim.cpp.
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "group.hpp"
#include "guard.hpp"

using crnn_shim::Group;
using crnn_shim::guarded;

namespace {
void wait(const c10::intrusive_ptr<c10d::Work> &work, std::chrono::milliseconds timeout) {
  if (!work->wait(timeout)) {
    throw std::runtime_error("collective did not complete within the timeout");
  }
}
}  // namespace

// Creates the store and the Gloo group.
// - store_kind 0: TCPStore at host:port; `is_server` makes this process host it (rank 0
//   unless the launcher's agent hosts it), `world` ranks are expected.
// - store_kind 1: FileStore at `file_path` (host and port unused).
// - `gloo_host`: the address Gloo binds to ("" = resolve this machine's hostname, as
//   torch.distributed does without GLOO_SOCKET_IFNAME); `gloo_iface`: a network interface
//   name instead (takes precedence when not empty).
// `timeout_ms` bounds the rendezvous and every collective.
extern "C" int crnn_pg_new(int store_kind, const char *host, int port, int is_server,
                           const char *file_path, int rank, int world, int64_t timeout_ms,
                           const char *gloo_host, const char *gloo_iface, void **out,
                           char *error, size_t error_len) {
  *out = nullptr;
  return guarded(error, error_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto base =
        crnn_shim::make_store(store_kind, host, port, is_server, file_path, world, timeout);
    auto store = crnn_shim::group_store(base, "gloo");
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const std::string iface(gloo_iface), hostname(gloo_host);
    if (!iface.empty()) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
    } else if (!hostname.empty()) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    // One worker thread: the trainer issues one collective at a time.
    options->threads = 1;
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
    *out = new Group{base, gloo, timeout, std::nullopt};
  });
}

extern "C" void crnn_pg_free(void *group) { delete static_cast<Group *>(group); }

// Sums `tensor` (contiguous; CPU for Gloo, the group's GPU for NCCL) in place across all
// ranks.
extern "C" int crnn_pg_all_reduce_sum(void *group, at::Tensor *tensor, char *error,
                                      size_t error_len) {
  return guarded(error, error_len, [&] {
    auto *g = static_cast<Group *>(group);
    std::vector<at::Tensor> tensors{*tensor};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = g->timeout;
    wait(g->backend->allreduce(tensors, opts), g->timeout);
  });
}

// Overwrites `tensor` (contiguous, as above) on every rank with root's.
extern "C" int crnn_pg_broadcast(void *group, at::Tensor *tensor, int root, char *error,
                                 size_t error_len) {
  return guarded(error, error_len, [&] {
    auto *g = static_cast<Group *>(group);
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = g->timeout;
    wait(g->backend->broadcast(tensors, opts), g->timeout);
  });
}

extern "C" int crnn_pg_barrier(void *group, char *error, size_t error_len) {
  return guarded(error, error_len, [&] {
    auto *g = static_cast<Group *>(group);
    c10d::BarrierOptions opts;
    opts.timeout = g->timeout;
    if (g->device) {
      opts.device = g->device;
      opts.device_ids = {g->device->index()};
    }
    wait(g->backend->barrier(opts), g->timeout);
  });
}
