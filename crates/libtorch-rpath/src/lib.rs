//! Build-script helper for packages that link libtorch through `tch` (directly, or through a
//! crate such as `crnn`): binaries, tests, examples and benches of the package find
//! libtorch at run time with no `LD_LIBRARY_PATH`.
//!
//! In the package's `Cargo.toml`:
//!
//! ```toml
//! [build-dependencies]
//! libtorch-rpath = { path = "…/crates/libtorch-rpath" }   # or git = "…"
//! ```
//!
//! and its `build.rs` is one line inside `fn main()`:
//!
//! ```no_run
//! libtorch_rpath::emit();
//! ```
//!
//! [`emit`] embeds libtorch's `lib` folder as an rpath in the package's own targets (an rpath
//! set by a dependency's build script does not reach its dependents, which is why a binary
//! needs this line of its own), and keeps `libtorch_cuda.so` linked when the CUDA libtorch
//! is installed: rustc links with `--as-needed`, which would drop it (nothing references it
//! by symbol) and leave `tch::Cuda::is_available()` false on a GPU machine.
//!
//! Where the folder comes from, first found: `$LIBTORCH/lib` (what torch-sys builds
//! against; the workspace's `.cargo/config.toml` sets it), then the build metadata of a
//! direct dependency: `DEP_TCH_LIBTORCH_LIB` (torch-sys, for packages that depend on tch)
//! or `DEP_CRNN_SHIM_LIBTORCH_LIB` (the crnn crate passes its libtorch on), so it also works
//! when torch-sys found libtorch another way (`LIBTORCH_USE_PYTORCH`).

use std::path::{Path, PathBuf};

/// The dependency metadata variables [`emit`] reads, in order, after `LIBTORCH`.
pub const METADATA_VARS: [&str; 2] = ["DEP_TCH_LIBTORCH_LIB", "DEP_CRNN_SHIM_LIBTORCH_LIB"];

/// libtorch's `lib` folder as this build sees it (see the crate docs), if any.
pub fn libtorch_lib() -> Option<PathBuf> {
    if let Some(libtorch) = std::env::var_os("LIBTORCH") {
        return Some(Path::new(&libtorch).join("lib"));
    }
    METADATA_VARS
        .iter()
        .find_map(|v| std::env::var_os(v).map(PathBuf::from))
}

/// Prints the cargo directives described in the crate docs; a `cargo:warning` when no
/// libtorch folder is known (the binary would then need `LD_LIBRARY_PATH`).
///
/// Harmless for binaries that do not link libtorch, so a crate that only *may* link it (through
/// a dependency's optional `tch` feature, which cargo unifies across a workspace build) can
/// call it unconditionally.
pub fn emit() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    for v in METADATA_VARS {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let Some(lib) = libtorch_lib() else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// [`emit`] only when the package is built with cargo feature `feature` (a crate whose
/// libtorch use is optional).
pub fn emit_if_feature(feature: &str) {
    let var = format!("CARGO_FEATURE_{}", feature.to_uppercase().replace('-', "_"));
    if std::env::var_os(var).is_some() {
        emit();
    }
}
