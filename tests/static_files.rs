//! Static files over real sockets: the `python -m http.server --cgi` layout, types,
//! validators and 304, ranges, directories, HEAD, streaming, traversal, and
//! `--try-files` with a front controller.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cgi_testbed::Config;
use cgi_testbed::try_files::TryFiles;
use common::*;

/// Prints what a front controller routes on.
const APP_SCRIPT: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\n\
    for v in REQUEST_URI SCRIPT_NAME PATH_INFO QUERY_STRING REQUEST_METHOD DOCUMENT_ROOT; do\n\
    eval \"echo $v=\\$$v\"\ndone\n";

/// A site under `<tmp>/site` with scripts in `<tmp>/cgi-bin` (served with `--root site
/// --cgi-dir cgi-bin`), so `<tmp>/secret.txt` is outside the root.
fn site_server(scripts: &[(&str, &str)], tune: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::with(scripts, |c| {
        let base = c.cgi_dir.parent().expect("parent").to_path_buf();
        make_site(&base.join("site"));
        fs::write(base.join("secret.txt"), "TOP SECRET\n").expect("secret");
        c.document_root = Some(base.join("site"));
        tune(c);
    })
}

fn make_site(root: &Path) {
    fs::create_dir_all(root.join("docs/empty")).expect("mkdir");
    let files: &[(&str, &[u8])] = &[
        ("index.html", b"<h1>home</h1>\n"),
        ("style.css", b"body{}\n"),
        ("app.js", b"let x = 1;\n"),
        ("data.json", b"{}\n"),
        ("pic.png", b"\x89PNG\r\n\x1a\n"),
        ("logo.svg", b"<svg/>"),
        ("notes.txt", b"0123456789abcdef"),
        ("blob.bin", b"\x00\x01"),
        ("docs/index.html", b"<h1>docs</h1>\n"),
        ("docs/a b.txt", b"spaced\n"),
    ];
    for (name, data) in files {
        fs::write(root.join(name), data).expect("write");
    }
}

fn site(s: &TestServer) -> PathBuf {
    s.dir.path().join("site")
}

fn get_with(s: &TestServer, path: &str, headers: &str) -> Response {
    s.exchange(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn python_http_server_cgi_layout_serves_files_and_both_script_dirs() {
    // The layout `python -m http.server --cgi` served: static files beside cgi-bin/
    // (and htbin/), started with `--root DIR` alone.
    let s = TestServer::with(&[("env", ENV_SCRIPT)], |c| {
        let root = c.cgi_dir.parent().expect("parent").to_path_buf();
        make_site(&root);
        write_script(&root.join("htbin/hello"), HELLO_SCRIPT);
        fs::write(root.join("cgi-bin/plain.py"), "print('source')\n").expect("write");
        c.python_layout(root);
    });
    let root = fs::canonicalize(s.dir.path()).unwrap();
    let home = s.get("/");
    assert_eq!(
        (home.status, home.text().as_str()),
        (200, "<h1>home</h1>\n")
    );
    assert_eq!(s.get("/style.css").text(), "body{}\n");
    let env = s.get("/cgi-bin/env?q=1");
    assert_eq!(env.status, 200);
    assert_eq!(env.var("SCRIPT_NAME").as_deref(), Some("/cgi-bin/env"));
    assert_eq!(env.var("DOCUMENT_ROOT"), Some(root.display().to_string()));
    assert_eq!(env.var("QUERY_STRING").as_deref(), Some("q=1"));
    let hello = s.get("/htbin/hello");
    assert_eq!((hello.status, hello.text().as_str()), (200, "hello\n"));
    // A script's source is never a static file, by its mount or around it.
    let plain = s.get("/cgi-bin/plain.py");
    assert_eq!(plain.status, 403);
    assert!(!plain.text().contains("source"));
}

#[test]
fn python_layout_without_cgi_bin_still_serves_files() {
    let s = TestServer::with(&[], |c| {
        let root = c.cgi_dir.parent().expect("parent").join("only-static");
        make_site(&root);
        c.python_layout(root);
    });
    assert_eq!(s.get("/notes.txt").text(), "0123456789abcdef");
    assert_eq!(s.get("/cgi-bin/anything").status, 404);
}

#[test]
fn content_types_follow_the_extension() {
    let s = site_server(&[], |_| {});
    for (path, ty) in [
        ("/index.html", "text/html; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/data.json", "application/json"),
        ("/pic.png", "image/png"),
        ("/logo.svg", "image/svg+xml"),
        ("/notes.txt", "text/plain; charset=utf-8"),
        ("/blob.bin", "application/octet-stream"),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ty), "{path}");
        assert_eq!(r.header("accept-ranges"), Some("bytes"), "{path}");
    }
    assert_eq!(s.get("/docs/a%20b.txt").text(), "spaced\n");
}

