//! What the server answers itself once no script mount took a request —
//! `/server-status`, `--try-files`, static files from the document root with their
//! directory index and trailing-slash redirect, and the landing page at `/` — and the
//! directory layout all of it works on, resolved once at start.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::Error;
use crate::html::encode_path;
use crate::http::conn::Conn;
use crate::http::head::Request;
use crate::landing;
use crate::route::RouteError;
use crate::server::Shared;
use crate::static_files::{self, Found, Sent, StaticError};
use crate::status::{self, Model};
use crate::try_files::Tried;

/// A URL prefix whose files run as CGI scripts.
#[derive(Debug, Clone)]
pub struct Mount {
    /// `/cgi-bin`: starts with `/`, no trailing slash.
    pub url: String,
    /// Canonical.
    pub dir: PathBuf,
}

/// The directories the server works on, made canonical at start.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The main script directory (`/fcgi-bin/` and, by default, `/cgi-bin/`). Not
    /// canonical only when it is missing and was merely implied by `--root`.
    pub cgi_dir: PathBuf,
    /// DOCUMENT_ROOT for scripts.
    pub document_root: PathBuf,
    /// Where static files come from, if anywhere.
    pub static_root: Option<PathBuf>,
    /// Script mounts whose directories exist, in the order they are matched.
    pub mounts: Vec<Mount>,
}

impl Layout {
    pub fn resolve(config: &Config) -> io::Result<Layout> {
        let context = |what: &str, path: &Path| {
            let what = what.to_owned();
            let path = path.display().to_string();
            move |e: io::Error| io::Error::new(e.kind(), format!("{what} {path}: {e}"))
        };
        let cgi_dir = match fs::canonicalize(&config.cgi_dir) {
            Ok(dir) => dir,
            Err(e) if !config.require_cgi_dir && e.kind() == io::ErrorKind::NotFound => {
                std::path::absolute(&config.cgi_dir)?
            }
            Err(e) => return Err(context("script directory", &config.cgi_dir)(e)),
        };
        let static_root = match &config.document_root {
            Some(root) => Some(fs::canonicalize(root).map_err(context("document root", root))?),
            None => None,
        };
        let document_root = match &static_root {
            Some(root) => root.clone(),
            None => cgi_dir.parent().unwrap_or(&cgi_dir).to_path_buf(),
        };
        let wanted = if config.script_mounts.is_empty() {
            vec![("/cgi-bin".to_owned(), config.cgi_dir.clone())]
        } else {
            config.script_mounts.clone()
        };
        let mut mounts = Vec::new();
        for (url, dir) in wanted {
            match fs::canonicalize(&dir) {
                Ok(dir) => mounts.push(Mount {
                    url: url.trim_end_matches('/').to_owned(),
                    dir,
                }),
                // Like CGIHTTPRequestHandler: a script directory that is not there
                // simply has no scripts (most sites have no htbin/).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(context("script directory", &dir)(e)),
            }
        }
        Ok(Layout {
            cgi_dir,
            document_root,
            static_root,
            mounts,
        })
    }

    /// Every script directory: never served as static files.
    pub fn script_dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = self.mounts.iter().map(|m| m.dir.as_path()).collect();
        dirs.push(&self.cgi_dir);
        dirs
    }
}

/// How [`answer`] dealt with a request.
#[derive(Debug)]
pub enum Answer {
    Sent {
        status: u16,
        bytes: u64,
        model: Model,
    },
    /// `--try-files` fell back to this clean path: route it to a script, keeping the
    /// request (and so its REQUEST_URI) as it came.
    Script(String),
}

/// Answers `clean` (the request's decoded, normalized path) from the server itself.
/// `first` is false when this is already a `--try-files` fallback, which is served as
/// it is, without the status page or another round of the list.
pub fn answer(
    shared: &Shared,
    conn: &mut Conn,
    req: &Request,
    clean: &str,
    tag: &str,
    first: bool,
) -> Result<Answer, Error> {
    let config = &shared.config;
    if first && config.status_page && clean == "/server-status" {
        return server_status(shared, conn, req);
    }
    let layout = &shared.layout;
    let scripts = layout.script_dirs();
    let root = layout.static_root.as_deref();
    if first && let Some(list) = &config.try_files {
        return match list.choose(root, clean, &scripts, config.dotfiles) {
            Tried::File(_, path) => file(shared, conn, req, &path, tag),
            Tried::Dir(_, path) => directory(shared, conn, req, clean, &path, tag),
            Tried::Redirect(uri) => Ok(Answer::Script(uri)),
            Tried::NotFound => Err(RouteError::NotFound.into()),
        };
    }
    let Some(root) = root else {
        return match clean {
            "/" => landing(shared, conn, req),
            _ => Err(RouteError::NotFound.into()),
        };
    };
    match static_files::lookup(root, clean, &scripts, config.dotfiles)? {
        Found::File(path) => file(shared, conn, req, &path, tag),
        Found::Dir(path) => directory(shared, conn, req, clean, &path, tag),
    }
}

