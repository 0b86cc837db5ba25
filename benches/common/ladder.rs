//! The `models` bench's ladder: the same program served as CGI (a process per request)
//! and through FastCGI workers, by language, by the library's own server running
//! in-process on loopback.

use std::cell::Cell;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgi_testbed::gateway::env::DEFAULT_PATH;
use cgi_testbed::logger::LogTarget;
use cgi_testbed::{Config, Running, Server};

use super::client::{Clients, KeepAlive, Reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// `/cgi-bin/`: a new process per request.
    Cgi,
    /// `/fcgi-bin/`: a pool of persistent FastCGI workers.
    Fcgi,
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Model::Cgi => "cgi",
            Model::Fcgi => "fcgi",
        })
    }
}

/// One language's hello and the models it can run under here.
#[derive(Debug, Clone)]
pub struct Rung {
    pub lang: &'static str,
    /// A bundled script in `cgi-bin/`.
    pub script: &'static str,
    pub models: Vec<Model>,
    /// What the body starts with.
    pub greeting: &'static str,
    /// Extra environment for the script and its workers (`--env`).
    pub env: &'static [(&'static str, &'static str)],
}

/// The rungs whose peers are installed, and a note for each one left out.
pub fn ladder() -> (Vec<Rung>, Vec<String>) {
    use Model::*;
    let mut rungs = vec![
        Rung {
            lang: "rust",
            script: "hello-rs",
            models: vec![Cgi, Fcgi],
            greeting: "Hello from Rust",
            env: &[],
        },
        // A shell script cannot serve FastCGI: CGI only.
        Rung {
            lang: "sh",
            script: "hello",
            models: vec![Cgi],
            greeting: "Hello, world!",
            env: &[],
        },
    ];
    let mut notes = Vec::new();
    if super::probe("perl", &["-MFCGI", "-e1"]) {
        rungs.push(Rung {
            lang: "perl",
            script: "hello.fcgi.pl",
            models: vec![Cgi, Fcgi],
            greeting: "Hello from Perl",
            env: &[],
        });
    } else {
        notes.push("perl: `perl -MFCGI` fails (Debian: libfcgi-perl), perl skipped".into());
    }
    // wsgi_app.py starts with `#!/usr/bin/env python3` and scripts get DEFAULT_PATH.
    match find_in_default_path("python3") {
        Some(python) => {
            let python = python.to_string_lossy().into_owned();
            let mut models = vec![Cgi];
            if super::probe(&python, &["-c", "import flup"]) {
                models.push(Fcgi);
            } else {
                notes.push(format!(
                    "python: flup does not import under {python}, WSGI as CGI only"
                ));
            }
            rungs.push(Rung {
                lang: "python",
                script: "wsgi_app.py",
                models,
                greeting: "Hello from Python WSGI",
                env: &[],
            });
        }
        None => notes.push(format!("python: no python3 in {DEFAULT_PATH}, skipped")),
    }
    // hello.php starts with `#!/usr/bin/php-cgi`.
    if super::probe("/usr/bin/php-cgi", &["-v"]) {
        rungs.push(Rung {
            lang: "php",
            script: "hello.php",
            models: vec![Cgi, Fcgi],
            greeting: "Hello from PHP",
            // The server already gives workers PHP_FCGI_MAX_REQUESTS=0.
            env: &[],
        });
    } else {
        notes.push("php: /usr/bin/php-cgi not installed, skipped".into());
    }
    (rungs, notes)
}

fn find_in_default_path(program: &str) -> Option<PathBuf> {
    DEFAULT_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// The library's server on 127.0.0.1:0, serving a temp copy of one rung's script.
pub struct Site {
    pub running: Running,
    pub script: &'static str,
    pub workers: usize,
    dir: tempfile::TempDir,
    requests: Cell<u64>,
    failures: Cell<u64>,
}

impl Site {
    /// `workers` is both the minimum and the maximum of the FastCGI pool, so the pool
    /// is full and stays full while measuring.
    pub fn start(rung: &Rung, workers: usize) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let cgi = dir.path().join("cgi-bin");
        std::fs::create_dir(&cgi).expect("mkdir cgi-bin");
        super::copy_bundled(rung.script, &cgi);
        let mut config = Config::new(&cgi);
        config.error_log = LogTarget::File(dir.path().join("error.log"));
        config.access_log = None;
        config.env = rung
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        config.timeout = Duration::from_secs(60);
        config.workers.min = workers;
        config.workers.max = workers;
        config.workers.idle = Duration::from_secs(600);
        let running = Server::bind(config)
            .and_then(Server::start)
            .expect("start the server");
        Site {
            running,
            script: rung.script,
            workers,
            dir,
            requests: Cell::new(0),
            failures: Cell::new(0),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    pub fn path(&self, model: Model) -> String {
        format!("/{model}-bin/{}", self.script)
    }

    /// One request through `model`, on a fresh connection.
    pub fn get(&self, model: Model) -> Reply {
        KeepAlive::connect(self.addr(), &self.path(model))
            .and_then(|mut c| c.get())
            .unwrap_or_else(|e| panic!("GET {}: {e}\n{}", self.path(model), self.error_log()))
    }

    /// Makes `model` ready to measure: one request answered, and for FastCGI every
    /// worker of the pool started and idle.
    pub fn warm(&self, model: Model) {
        self.get(model);
        if model == Model::Cgi {
            return;
        }
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let idle: usize = self
                .running
                .shared()
                .pools
                .status()
                .iter()
                .map(|p| p.workers.len())
                .sum();
            if idle >= self.workers {
                return;
            }
            assert!(
                Instant::now() < until,
                "{}: only {idle} of {} workers started in 30 s\n{}",
                self.script,
                self.workers,
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Times one round of `clients` (see [`Clients::round`]). Failed requests are
    /// reported on stderr with the server's error log; past 3 plus 1% of the requests
    /// so far this panics, since a bench of errors measures nothing.
    pub fn round(&self, clients: &Clients, per_client: u64) -> Duration {
        let round = clients.round(per_client);
        let requests = self.requests.get() + round.requests;
        self.requests.set(requests);
        if round.failures.is_empty() {
            return round.elapsed;
        }
        let failures = self.failures.get() + round.failures.len() as u64;
        self.failures.set(failures);
        let report = format!(
            "{}: {} of {} requests in this round failed ({failures} of {requests} so far):\n{}\nserver error log:\n{}",
            self.script,
            round.failures.len(),
            round.requests,
            round.failures.join("\n"),
            self.error_log()
        );
        assert!(failures <= 3 + requests / 100, "{report}");
        eprintln!("WARNING {report}");
        round.elapsed
    }

    /// Requests sent and failed through [`Site::round`].
    pub fn failures(&self) -> (u64, u64) {
        (self.failures.get(), self.requests.get())
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Site {
    /// `BENCH_SERVER_LOG=1` shows each server's error log when its rung is done.
    fn drop(&mut self) {
        if std::env::var_os("BENCH_SERVER_LOG").is_some() {
            eprintln!("{} server error log:\n{}", self.script, self.error_log());
        }
    }
}
