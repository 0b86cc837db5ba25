//! What serves a path: [`Routes::decide`] turns a clean request path into a
//! [`Target`] — a script and the model that runs it, a static file, one of the server's
//! own pages, or a `--try-files` fallback — and holds the rule that only executable
//! regular files inside a canonical script directory run.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::paths::{Dotfiles, PathError, check_dotfiles, strip_mount};
use crate::static_files::{self, Found};
use crate::stats::Model;
use crate::try_files::{Tried, TryFiles};

/// A URL prefix whose files run as CGI scripts.
#[derive(Debug, Clone)]
pub struct Mount {
    /// `/cgi-bin`: starts with `/`, no trailing slash.
    pub url: String,
    /// Canonical.
    pub dir: PathBuf,
}

/// Where worker pools live: `/fcgi-bin/NAME` runs the script directory's NAME as a pool.
pub const FASTCGI_MOUNT: &str = "/fcgi-bin";
pub const STATUS_PATH: &str = "/server-status";

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
    /// `mounts` empty means `/cgi-bin` → `cgi_dir`. A missing `cgi_dir` is an error
    /// unless `require_cgi_dir` is false (it was only implied by `--root`).
    pub fn resolve(
        cgi_dir: &Path,
        require_cgi_dir: bool,
        static_root: Option<&Path>,
        mounts: &[(String, PathBuf)],
    ) -> io::Result<Layout> {
        let context = |what: &str, path: &Path| {
            let what = what.to_owned();
            let path = path.display().to_string();
            move |e: io::Error| io::Error::new(e.kind(), format!("{what} {path}: {e}"))
        };
        let canonical_cgi = match fs::canonicalize(cgi_dir) {
            Ok(dir) => dir,
            Err(e) if !require_cgi_dir && e.kind() == io::ErrorKind::NotFound => {
                std::path::absolute(cgi_dir)?
            }
            Err(e) => return Err(context("script directory", cgi_dir)(e)),
        };
        let static_root = match static_root {
            Some(root) => Some(fs::canonicalize(root).map_err(context("document root", root))?),
            None => None,
        };
        let document_root = match &static_root {
            Some(root) => root.clone(),
            None => canonical_cgi
                .parent()
                .unwrap_or(&canonical_cgi)
                .to_path_buf(),
        };
        let wanted = if mounts.is_empty() {
            vec![("/cgi-bin".to_owned(), cgi_dir.to_path_buf())]
        } else {
            mounts.to_vec()
        };
        let mut found = Vec::new();
        for (url, dir) in wanted {
            match fs::canonicalize(&dir) {
                Ok(dir) => found.push(Mount {
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
            cgi_dir: canonical_cgi,
            document_root,
            static_root,
            mounts: found,
        })
    }

    /// Every script directory: never served as static files.
    pub fn script_dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = self.mounts.iter().map(|m| m.dir.as_path()).collect();
        dirs.push(&self.cgi_dir);
        dirs
    }
}

/// What answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A script under a CGI mount: one process for this request.
    Cgi(Script),
    /// `/fcgi-bin/NAME`: a worker from NAME's pool.
    Pooled(Script),
    /// `/fcgi-bin/NAME` served by a FastCGI server someone else runs (`--fastcgi`).
    External(String, Script),
    /// A regular file under the document root.
    File(PathBuf),
    /// A directory named without its trailing slash: redirect to add it.
    AddSlash,
    Landing,
    Status,
}

/// Everything [`Routes::decide`] looks at, fixed at start.
#[derive(Debug, Clone)]
pub struct Routes {
    pub layout: Layout,
    /// `--interpreter EXT=PROGRAM`.
    pub interpreters: Vec<(String, PathBuf)>,
    pub try_files: Option<TryFiles>,
    pub status_page: bool,
    /// Names `--fastcgi` sends to external servers.
    pub external: Vec<String>,
    /// `--fcgi-allow`: the only names `/fcgi-bin/` may run as pools; `None`: all.
    pub fcgi_allow: Option<Vec<String>>,
    /// `--dotfiles`: whether paths with a segment starting with `.` are served and run.
    pub dotfiles: Dotfiles,
}

impl Routes {
    /// What serves `clean` (a decoded, normalized path).
    pub fn decide(&self, clean: &str) -> Result<Target, PathError> {
        self.decide_from(clean, true)
    }

