//! What starting each program costs, without any server: every bundled hello is
//! run directly many times, as a CGI script with a GET's meta-variables, from
//! posix_spawn to reaped, its output read through a pipe. The time and the CPU
//! (`wait4`) of a whole start show what a process per request pays before any work
//! of its own: a static binary without the dynamic loader, a script its
//! interpreter's start. How each program is linked is read from its ELF headers.
//!
//! On a virtual machine, glibc's start-up is dear: it runs the CPUID instruction
//! dozens of times (to pick string functions and cache sizes), and each traps to
//! the hypervisor. [`cpuid_us`] measures one, for the page to say so.

use std::fmt;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cgi_testbed::gateway::env::DEFAULT_PATH;

use crate::ladder::{Language, Peers, Site};
use crate::spread::Spread;

/// How a program is linked, from its first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linkage {
    /// An ELF binary without an interpreter (no PT_INTERP).
    Static,
    /// An ELF binary the dynamic loader starts.
    Dynamic,
    /// A script, run by the interpreter on its `#!` line.
    Script(String),
    Unknown,
}

impl fmt::Display for Linkage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Linkage::Static => f.write_str("static binary"),
            Linkage::Dynamic => f.write_str("dynamically linked binary"),
            Linkage::Script(i) => write!(f, "script ({i})"),
            Linkage::Unknown => f.write_str("?"),
        }
    }
}

/// Reads how `bytes` (a file's start) is run: `#!` line, or ELF64 program headers.
pub fn linkage(bytes: &[u8]) -> Linkage {
    if let Some(rest) = bytes.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let interp = line.split_whitespace().next().unwrap_or("");
        let name = interp.rsplit('/').next().unwrap_or(interp);
        return Linkage::Script(name.to_owned());
    }
    // ELF64, little-endian: e_phoff at 32 (u64), e_phentsize at 54, e_phnum at 56
    // (u16); a program header's p_type (u32) at its start; PT_INTERP = 3.
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return Linkage::Unknown;
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let mut off = [0u8; 8];
    off.copy_from_slice(&bytes[32..40]);
    let phoff = u64::from_le_bytes(off) as usize;
    let (size, count) = (u16_at(54), u16_at(56));
    for i in 0..count {
        let at = phoff + i * size;
        let Some(p_type) = bytes.get(at..at + 4) else {
            return Linkage::Unknown;
        };
        if p_type == 3u32.to_le_bytes() {
            return Linkage::Dynamic;
        }
    }
    Linkage::Static
}

/// One program's starts.
#[derive(Debug, Clone)]
pub struct Starts {
    pub language: Language,
    pub program: PathBuf,
    pub linkage: Linkage,
    /// Milliseconds from spawn to reaped.
    pub wall: Spread,
    /// The 90th percentile of the same.
    pub wall_p90: f64,
    /// User + system CPU per start, milliseconds.
    pub cpu: Spread,
}

/// The meta-variables of a plain GET.
fn cgi_env(program: &Path) -> Vec<(&'static str, String)> {
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    vec![
        ("PATH", DEFAULT_PATH.to_owned()),
        ("GATEWAY_INTERFACE", "CGI/1.1".into()),
        ("REQUEST_METHOD", "GET".into()),
        ("QUERY_STRING", String::new()),
        ("SCRIPT_NAME", format!("/cgi-bin/{name}")),
        ("SCRIPT_FILENAME", program.display().to_string()),
        ("REQUEST_URI", format!("/cgi-bin/{name}")),
        ("SERVER_NAME", "127.0.0.1".into()),
        ("SERVER_PORT", "80".into()),
        ("SERVER_PROTOCOL", "HTTP/1.1".into()),
        ("SERVER_SOFTWARE", "cgi-testbed-report".into()),
        ("REMOTE_ADDR", "127.0.0.1".into()),
        ("REDIRECT_STATUS", "200".into()),
    ]
}

