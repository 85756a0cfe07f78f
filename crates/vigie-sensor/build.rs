//! Compiles the eBPF programs (src/bpf/*.bpf.c) with clang and generates
//! their Rust skeleton with libbpf-cargo. The BPF headers come from the
//! vendored libbpf (libbpf-sys), vmlinux.h is committed (CO-RE), so the
//! build does not depend on the build machine's kernel.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/vigie.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR set by cargo"));
    let bpf_include = env::var("DEP_BPF_INCLUDE").expect("libbpf-sys exports its headers");
    SkeletonBuilder::new()
        .source(SRC)
        .clang_args([
            format!("-I{bpf_include}"),
            "-Isrc/bpf".to_string(),
            "-D__TARGET_ARCH_x86".to_string(),
            "-Wno-compare-distinct-pointer-types".to_string(),
        ])
        .build_and_generate(out.join("vigie.skel.rs"))
        .expect("compile src/bpf/vigie.bpf.c (needs clang)");
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed=src/bpf/vmlinux.h");
}
