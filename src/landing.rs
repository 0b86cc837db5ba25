//! The landing page at `/` (when the document root has no index): every script in the
//! script directories with links to run it as CGI and as a FastCGI worker, whether it
//! is executable, and the interpreter its `#!` line names; and the extensions that run
//! in place under the document root. Plain HTML, no scripts.

use std::fmt::Write;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::handlers::Handlers;
use crate::html::{encode_path, escape};

/// How deep below a script directory we look, and how many files we list at most, so
/// a huge or looping tree cannot make `/` slow.
const MAX_DEPTH: usize = 4;
const MAX_ENTRIES: usize = 500;

/// Shared by the server's own pages.
pub const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#1d1d1f}\
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0}th,td{text-align:left;padding:.3em .8em;border-bottom:1px solid #ddd}\
th{background:#f3f3f5}td.n{text-align:right;font-variant-numeric:tabular-nums}\
code{font:13px ui-monospace,monospace}a{color:#0b57d0}.no{color:#a50e0e}.muted{color:#666}";

/// One file found in a script directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path below the script directory, `/`-separated.
    pub name: String,
    pub executable: bool,
    /// What runs it: the `#!` program, a native binary, or `--interpreter`.
    pub runner: Runner,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// `#!PROGRAM [ARG]`.
    Shebang(String),
    /// An ELF executable.
    Native,
    /// `--interpreter EXT=PROGRAM`.
    Configured(PathBuf),
    /// Neither: the kernel cannot run it.
    Unknown,
}

impl Runner {
    fn describe(&self) -> String {
        match self {
            Runner::Shebang(line) => {
                // `/usr/bin/env python3` is about python3.
                let mut words = line.split_whitespace();
                match (words.next(), words.next()) {
                    (Some(env), Some(prog)) if env.ends_with("/env") => {
                        format!("{prog} (via {env})")
                    }
                    _ => line.clone(),
                }
            }
            Runner::Native => "native executable".into(),
            Runner::Configured(p) => format!("{} (--interpreter)", p.display()),
            Runner::Unknown => "no #! line".into(),
        }
    }
}

/// What runs a file, from its first bytes and its name.
pub fn runner(head: &[u8], name: &str, interpreters: &[(String, PathBuf)]) -> Runner {
    if let Some(line) = head.strip_prefix(b"#!") {
        let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
        let text = String::from_utf8_lossy(&line[..end]).trim().to_owned();
        if !text.is_empty() {
            return Runner::Shebang(text);
        }
    }
    if head.starts_with(b"\x7fELF") {
        return Runner::Native;
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e);
    match interpreters.iter().find(|(e, _)| Some(e.as_str()) == ext) {
        Some((_, p)) => Runner::Configured(p.clone()),
        None => Runner::Unknown,
    }
}

/// Lists the files under `dir`, sorted, skipping dot-files.
pub fn scan(dir: &Path, interpreters: &[(String, PathBuf)]) -> Vec<Entry> {
    let mut out = Vec::new();
    walk(dir, "", 0, interpreters, &mut out);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    interpreters: &[(String, PathBuf)],
    out: &mut Vec<Entry>,
) {
    let Ok(list) = fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<(String, PathBuf)> = list
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    names.sort();
    for (name, path) in names {
        if out.len() >= MAX_ENTRIES {
            return;
        }
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        let rel = format!("{prefix}{name}");
        if meta.is_dir() {
            if depth + 1 < MAX_DEPTH {
                walk(&path, &format!("{rel}/"), depth + 1, interpreters, out);
            }
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        let mut head = [0u8; 256];
        let n = fs::File::open(&path)
            .and_then(|mut f| f.read(&mut head))
            .unwrap_or(0);
        out.push(Entry {
            runner: runner(&head[..n], &name, interpreters),
            executable: meta.permissions().mode() & 0o111 != 0,
            name: rel,
        });
    }
}

/// One script directory as the page shows it.
pub struct Section {
    /// URL prefix, e.g. `/cgi-bin`.
    pub mount: String,
    pub dir: PathBuf,
    /// Also offer the FastCGI link (`/fcgi-bin/` serves the main script directory).
    pub fastcgi: bool,
    pub entries: Vec<Entry>,
}

/// What else the page mentions.
pub struct Context<'a> {
    pub version: &'a str,
    pub static_root: Option<&'a Path>,
    /// `--cgi-ext`, `--fcgi-ext`.
    pub handlers: &'a Handlers,
    /// `--index`.
    pub index: &'a [String],
    pub status_page: bool,
    /// Name the directories on disk: for a client on this machine only, since where
    /// the files live helps an attacker elsewhere and nobody else needs it.
    pub show_paths: bool,
}

/// The whole page.
pub fn render(sections: &[Section], ctx: &Context<'_>) -> String {
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>cgi-testbed</title><style>{STYLE}</style></head><body>\n\
         <h1>cgi-testbed</h1>\n<p class=\"muted\">{} · a classic CGI server: one process \
         per request under a script directory, or a persistent FastCGI worker under \
         <code>/fcgi-bin/</code>.</p>\n",
        escape(ctx.version)
    );
    for s in sections {
        if ctx.show_paths {
            let _ = writeln!(
                h,
                "<h2>Scripts in <code>{}</code> at <code>{}/</code></h2>",
                escape(&s.dir.display().to_string()),
                escape(&s.mount)
            );
        } else {
            let _ = writeln!(h, "<h2>Scripts at <code>{}/</code></h2>", escape(&s.mount));
        }
        if s.entries.is_empty() {
            h.push_str("<p>No scripts yet: drop an executable file here.</p>\n");
            continue;
        }
        h.push_str("<table><tr><th>script</th><th>run as CGI</th>");
        if s.fastcgi {
            h.push_str("<th>run as FastCGI worker</th>");
        }
        h.push_str("<th>executable</th><th>interpreter</th></tr>\n");
        for e in &s.entries {
            let runnable = e.executable || matches!(e.runner, Runner::Configured(_));
            let link = |mount: &str| {
                if runnable {
                    let url = encode_path(&format!("{mount}/{}", e.name));
                    format!("<a href=\"{}\">{}</a>", escape(&url), escape(&url))
                } else {
                    "<span class=\"muted\">–</span>".to_owned()
                }
            };
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td>",
                escape(&e.name),
                link(&s.mount)
            );
            if s.fastcgi {
                let _ = write!(h, "<td>{}</td>", link("/fcgi-bin"));
            }
            let exec = if e.executable {
                "yes".to_owned()
            } else if runnable {
                "no (runs through --interpreter)".to_owned()
            } else {
                "<span class=\"no\">no</span> <span class=\"muted\">(chmod +x to run it)</span>"
                    .to_owned()
            };
            let _ = writeln!(
                h,
                "<td>{exec}</td><td><code>{}</code></td></tr>",
                escape(&e.runner.describe())
            );
        }
        h.push_str("</table>\n");
    }
    if sections.iter().any(|s| s.fastcgi) {
        h.push_str(
            "<p class=\"muted\">A FastCGI link works for programs that speak FastCGI \
             (such as a <code>flup</code> or <code>php-cgi</code> script); a plain CGI \
             script answers it with an error.</p>\n",
        );
    }
    in_place(&mut h, ctx);
    h.push_str("<h2>More</h2>\n<ul>\n");
    let index = ctx
        .index
        .iter()
        .map(|n| format!("<code>{}</code>", escape(n)))
        .collect::<Vec<_>>()
        .join(" or ");
    match ctx.static_root {
        Some(_) if !ctx.show_paths => {
            let _ = writeln!(
                h,
                "<li>Static files come from the document root; an {index} there replaces \
                 this page.</li>"
            );
        }
        Some(root) => {
            let _ = writeln!(
                h,
                "<li>Static files come from <code>{}</code>; an {index} there replaces \
                 this page.</li>",
                escape(&root.display().to_string())
            );
        }
        None => h.push_str(
            "<li>No static files are served: start with <code>--root DIR</code> \
             (or create <code>./public</code>) to serve some.</li>\n",
        ),
    }
    if ctx.status_page {
        h.push_str(
            "<li><a href=\"/server-status\">Server status</a> (also as \
             <a href=\"/server-status?json\">JSON</a>): requests, running scripts, \
             worker pools, memory.</li>\n",
        );
    }
    h.push_str("</ul>\n</body></html>\n");
    h
}