/// One start of `program`: (wall, CPU), or `None` if it failed.
fn once(program: &Path, env: &[(&str, String)]) -> Option<(Duration, Duration)> {
    let t0 = Instant::now();
    // Reaped below with wait4 for its rusage, which std's wait does not give.
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(program)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .current_dir(program.parent()?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut out = Vec::new();
    let read = child.stdout.take().map(|mut o| o.read_to_end(&mut out));
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, with valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = t0.elapsed();
    let ok = r == pid && std::process::ExitStatus::from_raw(status).success();
    if !ok || !matches!(read, Some(Ok(_))) || out.is_empty() {
        return None;
    }
    let tv =
        |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    Some((wall, tv(usage.ru_utime) + tv(usage.ru_stime)))
}

/// Starts each program of `languages` up to `samples` times (or for `cap` each),
/// in turns so that all see the same machine.
pub fn measure(
    site: &Site,
    peers: &Peers,
    languages: &[Language],
    samples: usize,
    cap: Duration,
) -> Vec<Starts> {
    let programs: Vec<(Language, PathBuf)> = languages
        .iter()
        .filter(|&&l| {
            peers
                .missing(crate::ladder::Rung::new(crate::ladder::Model::Cgi, l))
                .is_none()
        })
        .map(|&l| (l, site.cgi_dir.join(l.script())))
        .filter(|(_, p)| p.is_file())
        .collect();
    let envs: Vec<Vec<(&str, String)>> = programs.iter().map(|(_, p)| cgi_env(p)).collect();
    let mut times: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); programs.len()];
    let mut spent = vec![Duration::ZERO; programs.len()];
    for _ in 0..samples {
        for (i, (_, program)) in programs.iter().enumerate() {
            if spent[i] >= cap {
                continue;
            }
            if let Some(t) = once(program, &envs[i]) {
                spent[i] += t.0;
                times[i].push(t);
            }
        }
        if spent.iter().all(|s| *s >= cap) {
            break;
        }
    }
    programs
        .into_iter()
        .zip(times)
        .filter_map(|((language, program), t)| {
            let ms = |d: &Duration| d.as_secs_f64() * 1e3;
            let wall = Spread::of(t.iter().map(|(w, _)| ms(w)))?;
            let mut sorted: Vec<f64> = t.iter().map(|(w, _)| ms(w)).collect();
            sorted.sort_by(f64::total_cmp);
            let p90 =
                sorted[((sorted.len() as f64 * 0.9).ceil() as usize).clamp(1, sorted.len()) - 1];
            let head = std::fs::read(&program)
                .map(|b| b[..b.len().min(4096)].to_vec())
                .unwrap_or_default();
            Some(Starts {
                language,
                linkage: linkage(&head),
                program,
                wall,
                wall_p90: p90,
                cpu: Spread::of(t.iter().map(|(_, c)| ms(c)))?,
            })
        })
        .collect()
}

/// How long one CPUID instruction takes here, in microseconds (x86-64 only): a few
/// hundredths of a microsecond on bare metal, far more where it traps to a
/// hypervisor.
pub fn cpuid_us() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        const N: u32 = 200;
        let t0 = Instant::now();
        for i in 0..N {
            let r = std::arch::x86_64::__cpuid_count(4, i % 4);
            std::hint::black_box(r);
        }
        Some(t0.elapsed().as_secs_f64() * 1e6 / f64::from(N))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linkage_from_the_first_bytes() {
        assert_eq!(
            linkage(b"#!/usr/bin/perl -w\nprint 1;\n"),
            Linkage::Script("perl".into())
        );
        assert_eq!(linkage(b"\x7fELF"), Linkage::Unknown);
        assert_eq!(linkage(b"text"), Linkage::Unknown);
        // This test binary is dynamically linked (std's default on gnu targets).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        if cfg!(target_env = "gnu") {
            assert_eq!(linkage(&me[..4096]), Linkage::Dynamic);
        }
    }

    #[test]
    fn the_bundled_hello_rs_is_a_static_binary() {
        // build.rs links it statically (musl when installed, else glibc's libc.a),
        // so it starts without the dynamic loader.
        let path = Path::new(crate::SOURCE_TREE).join("cgi-bin/hello-rs");
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("skipped: {} not built", path.display());
            return;
        };
        assert_eq!(linkage(&bytes[..bytes.len().min(4096)]), Linkage::Static);
    }

    #[test]
    fn cpuid_takes_some_time() {
        if let Some(us) = cpuid_us() {
            assert!(us > 0.0 && us < 10_000.0, "{us}");
        }
    }
}
