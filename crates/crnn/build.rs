//! Links libtorch with an rpath (see the libtorch-rpath crate) and compiles the small C++
//! shim in `csrc/` against the same libtorch headers that torch-sys compiled against.
use std::path::PathBuf;

fn main() {
    libtorch_rpath::emit();
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/dist.cpp");
    println!("cargo:rerun-if-changed=csrc/guard.hpp");
    println!("cargo:rerun-if-changed=csrc/group.hpp");
    println!("cargo:rerun-if-changed=csrc/dist_nccl.cpp");
    println!("cargo::rustc-check-cfg=cfg(crnn_nccl)");
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
    nccl(&lib, &include, &abi);
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

/// ProcessGroupNCCL (`csrc/dist_nccl.cpp`), with the CUDA libtorch only (`libtorch_cuda.so`
/// beside libtorch_cpu: scripts/setup.sh installs it when a GPU is visible). It needs the
/// CUDA, CCCL and NCCL headers of the wheel's dependencies under `<libtorch>/../../nvidia`.
/// Sets `cfg(crnn_nccl)` when built; otherwise CUDA groups use Gloo through host memory and
/// a cargo warning says why.
fn nccl(lib: &std::path::Path, include: &std::path::Path, abi: &str) {
    if !lib.join("libtorch_cuda.so").exists() {
        return;
    }
    let nvidia = lib.join("../../nvidia");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&nvidia)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("include"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let cccl: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.join("cccl"))
        .filter(|d| d.is_dir())
        .collect();
    dirs.extend(cccl);
    let missing: Vec<&str> = [
        "nccl.h",
        "cuda_runtime_api.h",
        "crt/host_config.h",
        "nv/target",
        "cusparse.h",
    ]
    .into_iter()
    .filter(|h| !dirs.iter().any(|d| d.join(h).exists()))
    .collect();
    let result = if missing.is_empty() {
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .pic(true)
            .warnings(false)
            .include(include)
            .include(include.join("torch/csrc/api/include"))
            .includes(&dirs)
            .flag("-std=c++17")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
            .flag("-DGLOG_USE_GLOG_EXPORT")
            .define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None)
            .opt_level(2)
            .file("csrc/dist_nccl.cpp");
        build
            .try_compile("crnn_shim_nccl")
            .map_err(|e| e.to_string())
    } else {
        Err(format!(
            "{} not found under {} (scripts/setup.sh installs them with the CUDA libtorch)",
            missing.join(", "),
            nvidia.display()
        ))
    };
    match result {
        Ok(()) => {
            println!("cargo:rustc-cfg=crnn_nccl");
            println!("cargo:rustc-link-lib=dylib=torch_cuda");
            println!("cargo:rustc-link-lib=dylib=c10_cuda");
        }
        Err(why) => println!(
            "cargo:warning=crnn: ProcessGroupNCCL not built ({why}); process groups on CUDA use Gloo through host memory"
        ),
    }
}
