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
    /// No body bytes came for this long (`--body-timeout`).
    TimedOut(std::time::Duration),
    /// The body was still arriving when the script's run time (`--timeout`) ran out.
    TooSlow(std::time::Duration),
    Spool(String),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Malformed(what) => write!(f, "malformed chunked body: {what}"),
            BodyError::TooLarge => f.write_str("request body larger than --max-body"),
            BodyError::Truncated => f.write_str("client closed before the body ended"),
            BodyError::TimedOut(d) => write!(
                f,
                "request body stalled: no bytes for {} (--body-timeout)",
                humantime::format_duration(*d)
            ),
            BodyError::TooSlow(d) => write!(
                f,
                "request body still arriving after {} (--timeout)",
                humantime::format_duration(*d)
            ),
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

/// Decodes `Transfer-Encoding: chunked` strictly to RFC 9112 §7.1: every line ends in
/// CRLF, the size is bare hex digits, extensions and trailer fields follow their
/// grammar. Whatever a lenient parser (a proxy in front of us) might read differently
/// — a bare LF, a bare CR, whitespace before the size, a NUL in an extension, an
/// obs-folded trailer — is refused rather than guessed at, since two parsers that
/// disagree on where a body ends are how requests get smuggled.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    line: Vec<u8>,
    trailer_len: usize,
    decoded: u64,
    /// Most body bytes accepted in all; a size line that would pass it fails at once.
    limit: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::with_limit(u64::MAX)
    }

    /// A decoder that fails with [`BodyError::TooLarge`] as soon as a chunk-size line
    /// announces more than `limit` body bytes in all, before any of that chunk is read.
    pub fn with_limit(limit: u64) -> Self {
        ChunkedDecoder {
            state: State::SizeLine,
            line: Vec::new(),
            trailer_len: 0,
            decoded: 0,
            limit,
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
            let line = crlf_line(&self.line)
                .ok_or(BodyError::Malformed("chunk-size line not ended by CRLF"))?;
            let size = parse_size_line(line)?;
            if size > self.limit.saturating_sub(self.decoded) {
                return Err(BodyError::TooLarge);
            }
            self.line.clear();
            self.state = if size == 0 {
                State::Trailer
            } else {
                State::Data(size)
            };
        }
        Ok(n)
    }

    /// Exactly CRLF after a chunk's data: byte by byte, so a wrong first byte fails
    /// before anything else is read.
    fn data_end(&mut self, rest: &[u8]) -> Result<usize, BodyError> {
        let want = b"\r\n";
        let mut used = 0;
        for &b in rest {
            if b != want[self.line.len()] {
                return Err(BodyError::Malformed("chunk data not followed by CRLF"));
            }
            self.line.push(b);
            used += 1;
            if self.line.len() == want.len() {
                self.line.clear();
                self.state = State::SizeLine;
                break;
            }
        }
        Ok(used)
    }

    fn trailer(&mut self, rest: &[u8]) -> Result<usize, BodyError> {
        let room = MAX_TRAILER.saturating_sub(self.trailer_len);
        let (n, ended) = self.take_line(rest, room.max(2))?;
        if ended {
            self.trailer_len += self.line.len();
            let line = crlf_line(&self.line)
                .ok_or(BodyError::Malformed("trailer line not ended by CRLF"))?;
            if line.is_empty() {
                self.state = State::Done;
            } else {
                check_trailer_field(line)?;
            }
            self.line.clear();
        }
        Ok(n)
    }
}

/// The line without its CRLF, if it ends in CRLF and holds no other CR.
fn crlf_line(line: &[u8]) -> Option<&[u8]> {
    let body = line.strip_suffix(b"\r\n")?;
    (!body.contains(&b'\r')).then_some(body)
}

/// `chunk-size [ chunk-ext ]` (the line without CRLF). httparse's `parse_chunk_size`
/// is not strict enough here: it takes any octet in an extension (NUL included),
/// whitespace after the size without an extension, and an empty line as size 0.
fn parse_size_line(line: &[u8]) -> Result<u64, BodyError> {
    let end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (digits, ext) = line.split_at(end);
    if digits.is_empty() {
        return Err(BodyError::Malformed("invalid chunk size"));
    }
    check_chunk_ext(ext)?;
    let significant = &digits[digits.iter().take_while(|&&b| b == b'0').count()..];
    if significant.len() > 16 {
        // Past u64: larger than any --max-body.
        return Err(BodyError::TooLarge);
    }
    let text = std::str::from_utf8(significant).map_err(|_| BodyError::Malformed("chunk size"))?;
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 16).map_err(|_| BodyError::Malformed("invalid chunk size"))
}

/// `*( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, RFC 9112 §7.1.1,
/// plus whitespace before the CRLF (as Apache takes it: it cannot change the size).
fn check_chunk_ext(mut rest: &[u8]) -> Result<(), BodyError> {
    let bad = BodyError::Malformed("invalid chunk extension");
    loop {
        rest = skip_bws(rest);
        if rest.is_empty() {
            return Ok(());
        }
        rest = rest.strip_prefix(b";").ok_or(bad.clone())?;
        rest = skip_bws(rest);
        let name = token_len(rest);
        if name == 0 {
            return Err(bad);
        }
        rest = &rest[name..];
        if let Some(value) = skip_bws(rest).strip_prefix(b"=") {
            let value = skip_bws(value);
            let n = match value.first() {
                Some(b'"') => quoted_string_len(value).ok_or(bad.clone())?,
                _ => token_len(value),
            };
            if n == 0 {
                return Err(bad);
            }
            rest = &value[n..];
        }
    }
}

