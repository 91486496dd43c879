//! Decodes files and prints what `audio_io::load` made of each.
//!
//! `cargo run -p audio-io --example decode -- [--native] FILE...`

use audio_io::{LoadOptions, load};

fn main() {
    let mut options = LoadOptions::default();
    let mut failed = false;
    for arg in std::env::args().skip(1) {
        if arg == "--native" {
            options.target_sample_rate_hz = None;
            continue;
        }
        match load(&arg, &options) {
            Ok(a) => println!(
                "{arg}: {} samples at {} Hz ({:.3} s); source {} Hz x {} ch, {} frames; {} packets skipped, {} frames lost",
                a.samples.len(),
                a.sample_rate_hz,
                a.duration_s(),
                a.source_sample_rate_hz,
                a.source_channels,
                a.source_frames,
                a.skipped_packets,
                a.lost_frames
            ),
            Err(e) => {
                failed = true;
                eprintln!("error: {e}");
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
