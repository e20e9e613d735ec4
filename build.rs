//! Bindings to Debian's DPDK 22.11, found with pkg-config.
//!
//! pkg-config's raw `--cflags` go to both clang (bindgen) and cc: they carry
//! `-include rte_config.h` and `-march`, without which the headers disagree
//! with the libraries about struct layouts and inline code.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| panic!("running pkg-config: {e}; install pkg-config and libdpdk-dev"));
    if !out.status.success() {
        panic!(
            "pkg-config {args:?} libdpdk failed: {}; install libdpdk-dev (deploy/host-setup.sh)",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Split on whitespace, but keep `-include rte_config.h` as two args.
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn main() {
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let cflags = pkg_config(&["--cflags"]);
    let libs = pkg_config(&["--libs"]);

    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=src/shim.c");

    for l in &libs {
        if let Some(dir) = l.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = l.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        } else if l.starts_with("-Wl,") {
            println!("cargo:rustc-link-arg={l}");
        }
    }

    // rte_vdev_init lives in the vdev bus driver, which pkg-config's --libs
    // leaves to the plugin loader
    println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");

    let wrap_c = out_dir.join("static_fns");
    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrap_c)
        .allowlist_function("rte_.*")
        .allowlist_function("vsw_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("RING_F_.*")
        .blocklist_function("rte_.*_trace_.*")
        .no_debug("rte_flow_item_gtp_psc")
        // packed structs holding aligned ones do not compile in Rust; we never touch them
        .opaque_type("rte_l2tpv2_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen over the DPDK headers");
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("write bindings.rs");

    let mut build = cc::Build::new();
    build
        .file(wrap_c.with_extension("c"))
        .file("src/shim.c")
        .include(env::var("CARGO_MANIFEST_DIR").expect("manifest dir"))
        .opt_level(3)
        .warnings(false);
    for f in &cflags {
        build.flag(f);
    }
    build.compile("dpdk_sys_shim");
}
