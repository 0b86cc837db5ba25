//! The rungs of the sweep — which program is served how — what each rung needs
//! installed, and the directory of scripts and static files they are served from.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cgi_testbed::gateway::env::DEFAULT_PATH;

/// The bundled hello programs, one per language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Language {
    Rust,
    /// `cgi-src/hello.c`, compiled statically when the report starts (CGI only).
    C,
    Sh,
    Perl,
    Python,
    Php,
}

pub const ALL_LANGUAGES: [Language; 6] = [
    Language::Rust,
    Language::C,
    Language::Sh,
    Language::Perl,
    Language::Python,
    Language::Php,
];

impl Language {
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::C => "c",
            Language::Sh => "sh",
            Language::Perl => "perl",
            Language::Python => "python",
            Language::Php => "php",
        }
    }

    /// The file under the report's cgi-bin.
    pub fn script(self) -> &'static str {
        match self {
            Language::Rust => "hello-rs",
            Language::C => "hello-c",
            Language::Sh => "hello",
            Language::Perl => "hello.fcgi.pl",
            Language::Python => "greetings.py",
            Language::Php => "hello.php",
        }
    }
}

/// How a program is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    /// `/cgi-bin/`: a process per request.
    Cgi,
    /// `/fcgi-bin/`: our pool of persistent FastCGI workers.
    FastCgi,
    /// The same WSGI app under gunicorn (a WSGI HTTP server), on its own port.
    Gunicorn,
    /// The ASGI version under uvicorn, on its own port.
    Uvicorn,
    /// A small file served by our server itself: the ceiling.
    Static,
    /// Reference: lighttpd's mod_cgi running the same program as CGI.
    Lighttpd,
    /// Reference: nginx in front of fcgiwrap, which runs the program as CGI.
    NginxFcgiwrap,
    /// Reference: nginx in front of a pool of the same FastCGI program.
    NginxFastCgi,
    /// Reference: nginx serving the static file.
    NginxStatic,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::Cgi => "CGI",
            Model::FastCgi => "FastCGI",
            Model::Gunicorn => "gunicorn",
            Model::Uvicorn => "uvicorn",
            Model::Static => "static",
            Model::Lighttpd => "CGI · lighttpd",
            Model::NginxFcgiwrap => "CGI · nginx+fcgiwrap",
            Model::NginxFastCgi => "FastCGI · nginx",
            Model::NginxStatic => "static · nginx",
        }
    }

    /// A production server measured beside ours, drawn as a reference line.
    pub fn is_reference(self) -> bool {
        matches!(
            self,
            Model::Lighttpd | Model::NginxFcgiwrap | Model::NginxFastCgi | Model::NginxStatic
        )
    }

    /// A process per request (ours or a reference's).
    pub fn is_cgi(self) -> bool {
        matches!(self, Model::Cgi | Model::Lighttpd | Model::NginxFcgiwrap)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rung {
    pub model: Model,
    /// `None` for the static file.
    pub language: Option<Language>,
}

/// The small file the static rung fetches.
pub const STATIC_FILE: &str = "hello.txt";

impl Rung {
    pub fn new(model: Model, language: Language) -> Rung {
        Rung {
            model,
            language: Some(language),
        }
    }

    /// The static file served by `model` (ours or nginx).
    pub fn file(model: Model) -> Rung {
        Rung {
            model,
            language: None,
        }
    }

    /// A file-name-friendly label: `sh-cgi`, `static-file-nginx`.
    pub fn slug(&self) -> String {
        let mut slug = String::new();
        for c in self.label().to_lowercase().chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c);
            } else if !slug.ends_with('-') {
                slug.push('-');
            }
        }
        slug
    }

    pub fn label(&self) -> String {
        match (self.language, self.model) {
            (Some(l), m) => format!("{} {}", l.name(), m.name()),
            (None, Model::NginxStatic) => "static file · nginx".into(),
            (None, _) => "static file".into(),
        }
    }

    /// What the clients request.
    pub fn path(&self) -> String {
        let script = self.language.map_or("", Language::script);
        match self.model {
            Model::Cgi | Model::Lighttpd | Model::NginxFcgiwrap => format!("/cgi-bin/{script}"),
            Model::FastCgi | Model::NginxFastCgi => format!("/fcgi-bin/{script}"),
            Model::Gunicorn | Model::Uvicorn => "/".into(),
            Model::Static | Model::NginxStatic => format!("/{STATIC_FILE}"),
        }
    }
}

/// Which program the reference servers run as CGI, and which as FastCGI workers:
/// the first measured of these (the cheapest to start first, so the servers' own
/// cost shows most).
const REFERENCE_CGI: [Language; 6] = [
    Language::Rust,
    Language::C,
    Language::Sh,
    Language::Perl,
    Language::Python,
    Language::Php,
];
const REFERENCE_FASTCGI: [Language; 4] = [
    Language::Rust,
    Language::Perl,
    Language::Python,
    Language::Php,
];

