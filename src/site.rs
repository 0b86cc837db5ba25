//! What the server answers itself: static files (sent with sendfile(2), so a large
//! file never sits in memory), the trailing-slash redirect, the landing page at `/`
//! and `/server-status`. Pages that read the filesystem or /proc are built in the
//! loop's small blocking pool, not in the loop.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::error::Error;
use crate::fastcgi::pool::Pools;
use crate::file_cache::{self, Snapshot};
use crate::handlers::Handlers;
use crate::html::encode_path;
use crate::http::conn::SendError;
use crate::http::exchange::Exchange;
use crate::http::head::Request;
use crate::landing;
use crate::net::{self, IpNet};
use crate::paths::PathError;
use crate::process::Registry;
use crate::route::Layout;
use crate::static_files::{self, StaticError, Validators};
use crate::stats::Stats;
use crate::status;
use crate::sys;

/// What went out for one answer of ours.
#[derive(Debug)]
pub struct Sent {
    pub status: u16,
    pub bytes: u64,
    /// The body was cut short after the head went out (logged by the caller).
    pub error: Option<SendError>,
}

/// Files and the server's pages answer GET and HEAD only.
pub fn check_method(req: &Request) -> Result<(), Error> {
    match req.method.as_str() {
        "GET" | "HEAD" => Ok(()),
        m => Err(StaticError::MethodNotAllowed(m.to_owned()).into()),
    }
}

/// Answers a GET or HEAD for the regular file at `path`: a small one from this loop's
/// copy of it (`file_cache`), a larger one with sendfile(2).
pub async fn file(
    ex: &mut Exchange<'_>,
    req: &Request,
    path: &Path,
    cache: &file_cache::Budget<'_>,
) -> Result<Sent, Error> {
    check_method(req)?;
    if let Some(copy) = file_cache::get(path) {
        return send_copy(ex, req, &copy).await;
    }
    // The path was made canonical when it was resolved, maybe a second ago (the
    // route cache): a symlink met now was put there since, and could lead out of the
    // root, so it is refused rather than followed.
    let file = sys::open_no_symlinks(path).map_err(|e| {
        Error::Path(if sys::errno_is(&e, libc::ELOOP) {
            PathError::Forbidden("a symlink appeared on the path since it was resolved")
        } else {
            static_files::not_there(e)
        })
    })?;
    // Validators from the open file, so they describe exactly what we send.
    let meta = file.metadata().map_err(Error::Internal)?;
    let v = Validators::new(meta.len(), meta.modified().unwrap_or(UNIX_EPOCH));
    let content_type = static_files::content_type(path);
    if v.len <= file_cache::MAX_FILE {
        let mut body = vec![0; v.len as usize];
        file.read_exact_at(&mut body, 0).map_err(Error::Internal)?;
        let copy = Snapshot {
            validators: v,
            content_type,
            body,
        };
        return send_copy(ex, req, &file_cache::put(path, copy, cache)).await;
    }
    let plan = static_files::plan(req, &content_type, &v)?;
    let out = head(ex, &plan);
    if ex.bodyless() || plan.count == 0 {
        return send_whole(ex, plan.status, &out, 0).await;
    }
    if let Err(e) = ex.send(&out).await {
        return Err(client_error(e));
    }
    let error = match ex.send_file(&file, plan.start, plan.count).await {
        Ok(()) => None,
        Err((_, e)) => {
            // The length is announced, so the client can tell the body is short.
            ex.broken();
            Some(e)
        }
    };
    Ok(Sent {
        status: plan.status,
        bytes: ex.body_counts().0,
        error,
    })
}

/// Answers from a copy of a small file held in memory: head and body in one write.
async fn send_copy(ex: &mut Exchange<'_>, req: &Request, copy: &Snapshot) -> Result<Sent, Error> {
    let plan = static_files::plan(req, &copy.content_type, &copy.validators)?;
    let mut out = head(ex, &plan);
    if ex.bodyless() || plan.count == 0 {
        return send_whole(ex, plan.status, &out, 0).await;
    }
    // Within the copy: the plan's span never passes the length it was made from.
    let start = plan.start as usize;
    let part = copy.body.get(start..start + plan.count as usize);
    out.extend_from_slice(part.unwrap_or_default());
    send_whole(ex, plan.status, &out, plan.count).await
}

fn head(ex: &mut Exchange<'_>, plan: &static_files::Plan) -> Vec<u8> {
    let length = (plan.status != 304).then_some(plan.count);
    let reason = crate::http::response::reason(plan.status);
    ex.head(plan.status, reason, &plan.headers, length)
}

/// A head and body already in one buffer.
async fn send_whole(
    ex: &mut Exchange<'_>,
    status: u16,
    out: &[u8],
    body: u64,
) -> Result<Sent, Error> {
    ex.send(out).await.map_err(client_error)?;
    Ok(Sent {
        status,
        bytes: body,
        error: None,
    })
}

