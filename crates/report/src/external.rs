//! The Python application servers of the ladder, run as our children on a loopback
//! port with a fixed worker count: gunicorn for the WSGI app, uvicorn for its ASGI
//! twin. Each runs in its own process group, and dropping it stops the whole group.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cgroup::Accounting;
use crate::children::Group;
use crate::ladder::Model;
use cgi_testbed_load as load;

/// How long a server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct External {
    group: Group,
    pub addr: SocketAddr,
    /// Its control group (dropped after it), where one could be made.
    acct: Option<Accounting>,
}

impl External {
    /// Starts `model` (gunicorn or uvicorn) serving the app in `apps` with `workers`
    /// worker processes; its stderr goes to `log`. Returns once it answers 200.
    pub fn start(
        model: Model,
        python: &Path,
        apps: &Path,
        workers: usize,
        log: &Path,
    ) -> Result<External, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let workers = workers.to_string();
        let port = port.to_string();
        let apps = apps.display().to_string();
        let bind = format!("127.0.0.1:{port}");
        let args: Vec<&str> = match model {
            // gthread rather than the default sync worker: sync workers close the
            // connection after every answer, and every other rung keeps it alive.
            Model::Gunicorn => vec![
                "-m",
                "gunicorn",
                "--workers",
                &workers,
                "--worker-class",
                "gthread",
                "--threads",
                "1",
                "--bind",
                &bind,
                "--chdir",
                &apps,
                "--log-level",
                "warning",
                "greetings:application",
            ],
            Model::Uvicorn => vec![
                "-m",
                "uvicorn",
                "--workers",
                &workers,
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--app-dir",
                &apps,
                "--lifespan",
                "off",
                "--no-access-log",
                "--log-level",
                "warning",
                "greetings_asgi:app",
            ],
            _ => return Err(format!("{} is not an external server", model.name())),
        };
        let stderr = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let acct = Accounting::new();
        let group = Group::spawn_in(
            Command::new(python)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr),
            acct.as_ref(),
        )
        .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let mut server = External { group, addr, acct };
        wait_ready(&mut server.group, addr, "/", model.name(), log)?;
        Ok(server)
    }

    pub fn pid(&self) -> i32 {
        self.group.pid()
    }

    /// The CPU all its processes used so far, from its control group.
    pub fn cgroup_usage(&self) -> Option<Duration> {
        self.acct.as_ref()?.usage()
    }
}

/// Waits until the server at `addr` answers `path` with 200, or says why it did not.
pub fn wait_ready(
    group: &mut Group,
    addr: SocketAddr,
    path: &str,
    name: &str,
    log: &Path,
) -> Result<(), String> {
    let until = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(a) = load::get(addr, path)
            && a.status == 200
        {
            return Ok(());
        }
        let exited = group.exited();
        if exited || Instant::now() >= until {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            let why = if exited { "exited" } else { "did not answer" };
            return Err(format!(
                "{name} {why}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback port free now.
pub fn free_port() -> std::io::Result<u16> {
    // The port is free once this listener is dropped; another process could take it
    // before the server binds it, which start() then reports.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
