//! Embeds libtorch's lib folder as an rpath in this package's tests,
//! examples and benches, so they run without LD_LIBRARY_PATH. LIBTORCH comes from the
//! workspace's .cargo/config.toml ([env]); scripts/setup.sh installs libtorch there.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        return;
    };
    let lib = std::path::Path::new(&libtorch).join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // rustc links with --as-needed, which drops libtorch_cuda.so (nothing references it by
    // symbol) and leaves tch::Cuda::is_available() false on a GPU machine. Keep it when the
    // CUDA libtorch is installed.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