    /// Which model a path that [`Routes::decide`] refused belongs to, for the
    /// counters: a script mount's, `/fcgi-bin/`'s, the static files', or none.
    pub fn owner(&self, clean: &str) -> Model {
        if self
            .layout
            .mounts
            .iter()
            .any(|m| strip_mount(clean, &m.url).is_some())
        {
            Model::Cgi
        } else if strip_mount(clean, FASTCGI_MOUNT).is_some() {
            Model::FastCgi
        } else if self.layout.static_root.is_some() {
            Model::Static
        } else {
            Model::None
        }
    }

    /// `first` is false for a `--try-files` fallback, which is served as it is: no
    /// status page, no second round of the list.
    fn decide_from(&self, clean: &str, first: bool) -> Result<Target, PathError> {
        if let Some(script) = self.script(clean) {
            return script;
        }
        if first && self.status_page && clean == STATUS_PATH {
            return Ok(Target::Status);
        }
        let layout = &self.layout;
        let scripts = layout.script_dirs();
        let root = layout.static_root.as_deref();
        if first && let Some(list) = &self.try_files {
            return match list.choose(root, clean, &scripts, self.dotfiles) {
                Tried::File(_, path) => Ok(Target::File(path)),
                Tried::Dir(_, path) => self.directory(clean, &path),
                Tried::Redirect(uri) => self.decide_from(&uri, false),
                Tried::NotFound => Err(PathError::NotFound),
            };
        }
        let Some(root) = root else {
            return match clean {
                "/" => Ok(Target::Landing),
                _ => Err(PathError::NotFound),
            };
        };
        match static_files::lookup(root, clean, &scripts, self.dotfiles)? {
            Found::File(path) => Ok(Target::File(path)),
            Found::Dir(path) => self.directory(clean, &path),
        }
    }

    /// The script `clean` names, if it is under a script mount or `/fcgi-bin/`. A
    /// script found is trusted for [`RESOLVED_FOR`] by this loop: looking the same
    /// path up again on every request costs a system call per request.
    fn script(&self, clean: &str) -> Option<Result<Target, PathError>> {
        let key = (std::ptr::from_ref(self) as usize, clean);
        if let Some(target) = resolved::get(key) {
            return Some(Ok(target));
        }
        let found = self.find_script(clean)?;
        if let Ok(target @ (Target::Cgi(_) | Target::Pooled(_))) = &found {
            resolved::put(key, target.clone());
        }
        Some(found)
    }

    fn find_script(&self, clean: &str) -> Option<Result<Target, PathError>> {
        for mount in &self.layout.mounts {
            if let Some(rest) = strip_mount(clean, &mount.url) {
                let script = resolve(
                    &mount.dir,
                    &mount.url,
                    rest,
                    &self.interpreters,
                    self.dotfiles,
                );
                return Some(script.map(Target::Cgi));
            }
        }
        let rest = strip_mount(clean, FASTCGI_MOUNT)?;
        let name = rest.split('/').find(|s| !s.is_empty()).unwrap_or("");
        if self.external.iter().any(|n| n == name) {
            if let Err(e) = check_dotfiles(clean, self.dotfiles) {
                return Some(Err(e));
            }
            let script = named(&self.layout.cgi_dir, FASTCGI_MOUNT, rest);
            return Some(Ok(Target::External(name.to_owned(), script)));
        }
        if let Some(allow) = &self.fcgi_allow
            && !allow.iter().any(|n| n == name)
        {
            return Some(Err(PathError::Forbidden(
                "not a FastCGI program this server runs (--fcgi-allow)",
            )));
        }
        let script = resolve(
            &self.layout.cgi_dir,
            FASTCGI_MOUNT,
            rest,
            &self.interpreters,
            self.dotfiles,
        );
        Some(script.map(Target::Pooled))
    }