/// The reference rungs for `languages`: lighttpd and nginx+fcgiwrap running a CGI
/// program, nginx in front of a FastCGI pool, nginx serving the static file.
pub fn references(languages: &[Language]) -> Vec<Rung> {
    let mut rungs = Vec::new();
    if let Some(&l) = REFERENCE_CGI.iter().find(|l| languages.contains(l)) {
        rungs.push(Rung::new(Model::Lighttpd, l));
        rungs.push(Rung::new(Model::NginxFcgiwrap, l));
    }
    if let Some(&l) = REFERENCE_FASTCGI.iter().find(|l| languages.contains(l)) {
        rungs.push(Rung::new(Model::NginxFastCgi, l));
    }
    rungs.push(Rung::file(Model::NginxStatic));
    rungs
}

/// Every rung for `languages`, in order, with the static file last.
pub fn ladder(languages: &[Language]) -> Vec<Rung> {
    let mut rungs = Vec::new();
    for &l in languages {
        rungs.push(Rung::new(Model::Cgi, l));
        // A shell script cannot speak FastCGI, nor can the plain C hello: those
        // are CGI-only rungs.
        if l != Language::Sh && l != Language::C {
            rungs.push(Rung::new(Model::FastCgi, l));
        }
        if l == Language::Python {
            rungs.push(Rung::new(Model::Gunicorn, l));
            rungs.push(Rung::new(Model::Uvicorn, l));
        }
    }
    rungs.push(Rung::file(Model::Static));
    rungs
}

/// What is installed on this machine, for the rungs that need more than the server.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    /// The python3 scripts get (the first on the scripts' PATH).
    pub python: Option<PathBuf>,
    pub flup: bool,
    pub gunicorn: bool,
    pub uvicorn: bool,
    pub php_cgi: bool,
    pub perl_fcgi: bool,
    /// The compiled Rust example (built by build.rs into cgi-bin/).
    pub hello_rs: Option<PathBuf>,
    /// A C compiler, for the static C hello.
    pub cc: Option<PathBuf>,
    /// The reference servers.
    pub lighttpd: Option<PathBuf>,
    pub nginx: Option<PathBuf>,
    pub fcgiwrap: Option<PathBuf>,
}

/// Where `php-cgi` must be: hello.php's `#!` line names it.
const PHP_CGI: &str = "/usr/bin/php-cgi";
const PERL: &str = "/usr/bin/perl";

impl Peers {
    pub fn detect() -> Peers {
        let python = DEFAULT_PATH
            .split(':')
            .map(|d| Path::new(d).join("python3"))
            .find(|p| p.is_file());
        let imports = |module: &str| {
            python.as_ref().is_some_and(|py| {
                succeeds(Command::new(py).args(["-c", &format!("import {module}")]))
            })
        };
        Peers {
            flup: imports("flup.server.fcgi"),
            gunicorn: imports("gunicorn"),
            uvicorn: imports("uvicorn"),
            python: python.clone(),
            php_cgi: Path::new(PHP_CGI).is_file(),
            perl_fcgi: succeeds(Command::new(PERL).args(["-MFCGI", "-e1"])),
            hello_rs: find_hello_rs(),
            cc: find_program("cc"),
            lighttpd: find_program("lighttpd"),
            nginx: find_program("nginx"),
            fcgiwrap: find_program("fcgiwrap"),
        }
    }

    /// Why `rung` cannot run here, if it cannot.
    pub fn missing(&self, rung: Rung) -> Option<String> {
        let need = |ok: bool, what: &str| (!ok).then(|| format!("{what} is not installed"));
        let server = match rung.model {
            Model::Lighttpd => need(self.lighttpd.is_some(), "lighttpd (Debian: lighttpd)"),
            Model::NginxFcgiwrap => need(self.nginx.is_some(), "nginx (Debian: nginx)")
                .or_else(|| need(self.fcgiwrap.is_some(), "fcgiwrap (Debian: fcgiwrap)")),
            Model::NginxFastCgi | Model::NginxStatic => {
                need(self.nginx.is_some(), "nginx (Debian: nginx)")
            }
            _ => None,
        };
        if server.is_some() {
            return server;
        }
        // The static file needs nothing but the server.
        let language = rung.language?;
        // A reference runs the program as our CGI or FastCGI rung would.
        let model = match rung.model {
            Model::Lighttpd | Model::NginxFcgiwrap => Model::Cgi,
            Model::NginxFastCgi => Model::FastCgi,
            m => m,
        };
        match (language, model) {
            (Language::Rust, _) => self.hello_rs.is_none().then(|| {
                "cgi-bin/hello-rs is not built (run `cargo build` in the source tree)".into()
            }),
            (Language::Sh, _) => None,
            (Language::C, _) => need(self.cc.is_some(), "a C compiler (cc)"),
            (Language::Perl, _) => {
                need(self.perl_fcgi, "Perl's FCGI module (Debian: libfcgi-perl)")
            }
            (Language::Php, _) => need(self.php_cgi, "php-cgi (Debian: php-cgi)"),
            (Language::Python, model) => {
                let Some(py) = &self.python else {
                    return Some(format!("no python3 on {DEFAULT_PATH}"));
                };
                let py = py.display();
                match model {
                    Model::FastCgi => need(self.flup, &format!("flup for {py} (pip install flup)")),
                    Model::Gunicorn => need(
                        self.gunicorn,
                        &format!("gunicorn for {py} ({py} -m pip install gunicorn)"),
                    ),
                    Model::Uvicorn => need(
                        self.uvicorn,
                        &format!("uvicorn for {py} ({py} -m pip install uvicorn)"),
                    ),
                    _ => None,
                }
            }
        }
    }
}

