//! The FastCGI 1.0 wire format: record headers, typed bodies, name-value pairs
//! and an incremental record decoder. Nothing outside this module should need
//! to know how a FastCGI byte looks; it deals in `Record`s and pairs instead.

use std::fmt;

pub const FCGI_VERSION_1: u8 = 1;
pub const FCGI_HEADER_LEN: usize = 8;
pub const FCGI_MAX_CONTENT_LEN: usize = 65535;
/// The most a reader ever has to buffer before `decode` can return a record.
pub const FCGI_MAX_RECORD_LEN: usize = FCGI_HEADER_LEN + FCGI_MAX_CONTENT_LEN + 255;
/// Management records (GET_VALUES, UNKNOWN_TYPE) travel on request id 0.
pub const FCGI_NULL_REQUEST_ID: u16 = 0;

pub const FCGI_KEEP_CONN: u8 = 1;

pub const FCGI_RESPONDER: u16 = 1;
pub const FCGI_AUTHORIZER: u16 = 2;
pub const FCGI_FILTER: u16 = 3;

pub const FCGI_REQUEST_COMPLETE: u8 = 0;
pub const FCGI_CANT_MPX_CONN: u8 = 1;
pub const FCGI_OVERLOADED: u8 = 2;
pub const FCGI_UNKNOWN_ROLE: u8 = 3;

pub const FCGI_MAX_CONNS: &[u8] = b"FCGI_MAX_CONNS";
pub const FCGI_MAX_REQS: &[u8] = b"FCGI_MAX_REQS";
pub const FCGI_MPXS_CONNS: &[u8] = b"FCGI_MPXS_CONNS";

const MAX_PAIR_LEN: usize = 0x7fff_ffff;

/// An owned name-value pair, as `decode_pairs` returns it.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Record types. `Other` keeps unrecognised types decodable, because the
/// protocol wants them answered with UNKNOWN_TYPE rather than treated as errors.
/// `from_u8` never builds `Other` for a known value, so equality stays meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    BeginRequest,
    AbortRequest,
    EndRequest,
    Params,
    Stdin,
    Stdout,
    Stderr,
    Data,
    GetValues,
    GetValuesResult,
    UnknownType,
    Other(u8),
}

impl RecordType {
    pub const fn from_u8(value: u8) -> RecordType {
        match value {
            1 => RecordType::BeginRequest,
            2 => RecordType::AbortRequest,
            3 => RecordType::EndRequest,
            4 => RecordType::Params,
            5 => RecordType::Stdin,
            6 => RecordType::Stdout,
            7 => RecordType::Stderr,
            8 => RecordType::Data,
            9 => RecordType::GetValues,
            10 => RecordType::GetValuesResult,
            11 => RecordType::UnknownType,
            other => RecordType::Other(other),
        }
    }

    pub const fn as_u8(self) -> u8 {
        match self {
            RecordType::BeginRequest => 1,
            RecordType::AbortRequest => 2,
            RecordType::EndRequest => 3,
            RecordType::Params => 4,
            RecordType::Stdin => 5,
            RecordType::Stdout => 6,
            RecordType::Stderr => 7,
            RecordType::Data => 8,
            RecordType::GetValues => 9,
            RecordType::GetValuesResult => 10,
            RecordType::UnknownType => 11,
            RecordType::Other(value) => value,
        }
    }

    /// Stream types carry a byte stream terminated by an empty record.
    pub const fn is_stream(self) -> bool {
        matches!(
            self,
            RecordType::Params
                | RecordType::Stdin
                | RecordType::Stdout
                | RecordType::Stderr
                | RecordType::Data
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    BadVersion(u8),
    ContentTooLong(usize),
    /// A name or value longer than the 31-bit length field can express.
    PairTooLong(usize),
    /// A name-value length prefix or its bytes run past the end of the input.
    TruncatedPair {
        offset: usize,
    },
    BodyTooShort {
        record_type: RecordType,
        len: usize,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::BadVersion(v) => write!(f, "unsupported FastCGI version {v}"),
            RecordError::ContentTooLong(n) => {
                write!(
                    f,
                    "record content of {n} bytes exceeds {FCGI_MAX_CONTENT_LEN}"
                )
            }
            RecordError::PairTooLong(n) => {
                write!(f, "name-value length {n} exceeds {MAX_PAIR_LEN}")
            }
            RecordError::TruncatedPair { offset } => {
                write!(f, "name-value pair truncated at byte {offset}")
            }
            RecordError::BodyTooShort { record_type, len } => {
                write!(f, "{record_type:?} body of {len} bytes is too short")
            }
        }
    }
}

impl std::error::Error for RecordError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub record_type: RecordType,
    pub request_id: u16,
    pub content_length: u16,
    pub padding_length: u8,
}

