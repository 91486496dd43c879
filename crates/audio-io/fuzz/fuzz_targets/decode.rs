//! Any bytes, under any extension that audio-io decodes, through the whole decode path (MP4 box
//! check, probe, every demuxer and decoder enabled, libopus, mono mix, soxr resampling): it must
//! return Ok or a typed error, never panic, hang or run out of memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // audio-io contains codec panics and turns them into errors; libfuzzer-sys's hook would
    // abort on them first. Silence the hook: a panic that escapes `load_bytes` still unwinds
    // into libfuzzer-sys and is reported as a crash.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    // The first byte picks the extension hint (from the one format list, plus a neutral one),
    // so the fuzzer explores every format reader.
    let mut exts = audio_io::formats::extensions();
    exts.push("bin");
    let ext = exts[usize::from(pick) % exts.len()];
    let options = audio_io::LoadOptions::default();
    let _ = audio_io::load_bytes(format!("fuzz.{ext}"), bytes.to_vec(), &options);
});
