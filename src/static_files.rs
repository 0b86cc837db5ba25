//! Static files under the document root: the safe lookup (no path outside the root,
//! nothing from inside a script directory), Content-Type by extension, validators
//! (Last-Modified, a weak ETag) and conditional requests, single byte ranges: what to
//! send, decided without I/O on the client (the sending is `site`'s).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::handlers::Handlers;
use crate::http::head::Request;
use crate::paths::{self, Dotfiles, PathError};

/// Why a static request is refused, beyond not-found and forbidden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticError {
    /// Only GET and HEAD read files (and the server's own pages).
    MethodNotAllowed(String),
    /// A byte range that starts past the end; carries the file's length.
    RangeNotSatisfiable(u64),
    /// `If-Match` or `If-Unmodified-Since` said the client's copy is not current.
    PreconditionFailed,
}

impl fmt::Display for StaticError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaticError::MethodNotAllowed(m) => write!(f, "method {m} not allowed for a file"),
            StaticError::RangeNotSatisfiable(len) => {
                write!(f, "range not satisfiable (length {len})")
            }
            StaticError::PreconditionFailed => {
                f.write_str("precondition failed: the file changed since the client's copy")
            }
        }
    }
}

impl std::error::Error for StaticError {}

/// What a clean URL path names under the root.
#[derive(Debug)]
pub enum Found {
    File(PathBuf),
    Dir(PathBuf),
}

/// What is never sent as a file, whatever path reaches it.
#[derive(Debug, Clone, Copy)]
pub struct Private<'a> {
    /// The canonical script directories: nothing inside one is a static file, so a
    /// script's source cannot be read by a path that avoids its mount.
    pub dirs: &'a [&'a Path],
    /// Scripts that run in place: a file whose name, or whose link target's name,
    /// has one of their extensions in any case is a script's source.
    pub scripts: &'a Handlers,
}

/// How far a walk down a clean path got.
#[derive(Debug)]
pub struct Reached {
    /// Where it stopped on disk: the root joined with the segments, or the canonical
    /// path (inside the root) when a symlink was on the way.
    pub path: PathBuf,
    /// `None` for the root itself.
    pub meta: Option<fs::Metadata>,
    /// Where the rest of the path starts: the byte after `/a/b.php` in `/a/b.php/c`.
    pub end: usize,
}

/// Walks `clean` (decoded, normalized: no `..` left) down from `root`, which must be
/// canonical, to the first segment that is not a directory, or to its end. Symlinks
/// may be used as long as they end inside the root.
pub fn walk(root: &Path, clean: &str) -> Result<Reached, PathError> {
    let mut path = root.to_path_buf();
    let mut via_symlink = false;
    let mut meta: Option<fs::Metadata> = None;
    let mut end = clean.len();
    let mut at = 0;
    for seg in clean.split('/') {
        let seg_end = at + seg.len();
        at = seg_end + 1;
        if seg.is_empty() {
            continue;
        }
        path.push(seg);
        let mut m = fs::symlink_metadata(&path).map_err(not_there)?;
        if m.file_type().is_symlink() {
            via_symlink = true;
            m = fs::metadata(&path).map_err(not_there)?;
        }
        let dir = m.is_dir();
        meta = Some(m);
        if !dir {
            end = seg_end;
            break;
        }
    }
    // As in route::resolve: without a symlink on the way, `root` + clean segments is
    // already canonical; after one, only where the path really ends counts.
    if via_symlink {
        path = fs::canonicalize(&path).map_err(not_there)?;
        if !path.starts_with(root) {
            return Err(PathError::Forbidden("resolves outside the document root"));
        }
    }
    Ok(Reached { path, meta, end })
}

/// Finds `clean` under `root` (see [`walk`]) as a static file or directory: nothing
/// [`Private`] is one, nor any path with a segment starting with `.` unless
/// `dotfiles` allows it.
pub fn lookup(
    root: &Path,
    clean: &str,
    private: Private<'_>,
    dotfiles: Dotfiles,
) -> Result<Found, PathError> {
    paths::check_dotfiles(clean, dotfiles)?;
    judge(clean, walk(root, clean)?, private)
}

