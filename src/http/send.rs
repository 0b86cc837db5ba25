//! How long a client may take to read our answer: `--send-timeout` (no byte taken for
//! that long) and `--min-send-rate` (fewer bytes per second than that over a whole
//! window of waiting). "Taken" means acknowledged by the client, not merely queued in
//! our socket: the kernel's send buffer holds megabytes, so a client that stopped
//! reading looks busy for a long time by what the socket accepts. Pure bookkeeping
//! over instants and counts the caller passes in; the connection consults it whenever
//! the socket refuses bytes.

use std::fmt;
use std::time::{Duration, Instant};

/// The client's side of sending, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// Longest wait with the socket taking nothing.
    pub idle: Duration,
    /// Bytes per second the client must take while we wait on it; 0: no minimum. It
    /// is judged over windows of `idle`, so a client that reads a byte just before
    /// every idle deadline still cannot hold a connection for long.
    pub min_rate: u64,
}

/// Why we gave up on a client that does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendStall {
    Idle(Duration),
    TooSlow {
        bytes: u64,
        over: Duration,
        min_rate: u64,
    },
}

impl fmt::Display for SendStall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendStall::Idle(d) => write!(
                f,
                "client took no bytes for {} (--send-timeout)",
                humantime::format_duration(*d)
            ),
            SendStall::TooSlow {
                bytes,
                over,
                min_rate,
            } => write!(
                f,
                "client took {bytes} bytes in {:.1}s, below --min-send-rate {min_rate} B/s",
                over.as_secs_f64()
            ),
        }
    }
}

/// One connection's sending, judged while bytes wait for the client.
#[derive(Debug, Clone)]
pub struct SendClock {
    limits: SendLimits,
    /// Bytes the socket accepted.
    written: u64,
    /// Bytes the client had taken when last looked at, and when that grew.
    taken: u64,
    last_progress: Instant,
    /// The current window of waiting on the client: when it began, bytes taken since.
    window: Option<(Instant, u64)>,
}

impl SendClock {
    pub fn new(limits: SendLimits, now: Instant) -> SendClock {
        SendClock {
            limits,
            written: 0,
            taken: 0,
            last_progress: now,
            window: None,
        }
    }

    /// The socket accepted `n` bytes.
    pub fn sent(&mut self, n: usize) {
        self.written += n as u64;
    }

    /// Nothing is waiting for the client (we wait on the script instead): the client
    /// is not to blame for the time that passes until the next bytes are queued.
    pub fn idle(&mut self, now: Instant) {
        self.last_progress = now;
        self.window = None;
    }

    /// Bytes wait for the client and the socket holds `unsent` of what it accepted
    /// (`None`: unknown, so all of it counts as taken): judge the client. Starts a
    /// window of waiting if none is open, and closes one that has run its length.
    pub fn blocked(&mut self, now: Instant, unsent: Option<u64>) -> Result<(), SendStall> {
        let taken = self.written.saturating_sub(unsent.unwrap_or(0));
        if taken > self.taken {
            if let Some((_, bytes)) = &mut self.window {
                *bytes += taken - self.taken;
            }
            self.taken = taken;
            self.last_progress = now;
        }
        let since = now.saturating_duration_since(self.last_progress);
        if since >= self.limits.idle {
            return Err(SendStall::Idle(self.limits.idle));
        }
        let (start, bytes) = *self.window.get_or_insert((now, 0));
        let over = now.saturating_duration_since(start);
        if self.limits.min_rate > 0 && over >= self.limits.idle {
            let owed = (self.limits.min_rate as f64 * over.as_secs_f64()) as u64;
            if bytes < owed {
                return Err(SendStall::TooSlow {
                    bytes,
                    over,
                    min_rate: self.limits.min_rate,
                });
            }
            self.window = Some((now, 0));
        }
        Ok(())
    }

    /// When `blocked` must be asked again at the latest.
    pub fn deadline(&self) -> Instant {
        let idle = self.last_progress + self.limits.idle;
        match self.window {
            Some((start, _)) if self.limits.min_rate > 0 => idle.min(start + self.limits.idle),
            _ => idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SendLimits = SendLimits {
        idle: Duration::from_secs(10),
        min_rate: 100,
    };

    fn at(t0: Instant, secs: f64) -> Instant {
        t0 + Duration::from_secs_f64(secs)
    }

    #[test]
    fn idle_client_is_cut_off_after_the_idle_time() {
        let t0 = Instant::now();
        let mut c = SendClock::new(LIMITS, t0);
        // The socket took a megabyte, and the client none of it.
        c.sent(1 << 20);
        assert!(c.blocked(at(t0, 1.0), Some(1 << 20)).is_ok());
        assert_eq!(c.deadline(), at(t0, 10.0));
        assert_eq!(
            c.blocked(at(t0, 10.0), Some(1 << 20)),
            Err(SendStall::Idle(LIMITS.idle))
        );
    }

    #[test]
    fn a_byte_before_every_idle_deadline_is_too_slow() {
        let t0 = Instant::now();
        let mut c = SendClock::new(LIMITS, t0);
        c.sent(1000);
        assert!(c.blocked(t0, Some(1000)).is_ok());
        assert!(c.blocked(at(t0, 9.0), Some(999)).is_ok());
        let e = c.blocked(at(t0, 10.0), Some(998)).unwrap_err();
        assert!(matches!(e, SendStall::TooSlow { bytes: 2, .. }), "{e:?}");
    }

    #[test]
    fn a_steady_reader_passes_window_after_window() {
        let t0 = Instant::now();
        let mut c = SendClock::new(LIMITS, t0);
        c.sent(1 << 20);
        let mut unsent = 1u64 << 20;
        assert!(c.blocked(t0, Some(unsent)).is_ok());
        for s in 1..=50 {
            unsent -= 200;
            assert!(c.blocked(at(t0, s as f64), Some(unsent)).is_ok(), "at {s}s");
        }
    }

    #[test]
    fn waiting_on_the_script_does_not_count() {
        let t0 = Instant::now();
        let mut c = SendClock::new(LIMITS, t0);
        c.sent(10);
        assert!(c.blocked(t0, Some(10)).is_ok());
        c.idle(at(t0, 30.0));
        assert!(c.blocked(at(t0, 31.0), Some(10)).is_ok());
        assert_eq!(c.deadline(), at(t0, 40.0));
    }

    #[test]
    fn no_minimum_rate_means_only_the_idle_time() {
        let t0 = Instant::now();
        let limits = SendLimits {
            min_rate: 0,
            ..LIMITS
        };
        let mut c = SendClock::new(limits, t0);
        c.sent(1000);
        for s in 0..100u64 {
            assert!(c.blocked(at(t0, s as f64 * 9.0), Some(1000 - s)).is_ok());
        }
    }

    #[test]
    fn without_a_queue_count_what_the_socket_took_counts() {
        let t0 = Instant::now();
        let mut c = SendClock::new(LIMITS, t0);
        c.sent(5000);
        assert!(c.blocked(at(t0, 5.0), None).is_ok());
        c.sent(5000);
        assert!(c.blocked(at(t0, 10.0), None).is_ok());
    }
}
