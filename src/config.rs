//! Runtime settings of one server, as plain data (the CLI builds it; tests build it
//! directly).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::fastcgi::external::Address;
use crate::fastcgi::pool::PoolSettings;
use crate::handlers::{Handler, Handlers, Runner, server_name};
use crate::limits::Limits;
use crate::logger::LogTarget;
use crate::net::IpNet;
use crate::paths::Dotfiles;
use crate::spawn::{SpawnMode, WorkerSched};
use crate::try_files::TryFiles;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Directory whose executables run under `/cgi-bin/` (unless `script_mounts` says
    /// otherwise) and `/fcgi-bin/`.
    pub cgi_dir: PathBuf,
    /// `--root`: static files are served from here; also DOCUMENT_ROOT and the base of
    /// PATH_TRANSLATED. Unset: no static files, and DOCUMENT_ROOT is the cgi-dir's parent.
    pub document_root: Option<PathBuf>,
    /// URL prefix → directory of CGI scripts, matched in order; empty means
    /// `/cgi-bin` → `cgi_dir`. A listed directory that does not exist is skipped.
    pub script_mounts: Vec<(String, PathBuf)>,
    /// A missing `cgi_dir` stops the server, unless it was only implied by `--root`.
    pub require_cgi_dir: bool,
    /// `--try-files`; `None` serves paths as they are.
    pub try_files: Option<TryFiles>,
    /// Answer `/server-status` (`--no-status` turns it off).
    pub status_page: bool,
    /// Who besides loopback clients may read the status page.
    pub status_allow: Vec<IpNet>,
    /// Event loops (threads), each serving any number of connections.
    pub loops: usize,
    /// `--timeout`: a script's run time (504 past it).
    pub timeout: Duration,
    /// `--head-timeout`: how long a client may take to send one request head, from its
    /// first byte (and a new connection to start one); 408 past it.
    pub head_timeout: Duration,
    /// `--keepalive-timeout`: how long a kept connection may idle between requests.
    pub keepalive_timeout: Duration,
    /// `--body-timeout`: longest wait for the next bytes of a request body (408).
    pub body_timeout: Duration,
    /// `--send-timeout`: longest wait for a client to take any of our answer.
    pub send_timeout: Duration,
    /// `--min-send-rate`: bytes per second a client must take while we wait on it
    /// (0: no minimum).
    pub min_send_rate: u64,
    pub max_body: u64,
    pub max_header: usize,
    /// Scripts alive at once (lingering ones included); more wait up to `proc_wait`,
    /// then get 503.
    pub max_procs: usize,
    pub proc_wait: Duration,
    /// Open client connections; more are answered 503 and closed.
    pub max_connections: usize,
    /// `--max-spill`: script output held on disk for one request while its client is
    /// still sending the body; beyond it the script is not read.
    pub max_spill: u64,
    /// `--file-cache`: bytes of small static files each loop keeps copies of for a
    /// second (0: none).
    pub file_cache: u64,
    /// `--fcgi-allow`: the only names `/fcgi-bin/` runs as worker pools (empty: all).
    pub fcgi_allow: Vec<String>,
    /// `--env` and `--pass-env`, resolved.
    pub env: Vec<(String, Vec<u8>)>,
    /// File extension → program that runs files without a `#!` line.
    pub interpreters: Vec<(String, PathBuf)>,
    pub pass_authorization: bool,
    pub spawn: SpawnMode,
    pub error_log: LogTarget,
    pub access_log: Option<LogTarget>,
    /// How long in-flight requests may run on after shutdown begins.
    pub shutdown_grace: Duration,
    /// A chunked request body above this size is spooled to a temp file.
    pub spool_memory: usize,
    /// Worker pools behind `/fcgi-bin/`.
    pub workers: PoolSettings,
    /// `--limit-*`: what each script and worker may use.
    pub limits: Limits,
    /// Send a Server-Timing header with each script's answer.
    pub server_timing: bool,
    /// `--fastcgi NAME=ADDR`: external FastCGI servers by script name.
    pub fastcgi: Vec<(String, Address)>,
    /// `--dotfiles`: whether paths with a segment starting with `.` are served and run.
    pub dotfiles: Dotfiles,
    /// `--cgi-ext EXT[=PROGRAM]`: files with this extension under the document root
    /// run as CGI, through PROGRAM or their own `#!` line.
    pub cgi_ext: Vec<(String, Option<PathBuf>)>,
    /// `--fcgi-ext EXT=PROGRAM|ADDR`: files with this extension under the document
    /// root go to PROGRAM's worker pool or to an external FastCGI server.
    pub fcgi_ext: Vec<(String, FcgiExt)>,
    /// `--index`: names a directory serves or runs, tried in order.
    pub index: Vec<String>,
}

/// What serves one `--fcgi-ext` extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FcgiExt {
    /// A program started as one worker pool for every such file.
    Program(PathBuf),
    /// A FastCGI server someone else runs.
    Server(Address),
}

