//! Locating the workspace's built binaries, and building the service binaries for the benchmark.
//!
//! A test executable lives in `<target>/<profile>/deps/`; the binaries cargo builds for the
//! workspace live one level up, in `<target>/<profile>/`. `cargo test --workspace` builds the
//! service binaries because their packages have integration tests; `cargo test -p chaos-tests`
//! alone does not, hence the hint in the error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// Environment variable that overrides where the binaries are (e.g. `target/release`).
pub const BIN_DIR_ENV: &str = "CHAOS_BIN_DIR";

/// Set by a tool's `--bin-dir` flag ([`use_bin_dir`]); wins over [`BIN_DIR_ENV`].
static CHOSEN_BIN_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Makes [`bin_dir`] return `dir` for the rest of the process (a tool's `--bin-dir` flag):
/// what setting [`BIN_DIR_ENV`] does, without changing the environment of a running process.
/// Fails if a directory was chosen already.
pub fn use_bin_dir(dir: PathBuf) -> anyhow::Result<()> {
    CHOSEN_BIN_DIR.set(dir).map_err(|dir| {
        anyhow::anyhow!("the binary directory is chosen already ({})", dir.display())
    })
}

/// The directory given to [`use_bin_dir`] or in [`BIN_DIR_ENV`], if any: the caller's
/// binaries, which [`build_services`] leaves alone.
fn chosen_bin_dir() -> Option<PathBuf> {
    CHOSEN_BIN_DIR
        .get()
        .cloned()
        .or_else(|| std::env::var_os(BIN_DIR_ENV).map(PathBuf::from))
}

/// The directory holding the workspace's binaries: the one given to [`use_bin_dir`], else
/// `$CHAOS_BIN_DIR` if set, else derived from the running executable (a test in
/// `<target>/<profile>/deps/` or the `chaos` binary in `<target>/<profile>/`, so a release
/// `chaos` drives release binaries).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = chosen_bin_dir() {
        return Ok(dir);
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

/// The service binaries: the coordinator and the three example participants. [`build_services`]
/// builds them by these names, whichever workspace package holds them.
pub const SERVICES: [&str; 4] = ["coordinator", "wallet", "order", "points"];

/// Builds the [`SERVICES`] with cargo, in the profile and target directory of [`bin_dir`] (so a
/// release `bench` gets release binaries next to it), and checks they are there.
///
/// For tools that must not measure stale binaries: `cargo run -p saga-bench --bin bench`
/// builds only that package's binaries, and a coordinator edited since the last workspace
/// build would otherwise be measured as it was. When everything is up to date cargo returns
/// within a second. Uses `$CARGO` (set by `cargo run`) or `cargo` from `PATH`. With a
/// directory chosen ([`use_bin_dir`], `$CHAOS_BIN_DIR`) nothing is built: those binaries are
/// the caller's; they must exist.
pub fn build_services() -> anyhow::Result<()> {
    if chosen_bin_dir().is_none() {
        run_cargo_build()?;
    }
    for name in SERVICES {
        binary(name)?;
    }
    Ok(())
}

/// `cargo build --workspace --bin coordinator --bin wallet ...`: binaries by name across the
/// workspace, so moving a binary to another package (the participants' binaries may move out
/// of `participants`) needs no change here, and nothing else (examples, harness tools) is built.
fn run_cargo_build() -> anyhow::Result<()> {
    let dir = bin_dir()?;
    let profile = match dir.file_name().and_then(|name| name.to_str()) {
        // The `dev` profile builds into `debug/`.
        Some("debug") => "dev",
        Some(name) => name,
        None => bail!("cannot tell the cargo profile of {}", dir.display()),
    };
    let target_dir = dir
        .parent()
        .with_context(|| format!("{} has no parent (target) directory", dir.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace_dir())
        .args(["build", "--workspace"]);
    for name in SERVICES {
        command.args(["--bin", name]);
    }
    command
        .arg("--profile")
        .arg(profile)
        .arg("--target-dir")
        .arg(target_dir);
    let status = command
        .status()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("`{command:?}` failed ({status})");
    }
    Ok(())
}

/// The workspace's root directory (this crate's parent): where cargo is run and the
/// workflow files are.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The workspace's `sagas/` directory, which holds the workflow files (`place_order.yaml`)
/// the coordinator loads at start-up.
pub fn workflows_dir() -> PathBuf {
    workspace_dir().join("sagas")
}
