//! URL path -> script: `paths::clean_path`, `paths::strip_mount(.., "/cgi-bin")` and
//! `route::resolve`, the way the server chains them.
//!
//! A fixed tree is built once per process under
//! `$TMPDIR/cgi-testbed-fuzz-tree-<pid>/`:
//!
//! ```text
//! secret            0755  outside cgi-bin: must never be returned
//! secret.sh         0644  outside, would run via the `sh` interpreter
//! outside/z         0755  in a directory outside cgi-bin
//! cgi-bin/env       0755
//! cgi-bin/nph-a     0755
//! cgi-bin/plain     0644  (not executable)
//! cgi-bin/t.sh      0644  (runs via the `sh` interpreter)
//! cgi-bin/sub/x     0755
//! cgi-bin/sub/deep/y 0755
//! cgi-bin/fifo            a FIFO (not a regular file)
//! cgi-bin/link-out  -> ../secret
//! cgi-bin/link-sh   -> ../secret.sh
//! cgi-bin/link-dir  -> ../outside
//! cgi-bin/link-up   -> ..             (the tree root)
//! cgi-bin/link-abs  -> <root>/secret  (absolute)
//! cgi-bin/link-in   -> env
//! cgi-bin/sub/link-back -> ../env
//! cgi-bin/dangling  -> nowhere
//! cgi-bin/loop      -> loop
//! ```
//!
//! Invariants: any `Ok(script)` names a file whose canonical path is inside the
//! canonical cgi-bin directory and is not the secret; script_name / path_info
//! are consistent with the request; `clean_path` output is normalized.
#![no_main]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cgi_testbed::paths::{self, Dotfiles, PathError};
use cgi_testbed::route;
use libfuzzer_sys::fuzz_target;

struct Tree {
    root: PathBuf,
    /// Canonical cgi-bin directory.
    dir: PathBuf,
    secrets: Vec<PathBuf>,
    interpreters: Vec<(String, PathBuf)>,
}

static TREE: OnceLock<Tree> = OnceLock::new();

fn tree() -> &'static Tree {
    TREE.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("cgi-testbed-fuzz-tree-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let bin = root.join("cgi-bin");
        fs::create_dir_all(bin.join("sub/deep")).unwrap();
        fs::create_dir_all(root.join("outside")).unwrap();
        let file = |p: PathBuf, mode: u32| {
            fs::write(&p, "#!/bin/sh\necho\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        };
        file(root.join("secret"), 0o755);
        file(root.join("secret.sh"), 0o644);
        file(root.join("outside/z"), 0o755);
        file(bin.join("env"), 0o755);
        file(bin.join("nph-a"), 0o755);
        file(bin.join("plain"), 0o644);
        file(bin.join("t.sh"), 0o644);
        file(bin.join("sub/x"), 0o755);
        file(bin.join("sub/deep/y"), 0o755);
        symlink("../secret", bin.join("link-out")).unwrap();
        symlink("../secret.sh", bin.join("link-sh")).unwrap();
        symlink("../outside", bin.join("link-dir")).unwrap();
        symlink("..", bin.join("link-up")).unwrap();
        symlink(root.join("secret"), bin.join("link-abs")).unwrap();
        symlink("env", bin.join("link-in")).unwrap();
        symlink("../env", bin.join("sub/link-back")).unwrap();
        symlink("nowhere", bin.join("dangling")).unwrap();
        symlink("loop", bin.join("loop")).unwrap();
        // Best effort: without mkfifo the rest still runs.
        let _ = std::process::Command::new("mkfifo")
            .arg(bin.join("fifo"))
            .status();
        let dir = fs::canonicalize(&bin).unwrap();
        let root = fs::canonicalize(&root).unwrap();
        let secrets = ["secret", "secret.sh", "outside/z"]
            .iter()
            .map(|s| fs::canonicalize(root.join(s)).unwrap())
            .collect();
        Tree {
            root,
            dir,
            secrets,
            interpreters: vec![("sh".to_owned(), PathBuf::from("/bin/sh"))],
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let t = tree();
    // As the server does: the query is not part of the path.
    let path = raw.split_once('?').map_or(raw, |(p, _)| p);

    let clean = match paths::clean_path(path) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    check_clean(&clean);
    // RFC 3986 pct-encoded = "%" HEXDIG HEXDIG: anything else must be refused.
    // (This found `%+f` decoded as 0x0f; see fuzz/artifacts-found/.)
    let b = path.as_bytes();
    for (i, _) in path.match_indices('%') {
        assert!(
            b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
            "clean_path accepted invalid percent-encoding at byte {i} of {path:?} -> {clean:?}"
        );
    }

    let Some(rest) = paths::strip_mount(&clean, "/cgi-bin") else {
        assert!(!clean.starts_with("/cgi-bin/") && clean != "/cgi-bin");
        return;
    };
    assert!(rest.is_empty() || rest.starts_with('/'));
    assert_eq!(format!("/cgi-bin{rest}"), clean);

    for interpreters in [&[][..], &t.interpreters[..]] {
        for dotfiles in [Dotfiles::Deny, Dotfiles::Allow] {
            match route::resolve(&t.dir, "/cgi-bin", rest, interpreters, dotfiles) {
                Ok(script) => {
                    check_script(t, rest, &script);
                    if dotfiles == Dotfiles::Deny {
                        assert!(
                            !clean.split('/').any(|s| s.starts_with('.')),
                            "{clean:?} has a dot segment, yet resolved under --dotfiles deny"
                        );
                    }
                }
                Err(PathError::Hidden) => {
                    assert_eq!(dotfiles, Dotfiles::Deny, "Hidden under --dotfiles allow");
                }
                Err(PathError::NotFound | PathError::Forbidden(_) | PathError::BadPath(_)) => {}
            }
        }
    }
});

fn check_clean(clean: &str) {
    assert!(clean.starts_with('/'), "{clean:?} does not start with /");
    assert!(!clean.contains('\0'));
    assert!(clean == "/" || !clean.contains("//"), "{clean:?} has //");
    for seg in clean.split('/') {
        assert!(seg != "." && seg != "..", "{clean:?} keeps a dot segment");
    }
    // Normalizing is idempotent.
    assert_eq!(paths::normalize(clean).as_deref(), Ok(clean));
}

fn check_script(t: &Tree, rest: &str, script: &route::Script) {
    let file = &script.file;
    assert!(
        file.starts_with(&t.dir),
        "{file:?} is not lexically under {:?}",
        t.dir
    );
    let real = fs::canonicalize(file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
    assert!(
        real.starts_with(&t.dir),
        "script for {rest:?} resolves to {real:?}, outside {:?}",
        t.dir
    );
    assert!(!t.secrets.contains(&real), "secret {real:?} returned for {rest:?}");
    assert!(real.starts_with(&t.root));
    let meta = fs::metadata(&real).unwrap();
    assert!(meta.is_file(), "{real:?} is not a regular file");
    if script.interpreter.is_none() {
        assert!(meta.permissions().mode() & 0o111 != 0, "{real:?} not executable");
    }

    assert!(script.script_name.starts_with("/cgi-bin/"));
    assert!(script.path_info.is_empty() || script.path_info.starts_with('/'));
    assert_eq!(
        format!("/cgi-bin{rest}"),
        format!("{}{}", script.script_name, script.path_info),
        "script_name + path_info do not give back the path"
    );
    let below = script.script_name.strip_prefix("/cgi-bin").unwrap();
    assert_eq!(Path::new(&t.dir).join(&below[1..]), *file);
    let name = below.rsplit('/').next().unwrap();
    assert_eq!(script.nph, name.starts_with("nph-"));
}