/// `name` on PATH or in the sbin directories (where Debian puts servers).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cgi-bin/hello-rs` under the current directory, else under the source tree this
/// binary was built from.
fn find_hello_rs() -> Option<PathBuf> {
    [
        PathBuf::from("cgi-bin/hello-rs"),
        Path::new(crate::SOURCE_TREE).join("cgi-bin/hello-rs"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The scripts, embedded so the report runs from any directory.
const SCRIPTS: [(&str, &str); 4] = [
    ("hello", include_str!("../../../cgi-bin/hello")),
    (
        "hello.fcgi.pl",
        include_str!("../../../cgi-bin/hello.fcgi.pl"),
    ),
    ("hello.php", include_str!("../../../cgi-bin/hello.php")),
    (
        "greetings.py",
        include_str!("../../../report-apps/greetings.py"),
    ),
];
const ASGI_APP: (&str, &str) = (
    "greetings_asgi.py",
    include_str!("../../../report-apps/greetings_asgi.py"),
);

/// The directories a sweep serves from.
#[derive(Debug, Clone)]
pub struct Site {
    /// Scripts for /cgi-bin/ and /fcgi-bin/.
    pub cgi_dir: PathBuf,
    /// The document root, holding [`STATIC_FILE`].
    pub public: PathBuf,
    /// The WSGI and ASGI apps for gunicorn and uvicorn.
    pub apps: PathBuf,
    /// The servers' logs.
    pub logs: PathBuf,
}

/// Writes every script and the static file under `dir`.
pub fn prepare(dir: &Path, peers: &Peers) -> io::Result<Site> {
    let site = Site {
        cgi_dir: dir.join("cgi-bin"),
        public: dir.join("public"),
        apps: dir.join("apps"),
        logs: dir.join("logs"),
    };
    for d in [&site.cgi_dir, &site.public, &site.apps, &site.logs] {
        fs::create_dir_all(d)?;
    }
    for (name, text) in SCRIPTS {
        write_executable(&site.cgi_dir.join(name), text.as_bytes())?;
    }
    if let Some(bin) = &peers.hello_rs {
        write_executable(&site.cgi_dir.join("hello-rs"), &fs::read(bin)?)?;
    }
    if let Some(cc) = &peers.cc {
        // A compiler that cannot build it must not stop the report: the c rung
        // then fails on its own, its GET answering 404.
        let _ = compile_c(cc, &site.cgi_dir);
    }
    for (name, text) in [SCRIPTS[3], ASGI_APP] {
        fs::write(site.apps.join(name), text)?;
    }
    fs::write(site.public.join(STATIC_FILE), "Hello, world!\n")?;
    Ok(site)
}

const HELLO_C: &str = include_str!("../../../cgi-src/hello.c");

/// Compiles the C hello into `dir/hello-c`: statically if the C library allows
/// it (libc.a), else dynamically.
fn compile_c(cc: &Path, dir: &Path) -> io::Result<()> {
    let src = dir.join(".hello.c");
    fs::write(&src, HELLO_C)?;
    let out = dir.join(Language::C.script());
    let built =
        |flags: &[&str]| succeeds(Command::new(cc).args(flags).arg("-o").arg(&out).arg(&src));
    let ok = built(&["-O2", "-static"]) || built(&["-O2"]);
    fs::remove_file(&src)?;
    if ok {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} could not compile hello.c",
            cc.display()
        )))
    }
}

fn write_executable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    fs::write(path, bytes)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_per_language() {
        let labels: Vec<String> = ladder(&[Language::Sh, Language::Python])
            .iter()
            .map(Rung::label)
            .collect();
        assert_eq!(
            labels,
            [
                "sh CGI",
                "python CGI",
                "python FastCGI",
                "python gunicorn",
                "python uvicorn",
                "static file"
            ]
        );
        assert_eq!(
            Rung::new(Model::FastCgi, Language::Php).path(),
            "/fcgi-bin/hello.php"
        );
    }

    #[test]
    fn missing_peers_are_named() {
        let none = Peers::default();
        assert!(none.missing(Rung::new(Model::Cgi, Language::Sh)).is_none());
        let why = none.missing(Rung::new(Model::Cgi, Language::Php)).unwrap();
        assert!(why.contains("php-cgi"), "{why}");
        let py = Peers {
            python: Some("/usr/bin/python3".into()),
            ..Peers::default()
        };
        assert!(
            py.missing(Rung::new(Model::Cgi, Language::Python))
                .is_none()
        );
        let why = py
            .missing(Rung::new(Model::Uvicorn, Language::Python))
            .unwrap();
        assert!(why.contains("uvicorn"), "{why}");
    }
}
