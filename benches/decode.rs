//! Decode (+ resample to 16 kHz) throughput in audio-seconds per second, per format, for the
//! committed real-music fixtures.

use std::path::PathBuf;

use audio_io::{LoadOptions, load};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn decode(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/audio-io/tests/fixtures");
    let mut g = c.benchmark_group("decode");
    for (file, label) in [
        ("guitar_16k_mono_32kbps.mp3", "mp3_16k_mono_no_resample"),
        ("fanfare.mp3", "mp3_44k_stereo_to_16k"),
        ("fanfare.ogg", "vorbis_44k_stereo_to_16k"),
        ("loop_amen.flac", "flac_44k_stereo_to_16k"),
        ("house_lo.wav", "wav_u8_11k_to_16k"),
    ] {
        let path = dir.join(file);
        let options = LoadOptions::default();
        let seconds = load(&path, &options).expect("fixture decodes").duration_s();
        // Throughput in milli-audio-seconds so short clips are still integers.
        g.throughput(Throughput::Elements((seconds * 1000.0) as u64));
        g.bench_with_input(BenchmarkId::new("load_ms_audio", label), &path, |b, p| {
            b.iter(|| load(p, &options).expect("decode"))
        });
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
