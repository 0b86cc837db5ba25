//! Where one request's time goes, from the server's own `Server-Timing` header:
//! `queue`, `spawn` (process start), `ttfb` (until the script's first byte) and
//! `total`. The interpreter's start plus the script's work is `ttfb − spawn`; the
//! relay of the answer to the client is `total − ttfb`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cgi_testbed_load as load;

use crate::ladder::{Model, Rung, Site};
use crate::ours::{self, Ours, Program};

/// Requests per rung; the medians are reported.
const SAMPLES: usize = 9;

/// The medians of one rung's Server-Timing metrics, in milliseconds.
#[derive(Debug, Clone)]
pub struct Breakdown {
    pub rung: Rung,
    pub queue: f64,
    pub spawn: f64,
    pub ttfb: f64,
    pub total: f64,
    /// The whole exchange as the client saw it.
    pub client: f64,
    pub samples: usize,
}

impl Breakdown {
    /// Interpreter start and the script's own work (after the process exists).
    pub fn script(&self) -> f64 {
        (self.ttfb - self.spawn).max(0.0)
    }

    /// Relaying the answer after the script's first byte.
    pub fn relay(&self) -> f64 {
        (self.total - self.ttfb).max(0.0)
    }
}

/// `queue;dur=0.003, spawn;dur=0.306` → [("queue", 0.003), ("spawn", 0.306)].
pub fn parse(value: &str) -> Vec<(String, f64)> {
    value
        .split(',')
        .filter_map(|metric| {
            let mut parts = metric.split(';');
            let name = parts.next()?.trim().to_owned();
            let dur = parts
                .find_map(|p| p.trim().strip_prefix("dur="))
                .and_then(|d| d.trim().parse().ok())
                .unwrap_or(0.0);
            (!name.is_empty()).then_some((name, dur))
        })
        .collect()
}

/// Measures each rung (CGI and FastCGI ones; others are skipped) on one server.
pub fn measure(
    rungs: &[Rung],
    site: &Site,
    server: &Program,
    workers: usize,
) -> Result<Vec<Breakdown>, String> {
    let flags = ours::Flags {
        workers,
        clients: 1,
    };
    let ours = Ours::start(server, site, &flags, &site.logs.join("server-timing.log"))?;
    let found = rungs
        .iter()
        .filter(|r| matches!(r.model, Model::Cgi | Model::FastCgi))
        .filter_map(|&r| one(ours.addr, r))
        .collect();
    ours.stop();
    Ok(found)
}

fn one(addr: SocketAddr, rung: Rung) -> Option<Breakdown> {
    let path = rung.path();
    // The first request starts a worker, or brings the interpreter into the page
    // cache; neither is what a steady request costs.
    load::get(addr, &path).ok()?;
    let mut seen: Vec<Vec<(String, f64)>> = Vec::new();
    let mut client = Vec::new();
    for _ in 0..SAMPLES {
        let t0 = Instant::now();
        let a = load::get(addr, &path).ok()?;
        client.push(t0.elapsed());
        if a.status != 200 {
            return None;
        }
        seen.push(parse(a.header("server-timing")?));
        // Let the previous process be reaped so runs do not overlap.
        std::thread::sleep(Duration::from_millis(5));
    }
    let metric = |name: &str| {
        median(
            seen.iter()
                .map(|m| m.iter().find(|(n, _)| n == name).map_or(0.0, |(_, v)| *v))
                .collect(),
        )
    };
    Some(Breakdown {
        rung,
        queue: metric("queue"),
        spawn: metric("spawn"),
        ttfb: metric("ttfb"),
        total: metric("total"),
        client: median(client.iter().map(|d| d.as_secs_f64() * 1e3).collect()),
        samples: seen.len(),
    })
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_timing() {
        let t = parse("queue;dur=0.003, spawn;dur=0.306, ttfb;desc=\"x\";dur=0.893, total");
        assert_eq!(
            t,
            [
                ("queue".into(), 0.003),
                ("spawn".into(), 0.306),
                ("ttfb".into(), 0.893),
                ("total".into(), 0.0)
            ]
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }
}
