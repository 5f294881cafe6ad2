//! Builds the example guests in `guest-examples/` for `wasm32-wasip1` and
//! embeds them in the server, so that `cargo run` and `cargo test` need no
//! separate step. The guests get their own target directory next to ours
//! (as wasmtime's `test-programs` does), which keeps the host's flags and
//! locks out of the guest build.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let guests_dir = manifest_dir.join("guest-examples");
    println!("cargo:rerun-if-changed=guest-examples/src");
    println!("cargo:rerun-if-changed=guest-examples/Cargo.toml");
    println!("cargo:rerun-if-changed=guest-examples/Cargo.lock");

    // A fuzz build (`cargo fuzz` sets `--cfg fuzzing`) runs no guest, and the
    // nightly toolchain it uses may lack the wasm32-wasip1 target: embed none.
    if env::var_os("CARGO_CFG_FUZZING").is_some() {
        std::fs::write(
            out_dir.join("guest_examples.rs"),
            "pub const GUEST_EXAMPLES: &[(&str, &[u8])] = &[];\n",
        )
        .expect("write guest_examples.rs");
        return;
    }

    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: share one guest
    // build between profiles by putting it beside the profiles.
    let target_root =
        out_dir.ancestors().nth(4).map(PathBuf::from).unwrap_or_else(|| out_dir.clone());
    let guest_target = target_root.join("guest-examples");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&guests_dir)
        .args(["build", "--release", "--target", "wasm32-wasip1"])
        .arg("--target-dir")
        .arg(&guest_target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("failed to run cargo for guest-examples");
    if !status.success() {
        panic!(
            "building guest-examples for wasm32-wasip1 failed; if the target is missing, \
             run `rustup target add wasm32-wasip1` (rust-toolchain.toml normally installs it)"
        );
    }

    let wasm_dir = guest_target.join("wasm32-wasip1").join("release");
    let mut names: Vec<String> = std::fs::read_dir(guests_dir.join("src/bin"))
        .expect("guest-examples/src/bin exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    names.sort();

    let mut code = String::from(
        "/// The example guests, built from `guest-examples/` by `build.rs`: (name, wasm bytes).\n\
         pub const GUEST_EXAMPLES: &[(&str, &[u8])] = &[\n",
    );
    for name in &names {
        let path = wasm_dir.join(format!("{name}.wasm"));
        writeln!(code, "    ({name:?}, include_bytes!({:?})),", path.display().to_string())
            .expect("write to string");
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("guest_examples.rs"), code).expect("write guest_examples.rs");
}
