//! Any bytes, under any of the supported extensions, through the whole decode path (probe,
//! demux, decode, mono mix, soxr resampling): it must return Ok or a typed error, never panic,
//! hang or run out of memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // The first byte picks the extension hint, so the fuzzer explores every format reader.
    let ext = ["mp3", "ogg", "flac", "wav", "bin"][usize::from(data[0]) % 5];
    let options = audio_io::LoadOptions::default();
    let _ = audio_io::load_bytes(format!("fuzz.{ext}"), data[1..].to_vec(), &options);
});
