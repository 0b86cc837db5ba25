//! `--try-files`, with nginx's semantics: an ordered list of candidates for a URL
//! (`$uri` stands for the request's clean path, an entry ending in `/` names a
//! directory) and a last entry that is used when none exists — an internal redirect
//! to a script that keeps the original REQUEST_URI (the front-controller pattern), or
//! `=404`.

use std::path::{Path, PathBuf};

use crate::paths::{self, Dotfiles};
use crate::static_files::{self, Found, Private};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryFiles {
    /// Entries tried in order, with `$uri` still in them.
    pub candidates: Vec<String>,
    pub fallback: Fallback,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// A path (after `$uri` is put in) that is routed again, usually to a script.
    Uri(String),
    /// `=404`: nothing matched, so not found.
    NotFound,
}

/// What the list chose for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Tried {
    /// A file; its clean URL path and where it is.
    File(String, PathBuf),
    /// A directory; its clean URL path (ending in `/`) and where it is.
    Dir(String, PathBuf),
    /// Route this path instead, keeping the request as it is.
    Redirect(String),
    NotFound,
}

impl TryFiles {
    /// Parses entries separated by whitespace, e.g. `$uri $uri/ /cgi-bin/app`.
    pub fn parse(spec: &str) -> Result<TryFiles, String> {
        let mut entries: Vec<String> = spec.split_whitespace().map(str::to_owned).collect();
        let last = entries
            .pop()
            .ok_or("--try-files needs at least a fallback entry")?;
        for e in &entries {
            if !e.starts_with('/') && !e.starts_with("$uri") {
                return Err(format!("try-files entry {e:?} must start with / or $uri"));
            }
        }
        let fallback = if last == "=404" {
            Fallback::NotFound
        } else if last.starts_with('/') || last.starts_with("$uri") {
            // The redirect keeps the request, query string included, as it came.
            if last.contains('?') {
                return Err(format!(
                    "try-files fallback {last:?} cannot have a query: the script gets the request's own"
                ));
            }
            Fallback::Uri(last)
        } else {
            return Err(format!(
                "try-files fallback {last:?} must be a path such as /cgi-bin/app, or =404"
            ));
        };
        Ok(TryFiles {
            candidates: entries,
            fallback,
        })
    }

    /// Picks the first candidate that exists under `root` (none without a root), or
    /// the fallback. `uri` is the request's clean path; what is `private` (script
    /// directories, scripts' sources) is never a candidate. A `uri` with a segment starting
    /// with `.` is not found at all unless `dotfiles` allows it: the fallback would
    /// otherwise hand `/.env` to the front controller.
    pub fn choose(
        &self,
        root: Option<&Path>,
        uri: &str,
        private: Private<'_>,
        dotfiles: Dotfiles,
    ) -> Tried {
        if paths::check_dotfiles(uri, dotfiles).is_err() {
            return Tried::NotFound;
        }
        if let Some(root) = root {
            for entry in &self.candidates {
                let Ok(clean) = paths::normalize(&expand(entry, uri)) else {
                    continue;
                };
                // As in nginx, the entry as written (not the path put into it) says
                // whether it names a directory; a candidate that is missing, forbidden
                // or of the other kind is simply not there.
                let wants_dir = entry.ends_with('/');
                match static_files::lookup(root, &clean, private, dotfiles) {
                    Ok(Found::Dir(p)) if wants_dir => return Tried::Dir(clean, p),
                    Ok(Found::File(p)) if !wants_dir => return Tried::File(clean, p),
                    _ => {}
                }
            }
        }
        match &self.fallback {
            Fallback::NotFound => Tried::NotFound,
            Fallback::Uri(u) => match paths::normalize(&expand(u, uri)) {
                Ok(clean) => Tried::Redirect(clean),
                Err(_) => Tried::NotFound,
            },
        }
    }
}

/// Puts the request's path in for `$uri`.
pub fn expand(entry: &str, uri: &str) -> String {
    entry.replace("$uri", uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn parsing() {
        let t = TryFiles::parse("$uri  $uri/\t/cgi-bin/app").unwrap();
        assert_eq!(t.candidates, ["$uri", "$uri/"]);
        assert_eq!(t.fallback, Fallback::Uri("/cgi-bin/app".into()));
        assert_eq!(
            TryFiles::parse("$uri =404").unwrap().fallback,
            Fallback::NotFound
        );
        assert!(TryFiles::parse("").is_err());
        assert!(TryFiles::parse("$uri app").is_err());
        assert!(TryFiles::parse("$uri /cgi-bin/app?x=1").is_err());
        assert!(TryFiles::parse("x /cgi-bin/app").is_err());
        let only = TryFiles::parse("/fcgi-bin/app").unwrap();
        assert!(only.candidates.is_empty());
    }

    #[test]
    fn choosing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        fs::create_dir(root.join("docs")).unwrap();
        fs::write(root.join("a.txt"), "a").unwrap();
        fs::write(root.join("b.html"), "b").unwrap();
        let t = TryFiles::parse("$uri $uri.html $uri/ /cgi-bin/app$uri").unwrap();
        let none = crate::handlers::Handlers::default();
        let p = Private {
            dirs: &[],
            scripts: &none,
        };
        let c = |uri: &str| t.choose(Some(&root), uri, p, Dotfiles::Deny);
        assert_eq!(
            c("/a.txt"),
            Tried::File("/a.txt".into(), root.join("a.txt"))
        );
        assert_eq!(c("/b"), Tried::File("/b.html".into(), root.join("b.html")));
        assert_eq!(c("/docs"), Tried::Dir("/docs/".into(), root.join("docs")));
        assert_eq!(c("/"), Tried::Dir("/".into(), root.clone()));
        assert_eq!(c("/x/y"), Tried::Redirect("/cgi-bin/app/x/y".into()));
        fs::write(root.join(".env"), "KEY=1").unwrap();
        assert_eq!(
            c("/.env"),
            Tried::NotFound,
            "neither served nor handed to the app"
        );
        assert_eq!(c("/x/.git/HEAD"), Tried::NotFound);
        assert_eq!(
            t.choose(Some(&root), "/.env", p, Dotfiles::Allow),
            Tried::File("/.env".into(), root.join(".env"))
        );
        // A directory is not a `$uri` file hit, nor a file a `$uri/` directory hit.
        let t = TryFiles::parse("$uri /cgi-bin/app").unwrap();
        assert_eq!(
            t.choose(Some(&root), "/docs", p, Dotfiles::Deny),
            Tried::Redirect("/cgi-bin/app".into())
        );
        let t = TryFiles::parse("$uri/ =404").unwrap();
        assert_eq!(
            t.choose(Some(&root), "/a.txt", p, Dotfiles::Deny),
            Tried::NotFound
        );
        assert_eq!(t.choose(None, "/docs", p, Dotfiles::Deny), Tried::NotFound);
    }
}
