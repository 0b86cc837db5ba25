//! Our server, measured in a process of its own: the `cgi-testbed` binary started
//! with its serving flags on 127.0.0.1:0 (the address comes from its first line on
//! stdout, `listening on http://ADDR`), its stderr in a log file, its counters read
//! from `/server-status?json`. Its process tree is the server and its scripts and
//! workers only: the load generator and the sampler stay in the report's process.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::children::Group;
use crate::ladder::Site;

/// How long the server may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The server binary to measure and how it was found, for the report.
#[derive(Debug, Clone)]
pub struct Program {
    pub path: PathBuf,
}

impl Program {
    /// `--server PATH` if given; else `cgi-testbed` next to this binary (built first
    /// when run through cargo from the source tree).
    pub fn find(given: Option<PathBuf>) -> Result<Program, String> {
        let path = match given {
            Some(p) => p,
            None => cgi_testbed::sibling::find("cgi-testbed", "cgi-testbed")
                .map_err(|e| e.to_string())?,
        };
        if !path.is_file() {
            return Err(format!("no server binary at {}", path.display()));
        }
        Ok(Program { path })
    }
}

/// How our server is started for a sweep.
#[derive(Debug, Clone)]
pub struct Flags {
    /// FastCGI workers per script: a fixed pool, like gunicorn's fixed worker count.
    pub workers: usize,
    /// The most concurrent clients: one connection thread and one script slot each,
    /// so neither limit is what the sweep measures.
    pub clients: usize,
}

/// The server's own counters, as `/server-status?json` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests answered, all models (the status page's own included).
    pub requests: u64,
    /// Process groups started: CGI scripts and FastCGI workers.
    pub started: u64,
    /// Started and not yet reaped.
    pub running: u64,
    pub reaped: u64,
    /// User + system CPU of the reaped processes, from `wait4`.
    pub reaped_cpu: Duration,
    /// Their lifetimes from the return of their spawn call to reap, summed.
    pub reaped_lifetime: Duration,
    /// Their spawn calls' durations, summed (each forked somewhere within its call).
    pub reaped_spawn: Duration,
}

impl Counters {
    /// Parses the status page's JSON.
    pub fn parse(json: &[u8]) -> Result<Counters, String> {
        let v: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("status JSON: {e}"))?;
        let num = |path: &str| -> Result<u64, String> {
            v.pointer(path)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| format!("status JSON has no number at {path}"))
        };
        Ok(Counters {
            requests: num("/requests/total")?,
            started: num("/children/started")?,
            running: num("/children/running")?,
            reaped: num("/children/reaped")?,
            reaped_cpu: Duration::from_micros(num("/children/reaped_cpu_us")?),
            reaped_lifetime: Duration::from_micros(num("/children/reaped_lifetime_us")?),
            reaped_spawn: Duration::from_micros(num("/children/reaped_spawn_us")?),
        })
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            requests: self.requests.saturating_sub(before.requests),
            started: self.started.saturating_sub(before.started),
            running: self.running,
            reaped: self.reaped.saturating_sub(before.reaped),
            reaped_cpu: self.reaped_cpu.saturating_sub(before.reaped_cpu),
            reaped_lifetime: self.reaped_lifetime.saturating_sub(before.reaped_lifetime),
            reaped_spawn: self.reaped_spawn.saturating_sub(before.reaped_spawn),
        }
    }
}

/// A running server of ours.
pub struct Ours {
    group: Group,
    pub addr: SocketAddr,
    log: PathBuf,
    /// How much of the log [`Ours::errors`] has shown.
    log_seen: u64,
}

