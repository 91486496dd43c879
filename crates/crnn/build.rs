//! Links libtorch with an rpath (see the libtorch-rpath crate) and compiles the small C++
//! shim in `csrc/` against the same libtorch headers that torch-sys compiled against.
use std::path::PathBuf;

fn main() {
    libtorch_rpath::emit();
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-changed=csrc/guard.hpp");
    println!("cargo:rerun-if-changed=csrc/gloo-headers");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    // torch-sys (links = "tch") tells its direct dependents where libtorch's libraries are;
    // the headers are next to them.
    let lib = std::env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("LIBTORCH").map(|p| PathBuf::from(p).join("lib")));
    let Some(lib) = lib else {
        panic!(
            "crnn: cannot find libtorch (torch-sys gave no DEP_TCH_LIBTORCH_LIB and LIBTORCH is unset); run scripts/setup.sh"
        );
    };
    // For the build scripts of crates that depend on this one (`links = "crnn_shim"`):
    // `DEP_CRNN_SHIM_LIBTORCH_LIB`, which `libtorch_rpath::emit` reads.
    println!("cargo:libtorch_lib={}", lib.display());
    let include = lib.parent().map(|p| p.join("include")).unwrap_or_default();
    if !include.join("ATen").is_dir() {
        panic!(
            "crnn: libtorch headers not found at {} (the PyPI torch wheel ships them; run scripts/setup.sh)",
            include.display()
        );
    }
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // at::parallel_for is a header template over `#pragma omp parallel`: without OpenMP
        // it would run every job on the calling thread. The GOMP symbols resolve against the
        // libgomp that libtorch links (one runtime, one thread pool).
        .flag("-fopenmp")
        .opt_level(2)
        .file("csrc/shim.cpp")
        // c10d's ProcessGroupGloo.hpp is guarded by USE_C10D_GLOO (set when libtorch was
        // built) and includes gloo headers the wheel does not ship: csrc/gloo-headers has
        // them, from the gloo the wheel was built with (PROVENANCE.md there).
        .define("USE_C10D_GLOO", None)
        .include("csrc/gloo-headers")
        // ProcessGroupGloo.hpp pulls in the C++ API's headers (torch/types.h) too.
        .include(include.join("torch/csrc/api/include"))
        .file("csrc/dist.cpp")
        .compile("crnn_shim");
    // For tests/gloo_headers.rs: the library whose gloo the headers must match, and the
    // object compiled against them.
    println!(
        "cargo:rustc-env=CRNN_LIBTORCH_CPU={}",
        lib.join("libtorch_cpu.so").display()
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let dist_object = std::fs::read_dir(&out)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dist.o"))
        .unwrap_or_default();
    println!("cargo:rustc-env=CRNN_DIST_OBJECT={}", dist_object.display());
}