/// Files and the server's pages answer GET and HEAD only.
fn check_method(req: &Request) -> Result<(), Error> {
    match req.method.as_str() {
        "GET" | "HEAD" => Ok(()),
        m => Err(StaticError::MethodNotAllowed(m.to_owned()).into()),
    }
}

fn sent(s: Sent, model: Model) -> Answer {
    Answer::Sent {
        status: s.status,
        bytes: s.bytes,
        model,
    }
}

fn file(
    shared: &Shared,
    conn: &mut Conn,
    req: &Request,
    path: &Path,
    tag: &str,
) -> Result<Answer, Error> {
    check_method(req)?;
    let s = static_files::serve_file(conn, req, path)?;
    if let Some(e) = &s.error {
        shared.log.log(&format!("{tag} response cut off: {e}"));
    }
    Ok(sent(s, Model::Static))
}

/// A directory: redirect to add the slash (so relative links in its page work), then
/// its index.html, or the landing page at `/`.
fn directory(
    shared: &Shared,
    conn: &mut Conn,
    req: &Request,
    clean: &str,
    path: &Path,
    tag: &str,
) -> Result<Answer, Error> {
    check_method(req)?;
    if !clean.ends_with('/') {
        let (_, query) = req.path_and_query();
        let mut location = format!("{}/", encode_path(clean));
        if let Some(q) = query {
            location.push('?');
            location.push_str(q);
        }
        let body = format!("Moved to {location}\n");
        let headers = [
            ("Location".to_owned(), location.into_bytes()),
            (
                "Content-Type".to_owned(),
                b"text/plain; charset=utf-8".to_vec(),
            ),
        ];
        let s = static_files::send_memory(conn, req, 301, &headers, body.as_bytes())?;
        return Ok(sent(s, Model::Builtin));
    }
    let layout = &shared.layout;
    let index = match layout.static_root.as_deref() {
        // Looked up like any file, so an index.html symlinked out of the root is refused.
        Some(root) => match path.strip_prefix(root).ok().and_then(Path::to_str) {
            Some(rel) => {
                let rel = format!("/{rel}/index.html");
                static_files::lookup(root, &rel, &layout.script_dirs(), shared.config.dotfiles)
            }
            None => Err(RouteError::NotFound),
        },
        None => Err(RouteError::NotFound),
    };
    match index {
        Ok(Found::File(index)) => file(shared, conn, req, &index, tag),
        Ok(Found::Dir(_)) | Err(RouteError::NotFound) if clean == "/" => landing(shared, conn, req),
        Ok(Found::Dir(_)) | Err(RouteError::NotFound) => {
            Err(RouteError::Forbidden("directory has no index.html").into())
        }
        Err(e) => Err(e.into()),
    }
}

fn no_store_page(
    conn: &mut Conn,
    req: &Request,
    content_type: &str,
    body: &[u8],
) -> Result<Answer, Error> {
    let headers = [
        ("Content-Type".to_owned(), content_type.as_bytes().to_vec()),
        // Both pages describe the server now; a cached copy would mislead.
        ("Cache-Control".to_owned(), b"no-store".to_vec()),
    ];
    let s = static_files::send_memory(conn, req, 200, &headers, body)?;
    Ok(sent(s, Model::Builtin))
}

fn landing(shared: &Shared, conn: &mut Conn, req: &Request) -> Result<Answer, Error> {
    check_method(req)?;
    let layout = &shared.layout;
    let interpreters = &shared.config.interpreters;
    let mut sections: Vec<landing::Section> = layout
        .mounts
        .iter()
        .map(|m| landing::Section {
            mount: m.url.clone(),
            dir: m.dir.clone(),
            fastcgi: m.dir == layout.cgi_dir,
            entries: landing::scan(&m.dir, interpreters),
        })
        .collect();
    if !sections.iter().any(|s| s.fastcgi) {
        sections.push(landing::Section {
            mount: "/fcgi-bin".into(),
            dir: layout.cgi_dir.clone(),
            fastcgi: false,
            entries: landing::scan(&layout.cgi_dir, interpreters),
        });
    }
    let version = crate::http::response::server_header();
    let page = landing::render(
        &sections,
        &landing::Context {
            version: &version,
            static_root: layout.static_root.as_deref(),
            status_page: shared.config.status_page,
            show_paths: status::is_loopback(conn.ends.remote.ip()),
        },
    );
    no_store_page(conn, req, "text/html; charset=utf-8", page.as_bytes())
}

fn server_status(shared: &Shared, conn: &mut Conn, req: &Request) -> Result<Answer, Error> {
    check_method(req)?;
    if !status::allowed(conn.ends.remote.ip(), &shared.config.status_allow) {
        return Err(RouteError::Forbidden(
            "server status is for loopback clients (see --status-allow)",
        )
        .into());
    }
    let snap = status::snapshot(shared);
    let (_, query) = req.path_and_query();
    let json = query.is_some_and(|q| q.split('&').any(|p| p == "json" || p.starts_with("json=")));
    if json {
        no_store_page(conn, req, "application/json", &status::json(&snap))
    } else {
        no_store_page(
            conn,
            req,
            "text/html; charset=utf-8",
            status::html(&snap).as_bytes(),
        )
    }
}