    /// A directory: add the slash first (so relative links in its page work), then
    /// its index.html, or the landing page at `/`.
    fn directory(&self, clean: &str, path: &Path) -> Result<Target, PathError> {
        if !clean.ends_with('/') {
            return Ok(Target::AddSlash);
        }
        let layout = &self.layout;
        let index = match layout.static_root.as_deref() {
            // Looked up like any file, so an index.html symlinked out of the root is
            // refused.
            Some(root) => match path.strip_prefix(root).ok().and_then(Path::to_str) {
                Some(rel) => {
                    let rel = format!("/{rel}/index.html");
                    static_files::lookup(root, &rel, &layout.script_dirs(), self.dotfiles)
                }
                None => Err(PathError::NotFound),
            },
            None => Err(PathError::NotFound),
        };
        match index {
            Ok(Found::File(index)) => Ok(Target::File(index)),
            Ok(Found::Dir(_)) | Err(PathError::NotFound) if clean == "/" => Ok(Target::Landing),
            Ok(Found::Dir(_)) | Err(PathError::NotFound) => {
                Err(PathError::Forbidden("directory has no index.html"))
            }
            Err(e) => Err(e),
        }
    }
}

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

/// How long a loop trusts a script it found at a path (as nginx's
/// `open_file_cache_valid` does, only shorter): a script removed or made
/// non-executable is noticed within this long.
const RESOLVED_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Each loop's recently found scripts, keyed by the routes that found them and the
/// path; a loop's own, so no lock is shared.
mod resolved {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::Instant;

    use super::{RESOLVED_FOR, Target};

    /// Past this many entries the cache starts over: a client walking many paths
    /// cannot make it grow without bound.
    const MAX_ENTRIES: usize = 1024;

    thread_local! {
        /// Path → (the routes that found it, when, what).
        static CACHE: RefCell<HashMap<String, (usize, Instant, Target)>> =
            RefCell::new(HashMap::new());
    }

    pub fn get((routes, path): (usize, &str)) -> Option<Target> {
        CACHE.with(|c| {
            let c = c.borrow();
            let (by, at, target) = c.get(path)?;
            (*by == routes && at.elapsed() < RESOLVED_FOR).then(|| target.clone())
        })
    }

    pub fn put((routes, path): (usize, &str), target: Target) {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= MAX_ENTRIES {
                c.clear();
            }
            c.insert(path.to_owned(), (routes, Instant::now(), target));
        });
    }
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
) -> Result<Script, PathError> {
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
            io::ErrorKind::PermissionDenied => PathError::Forbidden("permission denied"),
            _ => PathError::NotFound,
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
            return Err(PathError::Forbidden("not a regular file"));
        }
        // Symlinks may point anywhere: only where they end up counts.
        if via_symlink {
            let real = fs::canonicalize(&file).map_err(|_| PathError::NotFound)?;
            if !real.starts_with(dir) {
                return Err(PathError::Forbidden(
                    "resolves outside the script directory",
                ));
            }
        }
        let interpreter = interpreter_for(seg, interpreters);
        if interpreter.is_none() && meta.permissions().mode() & 0o111 == 0 {
            return Err(PathError::Forbidden("script is not executable"));
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
    Err(PathError::Forbidden("a directory is not a script"))
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
        assert_eq!(r("/missing"), Err(PathError::NotFound));
        assert!(matches!(r("/plain"), Err(PathError::Forbidden(_))));
        assert!(matches!(r("/link-out"), Err(PathError::Forbidden(_))));
        assert!(matches!(r("/sub"), Err(PathError::Forbidden(_))));
        assert!(matches!(r(""), Err(PathError::Forbidden(_))));
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
            assert_eq!(deny(hidden), Err(PathError::Hidden), "{hidden}");
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
        assert_eq!(deny("/.well-known/.x"), Err(PathError::Hidden));

        let (_tmp, dir) = tree();
        fs::write(dir.join(".hidden"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.join(".hidden"), fs::Permissions::from_mode(0o755)).unwrap();
        let r = |p: &str, d| resolve(&dir, "/cgi-bin", p, &[], d);
        assert_eq!(r("/.hidden", Dotfiles::Deny), Err(PathError::Hidden));
        assert_eq!(r("/.missing", Dotfiles::Deny), Err(PathError::Hidden));
        assert_eq!(r("/env/.x", Dotfiles::Deny), Err(PathError::Hidden));
        assert!(r("/.hidden", Dotfiles::Allow).is_ok());
        assert_eq!(r("/env/.x", Dotfiles::Allow).unwrap().path_info, "/.x");
    }
}