/// What a walk down `clean` that got to `reached` finds, as a static file.
pub fn judge(clean: &str, reached: Reached, private: Private<'_>) -> Result<Found, PathError> {
    let Reached { path, meta, end } = reached;
    if end < clean.len() {
        // `/file.txt/more`, `/file.txt/`: a file is not a directory (ENOTDIR, as
        // open(2) says), so not found.
        return Err(PathError::NotFound);
    }
    if private.dirs.iter().any(|dir| path.starts_with(dir)) {
        return Err(PathError::Forbidden("inside a script directory"));
    }
    let name = clean.rsplit('/').next().unwrap_or("");
    let target = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match meta {
        None => Ok(Found::Dir(path)),
        Some(m) if m.is_dir() => Ok(Found::Dir(path)),
        Some(_)
            if private.scripts.source_of(name).is_some()
                || private.scripts.source_of(target).is_some() =>
        {
            Err(PathError::Forbidden("a script's source is never sent"))
        }
        // A FIFO or device would block or never end; only regular files are served.
        Some(m) if m.is_file() => Ok(Found::File(path)),
        Some(_) => Err(PathError::Forbidden("not a regular file")),
    }
}

/// A failed lookup, as a path error.
pub fn not_there(e: io::Error) -> PathError {
    match e.kind() {
        io::ErrorKind::PermissionDenied => PathError::Forbidden("permission denied"),
        _ => PathError::NotFound,
    }
}

/// The Content-Type for a file name; text gets UTF-8 since that is what files are now.
pub fn content_type(path: &Path) -> String {
    let mime = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    if mime.starts_with("text/") || mime == "application/javascript" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

/// What conditional requests compare against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    pub len: u64,
    /// Modification time cut to whole seconds, as HTTP dates carry it.
    pub modified: SystemTime,
    pub etag: String,
}

impl Validators {
    pub fn new(len: u64, mtime: SystemTime) -> Validators {
        let since = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
        Validators {
            len,
            modified: UNIX_EPOCH + Duration::from_secs(since.as_secs()),
            etag: etag(len, since),
        }
    }

    pub fn last_modified(&self) -> String {
        httpdate::fmt_http_date(self.modified)
    }
}

/// A weak tag from size and modification time: it changes whenever either does, and
/// is weak because a same-size rewrite within one timestamp tick would keep it.
pub fn etag(len: u64, mtime: Duration) -> String {
    format!("W/\"{len:x}-{:x}\"", mtime.as_nanos())
}

/// Does `If-None-Match` (or, without it, `If-Modified-Since`) say the client's copy is
/// current (RFC 9110 §13.2.2 order)?
pub fn not_modified(
    if_none_match: Option<&[u8]>,
    if_modified_since: Option<&[u8]>,
    v: &Validators,
) -> bool {
    if let Some(list) = if_none_match {
        return etag_matches(list, &v.etag);
    }
    let since = if_modified_since
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| httpdate::parse_http_date(d.trim()).ok());
    since.is_some_and(|since| v.modified <= since)
}

/// Do `If-Match` (or, without it, `If-Unmodified-Since`) fail for this file
/// (RFC 9110 §13.2.2, steps 1 and 2)? If-Match needs the strong comparison, which our
/// weak tag never passes, so only `*` holds; a date the file changed after fails; a
/// date that does not parse is ignored (§13.1.4).
pub fn precondition_failed(
    if_match: Option<&[u8]>,
    if_unmodified_since: Option<&[u8]>,
    v: &Validators,
) -> bool {
    if let Some(list) = if_match {
        return !list.split(|&b| b == b',').any(|t| t.trim_ascii() == b"*");
    }
    let since = if_unmodified_since
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| httpdate::parse_http_date(d.trim()).ok());
    since.is_some_and(|since| v.modified > since)
}

/// Weak comparison of `etag` against an `If-None-Match` list (or `*`).
fn etag_matches(list: &[u8], etag: &str) -> bool {
    let Ok(list) = std::str::from_utf8(list) else {
        return false;
    };
    let ours = opaque(etag);
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || opaque(t) == ours)
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Which part of the file to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Full,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// The span a GET asks for with `Range` (and `If-Range`). Anything we do not handle —
/// several ranges, other units, bad syntax, a failed `If-Range` — means the whole file,
/// which RFC 9110 §14.2 allows.
pub fn span(range: Option<&[u8]>, if_range: Option<&[u8]>, v: &Validators) -> Span {
    let Some(range) = range.and_then(|r| std::str::from_utf8(r).ok()) else {
        return Span::Full;
    };
    if let Some(cond) = if_range.and_then(|c| std::str::from_utf8(c).ok()) {
        let cond = cond.trim();
        // Entity tags need the strong comparison here, which our weak tag never passes.
        let fresh = !cond.starts_with('"')
            && !cond.starts_with("W/")
            && httpdate::parse_http_date(cond).is_ok_and(|d| d == v.modified);
        if !fresh {
            return Span::Full;
        }
    }
    parse_range(range, v.len)
}