fn client_error(e: SendError) -> Error {
    match e {
        SendError::Stalled(s) => Error::SendStalled(s),
        SendError::Gone(e) => Error::ClientGone(e.to_string()),
    }
}

/// Sends an answer whose body is already in memory.
pub async fn send_memory(
    ex: &mut Exchange<'_>,
    status: u16,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<Sent, Error> {
    let reason = crate::http::response::reason(status);
    let mut out = ex.head(status, reason, headers, Some(body.len() as u64));
    let sent = if ex.bodyless() {
        0
    } else {
        out.extend_from_slice(body);
        body.len() as u64
    };
    send_whole(ex, status, &out, sent).await
}

/// A directory asked for without its slash: redirect to add it, so relative links in
/// its page work.
pub async fn add_slash(ex: &mut Exchange<'_>, req: &Request, clean: &str) -> Result<Sent, Error> {
    check_method(req)?;
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
    send_memory(ex, 301, &headers, body.as_bytes()).await
}

/// The server's own pages, and what they are made from.
pub struct Pages {
    pub layout: Layout,
    pub interpreters: Vec<(String, PathBuf)>,
    /// `--cgi-ext`, `--fcgi-ext`.
    pub handlers: Handlers,
    /// `--index`.
    pub index: Vec<String>,
    pub status_page: bool,
    pub status_allow: Vec<IpNet>,
    pub stats: Arc<Stats>,
    pub pools: Arc<Pools>,
    pub children: Arc<Registry>,
}

impl Pages {
    pub async fn landing(&self, ex: &mut Exchange<'_>, req: &Request) -> Result<Sent, Error> {
        check_method(req)?;
        let layout = self.layout.clone();
        let interpreters = self.interpreters.clone();
        let handlers = self.handlers.clone();
        let index = self.index.clone();
        let status_page = self.status_page;
        let show_paths = net::is_loopback(ex.ends().remote.ip());
        let page = off_loop(move || {
            let mut sections: Vec<landing::Section> = layout
                .mounts
                .iter()
                .map(|m| landing::Section {
                    mount: m.url.clone(),
                    dir: m.dir.clone(),
                    fastcgi: m.dir == layout.cgi_dir,
                    entries: landing::scan(&m.dir, &interpreters),
                })
                .collect();
            if !sections.iter().any(|s| s.fastcgi) {
                sections.push(landing::Section {
                    mount: crate::route::FASTCGI_MOUNT.into(),
                    dir: layout.cgi_dir.clone(),
                    fastcgi: false,
                    entries: landing::scan(&layout.cgi_dir, &interpreters),
                });
            }
            let version = crate::http::response::server_header();
            landing::render(
                &sections,
                &landing::Context {
                    version: &version,
                    static_root: layout.static_root.as_deref(),
                    handlers: &handlers,
                    index: &index,
                    status_page,
                    show_paths,
                },
            )
        })
        .await?;
        no_store_page(ex, "text/html; charset=utf-8", page.as_bytes()).await
    }

    pub async fn status(&self, ex: &mut Exchange<'_>, req: &Request) -> Result<Sent, Error> {
        check_method(req)?;
        if !net::allowed(ex.ends().remote.ip(), &self.status_allow) {
            return Err(PathError::Forbidden(
                "server status is for loopback clients (see --status-allow)",
            )
            .into());
        }
        let (_, query) = req.path_and_query();
        let json =
            query.is_some_and(|q| q.split('&').any(|p| p == "json" || p.starts_with("json=")));
        let sources = status::Sources {
            stats: self.stats.clone(),
            pools: self.pools.status(),
            workers_alive: self.pools.total(),
            script_groups: self.children.count(),
            children: self.children.totals(),
            handlers: self.handlers.clone(),
        };
        let snap = off_loop(move || status::snapshot(sources)).await?;
        if json {
            no_store_page(ex, "application/json", &status::json(&snap)).await
        } else {
            let page = status::html(&snap);
            no_store_page(ex, "text/html; charset=utf-8", page.as_bytes()).await
        }
    }
}

/// Runs `work` (file system walks, /proc reads) in the loop's small blocking pool.
async fn off_loop<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(std::io::Error::other(e.to_string())))
}

async fn no_store_page(
    ex: &mut Exchange<'_>,
    content_type: &str,
    body: &[u8],
) -> Result<Sent, Error> {
    let headers = [
        ("Content-Type".to_owned(), content_type.as_bytes().to_vec()),
        // Both pages describe the server now; a cached copy would mislead.
        ("Cache-Control".to_owned(), b"no-store".to_vec()),
    ];
    send_memory(ex, 200, &headers, body).await
}