impl FcgiExt {
    /// `unix:PATH` or `HOST:PORT` is a server; anything else, a program (a path
    /// starting with `/` or `.` always is).
    pub fn parse(s: &str) -> Result<FcgiExt, String> {
        if s.is_empty() {
            return Err("expected EXT=PROGRAM, EXT=unix:PATH or EXT=HOST:PORT".into());
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(FcgiExt::Program(PathBuf::from(s)));
        }
        match Address::parse(s) {
            Ok(a) => Ok(FcgiExt::Server(a)),
            Err(e) if s.starts_with("unix:") => Err(e),
            Err(_) => Ok(FcgiExt::Program(PathBuf::from(s))),
        }
    }
}

impl Config {
    /// Defaults for serving `cgi_dir` on an ephemeral loopback port.
    pub fn new(cgi_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cgi_dir: cgi_dir.into(),
            document_root: None,
            script_mounts: Vec::new(),
            require_cgi_dir: true,
            try_files: None,
            status_page: true,
            status_allow: Vec::new(),
            loops: cores(),
            timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            min_send_rate: 1024,
            max_body: 1 << 30,
            max_header: 64 << 10,
            max_procs: 64,
            proc_wait: Duration::from_secs(2),
            max_connections: 1024,
            max_spill: 16 << 20,
            file_cache: 4 << 20,
            fcgi_allow: Vec::new(),
            env: Vec::new(),
            interpreters: Vec::new(),
            pass_authorization: false,
            spawn: SpawnMode::PosixSpawn,
            error_log: LogTarget::Stderr,
            access_log: None,
            shutdown_grace: Duration::from_secs(10),
            spool_memory: 1 << 20,
            workers: PoolSettings {
                min: 0,
                max: cores(),
                total: 32,
                idle: Duration::from_secs(60),
                max_requests: 0,
                wait: Duration::from_secs(10),
                sched: WorkerSched::Batch,
            },
            fastcgi: Vec::new(),
            server_timing: true,
            limits: Limits::default(),
            dotfiles: Dotfiles::Deny,
            cgi_ext: Vec::new(),
            fcgi_ext: Vec::new(),
            index: vec!["index.html".into()],
        }
    }

    /// The scripts that run in place, from `--cgi-ext` and `--fcgi-ext`. They run
    /// under the document root, so there must be one.
    pub fn handlers(&self) -> Result<Handlers, String> {
        let mut list: Vec<Handler> = self
            .cgi_ext
            .iter()
            .map(|(ext, program)| Handler {
                ext: ext.clone(),
                runner: Runner::Cgi(program.clone()),
            })
            .collect();
        for (ext, how) in &self.fcgi_ext {
            let runner = match how {
                FcgiExt::Program(p) => Runner::Pool(p.clone()),
                // Several addresses for one extension are its backends, in turn.
                FcgiExt::Server(_)
                    if list
                        .iter()
                        .any(|h| h.ext == *ext && matches!(h.runner, Runner::Server { .. })) =>
                {
                    continue;
                }
                FcgiExt::Server(_) => Runner::Server {
                    name: server_name(ext),
                    shown: self.ext_servers(ext).join(", "),
                },
            };
            list.push(Handler {
                ext: ext.clone(),
                runner,
            });
        }
        if !list.is_empty() && self.document_root.is_none() {
            return Err(
                "--cgi-ext and --fcgi-ext run files under the document root: give --root DIR"
                    .into(),
            );
        }
        Handlers::new(list)
    }

    /// The addresses `--fcgi-ext EXT=ADDR` gave for `ext`, shown.
    fn ext_servers(&self, ext: &str) -> Vec<String> {
        self.fcgi_ext
            .iter()
            .filter_map(|(e, how)| match how {
                FcgiExt::Server(a) if e == ext => Some(a.to_string()),
                _ => None,
            })
            .collect()
    }

    /// Every external FastCGI server by the name the routes use: `--fastcgi NAME=ADDR`
    /// as given, `--fcgi-ext EXT=ADDR` as `*.EXT`, in order.
    pub fn fastcgi_servers(&self) -> Vec<(String, Address)> {
        let mut all = self.fastcgi.clone();
        for (ext, how) in &self.fcgi_ext {
            if let FcgiExt::Server(a) = how {
                all.push((server_name(ext), a.clone()));
            }
        }
        all
    }

    /// `--root DIR` without `--cgi-dir`, laid out as for `python -m http.server --cgi`:
    /// DIR is served statically and `DIR/cgi-bin/` and `DIR/htbin/` hold scripts, as in
    /// CGIHTTPRequestHandler. Either may be missing.
    pub fn python_layout(&mut self, root: impl Into<PathBuf>) {
        let root = root.into();
        self.cgi_dir = root.join("cgi-bin");
        self.script_mounts = vec![
            ("/cgi-bin".into(), root.join("cgi-bin")),
            ("/htbin".into(), root.join("htbin")),
        ];
        self.require_cgi_dir = false;
        self.document_root = Some(root);
    }
}

/// The number of cores (threads the machine runs at once).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
