//! Which script a URL names, and path safety: decoding, dot-segment removal and the rule
//! that only executable regular files inside the canonical script directory run.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Decoded URL path that names the script, e.g. `/cgi-bin/sub/env`.
    pub script_name: String,
    /// Decoded rest of the path after the script, `""` or starting with `/`.
    pub path_info: String,
    /// The file, under the canonical script directory.
    pub file: PathBuf,
    /// `nph-` scripts write the whole HTTP response themselves.
    pub nph: bool,
    /// A program to run the file with (`--interpreter EXT=PROGRAM`), when it has one.
    pub interpreter: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    BadPath(&'static str),
    NotFound,
    Forbidden(&'static str),
    /// A path segment starts with `.` and `--dotfiles allow` was not given.
    Hidden,
}

/// `--dotfiles`: are paths with a segment starting with `.` served and run?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Dotfiles {
    /// Refused with 404 (`/.well-known/` excepted).
    #[default]
    Deny,
    /// Served and run like any other path.
    Allow,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::BadPath(why) => write!(f, "bad path: {why}"),
            RouteError::NotFound => f.write_str("no such script"),
            RouteError::Forbidden(why) => write!(f, "forbidden: {why}"),
            RouteError::Hidden => {
                f.write_str("not found: a path segment starts with '.' (see --dotfiles)")
            }
        }
    }
}

impl std::error::Error for RouteError {}

/// Percent-decodes a URL path. `%2F` and `%00` are refused: a decoded slash would change
/// which file a path names, and a NUL cannot be part of one.
pub fn decode_path(raw: &str) -> Result<String, RouteError> {
    let lower = raw.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%00") || raw.contains('\0') {
        return Err(RouteError::NotFound);
    }
    let bytes =
        percent_decode(raw.as_bytes()).ok_or(RouteError::BadPath("invalid percent-encoding"))?;
    String::from_utf8(bytes).map_err(|_| RouteError::BadPath("path is not UTF-8"))
}

