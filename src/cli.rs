//! Command-line options → [`Config`]; nothing else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use clap::Parser;

use crate::config::{self, Config, FcgiExt};
use crate::fastcgi::external::Address;
use crate::handlers::check_extension;
use crate::limits::Limits;
use crate::logger::LogTarget;
use crate::net::IpNet;
use crate::paths::Dotfiles;
use crate::spawn::{SpawnMode, WorkerSched};
use crate::try_files::TryFiles;

const EXAMPLES: &str = "\
Examples:
  cgi-testbed                                   serve ./cgi-bin on http://127.0.0.1:8080
  cgi-testbed --listen 127.0.0.1:0              any free port (printed on stdout)
  cgi-testbed --cgi-dir ~/site/cgi-bin --timeout 5s --max-procs 16 --max-connections 256
  cgi-testbed --interpreter py=/usr/bin/python3 --env APP_MODE=dev --pass-env TZ
  cgi-testbed --spawn fork --access-log -        fork+exec, access log on stdout
  cgi-testbed --workers-max 4 --worker-max-requests 1000
                                                /fcgi-bin/NAME: NAME as a FastCGI worker pool
  cgi-testbed --fastcgi app=unix:/run/php/php-fpm.sock --fastcgi app=127.0.0.1:9000
  cgi-testbed --root site                       like `python -m http.server --cgi`: site/ as
                                                static files, site/cgi-bin/ and site/htbin/ run
  cgi-testbed --root public --try-files '$uri $uri/ /cgi-bin/app'
                                                files if they exist, else the front controller
  cgi-testbed --root /usr/share/dokuwiki --fcgi-ext php=/usr/bin/php-cgi --index doku.php
                                                a PHP application where it lives: *.php run
                                                (one php-cgi pool), everything else is static

  curl -i http://127.0.0.1:8080/cgi-bin/hello      one process per request
  curl -i http://127.0.0.1:8080/fcgi-bin/hello-rs  the same program as a persistent worker
  curl    http://127.0.0.1:8080/server-status?json  counters, running scripts, pools, memory

  cgi-testbed report                            measure CGI vs FastCGI here: report/index.html";

