//! Compiles the dual-mode example `cgi-src/hello-rs.rs` into `cgi-bin/hello-rs`.
//!
//! It writes into the source tree, not just OUT_DIR, so that `cargo run`
//! serves a compiled CGI/FastCGI example with no extra step. Because the
//! example is a convenience, failing to build it is a warning, never an error:
//! a read-only checkout or a broken example must not break the server build.

use std::error::Error;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "cgi-src/hello-rs.rs";

fn main() {
    for path in [
        SOURCE,
        "src/fastcgi/app.rs",
        "src/fastcgi/record.rs",
        "build.rs",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Err(e) = build() {
        // Cargo shows only the first line of a warning, so one per line.
        for line in format!("hello-rs example not built: {e}").lines().take(20) {
            println!("cargo:warning={line}");
        }
    }
}

fn build() -> Result<(), Box<dyn Error>> {
    let root =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").ok_or("no CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("no OUT_DIR")?);
    let built = out_dir.join("hello-rs");
    // The example is one file with `#[path]` modules and no dependencies, so
    // plain rustc (the one Cargo uses) is enough.
    let output = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "debuginfo=0",
            "-C",
            "strip=debuginfo",
            "--cap-lints",
            "allow",
        ])
        .arg("-o")
        .arg(&built)
        .arg(root.join(SOURCE))
        .output()?;
    if !output.status.success() {
        return Err(format!("rustc failed:\n{}", String::from_utf8_lossy(&output.stderr)).into());
    }

    let bin_dir = root.join("cgi-bin");
    let dest = bin_dir.join("hello-rs");
    let bytes = fs::read(&built)?;
    // Rewriting an identical binary would bump its mtime for nothing, and a
    // running server may be watching or executing it.
    if fs::read(&dest).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    fs::create_dir_all(&bin_dir)?;
    // Copy, then rename: a request running cgi-bin/hello-rs meanwhile sees the
    // old file or the new one, never a half-written one (or ETXTBSY).
    let tmp = bin_dir.join(format!(".hello-rs.{}.tmp", std::process::id()));
    let result = fs::write(&tmp, &bytes)
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)))
        .and_then(|()| fs::rename(&tmp, &dest));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    Ok(result?)
}
