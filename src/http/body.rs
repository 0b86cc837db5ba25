//! Request body framing: the chunked decoder (pure state machine over byte slices) and
//! the spool that turns a chunked body into one of known length.

use std::fmt;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// Longest chunk-size line (size plus extensions) we accept.
const MAX_SIZE_LINE: usize = 4096;
/// Most trailer bytes we accept (they are read and dropped).
const MAX_TRAILER: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    Malformed(&'static str),
    TooLarge,
    /// The client stopped sending before the body ended.
    Truncated,
    TimedOut,
    Spool(String),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Malformed(what) => write!(f, "malformed chunked body: {what}"),
            BodyError::TooLarge => f.write_str("request body larger than --max-body"),
            BodyError::Truncated => f.write_str("client closed before the body ended"),
            BodyError::TimedOut => f.write_str("timed out reading the request body"),
            BodyError::Spool(e) => write!(f, "cannot spool request body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SizeLine,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// Decodes `Transfer-Encoding: chunked`, accepting CRLF or bare LF line ends.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    line: Vec<u8>,
    trailer_len: usize,
    decoded: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeLine,
            line: Vec::new(),
            trailer_len: 0,
            decoded: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes produced so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    /// Consumes a prefix of `input`, appending body bytes to `out`; returns how many
    /// input bytes were used. Stops at the end of the body, leaving what follows (the
    /// next pipelined request) unconsumed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, BodyError> {
        let mut used = 0;
        while used < input.len() && self.state != State::Done {
            let rest = &input[used..];
            used += match self.state {
                State::SizeLine => self.size_line(rest)?,
                State::Data(left) => {
                    let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&rest[..n]);
                    self.decoded += n as u64;
                    self.state = if left == n as u64 {
                        State::DataEnd
                    } else {
                        State::Data(left - n as u64)
                    };
                    n
                }
                State::DataEnd => self.data_end(rest)?,
                State::Trailer => self.trailer(rest)?,
                State::Done => 0,
            };
        }
        Ok(used)
    }

    /// Collects one line into `self.line`; returns bytes used and whether it ended.
    fn take_line(&mut self, rest: &[u8], limit: usize) -> Result<(usize, bool), BodyError> {
        let (n, ended) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (rest.len(), false),
        };
        if self.line.len() + n > limit {
            return Err(BodyError::Malformed("line too long"));
        }
        self.line.extend_from_slice(&rest[..n]);
        Ok((n, ended))
    }

    fn size_line(&mut self, rest: &[u8]) -> Result<usize, BodyError> {
        let (n, ended) = self.take_line(rest, MAX_SIZE_LINE)?;
        if ended {
            let size = parse_chunk_size(&self.line)?;
            self.line.clear();
            self.state = if size == 0 {
                State::Trailer
            } else {
                State::Data(size)
            };
        }
        Ok(n)
    }

    fn data_end(&mut self, rest: &[u8]) -> Result<usize, BodyError> {
        let (n, ended) = self.take_line(rest, 2)?;
        if ended {
            if self.line != b"\r\n" && self.line != b"\n" {
                return Err(BodyError::Malformed("chunk data not followed by CRLF"));
            }
            self.line.clear();
            self.state = State::SizeLine;
        }
        Ok(n)
    }

    fn trailer(&mut self, rest: &[u8]) -> Result<usize, BodyError> {
        let room = MAX_TRAILER.saturating_sub(self.trailer_len);
        let (n, ended) = self.take_line(rest, room.max(2))?;
        if ended {
            self.trailer_len += self.line.len();
            let blank = self.line == b"\r\n" || self.line == b"\n";
            if !blank && !self.line.contains(&b':') {
                return Err(BodyError::Malformed("invalid trailer line"));
            }
            self.line.clear();
            if blank {
                self.state = State::Done;
            }
        }
        Ok(n)
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = super::head::trim(&line[..end]);
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(BodyError::Malformed("invalid chunk size"));
    }
    let text = std::str::from_utf8(digits).map_err(|_| BodyError::Malformed("chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| BodyError::Malformed("invalid chunk size"))
}

/// A request body ready to go to a script.
pub enum Prepared {
    None,
    /// This many bytes, still on the socket.
    Socket(u64),
    Memory(Vec<u8>),
    File(File, u64),
}

/// Bytes up to `threshold` are kept in memory, the rest goes to an unnamed temp file.
pub struct Spool {
    threshold: usize,
    mem: Vec<u8>,
    file: Option<File>,
    len: u64,
}

/// A complete request body of known length.
pub enum Spooled {
    Memory(Vec<u8>),
    /// Rewound to the start, ready to be a child's stdin.
    File(File, u64),
}

impl Spooled {
    pub fn len(&self) -> u64 {
        match self {
            Spooled::Memory(v) => v.len() as u64,
            Spooled::File(_, n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Spool {
    pub fn new(threshold: usize) -> Self {
        Spool {
            threshold,
            mem: Vec::new(),
            file: None,
            len: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.len += data.len() as u64;
        if self.file.is_none() && self.mem.len() + data.len() <= self.threshold {
            self.mem.extend_from_slice(data);
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let mut f = tempfile::tempfile()?;
                f.write_all(&self.mem)?;
                self.mem = Vec::new();
                self.file.insert(f)
            }
        };
        file.write_all(data)
    }

    pub fn finish(self) -> io::Result<Spooled> {
        match self.file {
            None => Ok(Spooled::Memory(self.mem)),
            Some(mut f) => {
                f.seek(SeekFrom::Start(0))?;
                Ok(Spooled::File(f, self.len))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), BodyError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let n = d.decode(input, &mut out)?;
        Ok((out, n, d.is_done()))
    }

    #[test]
    fn decodes_chunks_and_stops_at_end() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nGET /next";
        let (out, n, done) = decode_all(wire).unwrap();
        assert_eq!(out, b"hello world");
        assert!(done);
        assert_eq!(&wire[n..], b"GET /next");
    }

    #[test]
    fn every_split_gives_the_same_body() {
        let wire = b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let a = d.decode(&wire[..split], &mut out).unwrap();
            assert_eq!(a, split);
            let b = d.decode(&wire[split..], &mut out).unwrap();
            assert_eq!(a + b, wire.len());
            assert!(d.is_done());
            assert_eq!(out, b"abc0123456789");
        }
    }

    #[test]
    fn bare_lf_accepted() {
        let (out, _, done) = decode_all(b"2\nhi\n0\n\n").unwrap();
        assert_eq!(out, b"hi");
        assert!(done);
    }

    #[test]
    fn malformed_sizes_rejected() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"1234567890abcdef0\r\n",
            b"0x5\r\n",
        ] {
            assert!(
                matches!(decode_all(bad), Err(BodyError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(decode_all(b"2\r\nhiX\r\n").is_err());
        assert!(decode_all(b"0\r\nno colon\r\n\r\n").is_err());
    }

    #[test]
    fn spool_rolls_over_to_file() {
        let mut s = Spool::new(4);
        s.write(b"ab").unwrap();
        assert!(matches!(
            Spool::new(4).finish().unwrap(),
            Spooled::Memory(_)
        ));
        s.write(b"cdef").unwrap();
        match s.finish().unwrap() {
            Spooled::File(mut f, n) => {
                assert_eq!(n, 6);
                let mut got = String::new();
                f.read_to_string(&mut got).unwrap();
                assert_eq!(got, "abcdef");
            }
            Spooled::Memory(_) => panic!("expected a file"),
        }
    }
}
