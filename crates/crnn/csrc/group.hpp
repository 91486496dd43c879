// The process group object shared by dist.cpp (Gloo, always built) and dist_nccl.cpp (NCCL,
// built when the CUDA libtorch and its headers are there): a c10d store and a c10d backend,
// whose virtual collectives dist.cpp calls for either kind.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace crnn_shim {
struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  // The CUDA device of an NCCL group (barriers run on it); none for Gloo.
  std::optional<at::Device> device;
};

// The rendezvous store, as torch.distributed makes it: a TCPStore at host:port (store_kind
// 0; `is_server` makes this process host it, `world` ranks expected, multi-tenant) or a
// FileStore (store_kind 1), bounded by `timeout`.
inline c10::intrusive_ptr<c10d::Store> make_store(int store_kind, const char *host, int port,
                                                  int is_server, const char *file_path,
                                                  int world, std::chrono::milliseconds timeout) {
  if (store_kind == 0) {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<std::size_t>(world);
    opts.waitWorkers = true;
    opts.timeout = timeout;
    opts.multiTenant = true;
    return c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
  }
  auto store = c10::make_intrusive<c10d::FileStore>(std::string(file_path), world);
  store->setTimeout(timeout);
  return store;
}

// The keys of one group under one prefix, apart from anything else in the store (torchrun's
// agent keeps its own keys there).
inline c10::intrusive_ptr<c10d::Store> group_store(const c10::intrusive_ptr<c10d::Store> &base,
                                                   const char *backend) {
  return c10::make_intrusive<c10d::PrefixStore>(std::string("artist-crnn/") + backend, base);
}
}  // namespace crnn_shim
