//! Locating the workspace's built binaries.
//!
//! A test executable lives in `<target>/<profile>/deps/`; the binaries cargo builds for the
//! workspace live one level up, in `<target>/<profile>/`. `cargo test --workspace` builds the
//! `coordinator` and `participants` binaries because those packages have integration tests;
//! `cargo test -p chaos-tests` alone does not, hence the hint in the error.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Environment variable that overrides where the binaries are (e.g. `target/release`).
pub const BIN_DIR_ENV: &str = "CHAOS_BIN_DIR";

/// The directory holding the workspace's binaries: `$CHAOS_BIN_DIR` if set, else derived from
/// the running executable (a test in `<target>/<profile>/deps/` or the `chaos` binary in
/// `<target>/<profile>/`, so a release `chaos` drives release binaries).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find the current executable")?;
    let mut dir = exe
        .parent()
        .context("the current executable has no parent directory")?
        .to_path_buf();
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// The path of the built binary `name` (`coordinator`, `wallet`, `order`, `points`).
///
/// Fails with a message that says how to build it when it does not exist.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "binary `{name}` not found at {}; build the workspace binaries first with \
             `cargo build --workspace --bins` (or run `cargo test --workspace`)",
            path.display()
        );
    }
    Ok(path)
}

/// The workspace's `sagas/` directory, which holds the workflow files (`place_order.yaml`)
/// the coordinator loads at start-up.
pub fn workflows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("sagas")
}
