//! A real PHP application from Debian's packages, run where it lives: DokuWiki
//! (file-based, no database server) with `--root` at the application, `--index
//! doku.php` and php-cgi as CGI (`--cgi-ext`) and as one worker pool (`--fcgi-ext`).
//! scripts/php-app/flow.py walks it as a browser would — the start page with every
//! stylesheet, script and image it names, a page edited through its form (session
//! cookie, POST, redirect) and read back, paths that must not leak source — and both
//! models must give the same transcript. scripts/php-app.sh adds lighttpd to the
//! comparison.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cgi_testbed::Config;
use cgi_testbed::config::FcgiExt;
use common::*;

const PHP_CGI: &str = "/usr/bin/php-cgi";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// php-cgi, DokuWiki and a readable copy of its data, or a skip saying which is missing.
fn peers() -> bool {
    peer(
        command_works(PHP_CGI, &["-v"]),
        "php-cgi at /usr/bin/php-cgi (Debian: apt-get install php-cgi)",
    ) && peer(
        Path::new("/usr/share/dokuwiki/doku.php").is_file(),
        "DokuWiki (Debian: apt-get install --no-install-recommends dokuwiki)",
    ) && peer(
        std::fs::read_dir("/var/lib/dokuwiki/data/pages").is_ok(),
        "read access to /var/lib/dokuwiki/data (root or www-data) to copy the wiki",
    )
}

/// Runs one of the php-app scripts; its output, or a failure with everything it said.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Serves the wiki in `dir` from a fresh copy of its data, with `.php` run as
/// `tune` says, and walks it; the transcript.
fn walk(dir: &Path, transcript: &Path, tune: impl FnOnce(&mut Config)) -> TestServer {
    let dir_arg = dir.to_str().unwrap();
    run(
        "bash",
        &[
            repo("scripts/php-app/instance.sh").to_str().unwrap(),
            dir_arg,
            "--data",
        ],
    );
    let s = TestServer::with(&[], |c| {
        c.document_root = Some(dir.join("app"));
        c.index = vec!["doku.php".into()];
        tune(c);
    });
    let base = format!("http://{}", s.addr());
    let flow = repo("scripts/php-app/flow.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&flow)
        .arg(&base)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.ends_with("ok: 25 requests\n"),
        "the walk failed:\n{text}\n{}\nserver log: {:#?}",
        String::from_utf8_lossy(&out.stderr),
        s.error_log()
    );
    std::fs::write(transcript, &text).unwrap();
    s
}

#[test]
fn dokuwiki_runs_in_place_the_same_in_both_models() {
    if !peers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let wiki = tmp.path().join("wiki");
    run(
        "bash",
        &[
            repo("scripts/php-app/instance.sh").to_str().unwrap(),
            wiki.to_str().unwrap(),
        ],
    );
    let cgi_txt = tmp.path().join("cgi.txt");
    let fcgi_txt = tmp.path().join("fastcgi.txt");

    let s = walk(&wiki, &cgi_txt, |c| {
        c.cgi_ext = vec![("php".into(), Some(PHP_CGI.into()))];
    });
    // What flow.py does not look at: a page named in PATH_INFO, and what stays private.
    let r = s.get("/doku.php/wiki:syntax");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("Formatting Syntax"), "{}", r.text());
    for private in [
        "/conf/local.php",
        "/data/pages/wiki/syntax.txt",
        "/.htaccess",
    ] {
        assert_eq!(s.get(private).status, 404, "{private}");
    }
    drop(s);

    let s = walk(&wiki, &fcgi_txt, |c| {
        c.fcgi_ext = vec![("php".into(), FcgiExt::Program(PHP_CGI.into()))];
        c.workers.max = 2;
    });
    let status = s.get("/server-status?json").text();
    assert!(
        status.contains("\"/usr/bin/php-cgi (*.php)\""),
        "one pool for every .php: {status}"
    );
    drop(s);

    let flow = repo("scripts/php-app/flow.py");
    let same = run(
        "/usr/bin/python3",
        &[
            flow.to_str().unwrap(),
            "--compare",
            cgi_txt.to_str().unwrap(),
            fcgi_txt.to_str().unwrap(),
        ],
    );
    assert_eq!(same, "25 requests answered the same\n");
}
