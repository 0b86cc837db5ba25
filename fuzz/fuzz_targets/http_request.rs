//! HTTP/1.1 request head parser + request body framing.
//!
//! Input layout: `ctl`, then `ctl & 7` split-size bytes, then the wire bytes.
//! - `ctl >> 3` picks a second, small `max_header` (16 + 128 * n) that must agree
//!   with the 8 KiB one (same answer, or `TooLarge`).
//! - the split sizes cut the body into pieces for the chunked decoder (cycled; a 0
//!   means "call with an empty slice"); no split bytes means byte by byte.
//!
//! Checked: no panic; consumed <= len; parsing `wire[..n]` gives the same request;
//! shorter prefixes are still incomplete (the server re-parses a growing buffer);
//! framing is consistent with the headers; chunked decoding in pieces gives exactly
//! the output / consumed / done / error of one call.
#![no_main]

use cgi_testbed::http::body::{BodyError, ChunkedDecoder};
use cgi_testbed::http::head::{self, Framing, HeadError, Request, Version};
use libfuzzer_sys::fuzz_target;

const MAX_HEADER: usize = 8 * 1024;

type Parsed = Result<Option<(Request, usize)>, HeadError>;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let nsplit = usize::from(ctl & 7).min(rest.len());
    let (splits, wire) = rest.split_at(nsplit);
    let small_max = 16 + 128 * usize::from(ctl >> 3);

    let full = head::parse(wire, MAX_HEADER);
    check_small_max(wire, &full, small_max);

    let (req, n) = match full {
        Ok(Some(ok)) => ok,
        Ok(None) => {
            assert!(wire.len() <= MAX_HEADER, "Ok(None) for an oversized buffer");
            return;
        }
        Err(_) => return,
    };

    assert!(n <= wire.len(), "consumed {n} > len {}", wire.len());
    assert!(n <= MAX_HEADER);
    assert!(n > 0);

    // The head is exactly `wire[..n]`: what follows must not matter...
    assert_eq!(
        head::parse(&wire[..n], MAX_HEADER),
        Ok(Some((req.clone(), n))),
        "re-parsing the head alone differs"
    );
    // ...and a shorter prefix is still incomplete, as the server reads a growing buffer.
    let mut cuts = vec![n - 1, n / 2];
    if let Some(&s) = splits.first() {
        cuts.push(usize::from(s) % n);
    }
    for k in cuts {
        assert_eq!(
            head::parse(&wire[..k], MAX_HEADER),
            Ok(None),
            "prefix of {k} bytes (of a {n}-byte head) is not incomplete"
        );
    }

    // Accessors must not panic and must be coherent.
    let (path, query) = req.path_and_query();
    assert!(!path.contains('?'));
    if let Some(q) = query {
        assert!(req.target.contains(q));
    }
    let _ = req.host();
    let _ = req.wants_keep_alive();
    let _ = req.is_head();

    let has_te = req.header("transfer-encoding").is_some();
    let has_cl = req.header("content-length").is_some();
    match req.framing {
        Framing::None => {
            assert!(!has_te && !has_cl);
            assert!(!req.has_body());
        }
        Framing::Length(len) => {
            assert!(!has_te, "Length framing with Transfer-Encoding");
            assert!(has_cl);
            // parse_decimal caps at 19 digits, so every length fits and converts.
            assert!(len < 10_000_000_000_000_000_000);
            let body = &wire[n..];
            let avail = usize::try_from(len).map_or(body.len(), |l| l.min(body.len()));
            let _ = &body[..avail];
            let _ = len.checked_sub(avail as u64).expect("avail <= len");
        }
        Framing::Chunked => {
            assert!(!has_cl, "Chunked framing with Content-Length");
            assert!(has_te);
            assert_eq!(req.version, Version::Http11);
            check_chunked(&wire[n..], splits);
        }
    }
});

/// A smaller limit gives the same answer or TooLarge, never something else.
fn check_small_max(wire: &[u8], full: &Parsed, small_max: usize) {
    if small_max >= MAX_HEADER {
        return;
    }
    let small = head::parse(wire, small_max);
    if small == *full {
        return;
    }
    assert_eq!(
        small,
        Err(HeadError::TooLarge),
        "max_header {small_max} gives a different answer than {MAX_HEADER}: {full:?}"
    );
    if let Ok(Some((_, n))) = full {
        assert!(*n > small_max, "TooLarge for a {n}-byte head under {small_max}");
    }
}

type Decoded = (Result<usize, BodyError>, Vec<u8>, bool, u64);

fn decode_whole(body: &[u8]) -> Decoded {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let r = d.decode(body, &mut out);
    (r, out, d.is_done(), d.decoded())
}

fn decode_pieces(body: &[u8], splits: &[u8]) -> Decoded {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut sizes = splits.iter().map(|&b| usize::from(b)).cycle();
    while pos < body.len() && !d.is_done() {
        let size = if splits.is_empty() {
            1
        } else {
            sizes.next().unwrap()
        };
        let end = (pos + size).min(body.len());
        let piece = &body[pos..end];
        let before = out.len();
        match d.decode(piece, &mut out) {
            Ok(used) => {
                assert!(used <= piece.len());
                if !d.is_done() {
                    assert_eq!(used, piece.len(), "not done, yet input left unconsumed");
                }
                assert!(out.len() - before <= used);
                pos += used;
            }
            Err(e) => return (Err(e), out, d.is_done(), d.decoded()),
        }
        if size == 0 {
            // An empty call must be a no-op; then move on by one byte.
            assert_eq!(out.len(), before);
            let end = (pos + 1).min(body.len());
            match d.decode(&body[pos..end], &mut out) {
                Ok(used) => pos += used,
                Err(e) => return (Err(e), out, d.is_done(), d.decoded()),
            }
        }
    }
    (Ok(pos), out, d.is_done(), d.decoded())
}

fn check_chunked(body: &[u8], splits: &[u8]) {
    let whole = decode_whole(body);
    let pieces = decode_pieces(body, splits);
    match (&whole.0, &pieces.0) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "consumed differs (whole vs pieces)");
            assert_eq!(whole.1, pieces.1, "decoded body differs (whole vs pieces)");
            assert_eq!(whole.2, pieces.2, "is_done differs (whole vs pieces)");
            assert_eq!(whole.3, pieces.3, "decoded() differs");
            assert_eq!(whole.3, whole.1.len() as u64);
            assert!(*a <= body.len());
            if !whole.2 {
                assert_eq!(*a, body.len(), "not done but input left over");
            }
            assert!(whole.1.len() <= *a);
            if whole.2 {
                // The body ends where the decoder stopped: feeding the rest changes nothing.
                let mut d = ChunkedDecoder::new();
                let mut out = Vec::new();
                assert_eq!(d.decode(&body[..*a], &mut out), Ok(*a));
                assert!(d.is_done());
                assert_eq!(d.decode(&body[*a..], &mut out), Ok(0));
                assert_eq!(out, whole.1);
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "error differs (whole vs pieces)"),
        (a, b) => panic!("whole gives {a:?}, pieces give {b:?}"),
    }
}