#[test]
fn if_modified_since_gives_304() {
    let s = site_server(&[], |_| {});
    let first = s.get("/notes.txt");
    let modified = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    let again = get_with(
        &s,
        "/notes.txt",
        &format!("If-Modified-Since: {modified}\r\n"),
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), first.header("etag"));
    assert_eq!(again.header("content-length"), None);
    let old = get_with(
        &s,
        "/notes.txt",
        "If-Modified-Since: Thu, 01 Jan 1998 00:00:00 GMT\r\n",
    );
    assert_eq!((old.status, old.text().as_str()), (200, "0123456789abcdef"));
}

#[test]
fn if_unmodified_since_in_the_past_gives_412() {
    let s = site_server(&[], |_| {});
    let modified = s
        .get("/notes.txt")
        .header("last-modified")
        .unwrap()
        .to_owned();
    for (headers, status) in [
        (
            "If-Unmodified-Since: Thu, 01 Jan 1998 00:00:00 GMT\r\n",
            412,
        ),
        (&format!("If-Unmodified-Since: {modified}\r\n") as &str, 200),
        ("If-Unmodified-Since: not a date\r\n", 200),
        // RFC 9110 §13.2.2: If-Match first; a weak tag never matches it strongly.
        (
            "If-Match: *\r\nIf-Unmodified-Since: Thu, 01 Jan 1998 00:00:00 GMT\r\n",
            200,
        ),
        ("If-Match: \"nope\"\r\n", 412),
    ] {
        let r = get_with(&s, "/notes.txt", headers);
        assert_eq!(r.status, status, "{headers}: {}", r.text());
        if status == 412 {
            assert!(!r.text().contains("0123456789"), "{}", r.text());
        }
    }
    let mut c = s.client();
    c.send(b"HEAD /notes.txt HTTP/1.1\r\nHost: x\r\nIf-Unmodified-Since: Thu, 01 Jan 1998 00:00:00 GMT\r\n\r\n");
    assert_eq!(c.head_response().status, 412);
}

#[test]
fn a_file_with_a_trailing_slash_is_404() {
    let s = site_server(&[], |_| {});
    assert_eq!(s.get("/notes.txt/").status, 404);
    assert_eq!(s.get("/notes.txt/x").status, 404);
    assert_eq!(s.get("/notes.txt").status, 200);
}

