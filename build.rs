//! Generates `include/factory.h`, the C header of libfactory, from
//! `src/ffi/` with cbindgen (settings in `cbindgen.toml`).
//!
//! The header is committed so that C users need no Rust tooling; cbindgen
//! rewrites it only when its content changes, so a build leaves a clean
//! tree clean. `make header-check` fails when the committed header is stale.
//! A cbindgen failure fails the build: a warning would leave the previous
//! header in place, and C programs would be compiled against declarations
//! that no longer match the library.
//!
//! It also gives the shared library its SONAME, `libfactory.so.MAJOR`, the
//! name programs linked against it look for at run time: `make install`
//! installs `libfactory.so.VERSION` with the `.so.MAJOR` and `.so` links,
//! so that a future incompatible libfactory can be installed beside it.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");

    set_soname();

    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&dir);
    let config = match cbindgen::Config::from_file(dir.join("cbindgen.toml")) {
        Ok(config) => config,
        Err(e) => panic!("cbindgen.toml: {e}"),
    };
    match cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/ffi/mod.rs"))
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(dir.join("include/factory.h"));
        }
        Err(e) => panic!("cbindgen could not generate include/factory.h from src/ffi: {e}"),
    }
}

/// `-soname` on the ELF systems whose linkers take it (GNU ld, gold, lld);
/// elsewhere the platform's default is kept.
fn set_soname() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let elf = [
        "linux",
        "android",
        "freebsd",
        "netbsd",
        "openbsd",
        "dragonfly",
    ];
    if elf.contains(&os.as_str()) {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libfactory.so.{major}");
    }
}
