//! Applications where they live: scripts by extension in the document root
//! (`--cgi-ext`, `--fcgi-ext`, `--index`) over real sockets — PHP as CGI, as one
//! php-cgi pool and through an external php-cgi, next to a sh `.cgi` script, a Python
//! `.py` script, a stylesheet and an image; the PATH_INFO split, the index,
//! `--try-files`, and every path by which a script's source could leak or a file
//! that is not a script could run.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cgi_testbed::Config;
use cgi_testbed::config::FcgiExt;
use cgi_testbed::fastcgi::external::Address;
use cgi_testbed::try_files::TryFiles;
use common::*;

/// In every script's source, and in no answer.
const MARKER: &str = "SOURCE-MARKER";

const INDEX_PHP: &str = r#"<?php
// SOURCE-MARKER: this line never reaches a client.
header('Content-Type: text/plain; charset=utf-8');
foreach (['SCRIPT_NAME', 'SCRIPT_FILENAME', 'PATH_INFO', 'REQUEST_URI', 'QUERY_STRING',
          'REQUEST_METHOD'] as $k) {
    echo $k, '=', isset($_SERVER[$k]) ? $_SERVER[$k] : '', "\n";
}
echo 'POST=', http_build_query($_POST), "\n";
echo 'CWD=', getcwd(), "\n";
echo 'MODE=', isset($_SERVER['FCGI_ROLE']) ? 'fastcgi' : 'cgi', "\n";
echo 'PID=', getmypid(), "\n";
"#;

const FORM_CGI: &str = "#!/bin/sh\n# SOURCE-MARKER\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\n\
    for v in SCRIPT_NAME PATH_INFO REQUEST_URI QUERY_STRING REQUEST_METHOD; do\n\
    eval \"echo $v=\\$$v\"\ndone\necho \"BODY=$(cat)\"\n";

/// No `#!` line and not executable: `--cgi-ext py=/usr/bin/python3` runs it.
const APP_PY: &str = "# SOURCE-MARKER\nimport os, sys\n\
    body = sys.stdin.read(int(os.environ.get('CONTENT_LENGTH') or 0))\n\
    sys.stdout.write('Content-Type: text/plain\\r\\n\\r\\n')\n\
    for k in ('SCRIPT_NAME', 'PATH_INFO', 'REQUEST_URI', 'QUERY_STRING', 'REQUEST_METHOD'):\n\
    \x20   print(k + '=' + os.environ.get(k, ''))\n\
    print('BODY=' + body)\n";

const STYLE: &[u8] = b"body { color: #333 }\n";
const LOGO: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR logo";

/// How `.php` runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Php {
    Cgi,
    Pool,
    /// `php-cgi -b SOCKET`, started by the test.
    External,
}

fn php_cgi() -> bool {
    peer(
        command_works("/usr/bin/php-cgi", &["-v"]),
        "php-cgi at /usr/bin/php-cgi (Debian: apt-get install php-cgi)",
    )
}

