//! A script's stderr as error-log lines, one per line it wrote, tagged with the script
//! and request. Bounded: a script that floods stderr is drained at full speed but only
//! the first part is logged.

use std::sync::Arc;

use crate::logger::{Logger, escape};

/// Longest line we log; longer ones are split.
const MAX_LINE: usize = 4096;
/// Most stderr bytes logged per request.
const MAX_LOGGED: usize = 1 << 20;

pub struct ScriptLog {
    tag: String,
    /// Which of the script's streams this is (`stderr`, or `stdout` for a worker).
    stream: &'static str,
    log: Arc<Logger>,
    partial: Vec<u8>,
    logged: usize,
    dropped: u64,
}

impl ScriptLog {
    pub fn new(tag: String, log: Arc<Logger>) -> ScriptLog {
        Self::for_stream(tag, log, "stderr")
    }

    pub fn for_stream(tag: String, log: Arc<Logger>, stream: &'static str) -> ScriptLog {
        ScriptLog {
            tag,
            stream,
            log,
            partial: Vec::new(),
            logged: 0,
            dropped: 0,
        }
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// A line of our own about this script (exit status, limits).
    pub fn log_line(&self, msg: &str) {
        self.log.log(msg);
    }

    /// Takes stderr bytes as they come and logs each complete line.
    pub fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.logged >= MAX_LOGGED {
                self.dropped += data.len() as u64;
                return;
            }
            let room = MAX_LINE - self.partial.len();
            match data.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => {
                    self.partial.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    self.emit();
                }
                None if data.len() >= room => {
                    self.partial.extend_from_slice(&data[..room]);
                    data = &data[room..];
                    self.emit();
                }
                None => {
                    self.partial.extend_from_slice(data);
                    return;
                }
            }
        }
    }

    fn emit(&mut self) {
        let line = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
        // Escaped like the access log: a script's raw ESC must not reach a terminal
        // tailing the log, nor a bare CR forge the start of another line.
        let line = escape(line);
        self.log
            .log(&format!("{} {}: {line}", self.tag, self.stream));
        self.logged += self.partial.len() + 1;
        self.partial.clear();
    }

    /// Logs a last unterminated line and how much was dropped.
    pub fn finish(&mut self) {
        if !self.partial.is_empty() {
            self.emit();
        }
        if self.dropped > 0 {
            self.log.log(&format!(
                "{} {}: {} more bytes not logged (limit {MAX_LOGGED} bytes per request)",
                self.tag, self.stream, self.dropped
            ));
            self.dropped = 0;
        }
    }
}

impl Drop for ScriptLog {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logger::LogTarget;

    #[test]
    fn lines_split_and_bounded() {
        let (target, lines) = LogTarget::memory();
        let log = Arc::new(Logger::open(&target, None).unwrap());
        let mut s = ScriptLog::new("[t]".into(), log);
        s.write(b"one\ntw");
        s.write(b"o\r\nthree");
        s.finish();
        s.write(&vec![b'x'; MAX_LINE + 10]);
        s.write(b"\n");
        let got = lines.lock().unwrap().clone();
        assert!(got[0].ends_with("[t] stderr: one"));
        assert!(got[1].ends_with("[t] stderr: two"));
        assert!(got[2].ends_with("[t] stderr: three"));
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn lines_are_escaped() {
        let (target, lines) = LogTarget::memory();
        let log = Arc::new(Logger::open(&target, None).unwrap());
        let mut s = ScriptLog::new("[t]".into(), log);
        s.write(b"\x1b[2Jred\rfake \"x\\\r\n");
        s.finish();
        let got = lines.lock().unwrap().clone();
        assert!(
            got[0].ends_with(r#"[t] stderr: \x1b[2Jred\rfake \"x\\"#),
            "{got:?}"
        );
    }
}