impl Header {
    pub fn encode(&self) -> [u8; FCGI_HEADER_LEN] {
        let [id_hi, id_lo] = self.request_id.to_be_bytes();
        let [len_hi, len_lo] = self.content_length.to_be_bytes();
        let kind = self.record_type.as_u8();
        [
            FCGI_VERSION_1,
            kind,
            id_hi,
            id_lo,
            len_hi,
            len_lo,
            self.padding_length,
            0,
        ]
    }

    pub fn decode(bytes: &[u8; FCGI_HEADER_LEN]) -> Result<Header, RecordError> {
        if bytes[0] != FCGI_VERSION_1 {
            return Err(RecordError::BadVersion(bytes[0]));
        }
        Ok(Header {
            record_type: RecordType::from_u8(bytes[1]),
            request_id: u16::from_be_bytes([bytes[2], bytes[3]]),
            content_length: u16::from_be_bytes([bytes[4], bytes[5]]),
            padding_length: bytes[6],
        })
    }
}

/// A decoded record borrowing its content from the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub record_type: RecordType,
    pub request_id: u16,
    pub content: &'a [u8],
}

/// Decodes one record from the front of `buf`. `Ok(None)` means more bytes are
/// needed; otherwise the second value is how many bytes (padding included) to
/// drop before the next call.
pub fn decode(buf: &[u8]) -> Result<Option<(Record<'_>, usize)>, RecordError> {
    let Some(head) = buf.first_chunk::<FCGI_HEADER_LEN>() else {
        return Ok(None);
    };
    // Checked before the body arrives so a peer speaking garbage is rejected
    // without waiting for up to 64 KiB that may never come.
    let header = Header::decode(head)?;
    let content_end = FCGI_HEADER_LEN + usize::from(header.content_length);
    let total = content_end + usize::from(header.padding_length);
    match buf.get(FCGI_HEADER_LEN..content_end) {
        Some(content) if buf.len() >= total => Ok(Some((
            Record {
                record_type: header.record_type,
                request_id: header.request_id,
                content,
            },
            total,
        ))),
        _ => Ok(None),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeginRequest {
    pub role: u16,
    pub flags: u8,
}

impl BeginRequest {
    pub fn parse(content: &[u8]) -> Result<BeginRequest, RecordError> {
        match content {
            [r0, r1, flags, ..] if content.len() >= 8 => Ok(BeginRequest {
                role: u16::from_be_bytes([*r0, *r1]),
                flags: *flags,
            }),
            _ => Err(RecordError::BodyTooShort {
                record_type: RecordType::BeginRequest,
                len: content.len(),
            }),
        }
    }

    pub fn keep_conn(&self) -> bool {
        self.flags & FCGI_KEEP_CONN != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndRequest {
    pub app_status: u32,
    pub protocol_status: u8,
}

impl EndRequest {
    pub fn parse(content: &[u8]) -> Result<EndRequest, RecordError> {
        match content {
            [a0, a1, a2, a3, status, ..] if content.len() >= 8 => Ok(EndRequest {
                app_status: u32::from_be_bytes([*a0, *a1, *a2, *a3]),
                protocol_status: *status,
            }),
            _ => Err(RecordError::BodyTooShort {
                record_type: RecordType::EndRequest,
                len: content.len(),
            }),
        }
    }
}

fn padding_for(len: usize) -> u8 {
    // Padding to 8 keeps the next header aligned, which the spec recommends.
    ((8 - len % 8) % 8) as u8
}

/// Writes one record; every caller has already bounded `content` to 65535.
fn put(buf: &mut Vec<u8>, record_type: RecordType, request_id: u16, content: &[u8]) {
    debug_assert!(content.len() <= FCGI_MAX_CONTENT_LEN);
    let header = Header {
        record_type,
        request_id,
        content_length: content.len() as u16,
        padding_length: padding_for(content.len()),
    };
    buf.extend_from_slice(&header.encode());
    buf.extend_from_slice(content);
    buf.resize(buf.len() + usize::from(header.padding_length), 0);
}

/// Writes a single record of any type, padded to a multiple of 8.
pub fn record(
    buf: &mut Vec<u8>,
    record_type: RecordType,
    request_id: u16,
    content: &[u8],
) -> Result<(), RecordError> {
    if content.len() > FCGI_MAX_CONTENT_LEN {
        return Err(RecordError::ContentTooLong(content.len()));
    }
    put(buf, record_type, request_id, content);
    Ok(())
}

pub fn begin_request(buf: &mut Vec<u8>, request_id: u16, role: u16, keep_conn: bool) {
    let [r0, r1] = role.to_be_bytes();
    let flags = if keep_conn { FCGI_KEEP_CONN } else { 0 };
    put(
        buf,
        RecordType::BeginRequest,
        request_id,
        &[r0, r1, flags, 0, 0, 0, 0, 0],
    );
}

pub fn abort_request(buf: &mut Vec<u8>, request_id: u16) {
    put(buf, RecordType::AbortRequest, request_id, &[]);
}

pub fn end_request(buf: &mut Vec<u8>, request_id: u16, app_status: u32, protocol_status: u8) {
    let [a0, a1, a2, a3] = app_status.to_be_bytes();
    let body = [a0, a1, a2, a3, protocol_status, 0, 0, 0];
    put(buf, RecordType::EndRequest, request_id, &body);
}

/// Writes `data` as records of at most 65535 bytes. An empty `data` writes the
/// end-of-stream record, so the terminator is a separate, explicit call.
pub fn stream(buf: &mut Vec<u8>, record_type: RecordType, request_id: u16, data: &[u8]) {
    if data.is_empty() {
        put(buf, record_type, request_id, &[]);
    }
    for chunk in data.chunks(FCGI_MAX_CONTENT_LEN) {
        put(buf, record_type, request_id, chunk);
    }
}

/// Writes the whole PARAMS stream, terminator included. On error nothing is
/// written.
pub fn params<I, N, V>(buf: &mut Vec<u8>, request_id: u16, pairs: I) -> Result<(), RecordError>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    // Encoded in place after a header left blank, so the usual PARAMS (one record)
    // costs no buffer of its own; a longer one is cut into records afterwards.
    let start = buf.len();
    buf.extend_from_slice(&[0; FCGI_HEADER_LEN]);
    if let Err(e) = encode_pairs(buf, pairs) {
        buf.truncate(start);
        return Err(e);
    }
    let len = buf.len() - start - FCGI_HEADER_LEN;
    if len > FCGI_MAX_CONTENT_LEN {
        let body = buf.split_off(start + FCGI_HEADER_LEN);
        buf.truncate(start);
        stream(buf, RecordType::Params, request_id, &body);
    } else if len > 0 {
        let header = Header {
            record_type: RecordType::Params,
            request_id,
            content_length: len as u16,
            padding_length: padding_for(len),
        };
        buf[start..start + FCGI_HEADER_LEN].copy_from_slice(&header.encode());
        buf.resize(buf.len() + usize::from(header.padding_length), 0);
    } else {
        // No pairs: the terminator alone.
        buf.truncate(start);
    }
    stream(buf, RecordType::Params, request_id, &[]);
    Ok(())
}

/// GET_VALUES is a single record, so the names must fit in 65535 bytes.
pub fn get_values<I, N>(buf: &mut Vec<u8>, names: I) -> Result<(), RecordError>
where
    I: IntoIterator<Item = N>,
    N: AsRef<[u8]>,
{
    let mut body = Vec::new();
    encode_pairs(&mut body, names.into_iter().map(|n| (n, [])))?;
    record(buf, RecordType::GetValues, FCGI_NULL_REQUEST_ID, &body)
}

pub fn get_values_result<I, N, V>(buf: &mut Vec<u8>, pairs: I) -> Result<(), RecordError>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut body = Vec::new();
    encode_pairs(&mut body, pairs)?;
    record(
        buf,
        RecordType::GetValuesResult,
        FCGI_NULL_REQUEST_ID,
        &body,
    )
}

pub fn unknown_type(buf: &mut Vec<u8>, record_type: u8) {
    let body = [record_type, 0, 0, 0, 0, 0, 0, 0];
    put(buf, RecordType::UnknownType, FCGI_NULL_REQUEST_ID, &body);
}

fn encode_len(out: &mut Vec<u8>, len: usize) -> Result<(), RecordError> {
    if len <= 127 {
        out.push(len as u8);
    } else if len <= MAX_PAIR_LEN {
        out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
    } else {
        return Err(RecordError::PairTooLong(len));
    }
    Ok(())
}

/// Appends name-value pair bytes. On error `out` is left as it was.
pub fn encode_pairs<I, N, V>(out: &mut Vec<u8>, pairs: I) -> Result<(), RecordError>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let start = out.len();
    let result = pairs.into_iter().try_for_each(|(name, value)| {
        let (name, value) = (name.as_ref(), value.as_ref());
        encode_len(out, name.len())?;
        encode_len(out, value.len())?;
        out.extend_from_slice(name);
        out.extend_from_slice(value);
        Ok(())
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn take_len(rest: &mut &[u8]) -> Option<usize> {
    let (&first, tail) = rest.split_first()?;
    if first & 0x80 == 0 {
        *rest = tail;
        return Some(usize::from(first));
    }
    let (bytes, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    usize::try_from(u32::from_be_bytes(*bytes) & 0x7fff_ffff).ok()
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

/// Decodes a complete name-value stream, e.g. all PARAMS contents joined.
pub fn decode_pairs(bytes: &[u8]) -> Result<Vec<Pair>, RecordError> {
    let mut rest = bytes;
    let mut pairs = Vec::new();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let pair = (|| {
            let name_len = take_len(&mut rest)?;
            let value_len = take_len(&mut rest)?;
            Some((take(&mut rest, name_len)?, take(&mut rest, value_len)?))
        })();
        let (name, value) = pair.ok_or(RecordError::TruncatedPair { offset })?;
        pairs.push((name.to_vec(), value.to_vec()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Owned = (RecordType, u16, Vec<u8>);

    /// Feeds `bytes` in the given chunk sizes, as a socket reader would.
    fn decode_chunked(bytes: &[u8], chunks: &[usize]) -> Vec<Owned> {
        let (mut buf, mut out, mut pos) = (Vec::new(), Vec::new(), 0);
        for size in chunks.iter().cycle() {
            if pos == bytes.len() {
                break;
            }
            let end = (pos + size).min(bytes.len());
            buf.extend_from_slice(&bytes[pos..end]);
            pos = end;
            while let Some((rec, used)) = decode(&buf).unwrap() {
                out.push((rec.record_type, rec.request_id, rec.content.to_vec()));
                buf.drain(..used);
            }
        }
        assert!(buf.is_empty(), "leftover bytes");
        out
    }

    fn filled(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    fn params_body(bytes: &[u8], id: u16) -> Vec<u8> {
        let records = decode_chunked(bytes, &[usize::MAX]);
        let (last, body) = records.split_last().unwrap();
        assert_eq!(*last, (RecordType::Params, id, vec![]));
        assert!(
            body.iter()
                .all(|(t, i, c)| *t == RecordType::Params && *i == id && !c.is_empty())
        );
        body.iter().flat_map(|r| r.2.clone()).collect()
    }

    #[test]
    fn header_round_trip() {
        let header = Header {
            record_type: RecordType::Other(200),
            request_id: 0xBEEF,
            content_length: 0x1234,
            padding_length: 7,
        };
        let bytes = header.encode();
        assert_eq!(bytes, [1, 200, 0xBE, 0xEF, 0x12, 0x34, 7, 0]);
        assert_eq!(Header::decode(&bytes), Ok(header));
    }

    #[test]
    fn records_are_padded_to_eight() {
        for (len, padding) in [(0, 0), (1, 7), (5, 3), (8, 0), (9, 7)] {
            let mut buf = Vec::new();
            stream(&mut buf, RecordType::Stdout, 1, &vec![b'x'; len]);
            assert_eq!(buf.len() % 8, 0);
            assert_eq!(buf.len(), 8 + len + padding);
            assert_eq!(buf[6], padding as u8);
        }
    }

    #[test]
    fn long_stream_splits_at_65535() {
        let data = filled(200_000, 3);
        let mut buf = Vec::new();
        stream(&mut buf, RecordType::Stdin, 9, &data);
        let records = decode_chunked(&buf, &[4096]);
        let lens: Vec<usize> = records.iter().map(|r| r.2.len()).collect();
        assert_eq!(lens, [65535, 65535, 65535, 3395]);
        let joined: Vec<u8> = records.into_iter().flat_map(|r| r.2).collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn empty_stream_is_the_terminator() {
        let mut buf = Vec::new();
        stream(&mut buf, RecordType::Stdout, 7, &[]);
        assert_eq!(buf, [1, 6, 0, 7, 0, 0, 0, 0]);
    }

    #[test]
    fn pair_lengths_short_and_long() {
        let name = vec![b'n'; 127];
        let value = vec![b'v'; 128];
        let mut out = Vec::new();
        encode_pairs(&mut out, [(&name, &value)]).unwrap();
        assert_eq!(&out[..5], &[127, 0x80, 0, 0, 128]);
        assert_eq!(decode_pairs(&out).unwrap(), vec![(name, value)]);

        let big = filled(70_000, 1);
        let mut out = Vec::new();
        encode_pairs(&mut out, [(b"K".as_slice(), big.as_slice())]).unwrap();
        assert_eq!(&out[..5], &[1, 0x80, 0x01, 0x11, 0x70]);
        assert_eq!(decode_pairs(&out).unwrap(), vec![(b"K".to_vec(), big)]);
    }

    #[test]
    fn pairs_straddle_record_boundaries() {
        let big = filled(100_000, 9);
        let pairs = [
            (b"A".to_vec(), big),
            (b"SCRIPT_NAME".to_vec(), b"/x".to_vec()),
        ];
        let mut buf = Vec::new();
        params(&mut buf, 3, pairs.iter().map(|(n, v)| (n, v))).unwrap();
        let body = params_body(&buf, 3);
        assert!(body.len() > FCGI_MAX_CONTENT_LEN);
        assert_eq!(decode_pairs(&body).unwrap(), pairs.to_vec());
    }

    #[test]
    fn truncated_pairs_error() {
        let mut out = Vec::new();
        encode_pairs(&mut out, [("NAME", "value"), ("X", "long enough")]).unwrap();
        // Byte 11 ends the first pair, so that prefix is a valid stream.
        for cut in (1..out.len()).filter(|&cut| cut != 11) {
            assert!(matches!(
                decode_pairs(&out[..cut]),
                Err(RecordError::TruncatedPair { .. })
            ));
        }
        assert_eq!(
            decode_pairs(&[0x80, 0, 1]),
            Err(RecordError::TruncatedPair { offset: 0 })
        );
    }

    #[test]
    fn truncated_input_is_incomplete_not_error() {
        let mut buf = Vec::new();
        stream(&mut buf, RecordType::Stderr, 2, b"hello");
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), Ok(None));
        }
        let (rec, used) = decode(&buf).unwrap().unwrap();
        assert_eq!((rec.content, used), (b"hello".as_slice(), 16));
    }

    #[test]
    fn bad_version_is_an_error() {
        let mut buf = Vec::new();
        abort_request(&mut buf, 1);
        buf[0] = 2;
        assert_eq!(decode(&buf), Err(RecordError::BadVersion(2)));
    }

    #[test]
    fn typed_bodies_parse() {
        let mut buf = Vec::new();
        end_request(&mut buf, 5, 0xDEAD_BEEF, FCGI_OVERLOADED);
        begin_request(&mut buf, 6, FCGI_RESPONDER, true);
        unknown_type(&mut buf, 42);
        let recs = decode_chunked(&buf, &[3]);
        assert_eq!((recs[0].0, recs[0].1), (RecordType::EndRequest, 5));
        let end = EndRequest::parse(&recs[0].2).unwrap();
        assert_eq!(
            (end.app_status, end.protocol_status),
            (0xDEAD_BEEF, FCGI_OVERLOADED)
        );
        let begin = BeginRequest::parse(&recs[1].2).unwrap();
        assert!(begin.keep_conn() && begin.role == FCGI_RESPONDER);
        assert_eq!(
            recs[2],
            (RecordType::UnknownType, 0, vec![42, 0, 0, 0, 0, 0, 0, 0])
        );
        assert!(EndRequest::parse(&[0; 7]).is_err());
    }

    #[test]
    fn management_records() {
        let mut buf = Vec::new();
        get_values(&mut buf, [FCGI_MAX_CONNS, FCGI_MPXS_CONNS]).unwrap();
        let (rec, _) = decode(&buf).unwrap().unwrap();
        assert_eq!(
            (rec.record_type, rec.request_id),
            (RecordType::GetValues, 0)
        );
        let names = decode_pairs(rec.content).unwrap();
        assert_eq!(names[1], (FCGI_MPXS_CONNS.to_vec(), vec![]));
        let huge = [(vec![b'x'; 70_000], b"1".to_vec())];
        let mut buf = Vec::new();
        let err = get_values_result(&mut buf, huge.iter().map(|(n, v)| (n, v)));
        assert!(matches!(err, Err(RecordError::ContentTooLong(_))) && buf.is_empty());
    }

    fn item() -> impl Strategy<Value = (u8, u16, usize, u8, Option<u8>)> {
        let len = prop_oneof![0usize..64, 65_530usize..70_000];
        (
            any::<u8>(),
            any::<u16>(),
            len,
            any::<u8>(),
            any::<Option<u8>>(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn records_survive_arbitrary_splits(
            items in prop::collection::vec(item(), 0..6),
            chunks in prop::collection::vec(prop_oneof![1usize..16, 1usize..20_000], 1..20),
        ) {
            let (mut bytes, mut expected) = (Vec::new(), Vec::new());
            for (kind, id, len, seed, padding) in items {
                let kind = RecordType::from_u8(kind);
                let data = filled(len, seed);
                match padding {
                    // Peers may pad however they like; exercise that path too.
                    Some(pad) if len <= FCGI_MAX_CONTENT_LEN => {
                        let header = Header {
                            record_type: kind,
                            request_id: id,
                            content_length: len as u16,
                            padding_length: pad,
                        };
                        bytes.extend_from_slice(&header.encode());
                        bytes.extend_from_slice(&data);
                        bytes.extend(std::iter::repeat_n(0xAA, usize::from(pad)));
                        expected.push((kind, id, data));
                    }
                    _ => {
                        stream(&mut bytes, kind, id, &data);
                        if data.is_empty() {
                            expected.push((kind, id, Vec::new()));
                        }
                        for c in data.chunks(FCGI_MAX_CONTENT_LEN) {
                            expected.push((kind, id, c.to_vec()));
                        }
                    }
                }
            }
            prop_assert_eq!(decode_chunked(&bytes, &chunks), expected);
        }

        #[test]
        fn pairs_round_trip_through_params(
            id in any::<u16>(),
            spec in prop::collection::vec(
                (0usize..200, prop_oneof![0usize..200, 100usize..70_000], any::<u8>()),
                0..12,
            ),
        ) {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = spec
                .into_iter()
                .map(|(n, v, seed)| (filled(n, seed), filled(v, !seed)))
                .collect();
            let mut buf = Vec::new();
            params(&mut buf, id, pairs.iter().map(|(n, v)| (n, v))).unwrap();
            prop_assert_eq!(decode_pairs(&params_body(&buf, id)).unwrap(), pairs);
        }
    }
}
