//! What serves a path: [`Routes::decide`] turns a clean request path into a
//! [`Target`] — a script and the model that runs it, a static file, one of the server's
//! own pages, or a `--try-files` fallback — and holds the rules for what runs: an
//! executable regular file inside a canonical script directory, or a regular file
//! under the document root whose extension `--cgi-ext`/`--fcgi-ext` registered, split
//! from its PATH_INFO at that file and nowhere else.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::handlers::{Handlers, Runner};
use crate::paths::{Dotfiles, PathError, check_dotfiles, strip_mount};
use crate::static_files::{self, Found, Private, Reached};
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
    /// A script under the document root that `--fcgi-ext EXT=PROGRAM` runs: one pool
    /// of PROGRAM serves every file of its extensions.
    Shared(SharedPool, Script),
    /// `/fcgi-bin/NAME` served by a FastCGI server someone else runs (`--fastcgi`), or
    /// a script under the document root that `--fcgi-ext EXT=ADDR` sends to one.
    External(String, Script),
    /// A regular file under the document root.
    File(PathBuf),
    /// A directory named without its trailing slash: redirect to add it.
    AddSlash,
    Landing,
    Status,
}

/// The worker pool of one `--fcgi-ext` program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPool {
    /// As the status page shows it: the program and its extensions.
    pub name: String,
    /// Started without arguments; `SCRIPT_FILENAME` says which file to run.
    pub program: PathBuf,
    /// The document root, as php-fpm's `chdir` would be.
    pub cwd: PathBuf,
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
    /// `--cgi-ext`, `--fcgi-ext`: scripts run in place under the document root.
    pub handlers: Handlers,
    /// `--index`: what a directory serves or runs, the first that exists.
    pub index: Vec<String>,
}

