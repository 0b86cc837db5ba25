//! Compiles the dual-mode example `crates/fastcgi-app/examples/hello-rs.rs` into
//! `cgi-bin/hello-rs`, statically linked.
//!
//! It writes into the source tree, not just OUT_DIR, so that `cargo run`
//! serves a compiled CGI/FastCGI example with no extra step. Because the
//! example is a convenience, failing to build it is a warning, never an error:
//! a read-only checkout or a broken example must not break the server build.
//!
//! Why static, and why musl when it is installed: a CGI program is started for
//! every request, so its start is its cost. A dynamically linked Rust program
//! first has the loader map libc and libgcc_s and resolve symbols; and glibc's
//! start-up (in ld.so, or in a static binary's own start code) runs the CPUID
//! instruction dozens of times to pick its string functions and cache sizes. In
//! a virtual machine every CPUID traps to the hypervisor: about 12 µs each on
//! the development VM, 0.8 ms per start, more than the whole rest of the
//! program. musl does neither, so a static musl hello-rs starts in about a
//! tenth of the time of `sh hello` there. Without the musl target
//! (`rustup target add x86_64-unknown-linux-musl`) it is linked statically
//! against glibc, which saves the loader but not the CPUIDs.

use std::error::Error;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const APP: &str = "crates/fastcgi-app/src/lib.rs";
const EXAMPLE: &str = "crates/fastcgi-app/examples/hello-rs.rs";

fn main() {
    for path in [EXAMPLE, APP, "crates/fastcgi-app/src/record.rs", "build.rs"] {
        println!("cargo:rerun-if-changed={path}");
    }
    match build() {
        Ok(Linked::Musl) => {}
        Ok(Linked::Glibc) => println!(
            "cargo:warning=hello-rs linked statically against glibc; `rustup target add {}` makes it start several times faster (see build.rs)",
            musl_triple()
        ),
        Err(e) => {
            // Cargo shows only the first line of a warning, so one per line.
            for line in format!("hello-rs example not built: {e}").lines().take(20) {
                println!("cargo:warning={line}");
            }
        }
    }
}

/// How the example ended up linked.
enum Linked {
    Musl,
    Glibc,
}

fn musl_triple() -> String {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    format!("{arch}-unknown-linux-musl")
}

/// The musl target, if its standard library is installed and we build for Linux.
fn musl_target(rustc: &Path) -> Option<String> {
    if std::env::var("CARGO_CFG_TARGET_OS").ok()? != "linux" {
        return None;
    }
    let triple = musl_triple();
    let out = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", &triple])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    let has_std = fs::read_dir(dir).ok()?.filter_map(Result::ok).any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("libstd-"))
    });
    has_std.then_some(triple)
}

fn rustc(rustc: &Path, args: &[&str], out: &Path, source: &Path) -> Result<(), Box<dyn Error>> {
    // Small and quick to start: no unwinding tables to map, no symbols.
    let output = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "-O",
            "-C",
            "panic=abort",
            "-C",
            "debuginfo=0",
            "-C",
            "strip=symbols",
            "--cap-lints",
            "allow",
        ])
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(source)
        .output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("rustc failed:\n{}", String::from_utf8_lossy(&output.stderr)).into())
    }
}

fn build() -> Result<Linked, Box<dyn Error>> {
    let root =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").ok_or("no CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("no OUT_DIR")?);
    let compiler = PathBuf::from(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    let musl = musl_target(&compiler);
    // The library and the example are one crate each with no dependencies, so plain
    // rustc (the one Cargo uses) is enough, and the target can differ from the server's.
    let lib = out_dir.join("libfastcgi_app.rlib");
    let built = out_dir.join("hello-rs");
    let extern_app = format!("fastcgi_app={}", lib.display());
    let out_arg = out_dir.display().to_string();
    let mut target: Vec<&str> = Vec::new();
    if let Some(t) = &musl {
        target.extend(["--target", t]);
    }
    let mut lib_args = vec!["--crate-type", "rlib", "--crate-name", "fastcgi_app"];
    lib_args.extend(&target);
    rustc(&compiler, &lib_args, &lib, &root.join(APP))?;
    let mut bin_args = vec!["--extern", &extern_app, "-L", &out_arg];
    bin_args.extend(&target);
    let linked = if musl.is_some() {
        rustc(&compiler, &bin_args, &built, &root.join(EXAMPLE))?;
        Linked::Musl
    } else {
        let mut static_args = bin_args.clone();
        static_args.extend(["-C", "target-feature=+crt-static"]);
        // Without the static C library (libc6-dev's libc.a), link as usual.
        if rustc(&compiler, &static_args, &built, &root.join(EXAMPLE)).is_err() {
            rustc(&compiler, &bin_args, &built, &root.join(EXAMPLE))?;
        }
        Linked::Glibc
    };
    install(&root, &built)?;
    Ok(linked)
}

/// Copies the binary to `cgi-bin/hello-rs` unless it is already there.
fn install(root: &Path, built: &Path) -> Result<(), Box<dyn Error>> {
    let bin_dir = root.join("cgi-bin");
    let dest = bin_dir.join("hello-rs");
    let bytes = fs::read(built)?;
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