#[test]
fn etag_and_if_none_match_give_304() {
    let s = site_server(&[], |_| {});
    let first = s.get("/notes.txt");
    let tag = first.header("etag").expect("ETag").to_owned();
    assert!(tag.starts_with("W/\""), "{tag}");
    let again = get_with(
        &s,
        "/notes.txt",
        &format!("If-None-Match: \"x\", {tag}\r\n"),
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let other = get_with(&s, "/notes.txt", "If-None-Match: \"other\"\r\n");
    assert_eq!(other.status, 200);
    // A changed file gets a new tag, so the old one no longer matches: within a
    // second, for that long the loop answers from its copy (file_cache::FRESH_FOR).
    fs::write(site(&s).join("notes.txt"), "changed, and longer").unwrap();
    std::thread::sleep(cgi_testbed::file_cache::FRESH_FOR + Duration::from_millis(100));
    let changed = get_with(&s, "/notes.txt", &format!("If-None-Match: {tag}\r\n"));
    assert_eq!(changed.status, 200);
    assert_eq!(changed.text(), "changed, and longer");
    assert_ne!(changed.header("etag"), Some(tag.as_str()));
}

#[test]
fn single_ranges_give_206_and_unsatisfiable_ones_416() {
    let s = site_server(&[], |_| {});
    let part = get_with(&s, "/notes.txt", "Range: bytes=2-5\r\n");
    assert_eq!((part.status, part.text().as_str()), (206, "2345"));
    assert_eq!(part.header("content-range"), Some("bytes 2-5/16"));
    let tail = get_with(&s, "/notes.txt", "Range: bytes=-3\r\n");
    assert_eq!((tail.status, tail.text().as_str()), (206, "def"));
    let open = get_with(&s, "/notes.txt", "Range: bytes=14-\r\n");
    assert_eq!((open.status, open.text().as_str()), (206, "ef"));
    let past = get_with(&s, "/notes.txt", "Range: bytes=16-20\r\n");
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */16"));
    // An end past the file, even past u64, is clamped to it (RFC 9110 §14.1.2).
    let huge = get_with(&s, "/notes.txt", "Range: bytes=0-99999999999999999999\r\n");
    assert_eq!((huge.status, huge.body.len()), (206, 16));
    assert_eq!(huge.header("content-range"), Some("bytes 0-15/16"));
    let tail = get_with(&s, "/notes.txt", "Range: bytes=10-99999999999999999999\r\n");
    assert_eq!((tail.status, tail.text().as_str()), (206, "abcdef"));
    // Several ranges may be answered with the whole file.
    let multi = get_with(&s, "/notes.txt", "Range: bytes=0-1,4-5\r\n");
    assert_eq!((multi.status, multi.body.len()), (200, 16));
}

#[test]
fn directories_get_a_slash_redirect_and_their_index() {
    let s = site_server(&[], |_| {});
    let r = s.get("/docs?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/docs/?x=1"));
    let index = s.get("/docs/");
    assert_eq!(
        (index.status, index.text().as_str()),
        (200, "<h1>docs</h1>\n")
    );
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    // No index.html and no listing.
    assert_eq!(s.get("/docs/empty/").status, 403);
    assert_eq!(s.get("/").text(), "<h1>home</h1>\n");
}