impl Routes {
    /// What serves `clean` (a decoded, normalized path).
    /// What it found is trusted by this loop for [`RESOLVED_FOR`]: walking the same
    /// path again on every request costs a system call or more per request.
    pub fn decide(&self, clean: &str) -> Result<Target, PathError> {
        let key = (std::ptr::from_ref(self) as usize, clean);
        if let Some(target) = resolved::get(key) {
            return Ok(target);
        }
        let found = self.decide_from(clean, true);
        if let Ok(target) = &found {
            resolved::put(key, target.clone());
        }
        found
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
        } else if let Some(h) = clean
            .split('/')
            .find_map(|seg| self.handlers.source_of(seg))
        {
            match h.runner {
                Runner::Cgi(_) => Model::Cgi,
                _ => Model::FastCgi,
            }
        } else if self.layout.static_root.is_some() {
            Model::Static
        } else {
            Model::None
        }
    }

    /// `first` is false for a `--try-files` fallback, which is served as it is: no
    /// status page, no second round of the list.
    fn decide_from(&self, clean: &str, first: bool) -> Result<Target, PathError> {
        if let Some(script) = self.find_script(clean) {
            return script;
        }
        if first && self.status_page && clean == STATUS_PATH {
            return Ok(Target::Status);
        }
        let layout = &self.layout;
        let scripts = layout.script_dirs();
        let private = Private {
            dirs: &scripts,
            scripts: &self.handlers,
        };
        let root = layout.static_root.as_deref();
        if first && let Some(list) = &self.try_files {
            // A script run in place comes first, as nginx's `location ~ \.php$` does
            // before `location /` and its try_files.
            if let Some(root) = root
                && !self.handlers.is_empty()
                && let InPlace::Script(target) = self.in_place(root, clean)?
            {
                return Ok(target);
            }
            return match list.choose(root, clean, private, self.dotfiles) {
                Tried::File(_, path) => Ok(Target::File(path)),
                Tried::Dir(dir, _) => self.directory(clean, &dir, private),
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
        match self.in_root(root, clean, private)? {
            InRoot::Script(target) => Ok(target),
            InRoot::File(path) => Ok(Target::File(path)),
            InRoot::Dir => self.directory(clean, clean, private),
        }
    }

    /// What `clean` is under the document root: a script run in place, else a static
    /// file or directory. The path is walked once for both.
    fn in_root(&self, root: &Path, clean: &str, private: Private<'_>) -> Result<InRoot, PathError> {
        let found = if self.handlers.is_empty() {
            static_files::lookup(root, clean, private, self.dotfiles)?
        } else {
            match self.in_place(root, clean)? {
                InPlace::Script(target) => return Ok(InRoot::Script(target)),
                InPlace::Other(reached) => static_files::judge(clean, reached?, private)?,
            }
        };
        Ok(match found {
            Found::File(path) => InRoot::File(path),
            Found::Dir(_) => InRoot::Dir,
        })
    }

    /// Walks `clean` under the document root: a regular file with a registered
    /// extension on the way is the script, and the rest of the path its PATH_INFO.
    /// Never a directory, nor a file of another kind: `/uploads/avatar.png/x.php`
    /// runs nothing (the `cgi.fix_pathinfo` hole).
    fn in_place(&self, root: &Path, clean: &str) -> Result<InPlace, PathError> {
        if let Err(e) = check_dotfiles(clean, self.dotfiles) {
            return Ok(InPlace::Other(Err(e)));
        }
        let reached = match static_files::walk(root, clean) {
            Ok(r) => r,
            // Missing or refused: no script; the static side says which, and
            // `--try-files` may still have an answer.
            Err(e) => return Ok(InPlace::Other(Err(e))),
        };
        let name = clean[..reached.end].rsplit('/').next().unwrap_or("");
        let runner = match &reached.meta {
            Some(m) if m.is_file() => self.handlers.runner(name),
            _ => None,
        };
        match runner {
            Some(runner) => Ok(InPlace::Script(
                self.in_place_target(runner, clean, reached)?,
            )),
            None => Ok(InPlace::Other(Ok(reached))),
        }
    }

    /// The target for the script `reached` with its registered `runner`.
    fn in_place_target(
        &self,
        runner: &Runner,
        clean: &str,
        reached: Reached,
    ) -> Result<Target, PathError> {
        let script_name = &clean[..reached.end];
        let name = script_name.rsplit('/').next().unwrap_or("");
        let mut script = Script {
            script_name: script_name.to_owned(),
            path_info: clean[reached.end..].to_owned(),
            file: reached.path,
            nph: false,
            interpreter: None,
        };
        Ok(match runner {
            Runner::Cgi(program) => {
                let executable = reached
                    .meta
                    .is_some_and(|m| m.permissions().mode() & 0o111 != 0);
                if program.is_none() && !executable {
                    return Err(PathError::Forbidden(
                        "script is not executable (chmod +x, or --cgi-ext EXT=PROGRAM)",
                    ));
                }
                script.nph = name.starts_with("nph-");
                script.interpreter = program.clone();
                Target::Cgi(script)
            }
            Runner::Pool(program) => Target::Shared(
                SharedPool {
                    name: self.handlers.pool_name(program),
                    program: program.clone(),
                    cwd: self.layout.document_root.clone(),
                },
                script,
            ),
            Runner::Server { name, .. } => Target::External(name.clone(), script),
        })
    }

    /// The script `clean` names, if it is under a script mount or `/fcgi-bin/`.
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

    /// A directory, `dir` in the URL: add the slash first (so relative links in its
    /// page work), then the first `--index` name that exists there — run, if it is a
    /// script, or served — or the landing page at `/`.
    fn directory(&self, clean: &str, dir: &str, private: Private<'_>) -> Result<Target, PathError> {
        if !clean.ends_with('/') {
            return Ok(Target::AddSlash);
        }
        let dir = dir.trim_end_matches('/');
        if let Some(root) = self.layout.static_root.as_deref() {
            for name in &self.index {
                // Looked up like any path, so an index.html symlinked out of the root
                // is refused, and index.php runs.
                match self.in_root(root, &format!("{dir}/{name}"), private) {
                    Ok(InRoot::Script(target)) => return Ok(target),
                    Ok(InRoot::File(index)) => return Ok(Target::File(index)),
                    Ok(InRoot::Dir) | Err(PathError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if clean == "/" {
            Ok(Target::Landing)
        } else {
            Err(PathError::Forbidden("directory has no index (--index)"))
        }
    }
}

/// What a path under the document root is.
enum InRoot {
    Script(Target),
    File(PathBuf),
    Dir,
}

/// What a walk under the document root found.
enum InPlace {
    /// A script to run in place.
    Script(Target),
    /// Anything else, to be judged as a static file.
    Other(Result<Reached, PathError>),
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

/// How long a loop trusts what it found at a path (as nginx's `open_file_cache_valid`
/// does, only shorter): a script or file removed, added or made non-executable is
/// noticed within this long.
const RESOLVED_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Each loop's recently decided paths, keyed by the routes that decided them and the
/// path; a loop's own, so no lock is shared. Refusals are not kept: a file that
/// appears is served at once.
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

    /// A document root with scripts by extension: php through a pool, cgi by its
    /// own `#!` line, py through python3.
    fn site(try_files: Option<&str>) -> (tempfile::TempDir, PathBuf, Routes) {
        use crate::handlers::Handler;
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        for dir in ["uploads", "dir.php", "sub", "empty"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (name, mode) in [
            ("index.php", 0o644),
            ("style.css", 0o644),
            ("X.PHP", 0o644),
            ("form.cgi", 0o755),
            ("plain.cgi", 0o644),
            ("app.py", 0o644),
            ("uploads/avatar.png", 0o644),
            ("sub/index.html", 0o644),
        ] {
            fs::write(root.join(name), "#!/bin/sh\n").unwrap();
            fs::set_permissions(root.join(name), fs::Permissions::from_mode(mode)).unwrap();
        }
        symlink(root.join("index.php"), root.join("source.txt")).unwrap();
        symlink(root.join("index.php"), root.join("alias.php")).unwrap();
        let handlers = Handlers::new(vec![
            Handler {
                ext: "php".into(),
                runner: Runner::Pool("/usr/bin/php-cgi".into()),
            },
            Handler {
                ext: "cgi".into(),
                runner: Runner::Cgi(None),
            },
            Handler {
                ext: "py".into(),
                runner: Runner::Cgi(Some("/usr/bin/python3".into())),
            },
        ])
        .unwrap();
        let routes = Routes {
            layout: Layout {
                cgi_dir: root.join("cgi-bin"),
                document_root: root.clone(),
                static_root: Some(root.clone()),
                mounts: Vec::new(),
            },
            interpreters: Vec::new(),
            try_files: try_files.map(|t| TryFiles::parse(t).unwrap()),
            status_page: true,
            external: Vec::new(),
            fcgi_allow: None,
            dotfiles: Dotfiles::Deny,
            handlers,
            index: vec!["index.php".into(), "index.html".into()],
        };
        (tmp, root, routes)
    }

    fn script_of(t: Target) -> Script {
        match t {
            Target::Cgi(s) | Target::Shared(_, s) | Target::External(_, s) => s,
            other => panic!("not a script: {other:?}"),
        }
    }

    #[test]
    fn scripts_in_place_and_their_path_info() {
        let (_tmp, root, routes) = site(None);
        let d = |p: &str| routes.decide(p);
        let s = script_of(d("/index.php/wiki/page").unwrap());
        assert_eq!(
            (s.script_name.as_str(), s.path_info.as_str()),
            ("/index.php", "/wiki/page")
        );
        assert_eq!(s.file, root.join("index.php"));
        let Ok(Target::Shared(pool, _)) = d("/index.php") else {
            panic!("php runs in the pool");
        };
        assert_eq!(pool.program, Path::new("/usr/bin/php-cgi"));
        assert_eq!(pool.cwd, root);
        assert_eq!(pool.name, "/usr/bin/php-cgi (*.php)");
        assert_eq!(script_of(d("/index.php/").unwrap()).path_info, "/");
        let Ok(Target::Cgi(s)) = d("/form.cgi/x") else {
            panic!("cgi runs");
        };
        assert_eq!((s.interpreter, s.path_info.as_str()), (None, "/x"));
        let Ok(Target::Cgi(s)) = d("/app.py") else {
            panic!("py runs");
        };
        assert_eq!(s.interpreter, Some(PathBuf::from("/usr/bin/python3")));
        // A link named as a script runs what it points to, inside the root.
        assert_eq!(
            script_of(d("/alias.php").unwrap()).file,
            root.join("index.php")
        );
        // The index: a directory runs the first that exists.
        let s = script_of(d("/").unwrap());
        assert_eq!(
            (s.script_name.as_str(), s.path_info.as_str()),
            ("/index.php", "")
        );
        assert_eq!(d("/sub/"), Ok(Target::File(root.join("sub/index.html"))));
        assert_eq!(d("/sub"), Ok(Target::AddSlash));
        assert!(matches!(d("/empty/"), Err(PathError::Forbidden(_))));
        assert_eq!(d("/style.css"), Ok(Target::File(root.join("style.css"))));
    }

    #[test]
    fn never_as_source_and_never_split_elsewhere() {
        let (_tmp, _root, routes) = site(None);
        let d = |p: &str| routes.decide(p);
        let source = Err(PathError::Forbidden("a script's source is never sent"));
        assert_eq!(d("/X.PHP"), source, "another case: neither run nor sent");
        assert_eq!(d("/source.txt"), source, "a link to a script");
        assert!(matches!(d("/plain.cgi"), Err(PathError::Forbidden(_))));
        for nothing in [
            "/uploads/avatar.png/x.php",
            "/style.css/x.php",
            "/dir.php/x",
            "/index.php.",
            "/missing.php",
            "/X.PHP/x",
            "/source.txt/x",
        ] {
            assert_eq!(d(nothing), Err(PathError::NotFound), "{nothing}");
        }
        assert_eq!(d("/dir.php"), Ok(Target::AddSlash));
        assert_eq!(d("/.hidden.php"), Err(PathError::Hidden));
        assert_eq!(d("/index.php/.git"), Err(PathError::Hidden));
        assert_eq!(routes.owner("/X.PHP"), Model::FastCgi);
        assert_eq!(routes.owner("/plain.cgi"), Model::Cgi);
        assert_eq!(routes.owner("/style.css"), Model::Static);
    }

    #[test]
    fn try_files_falls_back_to_a_script_in_place() {
        let (_tmp, root, routes) = site(Some("$uri $uri/ /index.php"));
        let d = |p: &str| routes.decide(p);
        let s = script_of(d("/wiki/some/page").unwrap());
        assert_eq!(
            (s.script_name.as_str(), s.path_info.as_str()),
            ("/index.php", "")
        );
        assert_eq!(d("/style.css"), Ok(Target::File(root.join("style.css"))));
        assert_eq!(script_of(d("/form.cgi/a").unwrap()).path_info, "/a");
        // Never a candidate as a file: the front controller answers instead.
        for sent_nowhere in ["/X.PHP", "/source.txt"] {
            assert_eq!(
                script_of(d(sent_nowhere).unwrap()).script_name,
                "/index.php",
                "{sent_nowhere}"
            );
        }
        let t = TryFiles::parse("$uri $uri.php =404").unwrap();
        let routes = Routes {
            try_files: Some(t),
            ..routes
        };
        assert_eq!(
            routes.decide("/index"),
            Err(PathError::NotFound),
            "a script's source is no $uri.php candidate"
        );
    }
}