#[derive(Debug, Parser)]
#[command(name = "cgi-testbed", version, about = "A classic CGI server and test-bed", after_help = EXAMPLES)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Without a command, serve (the options below).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory whose executables run under /cgi-bin/ and /fcgi-bin/ [default: cgi-bin,
    /// or DIR/cgi-bin with --root DIR].
    #[arg(long)]
    pub cgi_dir: Option<PathBuf>,

    /// Serve static files from DIR (also DOCUMENT_ROOT) [default: ./public if it exists].
    /// Without --cgi-dir, DIR/cgi-bin/ and DIR/htbin/ run as script directories, as with
    /// `python -m http.server --cgi`.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// nginx-style try_files: entries tried in order ($uri is the path, a trailing / means
    /// a directory); the last is used when none exists: a script path (it gets the
    /// original REQUEST_URI) or =404. E.g. '$uri $uri/ /cgi-bin/app'.
    #[arg(long, value_name = "LIST", value_parser = TryFiles::parse)]
    pub try_files: Option<TryFiles>,

    /// Under --root, run files ending in .EXT as CGI, through PROGRAM or their own #!
    /// line, e.g. php=/usr/bin/php-cgi, cgi (repeatable). Such files are never sent as
    /// files.
    #[arg(long = "cgi-ext", value_name = "EXT[=PROGRAM]", value_parser = parse_cgi_ext)]
    pub cgi_ext: Vec<(String, Option<PathBuf>)>,

    /// Under --root, send files ending in .EXT to FastCGI: PROGRAM started as one
    /// worker pool for all of them, or a server at unix:PATH or HOST:PORT (repeatable).
    #[arg(long = "fcgi-ext", value_name = "EXT=PROGRAM|ADDR", value_parser = parse_fcgi_ext)]
    pub fcgi_ext: Vec<(String, FcgiExt)>,

    /// What a directory serves or runs, the first that exists (repeatable)
    /// [default: index.html].
    #[arg(long = "index", value_name = "NAME", value_parser = parse_index)]
    pub index: Vec<String>,

    /// Serve and run paths with a segment starting with "." (.git/, .env); by default
    /// they are 404, except /.well-known/.
    #[arg(long, value_enum, default_value = "deny", value_name = "deny|allow")]
    pub dotfiles: Dotfiles,

    /// Do not answer /server-status.
    #[arg(long)]
    pub no_status: bool,

    /// Also let clients from this address or CIDR block read /server-status (repeatable;
    /// loopback clients always may).
    #[arg(long = "status-allow", value_name = "CIDR|IP")]
    pub status_allow: Vec<IpNet>,

    /// Event loops (threads); each serves any number of connections [default: number
    /// of cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub loops: Option<u16>,

    /// Script run time limit (504 past it).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// How long a request head may take from its first byte, and a new connection to
    /// start one (408 past it).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub head_timeout: Duration,

    /// How long a kept connection may idle between requests.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub keepalive_timeout: Duration,

    /// Longest wait for the next bytes of a request body (408 past it).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,

    /// Longest wait for a client to take any of the answer (then the connection closes).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub send_timeout: Duration,

    /// Bytes per second a client must take while the answer waits on it, judged over
    /// each --send-timeout (0: no minimum).
    #[arg(long, default_value = "1KiB")]
    pub min_send_rate: ByteSize,

    /// Open client connections; more are answered 503 and closed.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Script output held on disk per request while its client still sends the body;
    /// beyond it the script is not read until the client catches up.
    #[arg(long, default_value = "16MiB")]
    pub max_spill: ByteSize,

    /// Copies of small static files (up to 64 KiB each) each event loop keeps, and
    /// sends for a second without reading the file again; past it the loop starts
    /// over. 0 keeps none: every request reads its file.
    #[arg(long, default_value = "4MiB")]
    pub file_cache: ByteSize,

    /// Largest request body (e.g. 10MiB).
    #[arg(long, default_value = "1GiB")]
    pub max_body: ByteSize,

    /// Largest request header block.
    #[arg(long, default_value = "64KiB")]
    pub max_header: ByteSize,

    /// Scripts running at once; excess requests wait briefly, then get 503.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_procs: u32,

    /// Extra environment variable for every script (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Copy this variable from the server's environment to scripts (repeatable).
    #[arg(long = "pass-env", value_name = "NAME")]
    pub pass_env: Vec<String>,

    /// Run files with this extension through PROGRAM, e.g. py=/usr/bin/python3 (repeatable).
    #[arg(long = "interpreter", value_name = "EXT=PROGRAM", value_parser = parse_interpreter)]
    pub interpreters: Vec<(String, PathBuf)>,

    /// Pass the Authorization header to scripts as HTTP_AUTHORIZATION.
    #[arg(long)]
    pub pass_authorization: bool,

    /// How script processes are started.
    #[arg(long, value_enum, default_value = "posix-spawn")]
    pub spawn: SpawnMode,

    /// Serve /fcgi-bin/NAME with an external FastCGI server: unix:/path.sock or
    /// HOST:PORT (repeat NAME for several backends, used in turn).
    #[arg(long = "fastcgi", value_name = "NAME=ADDR", value_parser = parse_fastcgi)]
    pub fastcgi: Vec<(String, Address)>,

    /// FastCGI workers kept per script even when idle.
    #[arg(long, default_value_t = 0)]
    pub workers_min: usize,

    /// Most FastCGI workers per script [default: number of cores].
    #[arg(long)]
    pub workers_max: Option<usize>,

    /// Most FastCGI workers in all pools together.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers_total: u32,

    /// Only this program may run under /fcgi-bin/ as a worker pool (repeatable; by
    /// default every script may).
    #[arg(long = "fcgi-allow", value_name = "NAME")]
    pub fcgi_allow: Vec<String>,

    /// Idle workers above --workers-min exit after this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub worker_idle: Duration,

    /// Replace a worker after it has served this many requests (0: never).
    #[arg(long, default_value_t = 0)]
    pub worker_max_requests: u64,

    /// How long a request waits for a free worker before 503.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub worker_wait: Duration,

    /// Workers' scheduling policy: batch (SCHED_BATCH, so a worker woken by a request
    /// does not preempt the loop that sent it) or normal.
    #[arg(long, value_enum, default_value = "batch")]
    pub worker_sched: WorkerSched,

    /// Do not send the Server-Timing header (queue, spawn, ttfb, total).
    #[arg(long)]
    pub no_server_timing: bool,

    /// CPU time a script (or worker) may use, e.g. 10s (RLIMIT_CPU).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub limit_cpu: Option<Duration>,

    /// Memory a script and its children may use, e.g. 512MiB (a cgroup; else RLIMIT_AS).
    #[arg(long)]
    pub limit_memory: Option<ByteSize>,

    /// Processes a script and its children may have at once (a cgroup; else RLIMIT_NPROC).
    #[arg(long)]
    pub limit_procs: Option<u64>,

    /// Output a script may write; beyond it the answer is cut off (502, or a closed connection).
    #[arg(long)]
    pub limit_output: Option<ByteSize>,

    /// On SIGINT/SIGTERM, how long in-flight requests may finish before scripts are killed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub grace: Duration,

    /// Access log file, or - for stdout (Combined Log Format plus time taken).
    #[arg(long, value_name = "PATH|-")]
    pub access_log: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Measure CGI against FastCGI workers on this machine and write an HTML and a
    /// Markdown report with plots. Runs the `cgi-testbed-report` binary (built first
    /// when run from the source tree); `report --help` lists its options.
    #[command(disable_help_flag = true)]
    Report {
        /// The report's options, passed on as they are.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    valid_name(name)?;
    Ok((name.to_owned(), value.to_owned()))
}

