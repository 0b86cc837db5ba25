//! The reference servers, measured beside ours with the same load generator in the
//! same run: lighttpd running the program through mod_cgi, nginx in front of
//! fcgiwrap (which runs it as CGI), nginx in front of a pool of the same program as
//! FastCGI workers (started here on one shared socket, as spawn-fcgi or php-fpm
//! would), and nginx serving the static file. Each listens on a free loopback port,
//! with its configuration, sockets and logs in the report's temporary directory, and
//! runs only for its rung (every process in a [`Group`], stopped when dropped).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cgroup::Accounting;
use crate::children::Group;
use crate::external::{free_port, wait_ready};
use crate::ladder::{Language, Model, Peers, Rung, Site};

/// fcgiwrap's processes: each runs one script at a time.
pub const FCGIWRAP_PROCESSES: usize = 4;
/// Requests a client may send on one connection: high, as with our server.
const KEEPALIVE_REQUESTS: u32 = 1_000_000;

pub struct Reference {
    /// In stopping order: the HTTP server first, then what it talks to.
    groups: Vec<Group>,
    pub addr: SocketAddr,
    /// Their control group (dropped after them), where one could be made.
    acct: Option<Accounting>,
}

impl Reference {
    /// Starts the servers of `rung` (a reference model) for `site`, with `workers`
    /// FastCGI workers; returns once the rung's path answers 200.
    pub fn start(
        rung: Rung,
        site: &Site,
        peers: &Peers,
        workers: usize,
    ) -> Result<Reference, String> {
        let dir = site.logs.join(rung.slug());
        // A repeat reuses the directory: stale sockets would refuse the bind.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let missing = |what: &str| format!("{what} is not installed");
        let mut groups = Vec::new();
        let acct = Accounting::new();
        let start =
            |cmd: &mut Command, log: &Path, name: &str| spawn(cmd, acct.as_ref(), log, name);
        let log = dir.join("error.log");
        match rung.model {
            Model::Lighttpd => {
                let lighttpd = peers
                    .lighttpd
                    .as_deref()
                    .ok_or_else(|| missing("lighttpd"))?;
                let conf = dir.join("lighttpd.conf");
                write(&conf, &lighttpd_conf(site, &dir, port))?;
                groups.push(start(
                    Command::new(lighttpd)
                        .stdin(Stdio::null())
                        .arg("-D")
                        .arg("-f")
                        .arg(&conf),
                    &log,
                    "lighttpd",
                )?);
            }
            Model::NginxFcgiwrap | Model::NginxFastCgi | Model::NginxStatic => {
                let nginx = peers.nginx.as_deref().ok_or_else(|| missing("nginx"))?;
                // What nginx talks to starts first, so nginx never answers 502.
                let mut backends = Vec::new();
                if rung.model == Model::NginxFcgiwrap {
                    let fcgiwrap = peers
                        .fcgiwrap
                        .as_deref()
                        .ok_or_else(|| missing("fcgiwrap"))?;
                    let sock = dir.join("fcgiwrap.sock");
                    backends.push(start(
                        Command::new(fcgiwrap)
                            .stdin(Stdio::null())
                            .arg("-c")
                            .arg(FCGIWRAP_PROCESSES.to_string())
                            .arg("-s")
                            .arg(format!("unix:{}", sock.display())),
                        &dir.join("fcgiwrap.log"),
                        "fcgiwrap",
                    )?);
                }
                if rung.model == Model::NginxFastCgi {
                    let language = rung.language.ok_or("a FastCGI rung without a program")?;
                    backends.extend(workers_on_socket(
                        site,
                        language,
                        &dir,
                        workers,
                        acct.as_ref(),
                    )?);
                }
                let conf = dir.join("nginx.conf");
                write(&conf, &nginx_conf(site, &dir, port))?;
                groups.push(start(
                    Command::new(nginx)
                        .stdin(Stdio::null())
                        .arg("-p")
                        .arg(&dir)
                        .arg("-c")
                        .arg(&conf)
                        .arg("-e")
                        .arg(&log)
                        .args(["-g", "daemon off;"]),
                    &dir.join("nginx.stderr"),
                    "nginx",
                )?);
                groups.append(&mut backends);
            }
            other => return Err(format!("{} is not a reference server", other.name())),
        }
        let name = rung.label();
        let first = groups.first_mut().ok_or("no process was started")?;
        wait_ready(first, addr, &rung.path(), &name, &log)?;
        Ok(Reference { groups, addr, acct })
    }

    /// The CPU all its processes used so far, from its control group.
    pub fn cgroup_usage(&self) -> Option<Duration> {
        self.acct.as_ref()?.usage()
    }

