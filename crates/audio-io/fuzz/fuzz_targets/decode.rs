//! Any bytes, under any of the supported extensions, through the whole decode path (probe,
//! demux, decode, mono mix, soxr resampling): it must return Ok or a typed error, never panic,
//! hang or run out of memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // audio-io contains codec panics and turns them into errors; libfuzzer-sys's hook would
    // abort on them first. Silence the hook: a panic that escapes `load_bytes` still unwinds
    // into libfuzzer-sys and is reported as a crash.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    if data.is_empty() {
        return;
    }
    // The first byte picks the extension hint, so the fuzzer explores every format reader.
    let ext = ["mp3", "ogg", "flac", "wav", "bin"][usize::from(data[0]) % 5];
    let options = audio_io::LoadOptions::default();
    let _ = audio_io::load_bytes(format!("fuzz.{ext}"), data[1..].to_vec(), &options);
});