fn valid_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid variable name"))
    }
}

fn parse_fastcgi(s: &str) -> Result<(String, Address), String> {
    let (name, addr) = s.split_once('=').ok_or("expected NAME=ADDR")?;
    if name.is_empty() || name.contains('/') {
        return Err(format!("{name:?} is not a script name"));
    }
    Ok((name.to_owned(), Address::parse(addr)?))
}

fn parse_cgi_ext(s: &str) -> Result<(String, Option<PathBuf>), String> {
    let (ext, program) = match s.split_once('=') {
        Some((_, "")) => return Err("expected EXT or EXT=PROGRAM".into()),
        Some((ext, program)) => (ext, Some(PathBuf::from(program))),
        None => (s, None),
    };
    let ext = ext.trim_start_matches('.');
    check_extension(ext)?;
    Ok((ext.to_owned(), program))
}

fn parse_fcgi_ext(s: &str) -> Result<(String, FcgiExt), String> {
    let (ext, how) = s
        .split_once('=')
        .ok_or("expected EXT=PROGRAM, EXT=unix:PATH or EXT=HOST:PORT")?;
    let ext = ext.trim_start_matches('.');
    check_extension(ext)?;
    Ok((ext.to_owned(), FcgiExt::parse(how)?))
}

fn parse_index(s: &str) -> Result<String, String> {
    if s.is_empty() || s == "." || s == ".." || s.contains('/') {
        return Err(format!("{s:?} is not a file name"));
    }
    Ok(s.to_owned())
}

fn parse_interpreter(s: &str) -> Result<(String, PathBuf), String> {
    let (ext, program) = s.split_once('=').ok_or("expected EXT=PROGRAM")?;
    let ext = ext.trim_start_matches('.');
    if ext.is_empty() || program.is_empty() {
        return Err("expected EXT=PROGRAM".into());
    }
    Ok((ext.to_owned(), PathBuf::from(program)))
}

impl Args {
    pub fn into_config(self) -> Result<Config, String> {
        let mut config = Config::new(self.cgi_dir.clone().unwrap_or_else(|| "cgi-bin".into()));
        match (self.root, self.cgi_dir) {
            (Some(root), None) => config.python_layout(root),
            (Some(root), Some(_)) => config.document_root = Some(root),
            (None, _) => {
                let public = PathBuf::from("public");
                if public.is_dir() {
                    config.document_root = Some(public);
                }
            }
        }
        config.try_files = self.try_files;
        config.cgi_ext = self.cgi_ext;
        config.fcgi_ext = self.fcgi_ext;
        if !self.index.is_empty() {
            config.index = self.index;
        }
        config.dotfiles = self.dotfiles;
        config.status_page = !self.no_status;
        config.status_allow = self.status_allow;
        config.listen = self.listen;
        config.loops = self.loops.map_or_else(config::cores, usize::from);
        config.timeout = self.timeout;
        config.head_timeout = self.head_timeout;
        config.keepalive_timeout = self.keepalive_timeout;
        config.body_timeout = self.body_timeout;
        config.send_timeout = self.send_timeout;
        config.min_send_rate = self.min_send_rate.as_u64();
        config.max_connections = self.max_connections as usize;
        config.max_spill = self.max_spill.as_u64();
        config.file_cache = self.file_cache.as_u64();
        config.fcgi_allow = self.fcgi_allow;
        config.max_body = self.max_body.as_u64();
        config.max_header = usize::try_from(self.max_header.as_u64()).map_err(|e| e.to_string())?;
        config.max_procs = self.max_procs as usize;
        config.env = self
            .env
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        for name in self.pass_env {
            valid_name(&name)?;
            if let Some(v) = std::env::var_os(&name) {
                config.env.push((name, v.into_encoded_bytes()));
            }
        }
        config.interpreters = self.interpreters;
        config.pass_authorization = self.pass_authorization;
        config.spawn = self.spawn;
        config.access_log = self.access_log.as_deref().map(LogTarget::parse);
        config.shutdown_grace = self.grace;
        config.fastcgi = self.fastcgi;
        config.server_timing = !self.no_server_timing;
        config.limits = Limits {
            cpu: self.limit_cpu,
            memory: self.limit_memory.map(|b| b.as_u64()),
            procs: self.limit_procs,
            output: self.limit_output.map(|b| b.as_u64()),
        };
        config.workers.min = self.workers_min;
        if let Some(max) = self.workers_max {
            config.workers.max = max.max(1);
        }
        config.workers.max = config.workers.max.max(config.workers.min);
        config.workers.total = self.workers_total as usize;
        config.workers.idle = self.worker_idle;
        config.workers.max_requests = self.worker_max_requests;
        config.workers.wait = self.worker_wait;
        config.workers.sched = self.worker_sched;
        // Checked here too, so a bad combination is a usage error before anything starts.
        config.handlers()?;
        Ok(config)
    }
}
