//! Scripts by extension under the document root (`--cgi-ext`, `--fcgi-ext`), as
//! Apache's `AddHandler`, lighttpd's `cgi.assign` and nginx's `location ~ \.php$` run
//! them: which file names run and how, and which names are a script's source, never
//! sent as a file. Pure; the walk that finds such a file is `route`'s.
//!
//! A name runs only with its extension exactly as registered, while any name whose
//! extension matches in another case (`X.PHP` for `php`) is source all the same: it
//! is neither run nor sent. Apache runs `X.PHP` (its handler extensions ignore case);
//! lighttpd and nginx match case-sensitively, so they send its source. Refusing it
//! does neither: no uploaded `shell.PHP` that slipped past a lower-case filter runs,
//! and no script's source goes out.

use std::path::{Path, PathBuf};

/// How files with one extension run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// `--cgi-ext EXT`: one process per request through the file's own `#!` line (it
    /// must be executable); `--cgi-ext EXT=PROGRAM`: as `PROGRAM FILE`.
    Cgi(Option<PathBuf>),
    /// `--fcgi-ext EXT=PROGRAM`: one worker pool of PROGRAM serves every such file,
    /// told which by `SCRIPT_FILENAME` (as php-fpm serves a whole site).
    Pool(PathBuf),
    /// `--fcgi-ext EXT=unix:PATH|HOST:PORT`: a FastCGI server someone else runs.
    Server {
        /// The name its backends are registered under ([`server_name`]).
        name: String,
        /// Its addresses, as given, for the server's pages.
        shown: String,
    },
}

impl Runner {
    /// `cgi` or `fastcgi`, as the status page names models.
    pub fn model(&self) -> &'static str {
        match self {
            Runner::Cgi(_) => "cgi",
            Runner::Pool(_) | Runner::Server { .. } => "fastcgi",
        }
    }

    /// The model, in words that name no program or address.
    pub fn kind(&self) -> &'static str {
        match self {
            Runner::Cgi(_) => "CGI",
            Runner::Pool(_) => "FastCGI: a worker pool",
            Runner::Server { .. } => "FastCGI: an external server",
        }
    }

    /// What runs the files, in a few words.
    pub fn describe(&self) -> String {
        match self {
            Runner::Cgi(None) => "CGI: the file's own #! line".into(),
            Runner::Cgi(Some(p)) => format!("CGI: {} FILE", p.display()),
            Runner::Pool(p) => format!("FastCGI: a worker pool of {}", p.display()),
            Runner::Server { shown, .. } => format!("FastCGI server at {shown}"),
        }
    }
}

/// One registered extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// Without the dot, as registered: `php`.
    pub ext: String,
    pub runner: Runner,
}

/// Every registered extension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handlers {
    list: Vec<Handler>,
}

impl Handlers {
    /// Fails when an extension is registered twice, in any case (`php` and `PHP`
    /// cannot run differently: both are one extension's source).
    pub fn new(list: Vec<Handler>) -> Result<Handlers, String> {
        for (i, h) in list.iter().enumerate() {
            check_extension(&h.ext)?;
            if list[..i].iter().any(|o| o.ext.eq_ignore_ascii_case(&h.ext)) {
                return Err(format!(
                    "extension .{} is registered twice (--cgi-ext, --fcgi-ext)",
                    h.ext
                ));
            }
        }
        Ok(Handlers { list })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Handler> {
        self.list.iter()
    }

    /// What runs a file named `name`: its extension exactly as registered.
    pub fn runner(&self, name: &str) -> Option<&Runner> {
        let ext = extension(name)?;
        self.list.iter().find(|h| h.ext == ext).map(|h| &h.runner)
    }

    /// The handler whose extension `name` has in any case: `name` is a script's
    /// source, never a file to send.
    pub fn source_of(&self, name: &str) -> Option<&Handler> {
        let ext = extension(name)?;
        self.list.iter().find(|h| h.ext.eq_ignore_ascii_case(ext))
    }

    /// The pool of `program` as the status page names it: the program and the
    /// extensions it serves, e.g. `/usr/bin/php-cgi (*.php *.phtml)`.
    pub fn pool_name(&self, program: &Path) -> String {
        let exts: Vec<String> = self
            .list
            .iter()
            .filter(|h| matches!(&h.runner, Runner::Pool(p) if p == program))
            .map(|h| format!("*.{}", h.ext))
            .collect();
        format!("{} ({})", program.display(), exts.join(" "))
    }
}

/// The name `--fcgi-ext EXT=ADDR`'s backends are registered under with the external
/// servers: `*.php`.
pub fn server_name(ext: &str) -> String {
    format!("*.{ext}")
}

/// What follows the last dot of a file name, if anything does; a name that only
/// starts with a dot (`.php`) has none, as it has no stem.
pub fn extension(name: &str) -> Option<&str> {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => Some(ext),
        _ => None,
    }
}