impl Ours {
    /// Starts `program` serving `site`, its stderr into `log`.
    pub fn start(
        program: &Program,
        site: &Site,
        flags: &Flags,
        log: &Path,
    ) -> Result<Ours, String> {
        let stderr = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let room = (flags.clients + 8).min(usize::from(u16::MAX)).to_string();
        let workers = flags.workers.max(1).to_string();
        let mut cmd = Command::new(&program.path);
        cmd.args(["--listen", "127.0.0.1:0", "--cgi-dir"])
            .arg(&site.cgi_dir)
            .arg("--root")
            .arg(&site.public)
            // One script slot per client, so the slot limit is not what the sweep
            // measures; connections are bounded well above any sweep's clients.
            .args(["--max-procs", &room])
            .args(["--workers-min", &workers, "--workers-max", &workers])
            // Stopping at the end of a rung must not wait out a long grace period.
            .args(["--grace", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut group = Group::spawn(&mut cmd)
            .map_err(|e| format!("cannot start {}: {e}", program.path.display()))?;
        let stdout = group
            .child()
            .stdout
            .take()
            .ok_or("the server's stdout is not a pipe")?;
        let (tx, rx) = mpsc::channel();
        // Reads the first line, then keeps the pipe drained so the server never
        // blocks on a full pipe, whatever else it prints.
        std::thread::Builder::new()
            .name("report-server-stdout".into())
            .spawn(move || {
                let mut lines = BufReader::new(stdout);
                let mut first = String::new();
                let _ = lines.read_line(&mut first);
                let _ = tx.send(first);
                let _ = std::io::copy(&mut lines, &mut std::io::sink());
            })
            .map_err(|e| format!("thread: {e}"))?;
        let first = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let log_text = std::fs::read_to_string(log).unwrap_or_default();
            let why = if group.exited() {
                "exited"
            } else {
                "did not say where it listens"
            };
            return Err(format!(
                "the server {why}: {:?} {}",
                first.trim(),
                log_text
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
        };
        Ok(Ours {
            group,
            addr,
            log: log.to_path_buf(),
            log_seen: 0,
        })
    }

    pub fn pid(&self) -> i32 {
        self.group.pid()
    }

    /// The server's counters now.
    pub fn counters(&self) -> Result<Counters, String> {
        let a = cgi_testbed_load::get(self.addr, "/server-status?json")
            .map_err(|e| format!("GET /server-status: {e}"))?;
        if a.status != 200 {
            return Err(format!("GET /server-status answered {}", a.status));
        }
        Counters::parse(&a.body)
    }

    /// The first few distinct lines the server logged since the last call.
    pub fn errors(&mut self) -> Vec<String> {
        let Ok(mut f) = File::open(&self.log) else {
            return Vec::new();
        };
        let mut text = String::new();
        if f.seek(SeekFrom::Start(self.log_seen)).is_err() || f.read_to_string(&mut text).is_err() {
            return Vec::new();
        }
        self.log_seen += text.len() as u64;
        first_distinct(text.lines(), 3)
    }

    /// Stops the server (SIGTERM, its grace, SIGKILL) and reaps it.
    pub fn stop(mut self) {
        self.group.stop(crate::children::STOP_GRACE);
    }
}

/// Up to `n` distinct lines, each cut to a readable length: enough to recognise a
/// failure, which is usually the same for every request.
pub fn first_distinct<'a>(lines: impl Iterator<Item = &'a str>, n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in lines {
        let mut l = l.to_owned();
        if let Some((cut, _)) = l.char_indices().nth(240) {
            l.truncate(cut);
            l.push('…');
        }
        if out.len() < n && !out.contains(&l) {
            out.push(l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_from_the_status_json() {
        let json = br#"{"pid": 1, "requests": {"total": 12, "by_model": {}},
            "children": {"started": 10, "running": 2, "reaped": 8,
                         "reaped_cpu_us": 4000, "reaped_lifetime_us": 16000,
                         "reaped_spawn_us": 800}}"#;
        let c = Counters::parse(json).unwrap();
        assert_eq!((c.requests, c.started, c.running, c.reaped), (12, 10, 2, 8));
        assert_eq!(c.reaped_cpu, Duration::from_millis(4));
        assert_eq!(c.reaped_spawn, Duration::from_micros(800));
        let before = Counters {
            started: 4,
            reaped: 3,
            reaped_lifetime: Duration::from_millis(6),
            ..Counters::default()
        };
        let d = c.since(&before);
        assert_eq!((d.started, d.reaped, d.running), (6, 5, 2));
        assert_eq!(d.reaped_lifetime, Duration::from_millis(10));
        assert!(Counters::parse(b"{}").is_err());
    }

    #[test]
    fn distinct_lines_cut_short() {
        let long = "x".repeat(300);
        let lines = ["a", "a", "b", long.as_str(), "c"];
        let out = first_distinct(lines.into_iter(), 3);
        assert_eq!(out.len(), 3);
        assert_eq!(&out[..2], ["a", "b"]);
        assert!(out[2].ends_with('…') && out[2].chars().count() == 241);
    }
}
