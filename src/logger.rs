//! The error log and the access log: whole lines, written atomically, to stderr,
//! stdout, a file, or (for tests) memory.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub enum LogTarget {
    Stderr,
    Stdout,
    File(PathBuf),
    /// Lines kept in memory, for tests to read.
    Memory(Arc<Mutex<Vec<String>>>),
}

impl LogTarget {
    /// `-` is stdout, anything else a file path.
    pub fn parse(s: &str) -> LogTarget {
        if s == "-" {
            LogTarget::Stdout
        } else {
            LogTarget::File(PathBuf::from(s))
        }
    }

    pub fn memory() -> (LogTarget, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (LogTarget::Memory(lines.clone()), lines)
    }
}

enum Sink {
    Stderr,
    Stdout,
    File(Mutex<File>),
    Memory(Arc<Mutex<Vec<String>>>),
}

impl Sink {
    fn open(target: &LogTarget) -> io::Result<Sink> {
        Ok(match target {
            LogTarget::Stderr => Sink::Stderr,
            LogTarget::Stdout => Sink::Stdout,
            LogTarget::File(p) => Sink::File(Mutex::new(
                OpenOptions::new().create(true).append(true).open(p)?,
            )),
            LogTarget::Memory(m) => Sink::Memory(m.clone()),
        })
    }

    fn line(&self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        // A failing log must not take a request down with it.
        let _ = match self {
            Sink::Stderr => io::stderr().lock().write_all(&bytes),
            Sink::Stdout => io::stdout().lock().write_all(&bytes),
            Sink::File(f) => f.lock().map_or(Ok(()), |mut f| f.write_all(&bytes)),
            Sink::Memory(m) => {
                if let Ok(mut m) = m.lock() {
                    m.push(line.to_owned());
                }
                Ok(())
            }
        };
    }
}

pub struct Logger {
    error: Sink,
    access: Option<Sink>,
}

impl Logger {
    pub fn open(error: &LogTarget, access: Option<&LogTarget>) -> io::Result<Logger> {
        Ok(Logger {
            error: Sink::open(error)?,
            access: access.map(Sink::open).transpose()?,
        })
    }

    /// One line in the error log, stamped with the time.
    pub fn log(&self, msg: &str) {
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now());
        self.error.line(&format!("[{stamp}] {msg}"));
    }

    pub fn access_enabled(&self) -> bool {
        self.access.is_some()
    }

    pub fn access(&self, line: &str) {
        if let Some(a) = &self.access {
            a.line(line);
        }
    }
}

/// Makes client- or script-supplied bytes safe for one log line, as Apache's
/// `ap_escape_logitem` does: `\\` and `\"` for backslash and quote (so a field
/// cannot forge another's end), `\n`, `\r`, `\t`, `\b`, `\v` by name and `\xhh` for
/// every other byte outside printable ASCII (so no control sequence reaches a
/// terminal and no byte is lost).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0b => out.push_str("\\v"),
            b' '..=b'~' => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// `10/Oct/2000:13:55:36 +0000`, the Common Log Format's time.
pub fn clf_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_as_apache_does() {
        assert_eq!(escape(b"curl/8.0 (x)"), "curl/8.0 (x)");
        assert_eq!(escape(br#"a"b\c"#), r#"a\"b\\c"#);
        // A field ending in a backslash cannot turn the closing quote into data.
        assert_eq!(escape(b"x\\"), r"x\\");
        assert_eq!(
            escape(b"\x1b[31m\r\n\t\x08\x0b\0\x7f"),
            r"\x1b[31m\r\n\t\b\v\x00\x7f"
        );
        assert_eq!(escape("é".as_bytes()), r"\xc3\xa9");
    }

    #[test]
    fn clf_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(971_186_136);
        assert_eq!(clf_time(t), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(clf_time(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(clf_time(leap), "29/Feb/2000:00:00:00 +0000");
    }
}
