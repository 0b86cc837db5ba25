//! URL paths made safe to look up: percent-decoding, dot-segment removal, mount
//! prefixes, and the errors a path can earn. Pure functions at the bottom of the crate.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
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

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::BadPath(why) => write!(f, "bad path: {why}"),
            PathError::NotFound => f.write_str("no such script"),
            PathError::Forbidden(why) => write!(f, "forbidden: {why}"),
            PathError::Hidden => {
                f.write_str("not found: a path segment starts with '.' (see --dotfiles)")
            }
        }
    }
}

impl std::error::Error for PathError {}

/// Percent-decodes a URL path. `%2F` and `%00` are refused: a decoded slash would change
/// which file a path names, and a NUL cannot be part of one.
pub fn decode_path(raw: &str) -> Result<String, PathError> {
    let lower = raw.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%00") || raw.contains('\0') {
        return Err(PathError::NotFound);
    }
    let bytes =
        percent_decode(raw.as_bytes()).ok_or(PathError::BadPath("invalid percent-encoding"))?;
    String::from_utf8(bytes).map_err(|_| PathError::BadPath("path is not UTF-8"))
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
pub fn normalize(decoded: &str) -> Result<String, PathError> {
    if !decoded.starts_with('/') {
        return Err(PathError::BadPath("path does not start with /"));
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments
                    .pop()
                    .ok_or(PathError::BadPath("path climbs above the root"))?;
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
pub fn clean_path(raw: &str) -> Result<String, PathError> {
    normalize(&decode_path(raw)?)
}

/// Refuses a clean path with a segment starting with `.` — `.git/`, `.env`,
/// `.htpasswd`, an editor's `.swp` — unless `policy` allows them. `/.well-known/` at
/// the root is what RFC 8615 puts there for clients, so it stays served. Checked on
/// the URL before any file is looked at, so the answer (404) is the same whether such
/// a file exists or not.
pub fn check_dotfiles(path: &str, policy: Dotfiles) -> Result<(), PathError> {
    if policy == Dotfiles::Allow {
        return Ok(());
    }
    let hidden = path
        .split('/')
        .filter(|s| !s.is_empty())
        .enumerate()
        .any(|(i, seg)| seg.starts_with('.') && !(i == 0 && seg == ".well-known"));
    if hidden {
        Err(PathError::Hidden)
    } else {
        Ok(())
    }
}

/// The part of `path` below `mount` (`/cgi-bin`), if `path` is under it.
pub fn strip_mount<'a>(path: &'a str, mount: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(mount)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(decode_path("/a%20b/%7e").unwrap(), "/a b/~");
        assert_eq!(decode_path("/a%2fb"), Err(PathError::NotFound));
        assert_eq!(decode_path("/a%00b"), Err(PathError::NotFound));
        assert!(matches!(decode_path("/a%zz"), Err(PathError::BadPath(_))));
        assert!(matches!(decode_path("/a%4"), Err(PathError::BadPath(_))));
        assert!(matches!(decode_path("/%ff"), Err(PathError::BadPath(_))));
        // Found by fuzzing: from_str_radix accepts a sign, so "%+f" was byte 0x0f.
        assert!(matches!(
            decode_path("/cgi-bin/%+f"),
            Err(PathError::BadPath(_))
        ));
        assert!(matches!(decode_path("/%-1"), Err(PathError::BadPath(_))));
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
}
