//! The benches' shared harness. Each bench's setup and one pass of its measured code
//! live here, so `tests/bench_harness.rs` can `#[path]`-include this module and run
//! them once: a broken bench then fails `cargo test` without any timing loop.
#![allow(dead_code)]

pub mod client;
pub mod inputs;
pub mod ladder;
pub mod procs;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The repository's bundled script `cgi-bin/<name>`.
pub fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("cgi-bin")
        .join(name)
}

/// Copies a bundled script into `dir` under the same name, executable.
pub fn copy_bundled(name: &str, dir: &Path) -> PathBuf {
    let from = bundled(name);
    let to = dir.join(name);
    std::fs::copy(&from, &to).unwrap_or_else(|e| {
        panic!(
            "copy {}: {e}{}",
            from.display(),
            if name == "hello-rs" {
                " (build.rs compiles it; see the cargo warnings)"
            } else {
                ""
            }
        )
    });
    make_executable(&to);
    to
}

/// Writes a script into `dir`, executable.
pub fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    make_executable(&path);
    path
}

fn make_executable(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Does `program args...` run and exit 0 (output discarded)?
pub fn probe(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// This process's resident set size in MiB, from /proc/self/status.
pub fn rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}
