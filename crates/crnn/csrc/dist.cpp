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

#include <algorithm>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "group.hpp"
#include "guard.hpp"

using crnn_shim::Group;
using crnn_shim::guarded;

namespace {
using Clock = std::chrono::steady_clock;

// Another rank's published failure (crnn_pg_publish_failure): its text is "<rank>\n<error>".
struct PeerFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The keys of the ranks' failure protocol, apart from the backends' own.
c10::intrusive_ptr<c10d::Store> status_store(const Group *g) {
  return c10::make_intrusive<c10d::PrefixStore>("artist-crnn/status", g->store);
}

// Throws PeerFailed when a rank has published a failure, after counting this rank's
// acknowledgement (the failed rank keeps its store up until every rank has read it). A store
// that cannot be reached (gone with the process that hosted it) tells nothing: no throw.
void check_peers(const Group *g) {
  std::string text;
  try {
    auto status = status_store(g);
    if (!status->check({"failed"})) {
      return;
    }
    const auto value = status->get("failed");
    text.assign(value.begin(), value.end());
    status->add("acks", 1);
  } catch (const std::exception &) {
    if (text.empty()) {
      return;
    }
  }
  throw PeerFailed(text);
}

// Waits for `work` within the group's timeout, looking at the store for a failed rank every
// 200 ms (so a rank that failed outside the collectives stops the others at once, with its
// own error, instead of after the whole timeout). The wait naps from 20 us up to 200 us: at
// most about 0.2 ms added to a collective that completes while it sleeps. When the work
// fails, a published failure is what is reported, else the backend's error.
void wait(const Group *g, const c10::intrusive_ptr<c10d::Work> &work) {
  const auto start = Clock::now();
  auto next_check = start + std::chrono::milliseconds(200);
  auto nap = std::chrono::microseconds(20);
  while (!work->isCompleted()) {
    const auto now = Clock::now();
    if (now >= next_check) {
      check_peers(g);
      next_check = now + std::chrono::milliseconds(200);
    }
    if (now - start > g->timeout) {
      throw std::runtime_error("collective did not complete within the timeout");
    }
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(200));
  }
  try {
    work->wait();
  } catch (const std::exception &) {
    check_peers(g);
    throw;
  }
}

// `guarded` for the collectives: return code 2 (and the published text) for PeerFailed.
template <typename F> int collective(char *error, size_t error_len, F &&body) {
  try {
    body();
    return 0;
  } catch (const PeerFailed &e) {
    crnn_shim::report(e.what(), error, error_len);
    return 2;
  } catch (const std::exception &e) {
    crnn_shim::report(e.what(), error, error_len);
    return 1;
  } catch (...) {
    crnn_shim::report("unknown C++ exception", error, error_len);
    return 1;
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
  return collective(error, error_len, [&] {
    auto *g = static_cast<Group *>(group);
    std::vector<at::Tensor> tensors{*tensor};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = g->timeout;
    wait(g, g->backend->allreduce(tensors, opts));
  });
}

// Overwrites `tensor` (contiguous, as above) on every rank with root's.
extern "C" int crnn_pg_broadcast(void *group, at::Tensor *tensor, int root, char *error,
                                 size_t error_len) {
  return collective(error, error_len, [&] {
    auto *g = static_cast<Group *>(group);
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = g->timeout;
    wait(g, g->backend->broadcast(tensors, opts));
  });
}

extern "C" int crnn_pg_barrier(void *group, char *error, size_t error_len) {
  return collective(error, error_len, [&] {
    auto *g = static_cast<Group *>(group);
    c10d::BarrierOptions opts;
    opts.timeout = g->timeout;
    if (g->device) {
      opts.device = g->device;
      opts.device_ids = {g->device->index()};
    }
    wait(g, g->backend->barrier(opts));
  });
}

// Publishes this rank's failure `message` for the others (their collectives end with it, code
// 2). The first rank to fail writes "<rank>\n<message>" and waits, up to `grace_ms`, until
// every other rank has acknowledged it, so that a store this process hosts outlives their
// reading it; a later one only acknowledges (`*first` says which). Rank 0 of a torchrun
// agent store, or a stuck rank, does not change this: the store is whoever hosts it.
extern "C" int crnn_pg_publish_failure(void *group, int rank, int world, const char *message,
                                       int64_t grace_ms, int *first, char *error,
                                       size_t error_len) {
  *first = 0;
  return guarded(error, error_len, [&] {
    auto *g = static_cast<Group *>(group);
    auto status = status_store(g);
    if (status->add("failures", 1) != 1) {
      status->add("acks", 1);
      return;
    }
    *first = 1;
    const std::string text = std::to_string(rank) + "\n" + message;
    status->set("failed", std::vector<uint8_t>(text.begin(), text.end()));
    const auto deadline = Clock::now() + std::chrono::milliseconds(grace_ms);
    while (status->add("acks", 0) < world - 1 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
}

// A c10d TCPStore server on `port` (all interfaces), as torchrun's agent hosts one for its
// workers (TORCHELASTIC_USE_AGENT_STORE): the ranks then connect to it as clients.
extern "C" int crnn_store_host(int port, int64_t timeout_ms, void **out, char *error,
                               size_t error_len) {
  *out = nullptr;
  return guarded(error, error_len, [&] {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = true;
    opts.waitWorkers = false;
    opts.multiTenant = true;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string("0.0.0.0"), opts);
    *out = new c10::intrusive_ptr<c10d::Store>(store);
  });
}

extern "C" void crnn_store_free(void *store) {
  delete static_cast<c10::intrusive_ptr<c10d::Store> *>(store);
}