#[test]
fn head_sends_the_headers_only_and_keeps_the_connection() {
    let s = site_server(&[], |_| {});
    let mut c = s.client();
    c.send(b"HEAD /notes.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.head_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("16"));
    assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
    c.send(b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n");
    let next = c.response();
    assert_eq!((next.status, next.text().as_str()), (200, "body{}\n"));
}

#[test]
fn only_get_and_head_read_files() {
    let s = site_server(&[], |_| {});
    let r = s.exchange(
        b"POST /notes.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[test]
fn large_files_stream_whole_and_in_ranges() {
    let s = site_server(&[], |_| {});
    let data: Vec<u8> = (0..6u32 << 20).map(|i| (i % 251) as u8).collect();
    fs::write(site(&s).join("big.bin"), &data).unwrap();
    let r = s.get("/big.bin");
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert!(r.body == data, "streamed body differs");
    let (a, b) = (1_000_003usize, 5_500_000usize);
    let part = get_with(&s, "/big.bin", &format!("Range: bytes={a}-{b}\r\n"));
    assert_eq!(part.status, 206);
    assert!(part.body == data[a..=b], "range body differs");
}

#[test]
fn nothing_outside_the_root_is_served() {
    let s = site_server(&[], |_| {});
    let root = site(&s);
    symlink(s.dir.path().join("secret.txt"), root.join("leak.txt")).unwrap();
    symlink(s.dir.path(), root.join("up")).unwrap();
    symlink(root.join("notes.txt"), root.join("inside.txt")).unwrap();
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/docs/%2e%2e/%2e%2e/secret.txt",
        "/docs/..%2fsecret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/leak.txt",
        "/up/secret.txt",
        "/up/cgi-bin/",
    ] {
        let r = s.get(path);
        assert!(
            matches!(r.status, 400 | 403 | 404),
            "{path}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("TOP SECRET"), "{path} leaked");
    }
    assert_eq!(s.get("/leak.txt").status, 403);
    assert_eq!(s.get("/missing.txt").status, 404);
    // A symlink that stays inside the root is fine.
    assert_eq!(s.get("/inside.txt").text(), "0123456789abcdef");
    // Dot segments that stay inside resolve like any path.
    assert_eq!(s.get("/docs/%2e%2e/notes.txt").status, 200);
}

#[test]
fn a_path_swapped_for_a_symlink_out_of_the_root_is_not_followed() {
    // The loop trusts a resolved path for a second; within it, a file (or a directory
    // on the way) replaced by a symlink must not lead out. Files over 64 KiB are
    // opened on every request (no copy is kept), so the open itself must refuse.
    let s = site_server(&[], |_| {});
    let root = site(&s);
    let outside = s.dir.path().join("outside");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    let big = vec![b'a'; 70_000];
    let secret = vec![b'S'; 70_000];
    for dir in [&root, &root.join("sub")] {
        fs::write(dir.join("big.txt"), &big).unwrap();
    }
    fs::write(outside.join("big.txt"), &secret).unwrap();
    assert_eq!(s.get("/big.txt").body, big);
    assert_eq!(s.get("/sub/big.txt").body, big);
    fs::remove_file(root.join("big.txt")).unwrap();
    symlink(outside.join("big.txt"), root.join("big.txt")).unwrap();
    fs::rename(root.join("sub"), root.join("sub.old")).unwrap();
    symlink(&outside, root.join("sub")).unwrap();
    for path in ["/big.txt", "/sub/big.txt"] {
        let r = s.get(path);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(!r.body.starts_with(b"SSS"), "{path} leaked");
    }
}

#[test]
fn script_directories_are_never_static() {
    // The cgi-dir inside the root under another name, and a symlink to a script.
    let s = TestServer::with(&[("app", APP_SCRIPT)], |c| {
        let root = c.cgi_dir.parent().expect("parent").to_path_buf();
        make_site(&root);
        let scripts = root.join("scripts");
        fs::rename(&c.cgi_dir, &scripts).expect("rename");
        symlink(scripts.join("app"), root.join("app.txt")).expect("symlink");
        c.cgi_dir = scripts;
        c.document_root = Some(root);
    });
    for path in ["/scripts/app", "/app.txt"] {
        let r = s.get(path);
        assert_eq!(r.status, 403, "{path}");
        assert!(
            !r.text().contains("REQUEST_URI"),
            "{path} leaked the source"
        );
    }
    assert_eq!(s.get("/cgi-bin/app").status, 200);
}

fn try_files_server(list: &str) -> TestServer {
    let list = TryFiles::parse(list).unwrap();
    site_server(&[("app", APP_SCRIPT)], |c| c.try_files = Some(list))
}

#[test]
fn try_files_serves_an_existing_file() {
    let s = try_files_server("$uri $uri/ /cgi-bin/app");
    let r = s.get("/notes.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "0123456789abcdef"));
    assert_eq!(
        s.get("/style.css").header("content-type"),
        Some("text/css; charset=utf-8")
    );
}

#[test]
fn try_files_serves_an_existing_directory() {
    let s = try_files_server("$uri $uri/ /cgi-bin/app");
    let r = s.get("/docs/");
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>docs</h1>\n"));
    let r = s.get("/docs");
    assert_eq!((r.status, r.header("location")), (301, Some("/docs/")));
}

#[test]
fn try_files_falls_back_to_a_script_with_the_original_request_uri() {
    let s = try_files_server("$uri $uri/ /cgi-bin/app");
    let r = s.get("/blog/2024/hello%20world?page=2&x=%2F");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.var("REQUEST_URI").as_deref(),
        Some("/blog/2024/hello%20world?page=2&x=%2F")
    );
    assert_eq!(r.var("SCRIPT_NAME").as_deref(), Some("/cgi-bin/app"));
    assert_eq!(r.var("PATH_INFO").as_deref(), Some(""));
    assert_eq!(r.var("QUERY_STRING").as_deref(), Some("page=2&x=%2F"));
    // A front controller takes every method; only files are GET/HEAD-only.
    let post = s.exchange(
        b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(post.var("REQUEST_METHOD").as_deref(), Some("POST"));
    assert_eq!(post.var("REQUEST_URI").as_deref(), Some("/api/items"));
    // Scripts under their own mount still run directly.
    let direct = s.get("/cgi-bin/app/x");
    assert_eq!(direct.var("PATH_INFO").as_deref(), Some("/x"));
}

#[test]
fn try_files_fallback_can_carry_the_path_and_can_be_404() {
    let s = try_files_server("$uri /cgi-bin/app$uri");
    let r = s.get("/a/b?q");
    assert_eq!(r.var("PATH_INFO").as_deref(), Some("/a/b"));
    assert_eq!(r.var("REQUEST_URI").as_deref(), Some("/a/b?q"));
    // `$uri` alone does not take a directory, so `/` goes to the app too.
    let root = s.get("/");
    assert_eq!(
        root.var("REQUEST_URI").as_deref(),
        Some("/"),
        "{} {}",
        root.status,
        root.text()
    );
    // A single-page app: every unknown path gets the one static page.
    let s = try_files_server("$uri /index.html");
    let spa = s.get("/some/client/route");
    assert_eq!((spa.status, spa.text().as_str()), (200, "<h1>home</h1>\n"));
    let s = try_files_server("$uri $uri.html =404");
    assert_eq!(s.get("/index").text(), "<h1>home</h1>\n");
    assert_eq!(s.get("/nothing").status, 404);
}

fn with_dotfiles(s: &TestServer) {
    let root = site(s);
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::create_dir_all(root.join(".well-known/acme-challenge")).unwrap();
    fs::create_dir_all(root.join("docs/.svn")).unwrap();
    fs::write(root.join(".env"), "DB_PASSWORD=hunter2\n").unwrap();
    fs::write(root.join(".git/config"), "[core]\n").unwrap();
    fs::write(root.join("docs/.svn/entries"), "svn\n").unwrap();
    fs::write(root.join(".well-known/acme-challenge/tok"), "proof\n").unwrap();
    write_script(&s.cgi_dir().join(".hidden"), APP_SCRIPT);
    write_script(&s.cgi_dir().join(".d/app"), APP_SCRIPT);
}

#[test]
fn dot_segments_are_not_served_or_run_by_default() {
    let s = site_server(&[("app", APP_SCRIPT)], |_| {});
    with_dotfiles(&s);
    for path in [
        "/.env",
        "/.git/config",
        "/.git/",
        "/docs/.svn/entries",
        "/%2egit/config",
        "/.nothing-here",
        "/cgi-bin/.hidden",
        "/cgi-bin/.d/app",
        "/cgi-bin/app/.env",
        "/fcgi-bin/.hidden",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(!r.text().contains("hunter2") && !r.text().contains("REQUEST_URI"));
    }
    // RFC 8615's directory stays served.
    let r = s.get("/.well-known/acme-challenge/tok");
    assert_eq!((r.status, r.text().as_str()), (200, "proof\n"));
    // A front controller is not handed them either.
    let s = site_server(&[("app", APP_SCRIPT)], |c| {
        c.try_files = Some(TryFiles::parse("$uri $uri/ /cgi-bin/app").unwrap());
    });
    with_dotfiles(&s);
    for path in ["/.env", "/.git/config", "/x/.htaccess"] {
        let r = s.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(!r.text().contains("hunter2") && !r.text().contains("REQUEST_URI"));
    }
    assert_eq!(
        s.get("/blog/post").status,
        200,
        "other paths still reach the app"
    );
}

#[test]
fn dotfiles_allow_serves_and_runs_them() {
    let s = site_server(&[("app", APP_SCRIPT)], |c| {
        c.dotfiles = cgi_testbed::paths::Dotfiles::Allow;
    });
    with_dotfiles(&s);
    assert_eq!(s.get("/.env").text(), "DB_PASSWORD=hunter2\n");
    assert_eq!(s.get("/docs/.svn/entries").status, 200);
    let r = s.get("/cgi-bin/.hidden");
    assert_eq!(r.var("SCRIPT_NAME").as_deref(), Some("/cgi-bin/.hidden"));
    let r = s.get("/cgi-bin/app/.env");
    assert_eq!(r.var("PATH_INFO").as_deref(), Some("/.env"));
}