/// `field-name ":" OWS field-value OWS`: a token name, no obs-fold (a line starting
/// with whitespace), no control bytes but HTAB in the value.
fn check_trailer_field(line: &[u8]) -> Result<(), BodyError> {
    let name = token_len(line);
    if name == 0 || line.get(name) != Some(&b':') {
        return Err(BodyError::Malformed("invalid trailer field"));
    }
    let value = &line[name + 1..];
    if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(BodyError::Malformed("invalid trailer field"));
    }
    Ok(())
}

fn skip_bws(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

fn token_len(s: &[u8]) -> usize {
    s.iter()
        .take_while(|&&b| crate::http::head::is_token(b))
        .count()
}

/// Length of the quoted-string at the start of `s` (RFC 9110 §5.6.4), quotes included.
fn quoted_string_len(s: &[u8]) -> Option<usize> {
    let qdtext =
        |b: u8| b == b'\t' || b == b' ' || (b >= 0x21 && b != b'"' && b != b'\\' && b != 0x7f);
    let mut i = 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                let next = *s.get(i + 1)?;
                if next != b'\t' && (next < b' ' || next == 0x7f) {
                    return None;
                }
                i += 2;
            }
            b if qdtext(b) => i += 1,
            _ => return None,
        }
    }
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

    fn malformed(input: &[u8]) -> bool {
        matches!(decode_all(input), Err(BodyError::Malformed(_)))
    }

    #[test]
    fn every_lenient_form_is_refused() {
        // The "funky chunks" class: each is read one way by some parser in front of us.
        for bad in [
            &b"2\nhi\r\n0\r\n\r\n"[..], // size line ended by a bare LF
            b"2\r\nhi\n0\r\n\r\n",      // chunk data ended by a bare LF
            b"2\r\nhi\r0\r\n\r\n",      // ... or by a bare CR
            b" 2\r\nhi\r\n0\r\n\r\n",   // whitespace before the size
            b"\t2\r\nhi\r\n0\r\n\r\n",
            b"2;a\0b\r\nhi\r\n0\r\n\r\n", // NUL in an extension
            b"2;a\rb\r\nhi\r\n0\r\n\r\n", // bare CR in an extension
            b"2;a=\"x\ry\"\r\nhi\r\n0\r\n\r\n",
            b"2;\r\nhi\r\n0\r\n\r\n",      // extension without a name
            b"2;a=\r\nhi\r\n0\r\n\r\n",    // ... or with an empty value
            b"2 x\r\nhi\r\n0\r\n\r\n",     // something after the size that is no extension
            b"2;a=\"x\r\nhi\r\n0\r\n\r\n", // unterminated quoted value
            b"0\r\nX: 1\rY: 2\r\n\r\n",    // bare CR in a trailer
            b"0\r\nX: 1\r\n Y: 2\r\n\r\n", // trailer starting with a space (obs-fold)
            b"0\r\n\tX: 1\r\n\r\n",
            b"0\r\nX: 1\n\r\n",      // trailer ended by a bare LF
            b"0\r\n\n",              // last line a bare LF
            b"0\r\nX : 1\r\n\r\n",   // space before the colon
            b"0\r\nX: a\0b\r\n\r\n", // NUL in a trailer value
            b"0\r\nno colon\r\n\r\n",
            b"0x2\r\nhi\r\n0\r\n\r\n",
            b"+2\r\nhi\r\n0\r\n\r\n",
            b"-1\r\n",
            b"x\r\n",
            b"\r\n", // empty size line
            b"2\r\nhiX\r\n",
        ] {
            assert!(malformed(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn valid_extensions_and_trailers_pass() {
        for good in [
            &b"2;a\r\nhi\r\n0\r\n\r\n"[..],
            b"2 ; a = b ;c \r\nhi\r\n0\r\n\r\n",
            b"2 \r\nhi\r\n0\t\r\n\r\n",
            b"2;a=\"q \\\" ;\"\r\nhi\r\n0;last\r\n\r\n",
            b"0002\r\nhi\r\n000\r\nX-T: a\tb \r\nY:\r\n\r\n",
        ] {
            let (out, n, done) = decode_all(good).unwrap();
            assert_eq!((out.as_slice(), n, done), (&b"hi"[..], good.len(), true));
        }
    }

    #[test]
    fn a_size_past_the_limit_fails_before_its_data() {
        let mut out = Vec::new();
        let mut d = ChunkedDecoder::with_limit(10);
        assert_eq!(d.decode(b"6\r\nabcdef\r\n", &mut out), Ok(11));
        // 6 + 5 > 10: refused on the size line alone, none of its data needed.
        assert_eq!(d.decode(b"5\r\n", &mut out), Err(BodyError::TooLarge));
        let mut d = ChunkedDecoder::with_limit(10);
        assert_eq!(d.decode(b"4\r\nabcd\r\n6\r\n", &mut out), Ok(12));
        let mut d = ChunkedDecoder::new();
        assert_eq!(
            d.decode(b"1234567890abcdef0\r\n", &mut out),
            Err(BodyError::TooLarge)
        );
        assert!(
            ChunkedDecoder::new()
                .decode(b"ffffffffffffffff\r\n", &mut out)
                .is_ok()
        );
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
