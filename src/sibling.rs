//! Another binary of this workspace, found next to the running one: the server's
//! `report` subcommand runs `cgi-testbed-report`, and the report runs `cgi-testbed`.
//! Run from the source tree through cargo (`cargo run`, `cargo test`), the sibling is
//! first built with that cargo, so it is never missing or older than its source.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace this library was compiled in.
const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Debug)]
pub enum SiblingError {
    /// Not next to us, and we are not running from the source tree.
    Missing { name: String, looked_in: PathBuf },
    /// `cargo build` of it failed (its output went to our stderr).
    Build { name: String, why: String },
}

impl fmt::Display for SiblingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiblingError::Missing { name, looked_in } => write!(
                f,
                "{name} is not in {} (build it with `cargo build --release -p {name}` in the source tree, or install both binaries side by side)",
                looked_in.display()
            ),
            SiblingError::Build { name, why } => write!(f, "cannot build {name}: {why}"),
        }
    }
}

impl std::error::Error for SiblingError {}

/// The directory cargo puts a profile's binaries in, for the running executable:
/// its own directory, or the parent of `deps/` for a test binary.
pub fn bin_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    Some(if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent()?.to_path_buf()
    } else {
        dir.to_path_buf()
    })
}

/// Binary `bin` of package `package`, next to the running executable. Under cargo and
/// inside this workspace's target directory it is built (or found up to date) first.
pub fn find(package: &str, bin: &str) -> Result<PathBuf, SiblingError> {
    let dir = bin_dir().unwrap_or_else(|| PathBuf::from("."));
    if let Some(cargo) = std::env::var_os("CARGO")
        && let Some(profile) = profile_of(&dir)
    {
        build(Path::new(&cargo), package, bin, &dir, profile)?;
    }
    let path = dir.join(bin);
    if path.is_file() {
        Ok(path)
    } else {
        Err(SiblingError::Missing {
            name: bin.to_owned(),
            looked_in: dir,
        })
    }
}

/// The cargo profile whose output directory `dir` is, if it belongs to a target
/// directory of this workspace (`target/release`, `target/debug`, ...).
fn profile_of(dir: &Path) -> Option<&'static str> {
    let target = dir.parent()?;
    let ours = target.starts_with(WORKSPACE)
        || std::env::var_os("CARGO_TARGET_DIR").is_some_and(|t| target == Path::new(&t));
    if !ours || !Path::new(WORKSPACE).join("Cargo.toml").is_file() {
        return None;
    }
    match dir.file_name()?.to_str()? {
        "release" => Some("release"),
        "debug" => Some("dev"),
        _ => None,
    }
}

fn build(
    cargo: &Path,
    package: &str,
    bin: &str,
    dir: &Path,
    profile: &str,
) -> Result<(), SiblingError> {
    let target_dir = dir.parent().unwrap_or(dir);
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--package", package, "--bin", bin])
        .args(["--profile", profile])
        .arg("--manifest-path")
        .arg(Path::new(WORKSPACE).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(SiblingError::Build {
            name: bin.to_owned(),
            why: format!("cargo build {s}"),
        }),
        Err(e) => Err(SiblingError::Build {
            name: bin.to_owned(),
            why: format!("{}: {e}", cargo.display()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_of_target_dirs() {
        let ws = Path::new(WORKSPACE);
        assert_eq!(profile_of(&ws.join("target/release")), Some("release"));
        assert_eq!(profile_of(&ws.join("target/debug")), Some("dev"));
        assert_eq!(profile_of(&ws.join("target/doc")), None);
        assert_eq!(profile_of(Path::new("/usr/local/bin")), None);
    }

    #[test]
    fn a_test_binary_looks_beside_deps() {
        let dir = bin_dir().unwrap();
        assert_ne!(dir.file_name().unwrap(), "deps");
    }
}
