//! FastCGI wire format (`fastcgi::record`).
//!
//! Two checks on every input:
//! 1. Decoding: the bytes are a record stream, decoded as a reader does (decode,
//!    drop what it used, repeat). Each record's bounds are checked, a shorter
//!    prefix must be incomplete, BEGIN/END bodies are parsed, and the PARAMS /
//!    GET_VALUES contents go through `decode_pairs` (whose output must survive
//!    `encode_pairs` -> `decode_pairs`).
//! 2. Round trip: the same bytes, read as a recipe (`Unstructured`), build a list of
//!    records with the crate's encoders (`stream`, `params`, `begin_request`, ...);
//!    decoding the encoding in fuzzer-chosen read sizes must give them back.
#![no_main]

use cgi_testbed::fastcgi::record::{
    self, BeginRequest, EndRequest, FCGI_HEADER_LEN, FCGI_MAX_CONTENT_LEN, FCGI_MAX_RECORD_LEN,
    Pair, RecordError, RecordType,
};
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    decode_stream(data);
    round_trip(data);
});

fn decode_stream(data: &[u8]) {
    let mut buf = data;
    let mut params = Vec::new();
    loop {
        let (rec, used) = match record::decode(buf) {
            Ok(Some(ok)) => ok,
            Ok(None) => {
                // Incomplete: either no full header, or the header promises more.
                if buf.len() >= FCGI_HEADER_LEN {
                    let clen = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
                    let total = FCGI_HEADER_LEN + clen + usize::from(buf[6]);
                    assert!(buf.len() < total, "Ok(None) with {} of {total} bytes", buf.len());
                }
                break;
            }
            Err(e) => {
                assert!(matches!(e, RecordError::BadVersion(v) if v == buf[0] && v != 1));
                let _ = e.to_string();
                break;
            }
        };
        assert!(used >= FCGI_HEADER_LEN && used <= buf.len());
        assert!(used <= FCGI_MAX_RECORD_LEN);
        assert_eq!(rec.record_type.as_u8(), buf[1]);
        assert_eq!(RecordType::from_u8(buf[1]), rec.record_type);
        assert_eq!(rec.request_id, u16::from_be_bytes([buf[2], buf[3]]));
        assert_eq!(rec.content.len(), usize::from(u16::from_be_bytes([buf[4], buf[5]])));
        assert_eq!(used, FCGI_HEADER_LEN + rec.content.len() + usize::from(buf[6]));
        assert_eq!(rec.content, &buf[FCGI_HEADER_LEN..FCGI_HEADER_LEN + rec.content.len()]);
        // A reader that has one byte less must be told to wait.
        assert_eq!(record::decode(&buf[..used - 1]), Ok(None));

        match rec.record_type {
            RecordType::BeginRequest => match BeginRequest::parse(rec.content) {
                Ok(b) => {
                    assert!(rec.content.len() >= 8);
                    assert_eq!(b.role, u16::from_be_bytes([rec.content[0], rec.content[1]]));
                    let _ = b.keep_conn();
                }
                Err(_) => assert!(rec.content.len() < 8),
            },
            RecordType::EndRequest => match EndRequest::parse(rec.content) {
                Ok(e) => {
                    assert!(rec.content.len() >= 8);
                    assert_eq!(e.protocol_status, rec.content[4]);
                }
                Err(_) => assert!(rec.content.len() < 8),
            },
            RecordType::Params => params.extend_from_slice(rec.content),
            RecordType::GetValues | RecordType::GetValuesResult => check_pairs(rec.content),
            _ => {}
        }
        buf = &buf[used..];
    }
    check_pairs(&params);
}

/// `decode_pairs` must not panic; what it returns re-encodes to something that
/// decodes to the same pairs.
fn check_pairs(bytes: &[u8]) {
    match record::decode_pairs(bytes) {
        Ok(pairs) => {
            let total: usize = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
            assert!(total <= bytes.len());
            let mut again = Vec::new();
            record::encode_pairs(&mut again, pairs.iter().map(|(n, v)| (n, v))).unwrap();
            assert!(again.len() <= bytes.len(), "canonical encoding is longer");
            assert_eq!(record::decode_pairs(&again).unwrap(), pairs);
        }
        Err(RecordError::TruncatedPair { offset }) => assert!(offset < bytes.len()),
        Err(e) => panic!("decode_pairs: unexpected error {e:?}"),
    }
}

/// What the decoder must give back for one encoder call.
enum Item {
    /// Exactly these records, in order.
    Records(Vec<(RecordType, u16, Vec<u8>)>),
    /// A PARAMS stream for this id carrying these pairs (terminator included).
    Params(u16, Vec<Pair>),
}

/// Most bytes one recipe may encode, so that every input stays fast.
const BUDGET: usize = 300_000;

fn bytes_of(u: &mut Unstructured, max: usize) -> ArbResult<Vec<u8>> {
    // Mostly small; a selector of 0xF0.. asks for data long enough to need several
    // records (an exhausted recipe reads 0s, so it never asks for that).
    let sel: u8 = u.arbitrary()?;
    let len = if sel >= 0xF0 {
        u.int_in_range(60_000..=140_000)?
    } else {
        u.int_in_range(0..=max)?
    };
    let seed: u8 = u.arbitrary()?;
    let mut out: Vec<u8> = u.bytes(len.min(u.len()))?.to_vec();
    let fill = out.len();
    out.extend((fill..len).map(|i| (i as u8).wrapping_mul(31) ^ seed));
    Ok(out)
}

