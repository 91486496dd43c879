//! Build-script helper for packages that link libtorch through `tch`.
//!
//! `LIBTORCH` comes from the workspace's `.cargo/config.toml` (`[env]`), and
//! `scripts/setup.sh` installs libtorch there. [`emit`] embeds `$LIBTORCH/lib` as an rpath in
//! the package's binaries, tests, examples, benches and doctests (cargo's `[env]
//! LD_LIBRARY_PATH` does not reach them), and keeps `libtorch_cuda.so` linked when the CUDA
//! libtorch is installed: rustc links with `--as-needed`, which would drop it (nothing
//! references it by symbol) and leave `tch::Cuda::is_available()` false on a GPU machine.
//!
//! In `build.rs`, inside `fn main()`:
//!
//! ```no_run
//! libtorch_rpath::emit();
//! ```

use std::path::Path;

/// Prints the cargo directives described in the crate docs; nothing without `LIBTORCH`.
///
/// Harmless for binaries that do not link libtorch, so a crate that only *may* link it (through
/// a dependency's optional `tch` feature, which cargo unifies across a workspace build) can
/// call it unconditionally.
pub fn emit() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        return;
    };
    let lib = Path::new(&libtorch).join("lib");
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