/// Decodes `%XX` escapes; `None` when one is not `%` and two hex digits.
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hi = hex_value(*s.get(i + 1)?)?;
            let lo = hex_value(*s.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Strictly one hex digit (`u8::from_str_radix` would also take a sign).
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Removes `.` and `..` segments and repeated slashes (RFC 3986 §5.2.4); a path that
/// climbs above the root is refused. Keeps a trailing slash.
pub fn normalize(decoded: &str) -> Result<String, RouteError> {
    if !decoded.starts_with('/') {
        return Err(RouteError::BadPath("path does not start with /"));
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments
                    .pop()
                    .ok_or(RouteError::BadPath("path climbs above the root"))?;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    let ends_dir = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    if out.is_empty() || (ends_dir && !segments.is_empty()) {
        out.push('/');
    }
    Ok(out)
}

/// Decodes and normalizes a raw request path in one step.
pub fn clean_path(raw: &str) -> Result<String, RouteError> {
    normalize(&decode_path(raw)?)
}

/// Refuses a clean path with a segment starting with `.` — `.git/`, `.env`,
/// `.htpasswd`, an editor's `.swp` — unless `policy` allows them. `/.well-known/` at
/// the root is what RFC 8615 puts there for clients, so it stays served. Checked on
/// the URL before any file is looked at, so the answer (404) is the same whether such
/// a file exists or not.
pub fn check_dotfiles(path: &str, policy: Dotfiles) -> Result<(), RouteError> {
    if policy == Dotfiles::Allow {
        return Ok(());
    }
    let hidden = path
        .split('/')
        .filter(|s| !s.is_empty())
        .enumerate()
        .any(|(i, seg)| seg.starts_with('.') && !(i == 0 && seg == ".well-known"));
    if hidden {
        Err(RouteError::Hidden)
    } else {
        Ok(())
    }
}

/// The part of `path` below `mount` (`/cgi-bin`), if `path` is under it.
pub fn strip_mount<'a>(path: &'a str, mount: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(mount)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Finds the script named by `rest` (the clean path below `mount`) inside `dir`, which
/// must be canonical. The first path segment that is a file is the script; the
/// segments after it are PATH_INFO. Under `Dotfiles::Deny` no segment of the whole
/// path, PATH_INFO included, may start with `.`.
pub fn resolve(
    dir: &Path,
    mount: &str,
    rest: &str,
    interpreters: &[(String, PathBuf)],
    dotfiles: Dotfiles,
) -> Result<Script, RouteError> {
    check_dotfiles(&format!("{mount}{rest}"), dotfiles)?;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let mut file = dir.to_path_buf();
    // Walked with lstat: as long as no component is a symlink the path cannot leave
    // `dir` (it is canonical and `..` is gone), so the costly canonicalize is needed
    // only once a symlink is met.
    let mut via_symlink = false;
    for (i, seg) in segments.iter().enumerate() {
        file.push(seg);
        let not_there = |e: io::Error| match e.kind() {
            io::ErrorKind::PermissionDenied => RouteError::Forbidden("permission denied"),
            _ => RouteError::NotFound,
        };
        let mut meta = fs::symlink_metadata(&file).map_err(not_there)?;
        if meta.file_type().is_symlink() {
            via_symlink = true;
            meta = fs::metadata(&file).map_err(not_there)?;
        }
        if meta.is_dir() {
            continue;
        }
        if !meta.is_file() {
            return Err(RouteError::Forbidden("not a regular file"));
        }
        // Symlinks may point anywhere: only where they end up counts.
        if via_symlink {
            let real = fs::canonicalize(&file).map_err(|_| RouteError::NotFound)?;
            if !real.starts_with(dir) {
                return Err(RouteError::Forbidden(
                    "resolves outside the script directory",
                ));
            }
        }
        let interpreter = interpreter_for(seg, interpreters);
        if interpreter.is_none() && meta.permissions().mode() & 0o111 == 0 {
            return Err(RouteError::Forbidden("script is not executable"));
        }
        let script_name = format!("{mount}/{}", segments[..=i].join("/"));
        let path_info = path_info_after(rest, i + 1);
        return Ok(Script {
            script_name,
            path_info,
            file,
            nph: seg.starts_with("nph-"),
            interpreter,
        });
    }
    Err(RouteError::Forbidden("a directory is not a script"))
}

/// The script an external FastCGI server answers for: `NAME` is the first segment of
/// `rest`, its file is `dir/NAME` (which that server opens; it need not exist here).
pub fn named(dir: &Path, mount: &str, rest: &str) -> Script {
    let name = rest.split('/').find(|s| !s.is_empty()).unwrap_or("");
    Script {
        script_name: format!("{mount}/{name}"),
        path_info: path_info_after(rest, 1),
        file: dir.join(name),
        nph: false,
        interpreter: None,
    }
}

/// `rest` minus its first `n` segments, keeping the leading and any trailing slash.
fn path_info_after(rest: &str, n: usize) -> String {
    let mut seen = 0;
    for (i, c) in rest.char_indices() {
        if c == '/' {
            if seen == n {
                return rest[i..].to_owned();
            }
            seen += 1;
        }
    }
    String::new()
}

fn interpreter_for(name: &str, interpreters: &[(String, PathBuf)]) -> Option<PathBuf> {
    let ext = name.rsplit_once('.')?.1;
    interpreters
        .iter()
        .find(|(e, _)| e == ext)
        .map(|(_, p)| p.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn decoding() {
        assert_eq!(decode_path("/a%20b/%7e").unwrap(), "/a b/~");
        assert_eq!(decode_path("/a%2fb"), Err(RouteError::NotFound));
        assert_eq!(decode_path("/a%00b"), Err(RouteError::NotFound));
        assert!(matches!(decode_path("/a%zz"), Err(RouteError::BadPath(_))));
        assert!(matches!(decode_path("/a%4"), Err(RouteError::BadPath(_))));
        assert!(matches!(decode_path("/%ff"), Err(RouteError::BadPath(_))));
        // Found by fuzzing: from_str_radix accepts a sign, so "%+f" was byte 0x0f.
        assert!(matches!(
            decode_path("/cgi-bin/%+f"),
            Err(RouteError::BadPath(_))
        ));
        assert!(matches!(decode_path("/%-1"), Err(RouteError::BadPath(_))));
    }

    #[test]
    fn normalizing() {
        assert_eq!(normalize("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(normalize("//a///b/").unwrap(), "/a/b/");
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/a/..").unwrap(), "/");
        assert!(normalize("/../etc/passwd").is_err());
        assert_eq!(clean_path("/cgi-bin/%2e%2e/secret").unwrap(), "/secret");
    }

    #[test]
    fn mounts() {
        assert_eq!(strip_mount("/cgi-bin/env", "/cgi-bin"), Some("/env"));
        assert_eq!(strip_mount("/cgi-bin", "/cgi-bin"), Some(""));
        assert_eq!(strip_mount("/cgi-binx", "/cgi-bin"), None);
    }

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cgi-bin");
        fs::create_dir_all(dir.join("sub")).unwrap();
        for (name, mode) in [
            ("env", 0o755),
            ("sub/x", 0o755),
            ("plain", 0o644),
            ("nph-a", 0o755),
        ] {
            fs::write(dir.join(name), "#!/bin/sh\n").unwrap();
            fs::set_permissions(dir.join(name), fs::Permissions::from_mode(mode)).unwrap();
        }
        fs::write(tmp.path().join("outside"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(
            tmp.path().join("outside"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        symlink(tmp.path().join("outside"), dir.join("link-out")).unwrap();
        symlink(dir.join("env"), dir.join("link-in")).unwrap();
        let dir = fs::canonicalize(dir).unwrap();
        (tmp, dir)
    }

    #[test]
    fn resolving() {
        let (_tmp, dir) = tree();
        let s = resolve(&dir, "/cgi-bin", "/env/a/b/", &[], Dotfiles::Deny).unwrap();
        assert_eq!(s.script_name, "/cgi-bin/env");
        assert_eq!(s.path_info, "/a/b/");
        assert_eq!(s.file, dir.join("env"));
        let s = resolve(&dir, "/cgi-bin", "/sub/x", &[], Dotfiles::Deny).unwrap();
        assert_eq!(
            (s.script_name.as_str(), s.path_info.as_str()),
            ("/cgi-bin/sub/x", "")
        );
        assert!(
            resolve(&dir, "/cgi-bin", "/nph-a", &[], Dotfiles::Deny)
                .unwrap()
                .nph
        );
        assert!(resolve(&dir, "/cgi-bin", "/link-in/p", &[], Dotfiles::Deny).is_ok());
    }

    #[test]
    fn refusing() {
        let (_tmp, dir) = tree();
        let r = |p: &str| resolve(&dir, "/cgi-bin", p, &[], Dotfiles::Deny);
        assert_eq!(r("/missing"), Err(RouteError::NotFound));
        assert!(matches!(r("/plain"), Err(RouteError::Forbidden(_))));
        assert!(matches!(r("/link-out"), Err(RouteError::Forbidden(_))));
        assert!(matches!(r("/sub"), Err(RouteError::Forbidden(_))));
        assert!(matches!(r(""), Err(RouteError::Forbidden(_))));
        let py = [("sh".to_owned(), PathBuf::from("/bin/sh"))];
        fs::write(dir.join("t.sh"), "echo").unwrap();
        let s = resolve(&dir, "/cgi-bin", "/t.sh", &py, Dotfiles::Deny).unwrap();
        assert_eq!(s.interpreter, Some(PathBuf::from("/bin/sh")));
    }

    #[test]
    fn dot_segments() {
        let deny = |p: &str| check_dotfiles(p, Dotfiles::Deny);
        for hidden in [
            "/.env",
            "/.git/config",
            "/a/.ht",
            "/a/b/.x/c",
            "/cgi-bin/.well-known",
        ] {
            assert_eq!(deny(hidden), Err(RouteError::Hidden), "{hidden}");
            assert_eq!(check_dotfiles(hidden, Dotfiles::Allow), Ok(()), "{hidden}");
        }
        for shown in [
            "/",
            "/a.b/c",
            "/x/y.txt",
            "/.well-known/acme",
            "/.well-known/",
        ] {
            assert_eq!(deny(shown), Ok(()), "{shown}");
        }
        assert_eq!(deny("/.well-known/.x"), Err(RouteError::Hidden));

        let (_tmp, dir) = tree();
        fs::write(dir.join(".hidden"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.join(".hidden"), fs::Permissions::from_mode(0o755)).unwrap();
        let r = |p: &str, d| resolve(&dir, "/cgi-bin", p, &[], d);
        assert_eq!(r("/.hidden", Dotfiles::Deny), Err(RouteError::Hidden));
        assert_eq!(r("/.missing", Dotfiles::Deny), Err(RouteError::Hidden));
        assert_eq!(r("/env/.x", Dotfiles::Deny), Err(RouteError::Hidden));
        assert!(r("/.hidden", Dotfiles::Allow).is_ok());
        assert_eq!(r("/env/.x", Dotfiles::Allow).unwrap().path_info, "/.x");
    }
}