    /// The processes whose trees serve: the HTTP server and its backends.
    pub fn roots(&self) -> Vec<i32> {
        self.groups.iter().map(Group::pid).collect()
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Starts `cmd` (its stdin set by the caller) with stdout and stderr into `log`,
/// inside `acct`.
fn spawn(
    cmd: &mut Command,
    acct: Option<&Accounting>,
    log: &Path,
    name: &str,
) -> Result<Group, String> {
    let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    Group::spawn_in(cmd.stdout(out).stderr(err), acct)
        .map_err(|e| format!("cannot start {name}: {e}"))
}

/// `workers` processes of `language`'s program, each with the same listening unix
/// socket as fd 0 (FCGI_LISTENSOCK_FILENO), as spawn-fcgi -F or php-fpm set them up.
fn workers_on_socket(
    site: &Site,
    language: Language,
    dir: &Path,
    workers: usize,
    acct: Option<&Accounting>,
) -> Result<Vec<Group>, String> {
    let sock = dir.join("workers.sock");
    let listener = UnixListener::bind(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    let program = site.cgi_dir.join(language.script());
    let log = dir.join("workers.log");
    (0..workers.max(1))
        .map(|_| {
            let fd0: OwnedFd = listener
                .try_clone()
                .map_err(|e| format!("socket: {e}"))?
                .into();
            spawn(
                Command::new(&program)
                    .current_dir(&site.cgi_dir)
                    // php-cgi would otherwise fork children of its own.
                    .env("PHP_FCGI_CHILDREN", "0")
                    .env("PHP_FCGI_MAX_REQUESTS", "0")
                    .stdin(fd0),
                acct,
                &log,
                language.script(),
            )
        })
        .collect()
}

fn lighttpd_conf(site: &Site, dir: &Path, port: u16) -> String {
    format!(
        r#"server.document-root = "{public}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{dir}/error.log"
server.upload-dirs = ( "{dir}" )
server.modules = ( "mod_alias", "mod_cgi" )
server.max-keep-alive-requests = 65535
server.max-keep-alive-idle = 60
alias.url = ( "/cgi-bin/" => "{cgi}/" )
$HTTP["url"] =~ "^/cgi-bin/" {{ cgi.assign = ( "" => "" ) }}
"#,
        public = site.public.display(),
        dir = dir.display(),
        cgi = site.cgi_dir.display(),
    )
}

/// The CGI meta-variables nginx passes (Debian's fastcgi_params, and the script).
fn fastcgi_params(cgi_dir: &Path) -> String {
    let mut p = String::new();
    for (name, value) in [
        ("QUERY_STRING", "$query_string"),
        ("REQUEST_METHOD", "$request_method"),
        ("CONTENT_TYPE", "$content_type"),
        ("CONTENT_LENGTH", "$content_length"),
        ("SCRIPT_NAME", "$fastcgi_script_name"),
        ("REQUEST_URI", "$request_uri"),
        ("DOCUMENT_URI", "$document_uri"),
        ("DOCUMENT_ROOT", "$document_root"),
        ("SERVER_PROTOCOL", "$server_protocol"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "nginx/$nginx_version"),
        ("REMOTE_ADDR", "$remote_addr"),
        ("REMOTE_PORT", "$remote_port"),
        ("SERVER_ADDR", "$server_addr"),
        ("SERVER_PORT", "$server_port"),
        ("SERVER_NAME", "$server_name"),
        ("REDIRECT_STATUS", "200"),
    ] {
        let _ = writeln!(p, "      fastcgi_param {name} \"{value}\";");
    }
    let _ = writeln!(
        p,
        "      fastcgi_param SCRIPT_FILENAME \"{}/$1\";",
        cgi_dir.display()
    );
    p
}

fn nginx_conf(site: &Site, dir: &Path, port: u16) -> String {
    // Run as root, nginx would start its workers as nobody, who cannot enter the
    // report's private temporary directory.
    // SAFETY: geteuid only reads our credentials.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root root;\n"
    } else {
        ""
    };
    let d = dir.display();
    let params = fastcgi_params(&site.cgi_dir);
    format!(
        r#"{user}worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  default_type text/plain;
  keepalive_requests {KEEPALIVE_REQUESTS};
  keepalive_timeout 60s;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {public};
    location ~ ^/cgi-bin/([^/]+)$ {{
      fastcgi_pass unix:{d}/fcgiwrap.sock;
{params}    }}
    location ~ ^/fcgi-bin/([^/]+)$ {{
      fastcgi_pass unix:{d}/workers.sock;
{params}    }}
  }}
}}
"#,
        public = site.public.display(),
    )
}
