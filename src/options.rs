//! `OPTIONS *` (RFC 9110 §9.3.7): a question about the server as a whole, not about
//! any resource, so it never reaches routing (where `*` is no path at all).

use crate::error::Error;
use crate::http::exchange::Exchange;
use crate::http::head::Request;
use crate::site::{self, Sent};

/// The methods the server serves in general, as lighttpd lists them. A script may
/// answer more (PUT, DELETE); `OPTIONS` on its own URL is the script's to answer.
pub const ALLOW: &str = "GET, HEAD, POST, OPTIONS";

/// Is this `OPTIONS *`?
pub fn is_asterisk(req: &Request) -> bool {
    req.method == "OPTIONS" && req.target == "*"
}

/// Answers `OPTIONS *` with 200, `Allow` and no body; `Ok(None)` for any other request.
pub async fn asterisk(ex: &mut Exchange<'_>, req: &Request) -> Result<Option<Sent>, Error> {
    if !is_asterisk(req) {
        return Ok(None);
    }
    let headers = [("Allow".to_owned(), ALLOW.as_bytes().to_vec())];
    site::send_memory(ex, 200, &headers, b"").await.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_options_asterisk() {
        let req = |raw: &str| {
            crate::http::head::parse(raw.as_bytes(), 4096)
                .unwrap()
                .unwrap()
                .0
        };
        assert!(is_asterisk(&req("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")));
        assert!(!is_asterisk(&req("OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n")));
        assert!(!is_asterisk(&req(
            "OPTIONS /cgi-bin/x HTTP/1.1\r\nHost: x\r\n\r\n"
        )));
    }
}