/// One `bytes=` range against a file of `len` bytes.
pub fn parse_range(value: &str, len: u64) -> Span {
    let Some((unit, set)) = value.trim().split_once('=') else {
        return Span::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return Span::Full;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return Span::Full;
    };
    // Digits beyond u64 saturate: `bytes=0-99999999999999999999` is a range that
    // ends past the file (RFC 9110 §14.1.2: clamped to its end), not bad syntax.
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().unwrap_or(u64::MAX))
    };
    match (first.trim().is_empty(), num(first), num(last)) {
        // `-N`: the last N bytes.
        (true, _, Some(n)) => match (n, len) {
            (0, _) => Span::Unsatisfiable,
            (_, 0) => Span::Full,
            (n, len) => Span::Part(len.saturating_sub(n), len - 1),
        },
        (false, Some(a), None) if last.trim().is_empty() => {
            if a >= len {
                Span::Unsatisfiable
            } else {
                Span::Part(a, len - 1)
            }
        }
        (false, Some(a), Some(b)) if a <= b => {
            if a >= len {
                Span::Unsatisfiable
            } else {
                Span::Part(a, b.min(len - 1))
            }
        }
        _ => Span::Full,
    }
}

/// How to answer a GET or HEAD for a file, decided from the request and the open
/// file's validators alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// 200, 206 or 304.
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The bytes of the file to send (none for 304 and HEAD).
    pub start: u64,
    pub count: u64,
}