/// The document root: `<tmp>/site`.
fn make_site(root: &Path) {
    for dir in ["uploads", "dir.php", "css", "sub"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    let files: &[(&str, &[u8], u32)] = &[
        ("index.php", INDEX_PHP.as_bytes(), 0o644),
        ("sub/page.php", INDEX_PHP.as_bytes(), 0o644),
        ("X.PHP", INDEX_PHP.as_bytes(), 0o644),
        ("form.cgi", FORM_CGI.as_bytes(), 0o755),
        ("plain.cgi", FORM_CGI.as_bytes(), 0o644),
        ("app.py", APP_PY.as_bytes(), 0o644),
        ("css/style.css", STYLE, 0o644),
        ("logo.png", LOGO, 0o644),
        // An "image" someone uploaded with PHP in it: it must never run.
        (
            "uploads/avatar.png",
            b"\x89PNG\r\n\x1a\n<?php echo 'RAN-AS-PHP'; ?>",
            0o644,
        ),
        ("dir.php/inside.txt", b"inside\n", 0o644),
    ];
    for (name, data, mode) in files {
        fs::write(root.join(name), data).unwrap();
        fs::set_permissions(root.join(name), fs::Permissions::from_mode(*mode)).unwrap();
    }
    symlink(root.join("index.php"), root.join("source.txt")).unwrap();
    symlink(root.join("form.cgi"), root.join("form.txt")).unwrap();
}

/// A server over a fresh site: `.cgi` by its `#!` line, `.py` through python3, then
/// whatever `tune` says.
fn site(tune: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::with(&[], |c| {
        let root = c.cgi_dir.parent().unwrap().join("site");
        make_site(&root);
        c.document_root = Some(root);
        c.cgi_ext = vec![
            ("cgi".into(), None),
            ("py".into(), Some("/usr/bin/python3".into())),
        ];
        tune(c);
    })
}

/// A server over a fresh site, `.php` run as `php` says, `.cgi` by its `#!` line,
/// `.py` through python3; index.php, then index.html.
fn site_server(php: Php, tune: impl FnOnce(&mut Config)) -> (TestServer, Option<PhpServer>) {
    let external = (php == Php::External).then(PhpServer::start);
    let sock = external.as_ref().map(|e| e.sock.clone());
    let s = site(|c| {
        match (php, sock) {
            (Php::Cgi, _) => c
                .cgi_ext
                .push(("php".into(), Some("/usr/bin/php-cgi".into()))),
            (Php::Pool, _) => c.fcgi_ext = vec![("php".into(), FcgiExt::Program(php_cgi_path()))],
            (Php::External, Some(sock)) => {
                c.fcgi_ext = vec![("php".into(), FcgiExt::Server(Address::Unix(sock)))]
            }
            (Php::External, None) => unreachable!(),
        }
        c.index = vec!["index.php".into(), "index.html".into()];
        c.workers.max = 1;
        tune(c);
    });
    (s, external)
}

fn php_cgi_path() -> PathBuf {
    PathBuf::from("/usr/bin/php-cgi")
}

fn root(s: &TestServer) -> PathBuf {
    fs::canonicalize(s.dir.path().join("site")).unwrap()
}

/// php-cgi serving FastCGI on a unix socket of its own, as php-fpm would.
struct PhpServer {
    child: Child,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl PhpServer {
    fn start() -> PhpServer {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("php.sock");
        let child = Command::new(php_cgi_path())
            .arg("-b")
            .arg(&sock)
            .env("PHP_FCGI_CHILDREN", "0")
            .env("PHP_FCGI_MAX_REQUESTS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            eventually(Duration::from_secs(10), || sock.exists()),
            "php-cgi -b made no socket"
        );
        PhpServer {
            child,
            sock,
            _dir: dir,
        }
    }
}

impl Drop for PhpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(s: &TestServer, path: &str, body: &str) -> Response {
    s.exchange(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// No answer ever carries a script's source.
fn no_source(r: &Response, path: &str) {
    assert!(
        !r.text().contains(MARKER) && !r.text().contains("<?php"),
        "{path} sent source: {}",
        r.text()
    );
}

/// `(SCRIPT_NAME, PATH_INFO)` of a script's answer.
fn names(r: &Response) -> (String, String) {
    (
        r.var("SCRIPT_NAME").unwrap_or_default(),
        r.var("PATH_INFO").unwrap_or_default(),
    )
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

/// Everything the site does, whichever way `.php` runs.
fn serves_the_site(php: Php) {
    let (s, _external) = site_server(php, |_| {});
    let root = root(&s);
    let mode = if php == Php::Cgi { "cgi" } else { "fastcgi" };

    // The index: `/` runs index.php, with the request's own REQUEST_URI.
    let r = s.get("/?from=index");
    assert_eq!(r.status, 200, "{php:?}: {}", r.text());
    assert_eq!(names(&r), pair("/index.php", ""));
    assert_eq!(r.var("REQUEST_URI").as_deref(), Some("/?from=index"));
    assert_eq!(r.var("QUERY_STRING").as_deref(), Some("from=index"));
    assert_eq!(r.var("MODE").as_deref(), Some(mode));
    let file = root.join("index.php").display().to_string();
    assert_eq!(r.var("SCRIPT_FILENAME"), Some(file));
    assert_eq!(r.var("CWD"), Some(root.display().to_string()));

    // GET, PATH_INFO, POST.
    let r = s.get("/index.php/wiki/start?do=show");
    assert_eq!(names(&r), pair("/index.php", "/wiki/start"), "{}", r.text());
    assert_eq!(r.var("QUERY_STRING").as_deref(), Some("do=show"));
    let r = s.get("/sub/page.php/a%20b/");
    assert_eq!(names(&r), pair("/sub/page.php", "/a b/"));
    assert_eq!(r.var("CWD"), Some(root.join("sub").display().to_string()));
    let r = post(&s, "/index.php", "name=Ada&lang=en");
    assert_eq!(r.status, 200);
    assert_eq!(r.var("REQUEST_METHOD").as_deref(), Some("POST"));
    assert_eq!(r.var("POST").as_deref(), Some("name=Ada&lang=en"));

    // The sh and Python scripts next to it.
    let r = s.get("/form.cgi/x/y?q=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(names(&r), pair("/form.cgi", "/x/y"));
    let r = post(&s, "/form.cgi", "a=1");
    assert_eq!(r.var("BODY").as_deref(), Some("a=1"));
    let r = s.get("/app.py/p?z=2");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(names(&r), pair("/app.py", "/p"));
    assert_eq!(r.var("QUERY_STRING").as_deref(), Some("z=2"));
    let r = post(&s, "/app.py", "b=2");
    assert_eq!(r.var("BODY").as_deref(), Some("b=2"));
    assert_eq!(r.var("REQUEST_METHOD").as_deref(), Some("POST"));

    // The stylesheet and the image, as static files with everything they get.
    let r = s.get("/css/style.css");
    assert_eq!((r.status, r.body.as_slice()), (200, STYLE));
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
    let r = s.get("/logo.png");
    assert_eq!((r.status, r.body.as_slice()), (200, LOGO));
    assert_eq!(r.header("content-type"), Some("image/png"));
    let r = s.get("/uploads/avatar.png");
    assert_eq!(r.status, 200, "an upload is a file like any other");

    // Spellings of the script's own name run it, and never send it.
    for runs in [
        "/index%2ephp",
        "/%69ndex.php",
        "//index.php",
        "/./index.php",
        "/sub/../index.php",
        "/css/%2e%2e/index.php",
    ] {
        let r = s.get(runs);
        assert_eq!(r.status, 200, "{runs}");
        assert_eq!(names(&r), pair("/index.php", ""), "{runs}");
        no_source(&r, runs);
    }
    let r = s.get("/index.php/");
    assert_eq!(
        names(&r),
        pair("/index.php", "/"),
        "a trailing slash is PATH_INFO"
    );

    // Never as source, by any path.
    for (path, status) in [
        ("/index.php.", 404),
        ("/index.php%2e", 404),
        ("/index.php%20", 404),
        ("/index.php%00", 404),
        ("/index.php%2fx", 404),
        ("/index.php~", 404),
        ("/INDEX.PHP", 404),
        ("/X.PHP", 403),
        ("/x.php", 404),
        ("/source.txt", 403),
        ("/form.txt", 403),
        ("/plain.cgi", 403),
        ("/.index.php", 404),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, status, "{php:?} {path}: {}", r.text());
        no_source(&r, path);
    }
    for raw in [
        "HEAD /X.PHP HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /source.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-20\r\nConnection: close\r\n\r\n",
        "GET /X.PHP HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\nConnection: close\r\n\r\n",
    ] {
        let r = s.exchange(raw.as_bytes());
        assert_eq!(r.status, 403, "{raw}");
        no_source(&r, raw);
    }
    assert_eq!(
        s.log_lines_with("GET /X.PHP ").len(),
        2,
        "one line per refused request: {:#?}",
        s.error_log()
    );

    // Never split at a file that is not a script, nor at a directory.
    for (path, status) in [
        ("/uploads/avatar.png/x.php", 404),
        ("/uploads/avatar.png/index.php", 404),
        ("/logo.png/index.php", 404),
        ("/css/style.css/x.php", 404),
        ("/dir.php/x.php", 404),
        ("/dir.php/inside.txt/x.php", 404),
        ("/X.PHP/x", 404),
        ("/dir.php/", 403),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(!r.text().contains("RAN-AS-PHP"), "{path} ran an upload");
        no_source(&r, path);
    }
    assert_eq!(s.get("/dir.php").status, 301);
    assert_eq!(s.get("/dir.php/inside.txt").text(), "inside\n");
}

#[test]
fn php_as_cgi_beside_sh_and_python_scripts() {
    if php_cgi() {
        serves_the_site(Php::Cgi);
    }
}

#[test]
fn php_as_one_worker_pool_beside_sh_and_python_scripts() {
    if php_cgi() {
        serves_the_site(Php::Pool);
    }
}

#[test]
fn php_through_an_external_fastcgi_server() {
    if php_cgi() {
        serves_the_site(Php::External);
    }
}

#[test]
fn one_pool_serves_every_php_file() {
    if !php_cgi() {
        return;
    }
    let (s, _) = site_server(Php::Pool, |_| {});
    let a = s.get("/index.php");
    let b = s.get("/sub/page.php");
    let c = s.get("/");
    assert_eq!((a.status, b.status, c.status), (200, 200, 200));
    assert_eq!(a.var("PID"), b.var("PID"), "one worker (--workers-max 1)");
    assert_eq!(a.var("PID"), c.var("PID"));
    let status = || -> serde_json::Value {
        serde_json::from_str(&s.get("/server-status?json").text()).unwrap()
    };
    // A worker is released a moment after its client has the answer.
    assert!(
        eventually(Duration::from_secs(5), || status()["pools"][0]["served"]
            == 3),
        "{}",
        status()
    );
    let json = status();
    let pools = json["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 1, "{json}");
    assert_eq!(pools[0]["name"], "/usr/bin/php-cgi (*.php)");
    let handlers = json["handlers"].as_array().unwrap();
    let php = handlers
        .iter()
        .find(|h| h["extension"] == ".php")
        .expect("php handler");
    assert_eq!(php["model"], "fastcgi");
    assert_eq!(php["pool"], "/usr/bin/php-cgi (*.php)");
    let py = handlers.iter().find(|h| h["extension"] == ".py").unwrap();
    assert_eq!(py["runs"], "CGI: /usr/bin/python3 FILE");
    let html = s.get("/server-status").text();
    assert!(html.contains("Scripts by extension") && html.contains("<code>.cgi</code>"));
}

#[test]
fn the_same_answers_in_both_models() {
    if !php_cgi() {
        return;
    }
    let (cgi, _) = site_server(Php::Cgi, |_| {});
    let (pool, _) = site_server(Php::Pool, |_| {});
    let strip = |r: &Response| {
        r.text()
            .lines()
            .filter(|l| {
                !["MODE=", "PID=", "SCRIPT_FILENAME=", "CWD="]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for path in ["/", "/index.php/a/b?x=1", "/sub/page.php", "/form.cgi/x"] {
        let (a, b) = (cgi.get(path), pool.get(path));
        assert_eq!((a.status, strip(&a)), (b.status, strip(&b)), "{path}");
        assert_eq!(a.header("content-type"), b.header("content-type"), "{path}");
    }
}

#[test]
fn try_files_falls_back_to_the_front_controller_with_the_original_uri() {
    if !php_cgi() {
        return;
    }
    let (s, _) = site_server(Php::Pool, |c| {
        c.try_files = Some(TryFiles::parse("$uri $uri/ /index.php").unwrap());
    });
    let r = s.get("/blog/2024/hello?page=2");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(names(&r), pair("/index.php", ""));
    assert_eq!(
        r.var("REQUEST_URI").as_deref(),
        Some("/blog/2024/hello?page=2")
    );
    assert_eq!(r.var("QUERY_STRING").as_deref(), Some("page=2"));
    assert_eq!(s.get("/css/style.css").body, STYLE);
    // A script's source is no candidate: the front controller answers instead.
    for path in ["/X.PHP", "/source.txt"] {
        let r = s.get(path);
        assert_eq!(names(&r), pair("/index.php", ""), "{path}");
        no_source(&r, path);
    }
    // Scripts themselves still run as they are, PATH_INFO and all.
    assert_eq!(
        names(&s.get("/sub/page.php/x")),
        pair("/sub/page.php", "/x")
    );
    assert_eq!(s.get("/.env").status, 404, "dot-files go nowhere");
}

#[test]
fn sh_and_python_scripts_run_without_php() {
    let s = site(|c| c.index = vec!["form.cgi".into()]);
    let r = s.get("/");
    assert_eq!(names(&r), pair("/form.cgi", ""), "{}", r.text());
    assert_eq!(names(&s.get("/app.py/q")), pair("/app.py", "/q"));
    // .php is not registered here: index.php is a file like any other, X.PHP too.
    assert_eq!(s.get("/index.php").status, 200);
    for path in ["/form.txt", "/plain.cgi", "/uploads/avatar.png/x.cgi"] {
        let r = s.get(path);
        assert!(r.status == 403 || r.status == 404, "{path}: {}", r.status);
        no_source(&r, path);
    }
}

#[test]
fn the_landing_page_lists_the_extensions() {
    let s = site(|c| {
        c.fcgi_ext = vec![("php".into(), FcgiExt::Program(php_cgi_path()))];
        c.index = vec!["start.php".into()];
    });
    let page = s.get("/").text();
    assert!(page.contains("<code>*.php</code>"), "{page}");
    assert!(page.contains("a worker pool of /usr/bin/php-cgi"), "{page}");
    assert!(
        page.contains("<code>start.php</code> there replaces"),
        "{page}"
    );
}

#[test]
fn extensions_need_a_document_root() {
    let mut c = Config::new(std::env::temp_dir());
    c.cgi_ext = vec![("php".into(), None)];
    let e = cgi_testbed::Server::bind(c).err().expect("refused");
    assert!(e.to_string().contains("--root"), "{e}");
}
