//! Generates `include/factory.h`, the C header of libfactory, from
//! `src/ffi/` with cbindgen (settings in `cbindgen.toml`).
//!
//! The header is committed so that C users need no Rust tooling; cbindgen
//! rewrites it only when its content changes, so a build leaves a clean
//! tree clean. `make header-check` fails when the committed header is stale.
//! A cbindgen failure fails the build: a warning would leave the previous
//! header in place, and C programs would be compiled against declarations
//! that no longer match the library.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");

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