/// An extension as a flag may register it: one name, no dot, no slash.
pub fn check_extension(ext: &str) -> Result<(), String> {
    let ok = !ext.is_empty()
        && ext
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{ext:?} is not a file extension (letters, digits, - and _, without the dot)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handlers() -> Handlers {
        Handlers::new(vec![
            Handler {
                ext: "php".into(),
                runner: Runner::Pool("/usr/bin/php-cgi".into()),
            },
            Handler {
                ext: "phtml".into(),
                runner: Runner::Pool("/usr/bin/php-cgi".into()),
            },
            Handler {
                ext: "cgi".into(),
                runner: Runner::Cgi(None),
            },
        ])
        .unwrap()
    }

    #[test]
    fn extensions() {
        assert_eq!(extension("a.php"), Some("php"));
        assert_eq!(extension("a.tar.gz"), Some("gz"));
        assert_eq!(extension("a.php."), None);
        assert_eq!(extension(".php"), None);
        assert_eq!(extension("php"), None);
        assert!(check_extension("php").is_ok());
        for bad in ["", ".php", "tar.gz", "a/b", "*"] {
            assert!(check_extension(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn running_is_exact_and_source_is_any_case() {
        let h = handlers();
        assert_eq!(
            h.runner("index.php"),
            Some(&Runner::Pool("/usr/bin/php-cgi".into()))
        );
        assert_eq!(h.runner("form.cgi"), Some(&Runner::Cgi(None)));
        for not_run in [
            "X.PHP", "x.Php", "x.php.", "x.php~", "x.phps", "php", "x.txt",
        ] {
            assert_eq!(h.runner(not_run), None, "{not_run}");
        }
        for source in ["x.php", "X.PHP", "x.Php", "a.b.CGI", "t.pHtMl"] {
            assert!(h.source_of(source).is_some(), "{source}");
        }
        for other in ["x.php.", "x.phps", "x.txt", "php", "x.php.bak"] {
            assert!(h.source_of(other).is_none(), "{other}");
        }
    }

    #[test]
    fn registering() {
        let twice = |a: &str, b: &str| {
            Handlers::new(vec![
                Handler {
                    ext: a.into(),
                    runner: Runner::Cgi(None),
                },
                Handler {
                    ext: b.into(),
                    runner: Runner::Cgi(None),
                },
            ])
        };
        assert!(twice("php", "php").is_err());
        assert!(twice("php", "PHP").is_err());
        assert!(twice("php", "py").is_ok());
        assert!(twice("php", "a.b").is_err());
        let h = handlers();
        assert_eq!(
            h.pool_name(Path::new("/usr/bin/php-cgi")),
            "/usr/bin/php-cgi (*.php *.phtml)"
        );
        assert_eq!(server_name("php"), "*.php");
        assert_eq!(Runner::Cgi(None).model(), "cgi");
        assert_eq!(
            Runner::Cgi(Some("/usr/bin/python3".into())).describe(),
            "CGI: /usr/bin/python3 FILE"
        );
    }
}
