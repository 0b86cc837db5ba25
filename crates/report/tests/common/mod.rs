//! What the report's integration tests share: the real server binary, a site of
//! scripts in a temporary directory, and a server of ours serving it.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cgi_testbed_report::ladder::Site;
use cgi_testbed_report::ours::{Flags, Ours, Program};

/// The `cgi-testbed` binary of this workspace (built first if need be).
pub fn server() -> Program {
    Program::find(None).expect("the cgi-testbed binary")
}

/// A site under `dir` whose cgi-bin holds `scripts` (name, text), executable.
pub fn site(dir: &Path, scripts: &[(&str, &str)]) -> Site {
    let site = Site {
        cgi_dir: dir.join("cgi-bin"),
        public: dir.join("public"),
        apps: dir.join("apps"),
        logs: dir.join("logs"),
    };
    for d in [&site.cgi_dir, &site.public, &site.apps, &site.logs] {
        std::fs::create_dir_all(d).unwrap();
    }
    for (name, text) in scripts {
        let path = site.cgi_dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    site
}

/// Our server serving `site`, sized for `clients`.
pub fn start(site: &Site, clients: usize) -> Ours {
    let flags = Flags {
        workers: 2,
        clients,
    };
    Ours::start(&server(), site, &flags, &site.logs.join("server.log")).expect("server")
}

/// Compiles C `source` into `dir/name` with the system's C compiler; `None` (and a
/// line on stderr) when there is none.
pub fn compile_c(dir: &Path, name: &str, source: &str) -> Option<()> {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = std::process::Command::new("cc")
        .args(["-O2", "-o"])
        .arg(dir.join(name))
        .arg(&src)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(()),
        other => {
            eprintln!("skipped: no working C compiler ({other:?})");
            None
        }
    }
}