/// The extensions that run in place, if any: which and how (the programs and
/// addresses for a client on this machine only).
fn in_place(h: &mut String, ctx: &Context<'_>) {
    if ctx.handlers.is_empty() {
        return;
    }
    h.push_str(
        "<h2>Scripts in the document root, by extension</h2>\n\
         <table><tr><th>files</th><th>run as</th></tr>\n",
    );
    for x in ctx.handlers.iter() {
        let runs = if ctx.show_paths {
            x.runner.describe()
        } else {
            x.runner.kind().to_owned()
        };
        let _ = writeln!(
            h,
            "<tr><td><code>*.{}</code></td><td>{}</td></tr>",
            escape(&x.ext),
            escape(&runs)
        );
    }
    h.push_str(
        "</table>\n<p class=\"muted\">Such a file is never sent as a file; a path \
         past it (<code>/app.php/more</code>) is its PATH_INFO.</p>\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runners() {
        let none: &[(String, PathBuf)] = &[];
        assert_eq!(
            runner(b"#!/bin/sh\necho", "x", none),
            Runner::Shebang("/bin/sh".into())
        );
        let py = runner(b"#!/usr/bin/env python3\n", "x", none);
        assert_eq!(py.describe(), "python3 (via /usr/bin/env)");
        assert_eq!(
            runner(b"#! /usr/bin/perl -w\n", "x", none).describe(),
            "/usr/bin/perl -w"
        );
        assert_eq!(runner(b"\x7fELF\x02\x01", "x", none), Runner::Native);
        let conf = [("py".to_owned(), PathBuf::from("/usr/bin/python3"))];
        assert_eq!(
            runner(b"print(1)", "a.py", &conf),
            Runner::Configured("/usr/bin/python3".into())
        );
        assert_eq!(runner(b"print(1)", "a.rb", &conf), Runner::Unknown);
        assert_eq!(runner(b"", "a", none), Runner::Unknown);
    }

    #[test]
    fn scanning_and_rendering() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("hello"), "#!/bin/sh\necho\n").unwrap();
        fs::set_permissions(dir.join("hello"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("sub/<b>&.py"), "#!/usr/bin/env python3\n").unwrap();
        fs::write(dir.join(".hidden"), "x").unwrap();
        let entries = scan(dir, &[]);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["hello", "sub/<b>&.py"]);
        assert!(entries[0].executable && !entries[1].executable);
        let page = render(
            &[Section {
                mount: "/cgi-bin".into(),
                dir: dir.to_path_buf(),
                fastcgi: true,
                entries,
            }],
            &Context {
                version: "cgi-testbed/0",
                static_root: None,
                handlers: &Handlers::default(),
                index: &["index.html".into()],
                status_page: true,
                show_paths: true,
            },
        );
        assert!(page.contains("<a href=\"/cgi-bin/hello\">/cgi-bin/hello</a>"));
        assert!(page.contains("<a href=\"/fcgi-bin/hello\">"));
        assert!(page.contains("<code>sub/&lt;b&gt;&amp;.py</code>"));
        assert!(!page.contains("<b>&"));
        assert!(page.contains("chmod +x"));
        assert!(page.contains("python3 (via /usr/bin/env)"));
        assert!(!page.contains("<script"));
    }

    #[test]
    fn paths_on_disk_only_when_asked() {
        let dir = Path::new("/srv/secret/cgi-bin");
        let root = Path::new("/srv/secret/public");
        let handlers = Handlers::new(vec![crate::handlers::Handler {
            ext: "php".into(),
            runner: crate::handlers::Runner::Pool("/srv/secret/bin/php-cgi".into()),
        }])
        .unwrap();
        let page = |show_paths| {
            render(
                &[Section {
                    mount: "/cgi-bin".into(),
                    dir: dir.to_path_buf(),
                    fastcgi: true,
                    entries: Vec::new(),
                }],
                &Context {
                    version: "cgi-testbed/0",
                    static_root: Some(root),
                    handlers: &handlers,
                    index: &["index.php".into(), "index.html".into()],
                    status_page: false,
                    show_paths,
                },
            )
        };
        let local = page(true);
        assert!(local.contains("/srv/secret/cgi-bin") && local.contains("/srv/secret/public"));
        assert!(local.contains("<code>*.php</code>"), "{local}");
        assert!(local.contains("a worker pool of /srv/secret/bin/php-cgi"));
        assert!(local.contains("<code>index.php</code> or <code>index.html</code>"));
        let remote = page(false);
        assert!(!remote.contains("/srv/secret"), "{remote}");
        assert!(remote.contains("<code>/cgi-bin/</code>"));
        assert!(remote.contains("<code>*.php</code></td><td>FastCGI: a worker pool<"));
    }
}
