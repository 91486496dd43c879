"""torch.distributed's Gloo collectives, timed as crnn's `benches/collectives.rs` times ours:
2 ranks on this machine over loopback, 1 thread each, the all-reduce (average) of one step's
gradients of the paper's CRNN2D (20 classes, counted from crnn_torch.py's model), the epoch's
5-value float64 sums, and a barrier followed by an empty all-reduce.

usage: torchrun --nproc-per-node=2 benches/peers/collectives_torch.py [--reps 300]
"""
import argparse, os, statistics, sys, time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crnn_torch import CRNN2D  # noqa: E402


def timed(reps, fn):
    for _ in range(20):
        fn()
    samples = []
    for _ in range(10):
        t0 = time.perf_counter()
        for _ in range(reps // 10):
            fn()
        samples.append((time.perf_counter() - t0) / (reps // 10))
    return statistics.median(samples), min(samples), max(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=300)
    a = ap.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    world = dist.get_world_size()
    grads = sum(p.numel() for p in CRNN2D(classes=20).parameters() if p.requires_grad)

    def all_reduce_mean(n, dtype):
        t = torch.zeros(n + 1, dtype=dtype)  # as ours: one flat buffer plus a control element
        dist.all_reduce(t)
        t /= world

    def barrier():
        dist.barrier()
        dist.all_reduce(torch.zeros(1))

    rows = [
        (f"all_reduce_mean/gradients_crnn2d_paper ({grads} f32)", lambda: all_reduce_mean(grads, torch.float32)),
        ("all_reduce_mean/epoch_sums (5 f64)", lambda: all_reduce_mean(5, torch.float64)),
        ("barrier (+ empty all_reduce)", barrier),
    ]
    for name, fn in rows:
        med, lo, hi = timed(a.reps, fn)
        if dist.get_rank() == 0:
            print(f"torch.distributed {name}: {med * 1e3:.3f} ms (min {lo * 1e3:.3f}, max {hi * 1e3:.3f})", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
