//! The checks of `csrc/gloo-headers/PROVENANCE.md`, so that a new torch version in
//! `scripts/setup.sh` cannot silently pair the shim with gloo headers of another gloo:
//! the wheel's `libtorch_cpu.so` has the gloo the headers come from, and the shim's
//! collectives object contains no gloo code of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use object::{Object, ObjectSymbol};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn libtorch_has_the_gloo_of_the_vendored_headers() {
    let data = read(env!("CRNN_LIBTORCH_CPU"));
    let file = object::File::parse(&*data).unwrap();
    let dynamic: Vec<(String, u64)> = file
        .dynamic_symbols()
        .filter_map(|s| Some((s.name().ok()?.to_owned(), s.size())))
        .collect();
    assert!(dynamic.len() > 10_000, "{} dynamic symbols", dynamic.len());
    // GlooStore's vtable: offset-to-top, RTTI, and the 12 virtual functions that
    // gloo/common/store.h (IStore) and gloo/rendezvous/store.h (Store) declare here.
    let vtable = dynamic
        .iter()
        .find(|(n, _)| n == "_ZTVN4c10d16ProcessGroupGloo9GlooStoreE")
        .expect("GlooStore's vtable is exported");
    assert_eq!(vtable.1, 8 * (2 + 12), "GlooStore vtable size");
    // The shared-memory allreduce (gloo 5994546, reverted in 9322e67) is absent.
    for gone in ["isIntraNode", "AllreduceSharedMemoryData"] {
        assert!(
            !dynamic.iter().any(|(n, _)| n.contains(gone)),
            "{gone}: libtorch's gloo is not the one of the headers"
        );
    }
    // gloo f834c75's message.
    let needle = b"This is typically caused by a remote worker crashing";
    assert!(
        data.windows(needle.len()).any(|w| w == needle),
        "libtorch's gloo predates f834c75"
    );
}

#[test]
fn the_shim_emits_no_gloo_code() {
    let data = read(env!("CRNN_DIST_OBJECT"));
    let file = object::File::parse(&*data).unwrap();
    let gloo: Vec<String> = file
        .symbols()
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .filter(|n| n.contains("4gloo"))
        .collect();
    // Only std containers of the opaque device handle, never a gloo function or vtable.
    for name in &gloo {
        assert!(
            name.starts_with("_ZNSt") && name.contains("St10shared_ptrIN4gloo9transport6DeviceEE"),
            "dist.o holds gloo code: {name}"
        );
    }
    // And the object is the collectives one (it calls ProcessGroupGloo's constructor).
    assert!(
        file.symbols()
            .filter_map(|s| s.name().ok())
            .any(|n| n.contains("16ProcessGroupGlooC1")),
        "not the collectives object"
    );
}