/// Validators, conditional requests and ranges (RFC 9110 §13, §14) for one file.
pub fn plan(req: &Request, content_type: &str, v: &Validators) -> Result<Plan, StaticError> {
    if precondition_failed(req.header("if-match"), req.header("if-unmodified-since"), v) {
        return Err(StaticError::PreconditionFailed);
    }
    let mut headers = vec![
        ("Last-Modified".to_owned(), v.last_modified().into_bytes()),
        ("ETag".to_owned(), v.etag.clone().into_bytes()),
    ];
    if not_modified(
        req.header("if-none-match"),
        req.header("if-modified-since"),
        v,
    ) {
        return Ok(Plan {
            status: 304,
            headers,
            start: 0,
            count: 0,
        });
    }
    headers.push(("Content-Type".to_owned(), content_type.as_bytes().to_vec()));
    headers.push(("Accept-Ranges".to_owned(), b"bytes".to_vec()));
    // RFC 9110 §14.2: Range is defined for GET only.
    let wanted = if req.method == "GET" {
        span(req.header("range"), req.header("if-range"), v)
    } else {
        Span::Full
    };
    let (status, start, count) = match wanted {
        Span::Full => (200, 0, v.len),
        Span::Part(a, b) => {
            let range = format!("bytes {a}-{b}/{}", v.len);
            headers.push(("Content-Range".to_owned(), range.into_bytes()));
            (206, a, b - a + 1)
        }
        Span::Unsatisfiable => return Err(StaticError::RangeNotSatisfiable(v.len)),
    };
    Ok(Plan {
        status,
        headers,
        start,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn v(len: u64) -> Validators {
        Validators::new(len, UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789))
    }

    #[test]
    fn types() {
        assert_eq!(
            content_type(Path::new("a.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.css")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("a.png")), "image/png");
        assert_eq!(content_type(Path::new("a.json")), "application/json");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }

    #[test]
    fn validators() {
        let a = v(10);
        assert_eq!(
            a.etag,
            format!("W/\"a-{:x}\"", 1_700_000_000_123_456_789u128)
        );
        assert_eq!(a.last_modified(), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_ne!(a.etag, v(11).etag);
        let lm = a.last_modified();
        assert!(not_modified(None, Some(lm.as_bytes()), &a));
        assert!(!not_modified(
            None,
            Some(b"Tue, 14 Nov 2023 22:13:19 GMT"),
            &a
        ));
        assert!(not_modified(
            None,
            Some(b"Wed, 15 Nov 2023 00:00:00 GMT"),
            &a
        ));
        assert!(!not_modified(None, Some(b"garbage"), &a));
        let tag = a.etag.clone();
        assert!(not_modified(Some(tag.as_bytes()), None, &a));
        assert!(not_modified(
            Some(tag.trim_start_matches("W/").as_bytes()),
            None,
            &a
        ));
        assert!(not_modified(
            Some(format!("\"x\", {tag}").as_bytes()),
            None,
            &a
        ));
        assert!(not_modified(Some(b"*"), None, &a));
        // If-None-Match wins over a matching date.
        assert!(!not_modified(Some(b"\"other\""), Some(lm.as_bytes()), &a));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-4", 10), Span::Part(0, 4));
        assert_eq!(parse_range("bytes=5-", 10), Span::Part(5, 9));
        assert_eq!(parse_range("bytes=-3", 10), Span::Part(7, 9));
        assert_eq!(parse_range("bytes=-30", 10), Span::Part(0, 9));
        assert_eq!(parse_range("bytes=2-100", 10), Span::Part(2, 9));
        assert_eq!(parse_range("bytes=10-", 10), Span::Unsatisfiable);
        assert_eq!(parse_range("bytes=10-20", 10), Span::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 10), Span::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Span::Full);
        assert_eq!(parse_range("bytes=4-2", 10), Span::Full);
        assert_eq!(parse_range("items=0-1", 10), Span::Full);
        assert_eq!(parse_range("bytes=a-b", 10), Span::Full);
        assert_eq!(parse_range("bytes=-5", 0), Span::Full);
        assert_eq!(parse_range("bytes=0-", 0), Span::Unsatisfiable);
        // Past u64: still a range, clamped (or past the end when it starts there).
        assert_eq!(
            parse_range("bytes=0-99999999999999999999", 10),
            Span::Part(0, 9)
        );
        assert_eq!(
            parse_range("bytes=-99999999999999999999", 10),
            Span::Part(0, 9)
        );
        assert_eq!(
            parse_range("bytes=99999999999999999999-", 10),
            Span::Unsatisfiable
        );
    }

    #[test]
    fn preconditions() {
        let a = v(10);
        let lm = a.last_modified();
        assert!(!precondition_failed(None, None, &a));
        assert!(!precondition_failed(None, Some(lm.as_bytes()), &a));
        assert!(!precondition_failed(
            None,
            Some(b"Wed, 15 Nov 2023 00:00:00 GMT"),
            &a
        ));
        assert!(precondition_failed(
            None,
            Some(b"Tue, 14 Nov 2023 22:13:19 GMT"),
            &a
        ));
        assert!(!precondition_failed(None, Some(b"yesterday"), &a));
        assert!(!precondition_failed(Some(b"*"), None, &a));
        // Our tag is weak: If-Match's strong comparison never matches it.
        assert!(precondition_failed(Some(a.etag.as_bytes()), None, &a));
        // If-Match wins over a date that would pass.
        assert!(precondition_failed(Some(b"\"x\""), Some(lm.as_bytes()), &a));
    }

    #[test]
    fn if_range() {
        let a = v(10);
        let lm = a.last_modified();
        assert_eq!(
            span(Some(b"bytes=0-1"), Some(lm.as_bytes()), &a),
            Span::Part(0, 1)
        );
        assert_eq!(
            span(
                Some(b"bytes=0-1"),
                Some(b"Mon, 13 Nov 2023 00:00:00 GMT"),
                &a
            ),
            Span::Full
        );
        assert_eq!(
            span(Some(b"bytes=0-1"), Some(a.etag.as_bytes()), &a),
            Span::Full
        );
        assert_eq!(span(None, None, &a), Span::Full);
    }

    #[test]
    fn lookups() {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        let root = base.join("site");
        fs::create_dir_all(root.join("docs")).unwrap();
        fs::create_dir_all(root.join("cgi-bin")).unwrap();
        fs::write(root.join("docs/a.txt"), "a").unwrap();
        fs::write(root.join("cgi-bin/app"), "secret").unwrap();
        fs::write(base.join("outside.txt"), "no").unwrap();
        symlink(base.join("outside.txt"), root.join("out")).unwrap();
        symlink(&base, root.join("updir")).unwrap();
        symlink(root.join("docs/a.txt"), root.join("in")).unwrap();
        symlink(root.join("cgi-bin/app"), root.join("app-src")).unwrap();
        let scripts = [root.join("cgi-bin")];
        let scripts: Vec<&Path> = scripts.iter().map(PathBuf::as_path).collect();
        let none = Handlers::default();
        let private = Private {
            dirs: &scripts,
            scripts: &none,
        };
        let l = |p: &str| lookup(&root, p, private, Dotfiles::Deny);
        assert!(matches!(l("/docs/a.txt"), Ok(Found::File(p)) if p == root.join("docs/a.txt")));
        assert!(matches!(l("/docs/"), Ok(Found::Dir(_))));
        assert!(matches!(l("/"), Ok(Found::Dir(p)) if p == root));
        assert!(matches!(l("/in"), Ok(Found::File(p)) if p == root.join("docs/a.txt")));
        assert_eq!(l("/missing").unwrap_err(), PathError::NotFound);
        assert_eq!(l("/docs/a.txt/x").unwrap_err(), PathError::NotFound);
        assert_eq!(l("/docs/a.txt/").unwrap_err(), PathError::NotFound);
        assert!(matches!(l("/docs"), Ok(Found::Dir(_))));
        assert!(matches!(l("/out"), Err(PathError::Forbidden(_))));
        assert!(matches!(
            l("/updir/outside.txt"),
            Err(PathError::Forbidden(_))
        ));
        assert!(matches!(l("/cgi-bin/app"), Err(PathError::Forbidden(_))));
        assert!(matches!(l("/app-src"), Err(PathError::Forbidden(_))));
        fs::write(root.join(".env"), "KEY=1").unwrap();
        assert_eq!(l("/.env").unwrap_err(), PathError::Hidden);
        assert_eq!(l("/.nothing").unwrap_err(), PathError::Hidden);
        assert!(matches!(
            lookup(&root, "/.env", private, Dotfiles::Allow),
            Ok(Found::File(_))
        ));
    }

    #[test]
    fn script_sources_are_never_files() {
        use crate::handlers::{Handler, Runner};
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        fs::create_dir_all(root.join("uploads")).unwrap();
        for name in ["index.php", "X.PHP", "style.css", "uploads/avatar.png"] {
            fs::write(root.join(name), "<?php echo 1;").unwrap();
        }
        symlink(root.join("index.php"), root.join("source.txt")).unwrap();
        let scripts = Handlers::new(vec![Handler {
            ext: "php".into(),
            runner: Runner::Cgi(None),
        }])
        .unwrap();
        let private = Private {
            dirs: &[],
            scripts: &scripts,
        };
        let l = |p: &str| lookup(&root, p, private, Dotfiles::Deny);
        assert!(matches!(l("/style.css"), Ok(Found::File(_))));
        for never in ["/index.php", "/X.PHP", "/source.txt"] {
            assert_eq!(
                l(never).unwrap_err(),
                PathError::Forbidden("a script's source is never sent"),
                "{never}"
            );
        }
        assert_eq!(l("/index.php/").unwrap_err(), PathError::NotFound);
        assert_eq!(l("/index.php./").unwrap_err(), PathError::NotFound);
        assert_eq!(
            l("/uploads/avatar.png/x.php").unwrap_err(),
            PathError::NotFound
        );

        let w = walk(&root, "/uploads/avatar.png/x.php").unwrap();
        assert_eq!(w.path, root.join("uploads/avatar.png"));
        assert_eq!(&"/uploads/avatar.png/x.php"[w.end..], "/x.php");
        let w = walk(&root, "/uploads/").unwrap();
        assert!(w.meta.unwrap().is_dir());
        assert_eq!(w.end, "/uploads/".len());
        let w = walk(&root, "/source.txt/a").unwrap();
        assert_eq!(
            w.path,
            root.join("index.php"),
            "a link is judged where it ends"
        );
        assert_eq!(walk(&root, "/nothing/x").unwrap_err(), PathError::NotFound);
    }
}
