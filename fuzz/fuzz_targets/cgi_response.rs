//! CGI script response header parser (`gateway::response::parse`).
//!
//! The input is the script's output as is. Checked: no panic; body start <= len;
//! status in 100..=999; no header name/value/reason that could split or forge a
//! header downstream (CR, LF, NUL, other controls); names are tokens; Status,
//! Content-Length and hop-by-hop headers are not passed on; prefix stability (the
//! head alone, and the head followed by other bytes, parse the same; a shorter
//! prefix is still incomplete, as the relay re-parses a growing buffer); a smaller
//! limit gives the same answer or TooLarge.
#![no_main]

use cgi_testbed::gateway::response::{self, CgiResponse, HOP_BY_HOP, Kind, ResponseError};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let full = response::parse(data, MAX);

    // A smaller limit: the same answer, or TooLarge.
    let small_max = data.first().map_or(0, |&b| usize::from(b) * 4);
    let small = response::parse(data, small_max);
    if small != full {
        assert_eq!(
            small,
            Err(ResponseError::TooLarge),
            "max {small_max} disagrees with {MAX}: {full:?}"
        );
    }

    let (resp, start) = match full {
        Ok(Some(ok)) => ok,
        Ok(None) => {
            assert!(data.len() <= MAX);
            assert!(!ends_headers(data), "Ok(None) although the header block ended");
            return;
        }
        Err(_) => return,
    };
    assert!(start <= data.len(), "body start {start} > len {}", data.len());
    assert!(start > 0 && start <= MAX);
    assert_eq!(data[start - 1], b'\n');
    check_response(&resp);

    // Prefix stability: only the head decides.
    assert_eq!(
        response::parse(&data[..start], MAX),
        Ok(Some((resp.clone(), start))),
        "the head alone parses differently"
    );
    let mut longer = data.to_vec();
    longer.extend_from_slice(b"Status: 999 junk\r\nX\0: \r\n\r\n\n");
    assert_eq!(
        response::parse(&longer, MAX),
        Ok(Some((resp.clone(), start))),
        "appending bytes changes the head"
    );
    for k in [start - 1, start / 2, data.len() % start] {
        assert_eq!(
            response::parse(&data[..k], MAX),
            Ok(None),
            "prefix of {k} bytes (head is {start}) is not incomplete"
        );
    }
});

/// Does `data` contain an empty line (the end of the header block)?
fn ends_headers(data: &[u8]) -> bool {
    data.split(|&b| b == b'\n')
        .rev()
        .skip(1) // the last piece has no newline after it
        .any(|line| line.is_empty() || line == b"\r")
}

fn check_response(resp: &CgiResponse) {
    assert!(
        (100..=999).contains(&resp.status),
        "status {} out of range",
        resp.status
    );
    if let Some(reason) = &resp.reason {
        assert!(!reason.is_empty());
        assert!(
            !reason.bytes().any(is_bad_byte),
            "reason phrase {reason:?} has control bytes"
        );
    }
    let mut content_types = 0;
    for (name, value) in &resp.headers {
        assert!(!name.is_empty());
        assert!(
            name.bytes().all(cgi_testbed::http::head::is_token),
            "header name {name:?} is not a token"
        );
        assert!(
            !value.iter().copied().any(is_bad_byte),
            "header {name:?} value {value:?} has CR/LF/NUL/control bytes"
        );
        assert!(!value.is_empty(), "empty header {name:?} passed on");
        assert!(
            !value.starts_with(b" ") && !value.ends_with(b" "),
            "value of {name:?} not trimmed"
        );
        let lower = name.to_ascii_lowercase();
        assert!(lower != "status", "Status passed on");
        assert!(lower != "content-length", "Content-Length passed on");
        assert!(
            !HOP_BY_HOP.contains(&lower.as_str()),
            "hop-by-hop header {name:?} passed on"
        );
        if lower == "content-type" {
            content_types += 1;
        }
    }
    assert!(content_types <= 1, "Content-Type more than once");
    match &resp.kind {
        Kind::LocalRedirect(path) => {
            assert!(path.starts_with('/') && !path.starts_with("//"));
            assert!(!path.bytes().any(|b| b <= b' ' || b == 0x7f));
            assert_eq!(resp.status, 200);
        }
        Kind::Document => {}
    }
}

fn is_bad_byte(b: u8) -> bool {
    (b < b' ' && b != b'\t') || b == 0x7f
}