fn build(u: &mut Unstructured, buf: &mut Vec<u8>, items: &mut Vec<Item>) -> ArbResult<()> {
    let count = u.int_in_range(0..=8)?;
    for _ in 0..count {
        if u.is_empty() || buf.len() > BUDGET {
            break;
        }
        let id: u16 = u.arbitrary()?;
        match u.int_in_range(0..=7)? {
            0 => {
                let kind = RecordType::from_u8(u.arbitrary()?);
                let data = bytes_of(u, 300)?;
                record::stream(buf, kind, id, &data);
                let mut recs: Vec<_> = data
                    .chunks(FCGI_MAX_CONTENT_LEN)
                    .map(|c| (kind, id, c.to_vec()))
                    .collect();
                if data.is_empty() {
                    recs.push((kind, id, Vec::new()));
                }
                items.push(Item::Records(recs));
            }
            1 => {
                let n = u.int_in_range(0..=6)?;
                let mut pairs = Vec::new();
                for _ in 0..n {
                    pairs.push((bytes_of(u, 200)?, bytes_of(u, 200)?));
                }
                record::params(buf, id, pairs.iter().map(|(n, v)| (n, v))).unwrap();
                items.push(Item::Params(id, pairs));
            }
            2 => {
                let role: u16 = u.arbitrary()?;
                let keep: bool = u.arbitrary()?;
                record::begin_request(buf, id, role, keep);
                let [r0, r1] = role.to_be_bytes();
                let body = vec![r0, r1, u8::from(keep), 0, 0, 0, 0, 0];
                items.push(Item::Records(vec![(RecordType::BeginRequest, id, body)]));
            }
            3 => {
                let app: u32 = u.arbitrary()?;
                let proto: u8 = u.arbitrary()?;
                record::end_request(buf, id, app, proto);
                let mut body = app.to_be_bytes().to_vec();
                body.extend_from_slice(&[proto, 0, 0, 0]);
                items.push(Item::Records(vec![(RecordType::EndRequest, id, body)]));
            }
            4 => {
                record::abort_request(buf, id);
                items.push(Item::Records(vec![(RecordType::AbortRequest, id, vec![])]));
            }
            5 => {
                let t: u8 = u.arbitrary()?;
                record::unknown_type(buf, t);
                items.push(Item::Records(vec![(
                    RecordType::UnknownType,
                    0,
                    vec![t, 0, 0, 0, 0, 0, 0, 0],
                )]));
            }
            6 => {
                let kind = RecordType::from_u8(u.arbitrary()?);
                let content = bytes_of(u, 300)?;
                let before = buf.len();
                match record::record(buf, kind, id, &content) {
                    Ok(()) => items.push(Item::Records(vec![(kind, id, content)])),
                    Err(RecordError::ContentTooLong(n)) => {
                        assert!(n > FCGI_MAX_CONTENT_LEN);
                        assert_eq!(buf.len(), before, "a failed record() wrote bytes");
                    }
                    Err(e) => panic!("record(): {e:?}"),
                }
            }
            _ => {
                let n = u.int_in_range(0..=6)?;
                let mut pairs = Vec::new();
                for _ in 0..n {
                    pairs.push((bytes_of(u, 100)?, bytes_of(u, 100)?));
                }
                let before = buf.len();
                match record::get_values_result(buf, pairs.iter().map(|(n, v)| (n, v))) {
                    Ok(()) => {
                        let mut body = Vec::new();
                        record::encode_pairs(&mut body, pairs.iter().map(|(n, v)| (n, v)))
                            .unwrap();
                        assert_eq!(record::decode_pairs(&body).unwrap(), pairs);
                        items.push(Item::Records(vec![(RecordType::GetValuesResult, 0, body)]));
                    }
                    Err(RecordError::ContentTooLong(_)) => assert_eq!(buf.len(), before),
                    Err(e) => panic!("get_values_result(): {e:?}"),
                }
            }
        }
    }
    Ok(())
}

fn round_trip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut buf = Vec::new();
    let mut items = Vec::new();
    // Running out of recipe bytes just ends the list early.
    let _ = build(&mut u, &mut buf, &mut items);
    // Read sizes: any, but never so small that a long encoding takes more than
    // ~2000 reads.
    let floor = (buf.len() / 2048).max(1);
    let reads: Vec<usize> = (0..8)
        .map(|_| match u.arbitrary::<u16>() {
            Ok(r) if !u.is_empty() || r != 0 => usize::from(r).max(floor),
            _ => 4096,
        })
        .collect();

    // Records come back whole and 8-byte aligned, whatever the read sizes.
    let mut got = Vec::new();
    let (mut pending, mut pos) = (Vec::new(), 0);
    for &size in reads.iter().cycle() {
        if pos == buf.len() {
            break;
        }
        let end = (pos + size).min(buf.len());
        pending.extend_from_slice(&buf[pos..end]);
        pos = end;
        while let Some((rec, used)) = record::decode(&pending).expect("own encoding rejected") {
            assert_eq!(used % 8, 0, "encoder did not pad to 8");
            got.push((rec.record_type, rec.request_id, rec.content.to_vec()));
            pending.drain(..used);
        }
    }
    assert!(pending.is_empty(), "{} bytes left over", pending.len());

    let mut got = got.into_iter();
    for item in items {
        match item {
            Item::Records(want) => {
                for w in want {
                    assert_eq!(got.next().as_ref(), Some(&w), "record differs");
                }
            }
            Item::Params(id, pairs) => {
                let mut body = Vec::new();
                loop {
                    let (kind, rid, content) = got.next().expect("PARAMS stream cut short");
                    assert_eq!((kind, rid), (RecordType::Params, id));
                    assert!(content.len() <= FCGI_MAX_CONTENT_LEN);
                    if content.is_empty() {
                        break;
                    }
                    body.extend_from_slice(&content);
                }
                assert_eq!(record::decode_pairs(&body).unwrap(), pairs, "PARAMS pairs differ");
            }
        }
    }
    assert!(got.next().is_none(), "extra records decoded");
}
