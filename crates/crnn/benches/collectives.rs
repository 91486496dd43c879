//! The data-parallel trainer's collectives over c10d's ProcessGroupGloo, 2 ranks on this
//! machine over loopback (TCPStore on 127.0.0.1): the all-reduce of one step's gradients of
//! the paper's CRNN2D (20 classes: 1 flat f32 buffer, averaged), the small float64 sums of
//! an epoch, and a barrier. This process is rank 0 and starts rank 1 as a copy of itself,
//! which mirrors every call until told to stop (a control element in the buffer).

use std::process::{Child, Command};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use crnn::{Crnn2d, CrnnConfig, GlooDevice, GroupParams, ProcessGroup, Rendezvous};
use tch::{Device, Kind, Tensor, nn};

const PEER: &str = "CRNN_COLLECTIVES_BENCH_PEER";

/// Sizes (f32 elements, the control element not counted) of the benchmarked all-reduces.
fn sizes() -> Vec<(&'static str, usize, Kind)> {
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Crnn2d::new(&vs.root(), &CrnnConfig::paper(20, 94)).expect("paper config");
    let grads: usize = vs.trainable_variables().iter().map(|t| t.numel()).sum();
    vec![
        ("gradients_crnn2d_paper", grads, Kind::Float),
        ("epoch_sums", 5, Kind::Double),
    ]
}

fn group(rank: usize, port: u16) -> ProcessGroup {
    let params = GroupParams::new(
        rank,
        2,
        Rendezvous::Tcp {
            addr: "127.0.0.1".into(),
            port,
            agent_store: false,
        },
    )
    .timeout(Duration::from_secs(120))
    .gloo(GlooDevice::Hostname("127.0.0.1".into()));
    ProcessGroup::new(&params).expect("join the group")
}

/// One all-reduce of `n` values plus the control element; returns the summed control.
fn all_reduce(g: &ProcessGroup, n: usize, kind: Kind, control: f64, mean: bool) -> f64 {
    let t = Tensor::zeros([n as i64 + 1], (kind, Device::Cpu));
    let _ = t.get(n as i64).fill_(control);
    let mut ts = [t];
    if mean {
        g.all_reduce_mean(&mut ts).expect("all_reduce");
    } else {
        g.all_reduce_sum(&mut ts).expect("all_reduce");
    }
    ts[0].double_value(&[n as i64]) * if mean { 2.0 } else { 1.0 }
}

/// Rank 1: the same calls as rank 0, until rank 0 sets the control element.
fn peer(port: u16) {
    tch::set_num_threads(1);
    let g = group(1, port);
    for (_, n, kind) in sizes() {
        while all_reduce(&g, n, kind, 0.0, false) < 0.5 {}
    }
    loop {
        g.barrier().expect("barrier");
        if all_reduce(&g, 0, Kind::Float, 0.0, false) > 0.5 {
            break;
        }
    }
}

fn main() {
    let port: u16 = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    if let Ok(p) = std::env::var(PEER) {
        peer(p.parse().expect("port"));
        return;
    }
    tch::set_num_threads(1);
    let mut child: Child = Command::new(std::env::current_exe().expect("this bench"))
        .env(PEER, port.to_string())
        .spawn()
        .expect("start rank 1");
    let g = group(0, port);
    let mut c = Criterion::default().configure_from_args();
    let mut bench = c.benchmark_group("collectives_2_ranks_loopback");
    bench
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    for (name, n, kind) in sizes() {
        bench.throughput(Throughput::Bytes((n * kind.elt_size_in_bytes()) as u64));
        bench.bench_function(BenchmarkId::new("all_reduce_mean", name), |b| {
            b.iter(|| all_reduce(&g, n, kind, 0.0, true))
        });
        all_reduce(&g, n, kind, 1.0, false);
    }
    bench.throughput(Throughput::Elements(1));
    bench.bench_function("barrier", |b| {
        b.iter(|| {
            g.barrier().expect("barrier");
            all_reduce(&g, 0, Kind::Float, 0.0, false)
        })
    });
    g.barrier().expect("barrier");
    all_reduce(&g, 0, Kind::Float, 1.0, false);
    bench.finish();
    c.final_summary();
    let _ = child.wait();
}
